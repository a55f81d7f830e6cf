"""Run a liveness ONNX model with onnxruntime, driven entirely by its own metadata."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from liveness.crop import Box, crop_faces
from liveness.metadata import METADATA_KEY, ModelMetadata, ModelMetadataError


def normalise(crops: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 crop stacks (N, S, S, 3k) -> the model's float32 input: (pixel / 255 - mean) / std per channel.

    The one definition of the metadata's pixel scaling: the classify stage and training both use it.
    """
    pixels = crops.astype(np.float32) / 255.0
    scaled = (pixels.reshape(*pixels.shape[:3], -1, 3) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(scaled.reshape(crops.shape), dtype=np.float32)


class ModelError(RuntimeError):
    """The model file cannot be used; the message names the file and the reason."""


class LivenessModel:
    """Scores faces: P(real) per box, plus the label at the model's threshold.

        model = LivenessModel("models/liveness.onnx")
        scores = model.score(frame_bgr, [face.box for face in faces])
    """

    def __init__(self, path: str | Path, threads: int = 1, threshold: float | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file {self.path}: not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises several private exception types
            raise ModelError(f"model file {self.path}: not a loadable ONNX model ({str(error).splitlines()[0][:200]})") from None
        raw = self._session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise ModelError(
                f"model file {self.path}: no '{METADATA_KEY}' metadata (input size, crop, labels, threshold); "
                "export it with `python -m training.train` or add it with training.export"
            )
        try:
            self.metadata = ModelMetadata.from_json(raw)
        except ModelMetadataError as error:
            raise ModelError(f"model file {self.path}: bad metadata: {error}") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"model file {self.path}: expected one input, found {len(inputs)}")
        self._input_name = inputs[0].name
        expected = [self.metadata.input_size, self.metadata.input_size, self.metadata.channels]
        shape = list(inputs[0].shape)
        if len(shape) != 4 or any(isinstance(d, int) and d != e for d, e in zip(shape[1:], expected)):
            raise ModelError(f"model file {self.path}: input shape {shape} does not match metadata (N, {expected[0]}, {expected[1]}, {expected[2]})")
        self.threshold = float(self.metadata.threshold if threshold is None else threshold)
        self._mean = np.asarray(self.metadata.mean, dtype=np.float32)
        self._std = np.asarray(self.metadata.std, dtype=np.float32)

    def crops(self, frame_bgr: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """uint8 crops (N, S, S, 3 * scales) in the model's channel order."""
        meta = self.metadata
        crops = crop_faces(frame_bgr, boxes, meta.crop_scales, meta.input_size, meta.crop_resize, meta.crop_border)
        if meta.channel_order == "RGB":
            crops = crops.reshape(*crops.shape[:3], -1, 3)[..., ::-1].reshape(crops.shape)
        return crops

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """P(real) for a batch of uint8 crops from `crops()`."""
        if len(crops) == 0:
            return np.zeros(0, dtype=np.float32)
        probabilities = self._session.run(None, {self._input_name: normalise(crops, self._mean, self._std)})[0]
        return probabilities[:, self.metadata.real_index].astype(np.float32)

    def score(self, frame_bgr: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """P(real) for every box of one BGR frame, in one batch."""
        return self.predict_crops(self.crops(frame_bgr, boxes))

    def label(self, score: float) -> str:
        """"real" when score >= the threshold, else "fake"."""
        return "real" if score >= self.threshold else "fake"
