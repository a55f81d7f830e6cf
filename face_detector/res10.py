"""The seed's ResNet-10 SSD face detector (Caffe weights) run with cv2.dnn."""
from __future__ import annotations

import cv2
import numpy as np

from face_detector import Detection, clip_box
from face_detector.fetch_weights import weight_path

_INPUT_SIZE = (300, 300)
_MEAN_BGR = (104.0, 177.0, 123.0)


class Res10Detector:
    """Every face above `confidence` whose shorter box side is at least `min_size` pixels."""

    def __init__(self, confidence: float = 0.5, min_size: int = 20, threads: int = 1) -> None:
        if not 0.0 < confidence <= 1.0:
            raise ValueError(f"res10 confidence must be in (0, 1], got {confidence}")
        self.confidence = confidence
        self.min_size = min_size
        cv2.setNumThreads(threads)
        self._net = cv2.dnn.readNetFromCaffe(
            str(weight_path("deploy.prototxt")), str(weight_path("res10_300x300_ssd_iter_140000.caffemodel"))
        )

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """All faces in a BGR uint8 frame, most confident first."""
        height, width = frame_bgr.shape[:2]
        blob = cv2.dnn.blobFromImage(cv2.resize(frame_bgr, _INPUT_SIZE), 1.0, _INPUT_SIZE, _MEAN_BGR)
        self._net.setInput(blob)
        raw = self._net.forward()[0, 0]  # rows: [image_id, class, confidence, x1, y1, x2, y2] (relative)
        faces: list[Detection] = []
        for row in raw[raw[:, 2] >= self.confidence]:
            box = clip_box(tuple(row[3:7] * (width, height, width, height)), width, height)
            if min(box[2] - box[0], box[3] - box[1]) >= self.min_size:
                faces.append(Detection(box, float(row[2])))
        faces.sort(key=lambda face: face.confidence, reverse=True)
        return faces
