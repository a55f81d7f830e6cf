"""What a liveness ONNX model carries about itself (stored as JSON under one metadata key)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from liveness.crop import CROP_BORDERS, CROP_RESIZES

METADATA_KEY = "liveness"
FORMAT_VERSION = 1


class ModelMetadataError(ValueError):
    """The model's metadata is missing or does not describe a usable model."""


@dataclass(frozen=True)
class ModelMetadata:
    """How to feed a liveness model and read its output.

    Input: float32 NHWC, `input_size` x `input_size`, one 3-channel crop per entry of
    `crop_scales` concatenated along channels. Each crop is a square centred on the detector
    box with side `scale * max(box width, box height)`; parts outside the frame are black, or the
    square is fitted inside the frame (`crop_border`, liveness.crop.CROP_BORDERS); it is shrunk
    to `input_size` the `crop_resize` way (liveness.crop.CROP_RESIZES). A scale of 0
    (liveness.crop.NATIVE) is an `input_size` square of the frame's own pixels, not resized.
    Pixels: channels in `channel_order`, then `(pixel / 255 - mean) / std` per channel.
    Output: softmax over `labels`; P(real) = output[:, labels.index("real")].
    A face is "real" when P(real) >= `threshold`.
    """

    input_size: int
    crop_scales: list[float]
    labels: list[str] = field(default_factory=lambda: ["fake", "real"])
    threshold: float = 0.5
    channel_order: str = "RGB"
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    model_version: str = "0"
    threshold_policy: str = "default 0.5"
    training: dict[str, Any] = field(default_factory=dict)
    crop_resize: str = "area"  # models up to 1.0 carry no such field: they were trained on "area" crops
    crop_border: str = "black"  # models up to 1.1 carry no such field: they were trained on "black" crops
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.input_size, int) or not 8 <= self.input_size <= 1024:
            problems.append(f"input_size must be an integer in [8, 1024], got {self.input_size!r}")
        if not self.crop_scales or not all(isinstance(s, (int, float)) and (s == 0 or 0.5 <= s <= 8) for s in self.crop_scales):
            problems.append(f"crop_scales must be a non-empty list of numbers in [0.5, 8] or 0 (native pixels), got {self.crop_scales!r}")
        if sorted(self.labels) != ["fake", "real"]:
            problems.append(f"labels must be 'fake' and 'real' in some order, got {self.labels!r}")
        if not isinstance(self.threshold, (int, float)) or not 0.0 <= self.threshold <= 1.0:
            problems.append(f"threshold must be in [0, 1], got {self.threshold!r}")
        if self.crop_resize not in CROP_RESIZES:
            problems.append(f"crop_resize must be one of {', '.join(CROP_RESIZES)}, got {self.crop_resize!r}")
        if self.crop_border not in CROP_BORDERS:
            problems.append(f"crop_border must be one of {', '.join(CROP_BORDERS)}, got {self.crop_border!r}")
        if self.channel_order not in ("RGB", "BGR"):
            problems.append(f"channel_order must be RGB or BGR, got {self.channel_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s == 0 for s in self.std):
            problems.append("mean and std must be 3 numbers each, std non-zero")
        if self.format_version != FORMAT_VERSION:
            problems.append(f"format_version {self.format_version} is not supported (expected {FORMAT_VERSION})")
        if problems:
            raise ModelMetadataError("; ".join(problems))

    @property
    def real_index(self) -> int:
        return self.labels.index("real")

    @property
    def channels(self) -> int:
        return 3 * len(self.crop_scales)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelMetadata":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise ModelMetadataError(f"metadata is not JSON: {error}") from None
        if not isinstance(raw, dict):
            raise ModelMetadataError("metadata must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ModelMetadataError(f"unknown metadata fields: {', '.join(unknown)}")
        missing = sorted({"input_size", "crop_scales"} - set(raw))
        if missing:
            raise ModelMetadataError(f"metadata lacks: {', '.join(missing)}")
        return cls(**raw)


def write_metadata(onnx_path: Path, metadata: ModelMetadata) -> None:
    """Store `metadata` inside an ONNX file (replacing any earlier copy). Needs the `onnx` package."""
    import onnx  # training-only dependency

    model = onnx.load(str(onnx_path))
    kept = [prop for prop in model.metadata_props if prop.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = metadata.to_json()
    onnx.save(model, str(onnx_path))
