"""Hand-crafted texture cues, screened the way the frozen probe is: by capture setup left out whole.

The classic cues of face anti-spoofing before deep networks (colour texture as uniform LBP
histograms in YCrCb and HSV, colour moments, the shape of the power spectrum, sharpness and specular
highlights) need no pretrained weights. Do they carry over to a setup the fit never saw better than
the face mesh's frozen features? Each family goes through the probe's logistic regression
(training.probe.fit_logistic: standardised, class-balanced, L2) on the crops as gathered, once per
setup left out (NUAA, Replay-Attack, the webcam sets), and the script prints each setup's ROC AUC.

    python -m training.cues --data ../shared/data [--l2 0.1 1 10]

The last table is one cue at a time, no fit: the AUC of the raw number as a liveness score in each
setup, to show which way it points there (a cue that points opposite ways in two setups cannot be
learnt from one and used on the other).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from training.evaluate import SETUP_TARGETS, sample_folds
from training.metrics import roc_auc
from training.probe import PROBE_L2, _sigmoid, fit_logistic

# The eight neighbours of radius 1, clockwise from the top left: bit k of an LBP code is neighbour k >= centre.
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def uniform_bins() -> np.ndarray:
    """Bin of each 8-bit LBP code: the 58 codes with at most two 0/1 transitions around the circle
    get a bin each, every other code shares bin 58 (Ojala's uniform patterns, 59 bins)."""
    bins = np.full(256, 58)
    uniform = [c for c in range(256) if sum(((c >> k) & 1) != ((c >> ((k + 1) % 8)) & 1) for k in range(8)) <= 2]
    bins[uniform] = np.arange(len(uniform))
    return bins


UNIFORM_BINS = uniform_bins()


def lbp_codes(channel: np.ndarray) -> np.ndarray:
    """8-bit LBP codes of the inner pixels of a stack of single-channel images (N, H, W) -> (N, H-2, W-2)."""
    centre = channel[:, 1:-1, 1:-1].astype(np.int16)
    height, width = channel.shape[1:]
    codes = np.zeros(centre.shape, np.int32)
    for bit, (dy, dx) in enumerate(NEIGHBOURS):
        neighbour = channel[:, 1 + dy:height - 1 + dy, 1 + dx:width - 1 + dx].astype(np.int16)
        codes |= (neighbour >= centre).astype(np.int32) << bit
    return codes


def lbp_histograms(channel: np.ndarray) -> np.ndarray:
    """Uniform LBP histogram of each image of a (N, H, W) stack, as shares: (N, 59)."""
    bins = UNIFORM_BINS[lbp_codes(channel)].reshape(len(channel), -1)
    counts = np.stack([np.bincount(row, minlength=59) for row in bins])
    return counts / bins.shape[1]


def _tiles(x: np.ndarray) -> list[np.ndarray]:
    """The RGB tiles of a crop stack (N, S, S, 3k), each contiguous."""
    return [np.ascontiguousarray(x[..., 3 * t:3 * t + 3]) for t in range(x.shape[-1] // 3)]


def _convert(tile: np.ndarray, code: int) -> np.ndarray:
    return np.stack([cv2.cvtColor(image, code) for image in tile])


def colour_lbp(x: np.ndarray) -> np.ndarray:
    """Uniform LBP histograms of every channel of YCrCb and HSV, both tiles (Boulkenafet et al.'s colour texture)."""
    return np.concatenate([lbp_histograms(np.ascontiguousarray(space[..., c])) for tile in _tiles(x)
                           for space in (_convert(tile, cv2.COLOR_RGB2YCrCb), _convert(tile, cv2.COLOR_RGB2HSV))
                           for c in range(3)], axis=1)


def colour_moments(x: np.ndarray) -> np.ndarray:
    """Mean, standard deviation and skewness of every channel of YCrCb, HSV and RGB, both tiles."""
    out = []
    for tile in _tiles(x):
        for space in (_convert(tile, cv2.COLOR_RGB2YCrCb), _convert(tile, cv2.COLOR_RGB2HSV), tile):
            values = space.reshape(len(space), -1, 3).astype(np.float64)
            mean, std = values.mean(axis=1), values.std(axis=1) + 1e-6
            out += [mean, std, (((values - mean[:, None]) / std[:, None]) ** 3).mean(axis=1)]
    return np.concatenate(out, axis=1)


def spectrum_shape(x: np.ndarray, bands: int = 12) -> np.ndarray:
    """Log power of the grey tile in `bands` rings of spatial frequency, relative to the lowest ring (Hann window)."""
    out = []
    for tile in _tiles(x):
        grey = _convert(tile, cv2.COLOR_RGB2GRAY).astype(np.float64)
        grey -= grey.mean(axis=(1, 2), keepdims=True)
        side = grey.shape[1]
        power = np.abs(np.fft.fftshift(np.fft.fft2(grey * np.outer(np.hanning(side), np.hanning(side))), axes=(1, 2))) ** 2
        yy, xx = np.mgrid[:side, :side]
        radius = np.hypot(yy - side / 2, xx - side / 2)
        edges = np.linspace(1, side / 2, bands + 1)
        rings = np.log(np.stack([power[:, (radius >= a) & (radius < b)].mean(axis=1) for a, b in zip(edges, edges[1:])], 1) + 1e-6)
        out.append(rings - rings[:, :1])
    return np.concatenate(out, axis=1)


def sharpness_and_highlights(x: np.ndarray) -> np.ndarray:
    """Per tile: log Laplacian variance, log mean gradient, log contrast, Laplacian variance over
    contrast squared (log), and the share of specular pixels (bright, unsaturated: V > 220, S < 40)."""
    out = []
    for tile in _tiles(x):
        grey = _convert(tile, cv2.COLOR_RGB2GRAY).astype(np.float32)
        laplacian = np.stack([cv2.Laplacian(g, cv2.CV_32F) for g in grey]).var(axis=(1, 2))
        gradient = np.stack([np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)) for g in grey]).mean(axis=(1, 2))
        contrast = grey.std(axis=(1, 2)) + 1e-3
        hsv = _convert(tile, cv2.COLOR_RGB2HSV)
        specular = ((hsv[..., 2] > 220) & (hsv[..., 1] < 40)).mean(axis=(1, 2))
        out.append(np.c_[np.log(laplacian + 1e-3), np.log(gradient + 1e-3), np.log(contrast),
                         np.log(laplacian + 1e-3) - 2 * np.log(contrast), specular])
    return np.concatenate(out, axis=1)


FAMILIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "colour LBP (YCrCb, HSV)": colour_lbp,
    "colour moments": colour_moments,
    "spectrum shape": spectrum_shape,
    "sharpness, highlights": sharpness_and_highlights,
}
SINGLE_CUES = {"log Laplacian variance, 1.5x tile": ("sharpness, highlights", 0),
               "Laplacian variance / contrast^2, 1.5x tile": ("sharpness, highlights", 3),
               "specular share, 1.5x tile": ("sharpness, highlights", 4)}


def setup_aucs(features: np.ndarray, labels: np.ndarray, folds: np.ndarray, l2: float) -> list[float]:
    """ROC AUC of the logistic regression on each of SETUP_TARGETS left out whole, then pooled over them."""
    scores = np.zeros(len(features))
    aucs = []
    for setup in SETUP_TARGETS:
        held = folds == setup
        w, b = fit_logistic(features[~held], labels[~held], l2)
        scores[held] = _sigmoid(features[held] @ w + b)
        aucs.append(roc_auc(labels[held], scores[held]))
    left_out = np.isin(folds, SETUP_TARGETS)
    return aucs + [roc_auc(labels[left_out], scores[left_out])]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: the families' AUC by setup left out, beside the face-mesh probe's (see the module docstring)."""
    from training.examples import examples_parser, parsed_examples
    from training.probe import stem_statistics

    parser = examples_parser(__doc__, size=56)
    parser.add_argument("--l2", type=float, nargs="+", default=[PROBE_L2, 1.0, 10.0], help="penalties to try")
    args, plain = parsed_examples(parser, argv)
    folds = sample_folds(plain, by_setup=True)
    families = {name: make(plain.x) for name, make in FAMILIES.items()}
    families["face-mesh probe (model 1.6's)"] = stem_statistics(plain.x, "mesh")[1]
    print(f"{'features':32s} {'dims':>5s} {'L2':>5s} " + " ".join(f"{s:>13s}" for s in SETUP_TARGETS) + f" {'pooled':>8s}")
    for name, features in families.items():
        for l2 in args.l2:
            aucs = setup_aucs(features, plain.y, folds, l2)
            print(f"{name:32s} {features.shape[1]:5d} {l2:5g} " + " ".join(f"{a:13.3f}" for a in aucs[:-1]) + f" {aucs[-1]:8.3f}")
    print("\none cue, no fit: AUC of the raw number as a liveness score within each setup (higher = real)")
    for name, (family, column) in SINGLE_CUES.items():
        cue = families[family][:, column]
        print(f"{name:44s} " + " ".join(f"{s} {roc_auc(plain.y[folds == s], cue[folds == s]):.3f}" for s in SETUP_TARGETS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
