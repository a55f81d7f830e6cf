"""The seed's ResNet-10 SSD face detector (Caffe weights) run with cv2.dnn."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from face_detector import Detection, clip_box
from face_detector.fetch_weights import weight_path

_INPUT_SIZE = (300, 300)
_MEAN_BGR = (104.0, 177.0, 123.0)


def load_res10_net(folder: Path | None = None) -> cv2.dnn.Net:
    """The res10 SSD as cv2.dnn loads it: weights fetched by face_detector.fetch_weights, or those
    in `folder` (the tutorial's face_detector folder: deploy.prototxt and a .caffemodel)."""
    if folder is None:
        return cv2.dnn.readNetFromCaffe(str(weight_path("deploy.prototxt")),
                                        str(weight_path("res10_300x300_ssd_iter_140000.caffemodel")))
    prototxt, caffemodel = res10_files(folder)
    return cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))


def res10_files(folder: Path) -> tuple[Path, Path]:
    """(deploy.prototxt, the .caffemodel) in `folder` or its weights/ sub-folder (FileNotFoundError naming both)."""
    for place in (folder, folder / "weights"):
        models = sorted(place.glob("*.caffemodel"))
        if (place / "deploy.prototxt").is_file() and models:
            return place / "deploy.prototxt", models[0]
    raise FileNotFoundError(f"detector folder {folder}: no deploy.prototxt and .caffemodel in it "
                            "(the tutorial's face_detector folder holds both; or run python -m face_detector.fetch_weights res10)")


class Res10Detector:
    """Every face above `confidence` whose shorter box side is at least `min_size` pixels.

    Boxes that lie less than `min_inside` inside the frame are dropped: on the shared videos res10's
    confident false positives (chin, shoulders) all reach past the frame edge (55-82% inside)
    while every real face lies fully inside, and a face mostly outside the frame is no basis for
    a liveness decision anyway.
    """

    def __init__(self, confidence: float = 0.5, min_size: int = 20, threads: int = 1, min_inside: float = 0.85,
                 folder: Path | None = None) -> None:
        if not 0.0 < confidence <= 1.0:
            raise ValueError(f"res10 confidence must be in (0, 1], got {confidence}")
        self.confidence = confidence
        self.min_size = min_size
        self.min_inside = min_inside
        cv2.setNumThreads(threads)
        self._net = load_res10_net(folder)

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """All faces in a BGR uint8 frame, most confident first."""
        height, width = frame_bgr.shape[:2]
        blob = cv2.dnn.blobFromImage(cv2.resize(frame_bgr, _INPUT_SIZE), 1.0, _INPUT_SIZE, _MEAN_BGR)
        self._net.setInput(blob)
        raw = self._net.forward()[0, 0]  # rows: [image_id, class, confidence, x1, y1, x2, y2] (relative)
        faces: list[Detection] = []
        for row in raw[raw[:, 2] >= self.confidence]:
            x1, y1, x2, y2 = (float(v) for v in row[3:7])  # relative, may reach past the frame
            area = max(x2 - x1, 1e-6) * max(y2 - y1, 1e-6)
            inside = max(min(x2, 1.0) - max(x1, 0.0), 0.0) * max(min(y2, 1.0) - max(y1, 0.0), 0.0)
            if inside / area < self.min_inside:
                continue
            box = clip_box((x1 * width, y1 * height, x2 * width, y2 * height), width, height)
            if min(box[2] - box[0], box[3] - box[1]) >= self.min_size:
                faces.append(Detection(box, float(row[2])))
        faces.sort(key=lambda face: face.confidence, reverse=True)
        return faces
