"""Face detectors shared by the pipeline's detect stage and the training tools.

    detector = create_detector("res10", confidence=0.5, min_size=40)
    for face in detector.detect(frame_bgr):
        print(face.box, face.confidence)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Detection:
    """One face: box in pixels [x1, y1, x2, y2] (x2, y2 exclusive) and detector confidence."""

    box: tuple[int, int, int, int]
    confidence: float

    @property
    def area(self) -> int:
        x1, y1, x2, y2 = self.box
        return max(0, x2 - x1) * max(0, y2 - y1)


class FaceDetector(Protocol):
    """What every detector backend offers."""

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """All faces in a BGR uint8 frame, most confident first."""
        ...


def clip_box(box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """Round a box to whole pixels inside a width x height frame."""
    x1, y1, x2, y2 = box
    return (
        int(min(max(round(x1), 0), width)),
        int(min(max(round(y1), 0), height)),
        int(min(max(round(x2), 0), width)),
        int(min(max(round(y2), 0), height)),
    )


BACKENDS = ("res10", "blazeface", "blazeface_short")


def create_detector(backend: str, **params: Any) -> FaceDetector:
    """Build a detector by name: "res10" (the seed's SSD), "blazeface" (full range) or "blazeface_short"."""
    if backend == "res10":
        from face_detector.res10 import Res10Detector

        return Res10Detector(**params)
    if Path(backend).is_dir():  # the tutorial's `--detector face_detector`: a folder of res10 files
        from face_detector.res10 import Res10Detector

        return Res10Detector(folder=Path(backend), **params)
    if backend in ("blazeface", "blazeface_short"):
        from face_detector.blazeface import BlazeFaceDetector

        return BlazeFaceDetector(short_range=backend == "blazeface_short", **params)
    raise ValueError(f"unknown detector backend {backend!r} (known: {', '.join(BACKENDS)})")
