"""The liveness network: EfficientNet-Lite0's first blocks, shared by every crop tile, and a linear head.

Each crop tile (one per crop scale) goes through the same truncated backbone; the feature maps
after the recipe's `levels` blocks are averaged over space and concatenated across levels and
tiles, and one dense layer turns them into P(fake), P(real). The input is what liveness.model
feeds: (size, size, 3 * tiles) RGB with every pixel scaled as (x - 127) / 128 (the backbone's own
scaling, stored in the model's metadata as mean 127/255 and std 128/255).

Training is in two steps (training.train): the head is fitted first as a logistic regression on
the frozen features (deterministic, seconds), then the last `tune_blocks` blocks and the head are
fine-tuned with augmentation. Batch-norm statistics stay ImageNet's throughout: the batches are
small and drawn from few setups, and their statistics would teach the network our setups.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from liveness.model import normalise as liveness_normalise
from training.backbone import INPUT_MEAN, INPUT_STD, efficientnet_lite0

BACKBONE_NAME = "backbone"
HEAD_NAME = "liveness"


def metadata_scaling() -> tuple[list[float], list[float]]:
    """(mean, std) per channel as liveness.metadata stores them: the backbone's (x - 127) / 128."""
    return [INPUT_MEAN / 255.0] * 3, [INPUT_STD / 255.0] * 3


def normalise(x_uint8: np.ndarray) -> np.ndarray:
    """uint8 RGB crop stacks -> the network's float32 input, as the classify stage feeds it."""
    return liveness_normalise(x_uint8, *metadata_scaling())


def build(size: int, tiles: int, levels: Sequence[int], weights: dict[str, np.ndarray] | None,
          tune_blocks: int = 0, dropout: float = 0.2):
    """The liveness network (a functional Keras model, input "image", output softmax over fake, real).

    Only the last `tune_blocks` MBConv blocks of the backbone (those before max(levels)) and the
    head are trainable; batch norms never are.
    """
    import keras
    from keras import layers

    blocks = max(levels)
    image = keras.Input((size, size, 3 * tiles), name="image")
    backbone = efficientnet_lite0(size, blocks=blocks, weights=weights, levels=levels, name=BACKBONE_NAME)
    _set_trainable(backbone, blocks - tune_blocks)
    maps = [_as_list(backbone(layers.Lambda(lambda t, j=tile: t[..., 3 * j : 3 * j + 3], name=f"tile_{tile}")(image)))
            for tile in range(tiles)]
    return keras.Model(image, _head(maps, dropout), name="liveness_efficientnet_lite0")


def _as_list(maps) -> list:
    return maps if isinstance(maps, list) else [maps]


def _set_trainable(backbone, first_tuned: int) -> None:
    """Blocks from `first_tuned` (0-based) on train, batch norms and everything before never."""
    from keras import layers

    for layer in backbone.layers:
        block = _block_of(layer.name)
        layer.trainable = block is not None and block >= first_tuned and not isinstance(layer, layers.BatchNormalization)


def _head(maps_per_tile: list[list], dropout: float):
    """Pooled maps of every tile, concatenated, dropout, softmax."""
    from keras import layers

    pooled = [layers.GlobalAveragePooling2D(name=f"pool_{tile}_{i}")(m)
              for tile, maps in enumerate(maps_per_tile) for i, m in enumerate(maps)]
    features = layers.Concatenate(name="features")(pooled) if len(pooled) > 1 else pooled[0]
    features = layers.Dropout(dropout, name="dropout")(features)
    return layers.Dense(2, activation="softmax", name=HEAD_NAME)(features)


def _block_of(layer_name: str) -> int | None:
    """The 0-based MBConv block a backbone layer belongs to (None for stem and head)."""
    if not layer_name.startswith("_blocks_"):
        return None
    return int(layer_name.split("_")[2])


def feature_model(model):
    """The same network up to its concatenated features (shares the layers, so the weights)."""
    import keras

    return keras.Model(model.input, model.get_layer("features").output if _has(model, "features")
                       else model.get_layer(HEAD_NAME).input)


def _has(model, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)


def set_head(model, w: np.ndarray, b: float) -> None:
    """Put a logistic regression (P(real) = sigmoid(w . f + b)) into the softmax head."""
    kernel = np.zeros((len(w), 2), dtype=np.float32)
    kernel[:, 1] = w
    model.get_layer(HEAD_NAME).set_weights([kernel, np.array([0.0, b], dtype=np.float32)])
