"""Measure the classifier's cost per face with onnxruntime on one thread (as the classify stage runs it).

    python -m training.speed --model models/liveness.onnx
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from liveness.model import LivenessModel


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


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", type=Path, default=Path("models/liveness.onnx"))
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args(argv)
    for batch in (1, 4):
        print(f"{args.model}: {ms_per_face(args.model, batch, args.repeats):.3f} ms/face at batch {batch}, 1 onnxruntime thread")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
