"""The EfficientNet-Lite0 backbone: the allow-list checkpoint reader and the Keras rebuild."""
from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from training.backbone import BACKBONE_FILE, CheckpointError, read_torch_checkpoint

WEIGHTS = Path(__file__).resolve().parent.parent / "face_detector" / "weights" / BACKBONE_FILE
needs_backbone = pytest.mark.skipif(not WEIGHTS.is_file(),
                                    reason="backbone weights absent: run python -m face_detector.fetch_weights efficientnet_lite0")


def _legacy_file(path: Path, state: bytes) -> Path:
    """A legacy-layout checkpoint whose state-dict pickle is `state` and that has no storages."""
    parts = [pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2), pickle.dumps(1001, protocol=2),
             pickle.dumps({"little_endian": True}, protocol=2), state, pickle.dumps([], protocol=2)]
    path.write_bytes(b"".join(parts))
    return path


def test_reader_refuses_any_other_global(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    # GLOBAL os.system, then a call with a shell command: a plain unpickler would run it.
    hostile = b"\x80\x02cos\nsystem\nq\x00X" + struct.pack("<I", len(f"touch {marker}")) + f"touch {marker}".encode() + b"\x85R."
    with pytest.raises(CheckpointError, match="os.system"):
        read_torch_checkpoint(_legacy_file(tmp_path / "hostile.pth", hostile))
    assert not marker.exists()
    builtins = b"\x80\x02cbuiltins\neval\nq\x00."
    with pytest.raises(CheckpointError, match="builtins.eval"):
        read_torch_checkpoint(_legacy_file(tmp_path / "eval.pth", builtins))


def test_reader_refuses_a_non_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "zip.pth").write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(CheckpointError):
        read_torch_checkpoint(tmp_path / "zip.pth")


@needs_backbone
def test_reader_gives_every_tensor_of_the_real_checkpoint() -> None:
    weights = read_torch_checkpoint(WEIGHTS)
    assert weights["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert weights["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert weights["_fc.weight"].shape == (1000, 1280)
    parameters = sum(v.size for k, v in weights.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert 4.6e6 < parameters < 4.7e6  # EfficientNet-Lite0's 4.65 M


@needs_backbone
def test_rebuilt_network_recognises_imagenet_photos() -> None:
    """The Keras rebuild with the read weights names skimage's coffee photo espresso (ImageNet 967)."""
    import cv2
    from skimage import data

    from training.backbone import efficientnet_lite0

    weights = read_torch_checkpoint(WEIGHTS)
    net = efficientnet_lite0(224, weights=weights, head=True)
    x = (cv2.resize(data.coffee(), (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32) - 127.0) / 128.0
    features = np.asarray(net(x[None], training=False)).mean(axis=(1, 2))
    logits = features @ weights["_fc.weight"].T + weights["_fc.bias"]
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    assert int(np.argmax(probabilities)) == 967 and probabilities.max() > 0.8
