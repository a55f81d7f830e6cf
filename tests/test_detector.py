"""The seed's res10 detector finds the face in a public-domain photo, at the right place."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import DATA, astronaut_bgr, needs_data
from face_detector import create_detector


def test_res10_finds_the_astronaut() -> None:
    faces = create_detector("res10", confidence=0.5, min_size=20).detect(astronaut_bgr())
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].box
    # Eileen Collins' face sits around x 180-270, y 60-180 of the 512x512 photo
    assert 160 <= x1 <= 200 and 250 <= x2 <= 290 and 40 <= y1 <= 80 and 160 <= y2 <= 200
    assert faces[0].confidence > 0.9


def test_res10_on_a_blank_frame_and_size_limit() -> None:
    detector = create_detector("res10")
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert create_detector("res10", min_size=400).detect(astronaut_bgr()) == []


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="unknown detector backend"):
        create_detector("yolo")



@needs_data
def test_res10_drops_false_faces_reaching_past_the_frame() -> None:
    # In this real video res10 also "finds" a confident face on the chin and shoulder, reaching
    # past the bottom-right corner of the frame; the person's face lies fully inside.
    capture = cv2.VideoCapture(str(DATA / "videos" / "tranvanluyt2203" / "real.mp4"))
    frame = None
    for _ in range(10):
        frame = capture.read()[1]
    everything = create_detector("res10", min_inside=0.0).detect(frame)
    kept = create_detector("res10").detect(frame)
    assert len(everything) == 2 and len(kept) == 1
    height, width = frame.shape[:2]
    dropped = [face for face in everything if face not in kept][0]
    assert dropped.box[2] == width and dropped.box[3] == height  # clipped at the corner
