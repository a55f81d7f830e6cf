"""A frozen probe: simple statistics of a pretrained stem's features and a logistic regression on them.

The networks trained on these data rank faces of a capture setup they never saw barely better than
chance (Replay-Attack left out whole: AUC 0.54), while a linear model on the frozen first stage of
MediaPipe's face mesh, which never saw a liveness label, ranks them far better (docs/training.md,
"A frozen face-mesh probe"). The probe keeps that: per crop tile the stem's per-channel mean and
standard deviation over space (texture statistics, no layout), standardised on the training set, and
a class-balanced logistic regression with an L2 penalty, fitted exactly (Newton steps), no SGD, no seed.
`with_probe` averages it with the trained networks (`train --frozen-probe mesh`: as one more member), as
one Keras model that exports like any other.

    python -m training.probe --data ../shared/data --out runs/probe_setup --by-setup [--stem mesh] [--l2 0.1] [--gate]

writes the probe's own out-of-fold scores in `evaluate --loso`'s folder layout (folds/FOLD.csv, the
same crops in the same order), so `training.compare_runs runs/loso_pair_setup7+runs/probe_setup`
gives a trained model averaged with the probe, fold by fold, without training the model again.

The gate (`fit_gate`; `train --probe-gate`, on since model 1.5; 1.6 gives the probe half the score
where it opens): always on, the probe costs the setups the networks were trained on; a face whose probe statistics lie far from the training faces'
(Mahalanobis distance above the training rows' own 99th percentile) is one of a setup the networks
never saw, where the probe helps, and only there does it count; elsewhere the networks decide alone.
`--gate` also writes folds/FOLD.gate.csv (1 where the probe counts), which `compare_runs
RUN+RUN+PROBE@gate` (1.5) and `RUN+PROBE@gate` (1.6) read.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.examples import Examples, load_dataset

PROBE_L2 = 0.1  # the penalty fixed by the rule of runs/notes/mesh_probe.md (0.01 and 1 were looked at too)
# Pretrained stems the probe can read (the lever uses mesh; mesh_deep: the face mesh to 1/16 of the tile).
PROBE_STEMS = ("mesh", "mesh_deep", "blaze", "res10")
NEWTON_STEPS = 100
GATE_QUANTILE = 0.99  # the gate opens above this quantile of the training rows' own distances (rule G)
GATE_SHRINKAGE = 0.1  # covariance shrunk this far toward its diagonal: 128 statistics, some nearly collinear
PROBE_STEM_NAME = "probe_stem"  # the frozen stem's (nested model's) name inside the probe


def _stem(name: str, size: int):
    from training import pretrained

    if name in ("mesh", "mesh_deep"):
        return pretrained.mesh_stem(size, name=PROBE_STEM_NAME, depth=3 if name == "mesh_deep" else 1)
    if name == "blaze":
        return pretrained.blaze_stem(size, name=PROBE_STEM_NAME)
    if name == "res10":
        return pretrained.res10_stem(size, name=PROBE_STEM_NAME)
    raise ValueError(f"probe stem must be one of {', '.join(PROBE_STEMS)}, got {name!r}")


def statistics_model(size: int, channels: int, stem: str = "mesh"):
    """A Keras model: the liveness model's input ([-1, 1], `channels` = 3 per tile) -> per tile, per stem
    channel, the mean and the standard deviation over space (a frozen stem, no trainable weight)."""
    import keras
    from keras import layers, ops

    from training.livenessnet import INPUT_NAME, crop_tiles

    if channels % 3:
        raise ValueError(f"the probe reads 3-channel tiles, got {channels} channels")

    features = _stem(stem, size)
    features.trainable = False
    inputs = keras.Input((size, size, channels), name=INPUT_NAME)

    def mean_and_std(x):
        mean = ops.mean(x, axis=(1, 2))
        std = ops.sqrt(ops.mean(ops.square(x - mean[:, None, None, :]), axis=(1, 2)))
        return ops.concatenate([mean, std], axis=-1)

    pooled = [layers.Lambda(mean_and_std, name=f"probe_statistics_{i}")(features(tile)) for i, tile in enumerate(crop_tiles(inputs))]
    joined = layers.Concatenate(name="probe_features")(pooled) if len(pooled) > 1 else pooled[0]
    return keras.Model(inputs, joined, name="probe_statistics")


def capture_setup(group: str) -> str:
    """The capture setup of a source group, as far as the data tell setups apart: Replay-Attack's
    train and devel people share one; every other source (each webcam set, each crop set) is its own."""
    return "replay_attack" if group.startswith("replay_attack") else group


def row_weights(labels: np.ndarray, setups: np.ndarray | None = None) -> np.ndarray:
    """Per-row weights summing to 1/2 within each class; with `setups`, every setup's rows first weigh
    the same in total, so a setup with 800 crops counts as much as one with 40."""
    weights = np.ones(len(labels))
    if setups is not None:
        _, index, counts = np.unique(setups, return_inverse=True, return_counts=True)
        weights = 1.0 / counts[index]
    for label in (0, 1):
        weights[labels == label] *= 0.5 / weights[labels == label].sum()
    return weights


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = PROBE_L2,
                 setups: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Weights and intercept of a logistic regression on standardised `features` (labels 1 = real).

    Both classes weigh the same in total (row_weights; with `setups`, every capture setup too); the
    penalty l2 * |w|^2 / 2 spares the intercept; Newton's method converges in a few steps and gives
    the same answer on every machine (no seed).
    Returns (w, b) for the *raw* features: the standardisation is folded into them.
    """
    labels = np.asarray(labels, dtype=np.float64)
    if labels.min() == labels.max():
        raise ValueError("the probe needs real and fake examples to fit")
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6
    x = np.c_[(features - mean) / std, np.ones(len(features))]
    weights = row_weights(labels, setups)
    penalty = l2 * np.r_[np.ones(x.shape[1] - 1), 0.0]
    w = np.zeros(x.shape[1])
    for _ in range(NEWTON_STEPS):
        p = _sigmoid(x @ w)
        gradient = x.T @ (weights * (p - labels)) + penalty * w
        hessian = (x * (weights * p * (1.0 - p))[:, None]).T @ x + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    scaled = w[:-1] / std
    return scaled, float(w[-1] - scaled @ mean)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class Gate:
    """Where the probe counts: faces whose statistics lie farther than `limit` from the training faces'."""

    mean: np.ndarray
    whitening: np.ndarray  # |(x - mean) @ whitening| is the Mahalanobis distance
    limit: float

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row of `features` to the training faces."""
        return np.linalg.norm((features - self.mean) @ self.whitening, axis=1)

    def opens(self, features: np.ndarray) -> np.ndarray:
        """True for the rows the probe should score (far from every training setup)."""
        return self.distance(features) > self.limit


def fit_gate(features: np.ndarray, quantile: float = GATE_QUANTILE, shrinkage: float = GATE_SHRINKAGE) -> Gate:
    """The gate of `features` (training rows): their mean, their shrunk covariance's whitening, and the
    `quantile` of their own distances as the limit."""
    mean = features.mean(axis=0)
    covariance = np.cov(features, rowvar=False)
    covariance = (1.0 - shrinkage) * covariance + shrinkage * np.diag(np.diag(covariance))
    whitening = np.linalg.cholesky(np.linalg.inv(covariance))  # L L^T = C^-1, so |x L|^2 = x C^-1 x^T
    gate = Gate(mean, whitening, 0.0)
    return Gate(mean, whitening, float(np.quantile(gate.distance(features), quantile)))


def stem_statistics(x_uint8: np.ndarray, stem: str = "mesh"):
    """(statistics_model for these crops, its features of every crop stack as float64)."""
    from training.train import normalise

    statistics = statistics_model(x_uint8.shape[1], x_uint8.shape[-1], stem)
    return statistics, statistics.predict(normalise(x_uint8), batch_size=256, verbose=0).astype(np.float64)


def probe_model(statistics, w: np.ndarray, b: float, gate: Gate | None = None):
    """`statistics` (statistics_model) and the fitted logistic as one model: input -> (P(fake), P(real)).

    With `gate`, a second output: 1.0 for the faces whose statistics lie beyond the gate's limit, else 0.0.
    """
    import keras
    from keras import layers, ops

    logistic = layers.Dense(1, activation="sigmoid", name="probe_logistic")
    real = logistic(statistics.output)
    logistic.set_weights([w.astype(np.float32)[:, None], np.asarray([b], np.float32)])
    logistic.trainable = False
    both = layers.Lambda(lambda p: ops.concatenate([1.0 - p, p], axis=-1), name="probe_probabilities")(real)
    if gate is None:
        return keras.Model(statistics.input, both, name="frozen_probe")
    # (x - mean) @ L as one affine layer; the squared distance against the squared limit
    whitening = layers.Dense(len(gate.mean), name="probe_gate_whitening")
    whitened = whitening(statistics.output)
    whitening.set_weights([gate.whitening.astype(np.float32), (-gate.mean @ gate.whitening).astype(np.float32)])
    whitening.trainable = False
    squared_limit = gate.limit ** 2
    opens = layers.Lambda(lambda z: ops.cast(ops.sum(ops.square(z), axis=-1, keepdims=True) > squared_limit, "float32"),
                          name="probe_gate")(whitened)
    return keras.Model(statistics.input, [both, opens], name="frozen_probe")


def train_probe(train: Examples, stem: str = "mesh", l2: float = PROBE_L2, gate: bool = False, verbose: int = 0,
                balance_setups: bool = False):
    """The probe fitted on `train`'s crops as gathered (no jitter copies, no augmentation); with `gate`,
    gated by those crops' own statistics (fit_gate; probe_model's second output); with `balance_setups`,
    every capture setup weighing the same in the fit (row_weights)."""
    plain = train.subset(train.variant == 0)
    statistics, features = stem_statistics(plain.x, stem)
    setups = np.array([capture_setup(g) for g in plain.group]) if balance_setups else None
    w, b = fit_logistic(features, plain.y, l2, setups)
    if verbose:
        print(f"frozen {stem} probe: {features.shape[1]} features fitted on {len(plain)} crops"
              + (f" of {len(set(setups.tolist()))} setups weighing the same" if setups is not None else "")
              + (", gated beyond their 99th percentile of distance" if gate else ""), file=sys.stderr)
    return probe_model(statistics, w, b, fit_gate(features) if gate else None)


def with_probe(model, probe, weight: float, example: np.ndarray | None = None):
    """One model: (1 - weight) * `model`'s probabilities + weight * the probe's (weight 1/(n+1) after n members).

    A gated probe (probe_model with a gate) counts only where its gate opens; elsewhere `model` alone.
    `example` (a few uint8 crop stacks) calls the model once, which Keras needs before it exports.
    """
    import keras
    from keras import layers

    from training.livenessnet import INPUT_NAME

    if not 0.0 < weight < 1.0:
        raise ValueError(f"the probe's weight must be in (0, 1), got {weight}")
    inputs = keras.Input(model.input.shape[1:], name=INPUT_NAME)
    probed = probe(inputs)
    if isinstance(probed, (list, tuple)):  # gated: networks + opens * weight * (probe - networks)
        mixed = layers.Lambda(lambda parts: parts[0] + weight * parts[2] * (parts[1] - parts[0]), name="probabilities")(
            [model(inputs), *probed])
    else:
        mixed = layers.Lambda(lambda pair: (1.0 - weight) * pair[0] + weight * pair[1], name="probabilities")(
            [model(inputs), probed])
    combined = keras.Model(inputs, mixed, name="liveness_with_probe")
    if example is not None:
        from training.train import normalise

        combined.predict(normalise(example), verbose=0)
    return combined


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: the probe's out-of-fold scores for every LOSO fold (see the module docstring)."""
    from training.evaluate import sample_folds
    from training.metrics import roc_auc

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--data", required=True, type=Path, help="data set folder/manifest or gather_examples output")
    parser.add_argument("-o", "--out", required=True, type=Path, help="folder for folds/*.csv and config.json")
    parser.add_argument("--stem", choices=PROBE_STEMS, default="mesh")
    parser.add_argument("--l2", type=float, default=PROBE_L2)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.5, 2.7])
    parser.add_argument("--nuaa-by-subject", action="store_true", help="NUAA as two folds of people (evaluate's option)")
    parser.add_argument("--by-setup", action="store_true", help="whole capture setups left out (evaluate's option)")
    parser.add_argument("--gate", action="store_true",
                        help="also write folds/FOLD.gate.csv: 1 where the face lies beyond the training faces' 99th percentile")
    parser.add_argument("--balance-setups", action="store_true",
                        help="every capture setup weighs the same in the fit (a setup of 800 crops as much as one of 40)")
    args = parser.parse_args(argv)
    try:
        data = load_dataset(args.data, args.size, args.scales)
        folds = sample_folds(data, args.nuaa_by_subject, args.by_setup)
    except (OSError, ValueError) as error:
        parser.error(f"--data {args.data}: {error}")
    (args.out / "folds").mkdir(parents=True, exist_ok=True)
    (args.out / "config.json").write_text(json.dumps({"probe": args.stem, "l2": args.l2, "size": args.size,
                                                      "scales": args.scales, "nuaa_by_subject": args.nuaa_by_subject,
                                                      "by_setup": args.by_setup, "gate": args.gate,
                                                      "balance_setups": args.balance_setups}, indent=1))
    # The stem is frozen, so every crop's features are the same in every fold: computed once, and
    # only the logistic regression is fitted per fold (train_probe's fit on the same rows).
    plain = data.variant == 0
    _, features = stem_statistics(data.x[plain], args.stem)
    folds, labels = folds[plain], data.y[plain]
    setups = np.array([capture_setup(g) for g in data.group[plain]]) if args.balance_setups else None
    for fold in dict.fromkeys(folds.tolist()):
        held = folds == fold
        w, b = fit_logistic(features[~held], labels[~held], args.l2, None if setups is None else setups[~held])
        scores = _sigmoid(features[held] @ w + b)
        np.savetxt(args.out / "folds" / f"{fold}.csv", scores, delimiter=",", fmt="%.6f")
        gated = ""
        if args.gate:
            opens = fit_gate(features[~held]).opens(features[held])
            np.savetxt(args.out / "folds" / f"{fold}.gate.csv", opens.astype(int), delimiter=",", fmt="%d")
            gated = f", gate open for {opens.mean():.0%}"
        print(f"{fold}: AUC {roc_auc(labels[held], scores):.3f} ({int(held.sum())} crops{gated})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
