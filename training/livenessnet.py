"""Liveness classifiers, built functionally with a named input so `model.export(format="onnx")` works.

- `livenessnet`: the seed's LivenessNet (Conv-ReLU-BN x2, MaxPool, Dropout; two blocks of
  widths 16/32; Dense 64; softmax 2), with input size, channels and widths as parameters.
- `livenessnet_mobile`: the shipped variant, a small MobileNet-style stack of depthwise-separable
  blocks (about 0.1M parameters) that reads every crop scale at once (channels concatenated).
  It keeps more resolution than the seed before pooling and sees more context; it costs well
  under 2 ms per face on one onnxruntime thread at 64 x 64 x 6.
"""
from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers

from training.pretrained import PRETRAINED_STEM_ARCHITECTURES

INPUT_NAME = "image"


@keras.saving.register_keras_serializable(package="liveness")
class MixStyle(layers.Layer):
    """Training only: each sample's per-channel feature statistics mixed with another sample's (MixStyle).

    Early feature maps carry a capture setup's "style" (exposure, colour, sensor noise) in their
    per-channel mean and spread. With probability `p` per batch, every sample's map is normalised
    by its own statistics and rescaled by a mix (weight ~ Beta(alpha, alpha)) of its own and those
    of a randomly drawn other sample of the batch, so that the layers after it see setups that do
    not exist and cannot lean on one setup's style (Zhou et al., ICLR 2021, for domain
    generalisation). At inference the layer is the identity: the exported graph is unchanged.
    """

    def __init__(self, p: float = 0.5, alpha: float = 0.1, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.p, self.alpha, self.seed = float(p), float(alpha), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.p <= 0:
            return x
        ops = keras.ops
        batch = ops.shape(x)[0]
        mean = ops.stop_gradient(ops.mean(x, axis=(1, 2), keepdims=True))
        spread = ops.stop_gradient(ops.sqrt(ops.var(x, axis=(1, 2), keepdims=True) + 1e-6))
        partner = keras.random.shuffle(ops.arange(batch), seed=self.seed_generator)
        weight = keras.random.beta((batch, 1, 1, 1), self.alpha, self.alpha, seed=self.seed_generator)
        mixed_mean = weight * mean + (1.0 - weight) * ops.take(mean, partner, axis=0)
        mixed_spread = weight * spread + (1.0 - weight) * ops.take(spread, partner, axis=0)
        mixed = (x - mean) / spread * mixed_spread + mixed_mean
        apply = keras.random.uniform((), seed=self.seed_generator) < self.p
        return ops.where(apply, mixed, x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "p": self.p, "alpha": self.alpha, "seed": self.seed}


@keras.saving.register_keras_serializable(package="liveness")
class CentralDifferenceDepthwiseConv2D(layers.DepthwiseConv2D):
    """A 3x3 depthwise convolution read as central differences (CDC; Yu et al., CVPR 2020, for face anti-spoofing).

    Output = conv(x, K) - theta * x(centre) * sum(K): with theta 1 each tap weighs how far a neighbour
    differs from the centre, not its level; theta blends that with the plain convolution. The
    difference term holds back what a kernel's level response learns (it trains at (1 - theta)^2
    the plain rate), so the filters lean to gradient-like texture, which CDCN found to carry to
    unseen capture setups better. It is the plain convolution with kernel K - theta * sum(K) at
    the centre tap, so the exported graph costs the same. Built without bias or activation, as
    the separable blocks use it.
    """

    def __init__(self, kernel_size=3, theta: float = 0.7, **kwargs):
        super().__init__(kernel_size, **kwargs)
        # checked on the built layer, so a saved config (activation "linear") loads again
        if self.use_bias or self.activation not in (None, keras.activations.linear):
            raise ValueError("CentralDifferenceDepthwiseConv2D is built without bias or activation (use_bias=False)")
        self.theta = float(theta)

    def call(self, inputs):
        rows, cols = self.kernel_size
        centre = np.zeros((rows, cols, 1, 1), dtype="float32")
        centre[rows // 2, cols // 2] = 1.0
        kernel = self.kernel - self.theta * keras.ops.sum(self.kernel, axis=(0, 1), keepdims=True) * centre
        return keras.ops.depthwise_conv(inputs, kernel, strides=self.strides, padding=self.padding,
                                        dilation_rate=self.dilation_rate, data_format=self.data_format)

    def get_config(self):
        return {**super().get_config(), "theta": self.theta}


def livenessnet(size: int = 32, channels: int = 3, widths: Sequence[int] = (16, 32), dense: int = 64, classes: int = 2) -> keras.Model:
    """The seed's LivenessNet as a functional model."""
    inputs = keras.Input((size, size, channels), name=INPUT_NAME)
    x = inputs
    for width in widths:
        for _ in range(2):
            x = layers.Conv2D(width, 3, padding="same")(x)
            x = layers.ReLU()(x)
            x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense)(x)
    x = layers.ReLU()(x)
    x = layers.BatchNormalization()(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="livenessnet")


def _separable(x, width: int, stride: int, cdc_theta: float = 0.0):
    """Depthwise 3x3 -> BN -> ReLU6 -> pointwise 1x1 -> BN -> ReLU6 (the MobileNet v1 block); `cdc_theta` > 0: a central-difference depthwise."""
    if cdc_theta > 0:
        x = CentralDifferenceDepthwiseConv2D(3, theta=cdc_theta, strides=stride, padding="same", use_bias=False)(x)
    else:
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    x = layers.Conv2D(width, 1, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU(6.0)(x)


# (width, stride) of the separable blocks after the stem.
MOBILE_BLOCKS: tuple[tuple[int, int], ...] = ((48, 1), (64, 2), (64, 1), (96, 2), (128, 1), (192, 2))


def livenessnet_mobile(
    size: int = 64,
    channels: int = 6,
    stem: int = 32,
    blocks: Sequence[tuple[int, int]] = MOBILE_BLOCKS,
    dropout: float = 0.3,
    classes: int = 2,
    standardise: bool = False,
    cdc_theta: float = 0.0,
) -> keras.Model:
    """Small MobileNet-style liveness classifier (stride-2 stem, separable blocks, global pooling).

    `standardise`: every channel of every crop is first brought to zero mean and unit spread over
    its pixels (instance normalisation of the input), which removes a camera's exposure, white
    balance and contrast. `cdc_theta` > 0: the separable blocks' depthwise convolutions are central-difference ones.
    """
    inputs = keras.Input((size, size, channels), name=INPUT_NAME)
    x = standardise_channels(inputs) if standardise else inputs
    x = layers.Conv2D(stem, 3, strides=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    return keras.Model(inputs, _separable_head(x, blocks, dropout, classes, cdc_theta), name="livenessnet_mobile")


def _separable_head(x, blocks: Sequence[tuple[int, int]], dropout: float, classes: int, cdc_theta: float = 0.0):
    """Separable blocks, global pooling, dropout and the softmax: the part every mobile-style variant shares."""
    for i, (width, stride) in enumerate(blocks):
        x = _separable(x, width, stride, cdc_theta)
        x = layers.Identity(name=f"block_{i}")(x)  # a name the auxiliary spectrum head can find
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    return layers.Dense(classes, activation="softmax", name="probabilities")(x)


# Separable blocks after the res10 stem (which already brings a 64 px tile to 16 x 16).
RES10_BLOCKS: tuple[tuple[int, int], ...] = ((64, 1), (96, 2), (128, 1), (192, 2))
# After the deeper stem (res10's second stage too, 8 x 8 x 128 a tile) the blocks start at 8 x 8.
RES10_DEEP_BLOCKS: tuple[tuple[int, int], ...] = ((192, 1), (256, 2))
RES10_DEEP_CONTEXT_BLOCKS: tuple[tuple[int, int], ...] = ((256, 2),)  # one block: the variant must stay under 2 ms
STEM_FEATURES = "stem_features"  # the res10 variant's layer holding every tile's stem output, where its blocks begin
FIRST_STAGE_FEATURES = "first_stage_features"  # res10_deep_context: tile i's first-stage output is layer f"{this}_{i}"


def crop_tiles(inputs):
    """The model input's 3-channel crop tiles (one per crop scale), each through a named slice."""
    return [layers.Lambda(lambda t, i=i: t[..., 3 * i:3 * i + 3], name=f"tile_{i}")(inputs) for i in range(inputs.shape[-1] // 3)]


def _stem_features(features: list):
    """Every tile's stem features joined along channels as the layer STEM_FEATURES (split_at_stem's cut)."""
    return layers.Concatenate(name=STEM_FEATURES)(features) if len(features) > 1 else layers.Identity(name=STEM_FEATURES)(features[0])


def livenessnet_res10(
    size: int = 64,
    channels: int = 6,
    blocks: Sequence[tuple[int, int]] = RES10_BLOCKS,
    dropout: float = 0.3,
    classes: int = 2,
    freeze_stem: bool = False,
    stem_depth: int = 1,
    deep_tiles: Sequence[int] | None = None,
    mixstyle_p: float = 0.0,
    cdc_theta: float = 0.0,
) -> keras.Model:
    """The mobile classifier on a pretrained stem: res10's first layers (training.pretrained) read every tile.

    One stem (shared weights) turns each 3-channel crop tile into 16 x 16 x 32 features learned by the
    face detector from far more faces than our data holds; the tiles' features are concatenated and
    the separable blocks, trained from scratch, decide. The stem is fine-tuned with the rest unless
    `freeze_stem` (then its batch norms keep res10's statistics too). `stem_depth` 2 takes res10's
    second residual stage too (8 x 8 x 128 a tile); with `deep_tiles` only those tiles go through it
    (it costs most of the network), the others take the first stage and a separable stride-2 block.
    `mixstyle_p` > 0: a MixStyle layer (training only) on every tile's res10 first-stage features.
    `cdc_theta` > 0: every depthwise convolution after the stem is a central-difference one.
    """
    from training.pretrained import FIRST_STAGE_NAME, SECOND_STAGE_NAME, res10_stem

    if channels % 3:
        raise ValueError(f"the res10 stem reads 3-channel tiles, got {channels} channels")
    inputs = keras.Input((size, size, channels), name=INPUT_NAME)
    stem = res10_stem(size, depth=stem_depth)
    stem.trainable = not freeze_stem
    tiles = crop_tiles(inputs)
    if stem_depth == 2 and deep_tiles is not None:
        # Both stages are called in this graph and each tile's first-stage output is named, so a
        # member of another architecture can share that stage's computation (split_at_first_stage).
        first, second = stem.get_layer(FIRST_STAGE_NAME), stem.get_layer(SECOND_STAGE_NAME)
        first_features = [layers.Identity(name=f"{FIRST_STAGE_FEATURES}_{i}")(first(tile)) for i, tile in enumerate(tiles)]
        first_features = [_mixstyle(f, mixstyle_p, i) for i, f in enumerate(first_features)]
        features = [second(f) if i in deep_tiles else _separable(f, 64, 2, cdc_theta) for i, f in enumerate(first_features)]
    else:
        features = [_mixstyle(stem(tile), mixstyle_p, i) for i, tile in enumerate(tiles)]
    x = _stem_features(features)
    return keras.Model(inputs, _separable_head(x, blocks, dropout, classes, cdc_theta), name="livenessnet_res10")


def livenessnet_blaze(size: int = 64, channels: int = 6, blocks: Sequence[tuple[int, int]] = RES10_BLOCKS,
                      dropout: float = 0.3, classes: int = 2, stem_depth: int = 1) -> keras.Model:
    """The res10 variant's blocks on another pretrained stem: BlazeFace short range's first layers (training.pretrained.blaze_stem).

    One stem (shared weights, fine-tuned) turns each 3-channel tile into (size/4, size/4, 42)
    features. MediaPipe trained it on other faces and cameras than res10's, so a member on it might err
    on a new setup less in step with a res10 member (measured: docs/training.md). `stem_depth` 2:
    the detector's blocks on to (size/8, size/8, 88) (blaze_deep, with two blocks after it).
    """
    from training.pretrained import blaze_stem

    if channels % 3:
        raise ValueError(f"the BlazeFace stem reads 3-channel tiles, got {channels} channels")
    inputs = keras.Input((size, size, channels), name=INPUT_NAME)
    stem = blaze_stem(size, depth=stem_depth)
    x = _stem_features([stem(tile) for tile in crop_tiles(inputs)])
    return keras.Model(inputs, _separable_head(x, blocks, dropout, classes), name="livenessnet_blaze")


def livenessnet_blaze_deep(size: int = 64, channels: int = 6, classes: int = 2) -> keras.Model:
    """livenessnet_blaze on BlazeFace's blocks to 1/8 of the tile, with res10_deep's two blocks after them."""
    return livenessnet_blaze(size=size, channels=channels, blocks=RES10_DEEP_BLOCKS, classes=classes, stem_depth=2)


def livenessnet_mesh(size: int = 64, channels: int = 6, classes: int = 2) -> keras.Model:
    """The res10 variant's blocks on MediaPipe's face-mesh first stage (training.pretrained.mesh_stem), kept frozen.

    The frozen stage's plain statistics rank capture setups never seen better than any network trained
    here (the probe, training.probe); a member that trains only the blocks on it keeps those features as
    the landmark network learned them, instead of re-learning the training setups' look in them.
    """
    from training.pretrained import mesh_stem

    if channels % 3:
        raise ValueError(f"the face-mesh stem reads 3-channel tiles, got {channels} channels")
    inputs = keras.Input((size, size, channels), name=INPUT_NAME)
    stem = mesh_stem(size)  # frozen (mesh_stem sets trainable False)
    x = _stem_features([stem(tile) for tile in crop_tiles(inputs)])
    return keras.Model(inputs, _separable_head(x, RES10_BLOCKS, 0.3, classes), name="livenessnet_mesh")


def _mixstyle(x, p: float, tile: int):
    """`x` through a MixStyle layer (training only) when `p` > 0, else `x` itself (the graph of recipes without it)."""
    # No seed of its own: keras.utils.set_random_seed (train.configure_tensorflow) makes its draws repeat.
    return MixStyle(p, name=f"mixstyle_{tile}")(x) if p > 0 else x


def livenessnet_res10_deep(size: int = 64, channels: int = 6, classes: int = 2, freeze_stem: bool = False,
                           cdc_theta: float = 0.0) -> keras.Model:
    """livenessnet_res10 on the deeper stem (res10's first two residual stages) with two blocks after it."""
    return livenessnet_res10(size=size, channels=channels, blocks=RES10_DEEP_BLOCKS, classes=classes,
                             freeze_stem=freeze_stem, stem_depth=2, cdc_theta=cdc_theta)


def livenessnet_res10_deep_context(size: int = 64, channels: int = 6, classes: int = 2, freeze_stem: bool = False,
                                   mixstyle_p: float = 0.0, cdc_theta: float = 0.0) -> keras.Model:
    """livenessnet_res10_deep with only the last tile (the widest crop) through res10's second stage, one block after: ~0.7x the cost."""
    return livenessnet_res10(size=size, channels=channels, blocks=RES10_DEEP_CONTEXT_BLOCKS, classes=classes,
                             freeze_stem=freeze_stem, stem_depth=2, deep_tiles=(channels // 3 - 1,), mixstyle_p=mixstyle_p,
                             cdc_theta=cdc_theta)


def split_at_stem(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """A res10-variant model as (input -> stem features, stem features -> probabilities).

    Models trained with a frozen stem all hold res10's weights there, so an ensemble of them can
    compute the stem once per face and run only each member's blocks (training.train.combine).
    """
    features = model.get_layer(STEM_FEATURES).output
    return keras.Model(model.input, features), keras.Model(features, model.output)


def split_at_first_stage(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """A res10 or res10_deep_context model as (tile -> res10's first-stage features, [every tile's features] -> probabilities).

    Members whose first stages hold the same weights (a partner trained on member 1's frozen tuned
    stage, training.train) then compute that stage once per tile even though what follows differs.
    """
    from training.pretrained import FIRST_STAGE_NAME, STEM_NAME

    tiles = model.input.shape[-1] // 3
    names = {layer.name for layer in model.layers}
    if FIRST_STAGE_NAME in names:  # the stage is called in the model's own graph (res10_deep_context)
        features = [model.get_layer(f"{FIRST_STAGE_FEATURES}_{i}").output for i in range(tiles)]
        return model.get_layer(FIRST_STAGE_NAME), keras.Model(features, model.output)
    first = model.get_layer(STEM_NAME)
    if first.output.shape[-1] != 32:
        raise ValueError(f"{model.name}'s stem is deeper than res10's first stage: it cannot be split there")
    inputs = [keras.Input(first.output.shape[1:]) for _ in range(tiles)]
    joined = layers.Concatenate()(inputs) if tiles > 1 else inputs[0]  # as STEM_FEATURES joins them
    return first, keras.Model(inputs, split_at_stem(model)[1](joined))


def standardise_channels(x):
    """Each channel of each sample minus its mean over the pixels, over its standard deviation (+ 0.05)."""
    def standardise(t):
        mean = keras.ops.mean(t, axis=(1, 2), keepdims=True)
        spread = keras.ops.sqrt(keras.ops.mean(keras.ops.square(t - mean), axis=(1, 2), keepdims=True))
        return (t - mean) / (spread + 0.05)

    return layers.Lambda(standardise, name="standardise")(x)


ARCHITECTURES = {"livenessnet": livenessnet, "mobile": livenessnet_mobile, "res10": livenessnet_res10,
                 "res10_deep": livenessnet_res10_deep, "res10_deep_context": livenessnet_res10_deep_context,
                 "blaze": livenessnet_blaze, "blaze_deep": livenessnet_blaze_deep, "mesh": livenessnet_mesh}

SPECTRUM_SIZE = 8  # side of the predicted Fourier spectrum map


def with_spectrum_head(model: keras.Model) -> keras.Model:
    """The training model: `model`'s outputs plus an auxiliary head that predicts the input's Fourier spectrum.

    Auxiliary frequency supervision (as in Silent-Face's FT generator): features must also describe
    the face's frequency content, where print dots, screen pixels and moire patterns show. The head
    reads the first block whose feature map is SPECTRUM_SIZE wide; only `model` is exported.
    """
    source = next((layer for layer in model.layers
                   if layer.name.startswith("block_") and layer.output.shape[1] == SPECTRUM_SIZE), None)
    if source is None:
        raise ValueError(f"--spectrum-weight needs a block {SPECTRUM_SIZE} wide, and {model.name} has none at this crop size")
    x = layers.Conv2D(64, 3, padding="same", use_bias=False)(source.output)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    spectrum = layers.Conv2D(1, 1, name="spectrum")(x)
    return keras.Model(model.inputs, [model.output, spectrum], name=model.name + "_with_spectrum")


PIXEL_MAP = "pixel_map"  # the training model's output of per-location P(real)


def with_pixel_head(model: keras.Model) -> keras.Model:
    """The training model: `model`'s outputs plus a per-location real/fake map on its last block (DeepPixBiS).

    Pixel-wise binary supervision (George & Marcel, ICB 2019): a 1x1 convolution with a sigmoid reads
    every location of the last feature map before the global pooling, and each location is trained to
    tell the sample's label on its own, so the decision cannot rest on a few locations (a bezel, a
    border) that one capture setup happens to show. Only `model` is exported: the graph and its cost
    stay the plain ones.
    """
    blocks = [layer for layer in model.layers if layer.name.startswith("block_")]
    if not blocks:
        raise ValueError(f"--pixel-weight needs separable blocks, and {model.name} has none")
    pixel_map = layers.Conv2D(1, 1, activation="sigmoid", name=PIXEL_MAP)(blocks[-1].output)
    return keras.Model(model.inputs, [model.output, pixel_map], name=model.name + "_with_pixel_map")


POOLED_FEATURES = "pooled_features"  # the training model's output of unit-length pooled features


def with_pooled_features(model: keras.Model) -> keras.Model:
    """The training model: `model`'s outputs plus its globally pooled features scaled to unit length.

    A loss on those features (training.train.real_compactness) can shape what every capture setup's
    real faces look like to the classifier; only `model` is exported.
    """
    pooled = next(layer for layer in model.layers if isinstance(layer, layers.GlobalAveragePooling2D))
    unit = layers.UnitNormalization(name=POOLED_FEATURES)(pooled.output)
    return keras.Model(model.inputs, [model.output, unit], name=model.name + "_with_features")


@keras.saving.register_keras_serializable(package="liveness")
class GradientReversal(layers.Layer):
    """The identity forward; backward, the gradient times -strength (domain-adversarial training, Ganin and Lempitsky 2015).

    `strength` is a non-trainable variable, so training can ramp it up; the layer lives only in the
    training model (with_source_adversary), never in an export.
    """

    def build(self, input_shape):
        self.strength = self.add_weight(shape=(), initializer="zeros", trainable=False, name="strength")

    def call(self, x):
        strength = keras.ops.cast(self.strength, x.dtype)
        # (1 + s) x - s x is x; only the second term passes a gradient, -s times the incoming one.
        return keras.ops.stop_gradient((1.0 + strength) * x) - strength * x

    def compute_output_shape(self, input_shape):
        return input_shape


GRADIENT_REVERSAL = "source_adversary_reversal"


def with_source_adversary(model: keras.Model, sources: int) -> keras.Model:
    """The training model: `model`'s outputs plus a source classifier on its pooled features, behind a gradient reversal.

    The classifier learns which source (capture setup) a real face comes from (the loss counts real
    faces only, training.train.real_source_loss); the reversal turns that into a push on the network
    to make real faces of every source look alike, leaving attacks free (single-side adversarial
    learning, SSDG: Jia et al., CVPR 2020). Only `model` is exported.
    """
    pooled = next(layer for layer in model.layers if isinstance(layer, layers.GlobalAveragePooling2D))
    x = GradientReversal(name=GRADIENT_REVERSAL)(pooled.output)
    x = layers.Dense(64, activation="relu", name="source_adversary_hidden")(x)
    source = layers.Dense(sources, activation="softmax", name="source_adversary")(x)
    return keras.Model(model.inputs, [model.output, source], name=model.name + "_with_adversary")


# Architectures that can take MixStyle on res10's first-stage features (build's mixstyle_p).
MIXSTYLE_ARCHITECTURES = ("res10", "res10_deep_context")
CDC_ARCHITECTURES = ("mobile", "res10", "res10_deep", "res10_deep_context")  # those with separable blocks


def build(architecture: str, size: int, channels: int, classes: int = 2, standardise: bool = False,
          freeze_stem: bool = False, mixstyle_p: float = 0.0, cdc_theta: float = 0.0) -> keras.Model:
    """A fresh model by name ("livenessnet" = the seed, "mobile" = 1.0's variant, "res10", "res10_deep",
    "res10_deep_context" = on res10's stem, "blaze", "blaze_deep" = on BlazeFace's, "mesh" = on the face
    mesh's frozen first stage)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r} (known: {', '.join(ARCHITECTURES)})")
    if standardise and architecture != "mobile":
        raise ValueError("input standardisation is built for the mobile architecture only")
    if cdc_theta > 0 and architecture not in CDC_ARCHITECTURES:
        raise ValueError(f"central-difference blocks are built for {', '.join(CDC_ARCHITECTURES)} only, not {architecture}")
    if standardise:
        return livenessnet_mobile(size=size, channels=channels, classes=classes, standardise=True, cdc_theta=cdc_theta)
    if freeze_stem and architecture not in PRETRAINED_STEM_ARCHITECTURES:
        raise ValueError(f"only {', '.join(PRETRAINED_STEM_ARCHITECTURES)} have a pretrained stem to freeze")
    if mixstyle_p > 0 and architecture not in MIXSTYLE_ARCHITECTURES:
        raise ValueError(f"MixStyle is built for {', '.join(MIXSTYLE_ARCHITECTURES)} only, not {architecture}")
    extra = {"freeze_stem": True} if freeze_stem else {}
    if mixstyle_p > 0:
        extra["mixstyle_p"] = mixstyle_p
    if cdc_theta > 0:
        extra["cdc_theta"] = cdc_theta
    return ARCHITECTURES[architecture](size=size, channels=channels, classes=classes, **extra)


def merge_attack_classes(model: keras.Model) -> keras.Model:
    """A 3-way model (outputs in the order print, replay, real) as the 2-way (fake, real) model the pipeline loads.

    P(fake) = P(print) + P(replay): the exported graph keeps the pipeline's two outputs while
    training could tell the two attack instruments apart (Silent-Face's 3-way output).
    """
    def merge(p):
        return keras.ops.concatenate([keras.ops.sum(p[:, :2], axis=1, keepdims=True), p[:, 2:]], axis=1)

    outputs = layers.Lambda(merge, output_shape=(2,), name="probabilities_merged")(model.output)
    return keras.Model(model.inputs, outputs, name=model.name + "_merged")
