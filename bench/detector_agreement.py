"""Does BlazeFace find the same faces as res10 on the shared real data, and how fast is each?

Reads (never copies) the shared data set: every 5th frame of videos/*/*.mp4 and every frame in
frames/nuaa (640x480). For each set it prints the number of frames, the frames where res10 found a
face, the fraction of those where BlazeFace (full and short range) found a matching face (IoU >= 0.5
with res10's largest face), the mean IoU of those matches, the faces BlazeFace found that res10 did
not (extra) and res10's faces BlazeFace did not find (missed), and the median ms per frame of each
detector on one thread (pre- and post-processing included). The last line is one JSON object.

    python bench/detector_agreement.py                     # data from $LIVENESS_DATA or ../shared/data
    python bench/detector_agreement.py --confidence 0.6 --nms-iou 0.3
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(REPO))

from face_detector import Detection, FaceDetector  # noqa: E402
from face_detector.blazeface import BlazeFaceDetector  # noqa: E402
from face_detector.res10 import Res10Detector  # noqa: E402

MATCH_IOU = 0.5
VIDEO_STEP = 5


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes."""
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def data_root() -> Path:
    """The shared data folder: $LIVENESS_DATA, else <repo>/../shared/data."""
    return Path(os.environ.get("LIVENESS_DATA", REPO.parent / "shared" / "data"))


def video_frames(path: Path, step: int) -> Iterator[np.ndarray]:
    """Every `step`-th frame of a video (read to the end: some files report no frame count)."""
    capture = cv2.VideoCapture(str(path))
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            if index % step == 0:
                yield frame
            index += 1
    finally:
        capture.release()


def image_frames(folder: Path) -> Iterator[np.ndarray]:
    """Every image under a folder, in name order."""
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
            frame = cv2.imread(str(path))
            if frame is not None:
                yield frame


def data_sets(root: Path) -> dict[str, Iterator[np.ndarray]]:
    """Name -> frames, for each video and the NUAA frames."""
    sets: dict[str, Iterator[np.ndarray]] = {}
    for video in sorted(root.glob("videos/*/*.mp4")):
        sets[str(video.relative_to(root).with_suffix(""))] = video_frames(video, VIDEO_STEP)
    if (root / "frames" / "nuaa").is_dir():
        sets["frames/nuaa"] = image_frames(root / "frames" / "nuaa")
    return sets


def timed(detector: FaceDetector, frame: np.ndarray) -> tuple[list[Detection], float]:
    """Faces and wall-clock milliseconds of one detect() call."""
    start = time.perf_counter()
    faces = detector.detect(frame)
    return faces, (time.perf_counter() - start) * 1000.0


class Tally:
    """Agreement of one BlazeFace variant with res10 over one set."""

    def __init__(self) -> None:
        self.matched = 0  # frames with a res10 face where BlazeFace has a face matching res10's largest
        self.ious: list[float] = []
        self.extra = 0  # BlazeFace faces matching no res10 face
        self.missed = 0  # res10 faces matching no BlazeFace face
        self.ms: list[float] = []

    def add(self, reference: list[Detection], faces: list[Detection], ms: float) -> None:
        """Count one frame."""
        self.ms.append(ms)
        if reference:
            largest = max(reference, key=lambda face: face.area)
            best = max((iou(largest.box, face.box) for face in faces), default=0.0)
            if best >= MATCH_IOU:
                self.matched += 1
                self.ious.append(best)
        self.extra += sum(all(iou(face.box, ref.box) < MATCH_IOU for ref in reference) for face in faces)
        self.missed += sum(all(iou(ref.box, face.box) < MATCH_IOU for face in faces) for ref in reference)

    def summary(self, with_face: int) -> dict[str, Any]:
        """Figures for the report."""
        return {
            "agreement": round(self.matched / with_face, 4) if with_face else None,
            "mean_iou": round(float(np.mean(self.ious)), 3) if self.ious else None,
            "extra": self.extra,
            "missed": self.missed,
            "ms": round(float(np.median(self.ms)), 2) if self.ms else None,
        }


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--confidence", type=float, default=0.5, help="BlazeFace score threshold")
    parser.add_argument("--nms-iou", type=float, default=0.3, help="BlazeFace weighted-NMS overlap")
    parser.add_argument("--res10-confidence", type=float, default=0.5)
    parser.add_argument("--min-size", type=int, default=20)
    parser.add_argument("--limit", type=int, default=0, help="at most this many frames per set (0: all)")
    args = parser.parse_args(argv)

    root = data_root()
    sets = data_sets(root)
    if not sets:
        print(f"detector_agreement: no videos/*/*.mp4 or frames/nuaa under {root} (set LIVENESS_DATA)", file=sys.stderr)
        return 2

    # One thread for every detector: cv2.setNumThreads is process-wide and each constructor sets it.
    res10 = Res10Detector(confidence=args.res10_confidence, min_size=args.min_size, threads=1)
    variants = {
        "full": BlazeFaceDetector(False, args.confidence, args.min_size, 1, args.nms_iou),
        "short": BlazeFaceDetector(True, args.confidence, args.min_size, 1, args.nms_iou),
    }
    report: dict[str, Any] = {"confidence": args.confidence, "nms_iou": args.nms_iou, "sets": {}}
    header = f"{'set':32} {'frames':>6} {'res10':>6} {'res10 ms':>8}"
    header += "".join(f" | {name + ' agree':>10} {'iou':>5} {'extra':>5} {'miss':>5} {'ms':>6}" for name in variants)
    print(header)
    for name, frames in sets.items():
        count, with_face, res10_ms = 0, 0, []
        tallies = {variant: Tally() for variant in variants}
        for frame in frames:
            if args.limit and count >= args.limit:
                break
            count += 1
            reference, ms = timed(res10, frame)
            res10_ms.append(ms)
            with_face += bool(reference)
            for variant, detector in variants.items():
                tallies[variant].add(reference, *timed(detector, frame))
        entry: dict[str, Any] = {
            "frames": count,
            "res10_faces_frames": with_face,
            "res10_ms": round(float(np.median(res10_ms)), 2) if res10_ms else None,
        }
        line = f"{name:32} {count:6d} {with_face:6d} {entry['res10_ms'] or 0:8.2f}"
        for variant, tally in tallies.items():
            figures = tally.summary(with_face)
            entry[variant] = figures
            line += (
                f" | {figures['agreement'] if figures['agreement'] is not None else '-':>10} "
                f"{figures['mean_iou'] if figures['mean_iou'] is not None else '-':>5} "
                f"{figures['extra']:5d} {figures['missed']:5d} {figures['ms'] or 0:6.2f}"
            )
        report["sets"][name] = entry
        print(line, flush=True)
    print(json.dumps(report, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
