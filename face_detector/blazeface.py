"""BlazeFace (MediaPipe face detection, short and full range) from the pinned tflite files.

The network runs with onnxruntime on the ONNX conversion `make setup` makes of each tflite file
(about twice as fast as cv2.dnn on one thread), or with cv2.dnn.readNetFromTFLite on the tflite file
itself (`runtime="opencv"`, and the fallback when no conversion exists).

The network is an SSD without its post-processing: it returns one score logit and 16 regression
values (box centre offset, width, height and six key points, all in input pixels) per anchor. This
module builds the anchors, decodes the boxes, thresholds the scores and merges overlapping boxes
with weighted non-maximum suppression as BlazeFace does. No TensorFlow or mediapipe is needed.

    detector = BlazeFaceDetector(short_range=False, confidence=0.5)
    faces = detector.detect(frame_bgr)
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from face_detector import Detection, clip_box
from face_detector.fetch_weights import WEIGHTS_DIR, onnx_name, weight_path

RUNTIMES = ("auto", "onnxruntime", "opencv")


@dataclass(frozen=True)
class _ModelSpec:
    """What differs between the two tflite models."""

    file_name: str
    input_size: int  # square input, pixels
    strides: tuple[int, ...]  # one entry per SSD layer
    anchors_per_layer: int  # anchors per layer and grid cell


# Anchor layout of MediaPipe's face_detection_{short,full}_range graphs (SsdAnchorsCalculator
# options): fixed-size square anchors centred on each grid cell. Short range has two anchors per
# cell and layer (aspect 1.0 plus the interpolated scale); full range has only one.
_SHORT = _ModelSpec("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 2)
_FULL = _ModelSpec("face_detection_full_range.tflite", 192, (4,), 1)

# Logits are clipped before the sigmoid, as MediaPipe does, so extreme values cannot overflow exp().
_SCORE_CLIP = 100.0


def load_blazeface_net(short_range: bool = False) -> cv2.dnn.Net:
    """BlazeFace (short or full range) as cv2.dnn loads its tflite file (fetched by face_detector.fetch_weights)."""
    return cv2.dnn.readNetFromTFLite(str(weight_path((_SHORT if short_range else _FULL).file_name)))


def make_anchors(input_size: int, strides: tuple[int, ...], anchors_per_layer: int) -> np.ndarray:
    """SSD anchor centres, shape (N, 2) as (x, y) relative to the input, in the network's output order.

    Consecutive layers with the same stride share one grid: their anchors are emitted together per
    cell (row-major over the grid, then anchor), which is how the model's outputs are laid out.
    All anchors have width and height 1 (fixed anchor size), so only the centres are kept.
    """
    centres: list[tuple[float, float]] = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        same = 0
        while layer + same < len(strides) and strides[layer + same] == stride:
            same += 1
        grid = int(np.ceil(input_size / stride))
        for row in range(grid):
            for col in range(grid):
                centres.extend([((col + 0.5) / grid, (row + 0.5) / grid)] * (same * anchors_per_layer))
        layer += same
    return np.asarray(centres, dtype=np.float32)


def _iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one [x1, y1, x2, y2] box with each row of `boxes`."""
    ix1 = np.maximum(box[0], boxes[:, 0])
    iy1 = np.maximum(box[1], boxes[:, 1])
    ix2 = np.minimum(box[2], boxes[:, 2])
    iy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[tuple[np.ndarray, float]]:
    """Merge overlapping boxes: each cluster becomes the score-weighted mean box with its best score.

    BlazeFace's anchors are dense, so one face fires many neighbouring anchors; averaging them
    (rather than keeping only the best) gives a steadier box from frame to frame.
    """
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    merged: list[tuple[np.ndarray, float]] = []
    remaining = np.ones(len(scores), dtype=bool)
    for index in range(len(scores)):
        if not remaining[index]:
            continue
        cluster = remaining & (_iou_one_to_many(boxes[index], boxes) > iou)
        cluster[index] = True
        weights = scores[cluster]
        merged.append(((boxes[cluster] * weights[:, None]).sum(axis=0) / weights.sum(), float(scores[index])))
        remaining &= ~cluster
    return merged


# Measured on the NUAA frames (bench/detector_agreement.py): BlazeFace boxes are about 10% wider
# and 13% shorter than res10's, centred 6% of the res10 box height lower. The liveness model's
# crops are cut around res10-shaped boxes, so BlazeFace boxes are mapped to that shape.
_RES10_WIDTH, _RES10_HEIGHT, _RES10_SHIFT_UP = 1 / 1.10, 1 / 0.87, 0.06


def _shrink(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to width x height; large reductions as bilinear to twice the size, then 2x2 averaging.

    A plain area resize of a 640x480 frame to the 192-pixel input costs about 2 ms (its
    non-integer path is slow); the two steps cost about 0.5 ms and still average away the detail
    that would alias.
    """
    if width * 2 < image.shape[1] and height * 2 < image.shape[0]:
        double = cv2.resize(image, (width * 2, height * 2), interpolation=cv2.INTER_LINEAR)
        return cv2.resize(double, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if width < image.shape[1] else cv2.INTER_LINEAR)


def res10_geometry(box: np.ndarray) -> np.ndarray:
    """A BlazeFace box [x1, y1, x2, y2] reshaped to where res10 would have put it."""
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    width, height = (box[2] - box[0]) * _RES10_WIDTH, (box[3] - box[1]) * _RES10_HEIGHT
    cy -= _RES10_SHIFT_UP * height
    return np.array([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2], dtype=np.float64)


class BlazeFaceDetector:
    """Every face above `confidence` whose shorter box side is at least `min_size` pixels.

    `short_range` picks the 128x128 model (faces within about 2 m, fastest); the default full-range
    192x192 model also finds small, distant faces. `runtime` is "onnxruntime", "opencv", or "auto"
    (onnxruntime where the converted model exists). `nms_iou` is the overlap above which two boxes
    are taken for the same face and merged. `match_res10` reshapes boxes to res10's geometry,
    which the liveness model's crops assume.
    """

    def __init__(
        self,
        short_range: bool = False,
        confidence: float = 0.5,
        min_size: int = 20,
        threads: int = 1,
        nms_iou: float = 0.3,
        match_res10: bool = True,
        runtime: str = "auto",
    ) -> None:
        if not 0.0 < confidence <= 1.0:
            raise ValueError(f"blazeface confidence must be in (0, 1], got {confidence}")
        if not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"blazeface nms_iou must be in (0, 1], got {nms_iou}")
        self.confidence = confidence
        self.min_size = min_size
        self.nms_iou = nms_iou
        self.match_res10 = match_res10
        if runtime not in RUNTIMES:
            raise ValueError(f"blazeface runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        self._spec = _SHORT if short_range else _FULL
        cv2.setNumThreads(threads)
        converted = WEIGHTS_DIR / onnx_name(self._spec.file_name)
        if runtime == "auto":
            runtime = "onnxruntime" if converted.is_file() else "opencv"
        self.runtime = runtime
        if runtime == "onnxruntime":
            import onnxruntime  # only here: the opencv runtime must not pay for loading it

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(str(weight_path(converted.name)), options,
                                                         providers=["CPUExecutionProvider"])
            self._input_name = self._session.get_inputs()[0].name
        else:
            self._net = load_blazeface_net(short_range)
            self._outputs = list(self._net.getUnconnectedOutLayersNames())
        self._anchors = make_anchors(self._spec.input_size, self._spec.strides, self._spec.anchors_per_layer)
        # The logit a score must beat, so the sigmoid is only taken for the few candidates.
        self._min_logit = float(np.log(confidence / (1.0 - confidence))) if confidence < 1.0 else _SCORE_CLIP

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """All faces in a BGR uint8 frame, most confident first."""
        height, width = frame_bgr.shape[:2]
        size = self._spec.input_size
        # Letterbox: scale the longer side to the input size and pad the rest (centred), so faces
        # keep their shape on 4:3 frames and boxes map back with one scale and one offset.
        scale = size / max(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
        resized = _shrink(frame_bgr, new_w, new_h)
        square = cv2.copyMakeBorder(
            resized, pad_y, size - new_h - pad_y, pad_x, size - new_w - pad_x, cv2.BORDER_CONSTANT, value=(0, 0, 0)
        )
        outputs = self._run(square)
        # Tell the outputs apart by shape rather than by name: the two models name them differently.
        logits, regressors = sorted((out.reshape(out.shape[-2], out.shape[-1]) for out in outputs), key=lambda a: a.shape[1])
        logits = np.clip(logits[:, 0], -_SCORE_CLIP, _SCORE_CLIP)

        keep = np.flatnonzero(logits >= self._min_logit)
        if keep.size == 0:
            return []
        scores = 1.0 / (1.0 + np.exp(-logits[keep]))
        raw = regressors[keep, :4] / size  # offsets and sizes in input pixels -> fractions of the input
        centres = self._anchors[keep] + raw[:, :2]
        half = raw[:, 2:4] / 2.0
        boxes = np.concatenate([centres - half, centres + half], axis=1) * size  # letterboxed input pixels

        # Back to frame pixels: undo the padding, then the scaling.
        boxes = (boxes - (pad_x, pad_y, pad_x, pad_y)) / scale
        faces: list[Detection] = []
        for box, score in weighted_nms(boxes, scores, self.nms_iou):
            if self.match_res10:
                box = res10_geometry(box)
            clipped = clip_box(tuple(box), width, height)
            if min(clipped[2] - clipped[0], clipped[3] - clipped[1]) >= self.min_size:
                faces.append(Detection(clipped, score))
        faces.sort(key=lambda face: face.confidence, reverse=True)
        return faces

    def _run(self, square_bgr: np.ndarray) -> list[np.ndarray]:
        """The network's raw outputs (score logits, regressors) for one square BGR input."""
        if self.runtime == "onnxruntime":
            # RGB in [-1, 1], NHWC as the original graph
            rgb = np.multiply(cv2.cvtColor(square_bgr, cv2.COLOR_BGR2RGB), 1.0 / 127.5, dtype=np.float32)
            rgb -= 1.0
            return self._session.run(None, {self._input_name: rgb[np.newaxis]})
        # RGB in [-1, 1], NCHW: the TFLite importer converts the NHWC graph to OpenCV's NCHW layout.
        size = self._spec.input_size
        blob = cv2.dnn.blobFromImage(square_bgr, 1.0 / 127.5, (size, size), (127.5, 127.5, 127.5), swapRB=True)
        self._net.setInput(blob)
        return list(self._net.forward(self._outputs))
