"""What the pretrained backbone costs a face at each input size and depth (ONNX, one onnxruntime thread).

    python -m bench.backbone_cost [--sizes 64 96 112 128] [--blocks 6 9 12 16]

Each variant is EfficientNet-Lite0's first N blocks with the ImageNet weights, pooled, exported with
tf2onnx and timed on a batch of two crops (one face: the 1.5x and 2.7x crops), median of 40 runs.
Needs the training packages (TensorFlow, tf2onnx) and the fetched backbone weights.
"""
from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

import numpy as np


def ms_per_face(size: int, blocks: int, weights: dict[str, np.ndarray], repeats: int = 40) -> float:
    """Median ms to run the first `blocks` blocks on two size x size crops."""
    import keras
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    from training.backbone import efficientnet_lite0

    net = efficientnet_lite0(size, blocks=blocks, weights=weights)
    image = keras.Input((size, size, 3), name="image")
    model = keras.Model(image, keras.layers.GlobalAveragePooling2D()(net(image)))
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=(tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),), opset=17)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((2, size, size, 3), dtype=np.float32)
    for _ in range(5):
        session.run(None, {"image": x})
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, {"image": x})
        times.append(time.perf_counter() - started)
    return 1000.0 * float(np.median(times))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point: one line a variant."""
    parser = argparse.ArgumentParser(prog="python -m bench.backbone_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 112, 128])
    parser.add_argument("--blocks", type=int, nargs="+", default=[6, 9, 12, 16])
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from training.backbone import backbone_weights_path, read_torch_checkpoint

    weights = read_torch_checkpoint(backbone_weights_path())
    for size in args.sizes:
        for blocks in args.blocks:
            print(f"size {size} blocks {blocks}: {ms_per_face(size, blocks, weights):.2f} ms a face (two crops)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
