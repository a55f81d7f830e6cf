"""Measure the classifier's cost per face with onnxruntime on one thread (as the classify stage runs it),
the cost of cutting its crops from a 640x480 frame with each crop resize (liveness.crop), and of
averaging scores over a video's frames (liveness.tracking) per frame.

    python -m bench.speed --model models/liveness.onnx
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from liveness.crop import CROP_RESIZES, crop_face
from liveness.model import LivenessModel

# A 190 px face box in a 640x480 frame (a person about 60 cm from a laptop webcam).
FRAME_SHAPE = (480, 640, 3)
FACE_BOX = (250.0, 130.0, 400.0, 320.0)


def ms_per_face(model_path: Path, batch: int = 1, repeats: int = 300) -> float:
    """Median milliseconds per face of predict_crops (normalisation + onnxruntime), one thread."""
    model = LivenessModel(model_path, threads=1)
    meta = model.metadata
    crops = np.random.default_rng(0).integers(0, 256, (batch, meta.input_size, meta.input_size, meta.channels), dtype=np.uint8)
    for _ in range(20):
        model.predict_crops(crops)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict_crops(crops)
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1000.0 / batch


def crop_ms(scale: float, size: int, resize: str, repeats: int = 300, border: str = "black") -> float:
    """Median milliseconds to cut one crop at `scale` around FACE_BOX from a 640x480 frame."""
    frame = np.random.default_rng(0).integers(0, 256, FRAME_SHAPE, dtype=np.uint8)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        crop_face(frame, FACE_BOX, scale, size, resize, border)
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1000.0


def smoothing_us(faces: int, repeats: int = 300) -> float:
    """Median microseconds per frame to match `faces` moving faces to their tracks and average their scores."""
    from liveness.tracking import ScoreSmoother

    smoother = ScoreSmoother(0.5)
    scores = np.random.default_rng(0).random((repeats + 20, faces)).tolist()
    times = []
    for k in range(repeats + 20):
        boxes = [(120 * i + k % 5, 40, 120 * i + 100 + k % 5, 160) for i in range(faces)]  # drifting a little
        started = time.perf_counter()
        smoother.update(k / 30.0, boxes, scores[k])
        times.append(time.perf_counter() - started)
    return float(np.median(times[20:])) * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", type=Path, default=Path("models/liveness.onnx"))
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args(argv)
    for batch in (1, 4):
        print(f"{args.model}: {ms_per_face(args.model, batch, args.repeats):.3f} ms/face at batch {batch}, 1 onnxruntime thread")
    meta = LivenessModel(args.model).metadata
    for resize in CROP_RESIZES:
        costs = {scale: crop_ms(scale, meta.input_size, resize, args.repeats, meta.crop_border) for scale in meta.crop_scales}
        used = " (this model's)" if resize == meta.crop_resize else ""
        print(f"crops{used}, {resize}: " + ", ".join(f"{s:g}x {ms:.3f} ms" for s, ms in costs.items())
              + f"; {sum(costs.values()):.3f} ms/face for a 190 px face in a 640x480 frame")
    print("score averaging over frames: " + ", ".join(f"{n} faces {smoothing_us(n, args.repeats):.1f} us" for n in (1, 5, 20))
          + " per frame")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
