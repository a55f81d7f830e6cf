"""BlazeFace backend: finds the one face in a public-domain photo where res10 does, maps boxes back right."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from face_detector import create_detector
from face_detector.blazeface import BlazeFaceDetector, make_anchors
from face_detector.fetch_weights import WEIGHTS_DIR

_WEIGHTS = ("face_detection_full_range.tflite", "face_detection_short_range.tflite", "res10_300x300_ssd_iter_140000.caffemodel")
pytestmark = pytest.mark.skipif(
    not all((WEIGHTS_DIR / name).is_file() for name in _WEIGHTS),
    reason="face-detector weights missing (run `python -m face_detector.fetch_weights`)",
)

RANGES = [pytest.param(False, id="full_range"), pytest.param(True, id="short_range")]


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes."""
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """skimage's public-domain astronaut portrait (512x512), as BGR."""
    data = pytest.importorskip("skimage.data")
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def res10_box(astronaut: np.ndarray) -> tuple[int, int, int, int]:
    """The reference face box from the seed's detector."""
    faces = create_detector("res10").detect(astronaut)
    assert len(faces) == 1
    return faces[0].box


def test_anchor_counts_match_the_models() -> None:
    # The model outputs one row per anchor: 896 for short range, 2304 for full range.
    assert make_anchors(128, (8, 16, 16, 16), 2).shape == (896, 2)
    assert make_anchors(192, (4,), 1).shape == (2304, 2)


@pytest.mark.parametrize("short_range", RANGES)
def test_finds_the_astronauts_face(astronaut: np.ndarray, res10_box: tuple[int, int, int, int], short_range: bool) -> None:
    faces = BlazeFaceDetector(short_range=short_range).detect(astronaut)
    assert len(faces) == 1
    box = faces[0].box
    assert iou(box, res10_box) > 0.5
    # On the face: the box centre lies inside res10's box, and the box is face-sized, not the whole photo.
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    assert res10_box[0] < cx < res10_box[2] and res10_box[1] < cy < res10_box[3]
    assert 60 < box[2] - box[0] < 160 and 60 < box[3] - box[1] < 160
    assert 0.5 < faces[0].confidence <= 1.0


@pytest.mark.parametrize("short_range", RANGES)
def test_black_frame_has_no_faces(short_range: bool) -> None:
    assert BlazeFaceDetector(short_range=short_range).detect(np.zeros((480, 640, 3), np.uint8)) == []


@pytest.mark.parametrize("short_range", RANGES)
def test_letterbox_maps_boxes_back_on_a_640x480_frame(astronaut: np.ndarray, short_range: bool) -> None:
    detector = BlazeFaceDetector(short_range=short_range)
    (expected,) = detector.detect(astronaut)
    # Paste the upper-left 360x360 of the photo (face included) at (x=250, y=100) of a 4:3 frame:
    # the box must move by exactly that offset, give or take resampling noise.
    frame = np.full((480, 640, 3), 40, np.uint8)
    dx, dy = 250, 100
    frame[dy : dy + 360, dx : dx + 360] = astronaut[:360, :360]
    faces = detector.detect(frame)
    assert len(faces) == 1
    shifted = (expected.box[0] + dx, expected.box[1] + dy, expected.box[2] + dx, expected.box[3] + dy)
    assert iou(faces[0].box, shifted) > 0.8
    assert all(abs(got - want) <= 8 for got, want in zip(faces[0].box, shifted))


def test_factory_builds_both_ranges() -> None:
    assert isinstance(create_detector("blazeface"), BlazeFaceDetector)
    assert isinstance(create_detector("blazeface_short", confidence=0.6), BlazeFaceDetector)


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        BlazeFaceDetector(confidence=0.0)
    with pytest.raises(ValueError):
        BlazeFaceDetector(nms_iou=1.5)


_CONVERTED = pytest.mark.skipif(
    not (WEIGHTS_DIR / "face_detection_full_range.onnx").is_file(),
    reason="BlazeFace ONNX conversion missing (made by `python -m face_detector.fetch_weights` where tf2onnx is installed)",
)


@_CONVERTED
@pytest.mark.parametrize("short_range", RANGES)
def test_onnxruntime_and_opencv_find_the_same_face(astronaut: np.ndarray, short_range: bool) -> None:
    fast = BlazeFaceDetector(short_range=short_range, runtime="onnxruntime")
    reference = BlazeFaceDetector(short_range=short_range, runtime="opencv")
    assert (fast.runtime, reference.runtime) == ("onnxruntime", "opencv")
    frame = np.full((480, 640, 3), 40, np.uint8)
    frame[60:420, 140:500] = astronaut[:360, :360]
    for image in (astronaut, frame):
        (a,), (b,) = fast.detect(image), reference.detect(image)
        assert all(abs(p - q) <= 1 for p, q in zip(a.box, b.box))
        assert abs(a.confidence - b.confidence) < 1e-3


@_CONVERTED
def test_auto_runtime_prefers_the_conversion() -> None:
    assert BlazeFaceDetector().runtime == "onnxruntime"


def test_rejects_an_unknown_runtime() -> None:
    with pytest.raises(ValueError, match="runtime"):
        BlazeFaceDetector(runtime="tflite")
