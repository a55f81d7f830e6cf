"""A logistic regression fitted by Newton's method: the liveness head on frozen features."""
from __future__ import annotations

import numpy as np

NEWTON_STEPS = 50


def row_weights(labels: np.ndarray, setups: np.ndarray | None = None) -> np.ndarray:
    """Per-row weights summing to 1/2 within each class; with `setups`, every capture setup's rows
    first weigh the same in total within the class, so a setup with 800 faces counts as much as one with 40."""
    weights = np.ones(len(labels))
    if setups is not None:
        keys = np.char.add(np.asarray(setups).astype(str), np.where(labels == 1, ":real", ":fake"))
        _, index, counts = np.unique(keys, return_inverse=True, return_counts=True)
        weights = 1.0 / counts[index]
    for label in (0, 1):
        weights[labels == label] *= 0.5 / weights[labels == label].sum()
    return weights


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = 1.0,
                 setups: np.ndarray | None = None, prior: tuple[np.ndarray, float] | None = None) -> tuple[np.ndarray, float]:
    """Weights and intercept of a logistic regression on standardised `features` (labels 1 = real).

    Both classes weigh the same in total (row_weights; with `setups`, every capture setup too); the
    penalty l2 * |w - w0|^2 / 2 spares the intercept, w0 being 0 or, with `prior` (raw-feature
    weights and intercept of an earlier fit), those weights: a small data set then moves the earlier
    head only as far as it has evidence for. Newton's method needs no seed and gives the same answer
    on every machine. Returns (w, b) for the raw features: the standardisation is folded in.
    """
    labels = np.asarray(labels, dtype=np.float64)
    if len(labels) == 0 or labels.min() == labels.max():
        raise ValueError("the head needs real and fake faces to fit")
    features = np.asarray(features, dtype=np.float64)
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6
    x = np.c_[(features - mean) / std, np.ones(len(features))]
    weights = row_weights(labels.astype(np.int64), setups)
    penalty = l2 * np.r_[np.ones(x.shape[1] - 1), 0.0]
    centre = np.zeros(x.shape[1])
    if prior is not None:  # the same function in standardised coordinates
        centre[:-1] = np.asarray(prior[0], dtype=np.float64) * std
        centre[-1] = float(prior[1]) + float(np.asarray(prior[0], dtype=np.float64) @ mean)
    w = centre.copy()
    for _ in range(NEWTON_STEPS):
        p = sigmoid(x @ w)
        gradient = x.T @ (weights * (p - labels)) + penalty * (w - centre)
        hessian = (x * (weights * p * (1.0 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    scaled = w[:-1] / std
    return scaled, float(w[-1] - scaled @ mean)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)), without overflow warnings."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))
