"""How far two models' scores agree on the same faces: a retrain (`make train`) against the shipped file.

    python -m training.agreement models/liveness.onnx runs/retrain.onnx --data ../shared/data

Both models score every gathered face (no jitter copies) cut the way the first model's metadata says
(the second must cut them the same way); printed: the mean and largest score difference, their
correlation, and the share of decisions that differ at the first model's threshold (or
`--threshold`), over all faces and per group of sources. Training is deterministic on one machine but
not across machines (docs/training.md, "The same commands on another machine"): this says how far
another machine's retrain is from the file measured in the model card.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liveness.model import LivenessModel, ModelError
from training.examples import load_dataset


@dataclass(frozen=True)
class Agreement:
    """Two score arrays over the same faces, compared."""

    faces: int
    mean_difference: float
    max_difference: float
    correlation: float
    decisions_differ: float  # share of faces on opposite sides of the threshold


def agreement(a: np.ndarray, b: np.ndarray, threshold: float) -> Agreement:
    """Compare scores `a` and `b` of the same faces (P(real); a face is called real at or above `threshold`)."""
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"need two non-empty score arrays of one shape, got {a.shape} and {b.shape}")
    difference = np.abs(a - b)
    correlation = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    return Agreement(len(a), float(difference.mean()), float(difference.max()), correlation,
                     float(np.mean((a >= threshold) != (b >= threshold))))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path, help="a liveness ONNX model (its crops and threshold are used)")
    parser.add_argument("second", type=Path, help="another model that cuts its crops the same way")
    parser.add_argument("-d", "--data", required=True, type=Path, help="data set folder/manifest or gather_examples output")
    parser.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the first model's)")
    args = parser.parse_args(argv)
    try:
        first, second = LivenessModel(args.first), LivenessModel(args.second)
    except ModelError as error:
        parser.error(str(error))  # exits 2
    crops = lambda meta: (meta.input_size, list(meta.crop_scales), meta.crop_resize, meta.crop_border)  # noqa: E731
    if crops(first.metadata) != crops(second.metadata):
        parser.error(f"{args.second} cuts its crops as {crops(second.metadata)}, {args.first} as {crops(first.metadata)}: "
                     "their scores are not of the same crops")
    size, scales, resize, border = crops(first.metadata)
    try:
        data = load_dataset(args.data, size, scales, crop_resize=resize, crop_border=border)
    except (OSError, ValueError) as error:
        parser.error(f"--data {args.data}: {error}")
    data = data.subset(data.variant == 0)
    threshold = first.threshold if args.threshold is None else args.threshold
    a, b = first.predict_crops(data.x), second.predict_crops(data.x)
    print(f"{args.first} against {args.second} at threshold {threshold:.4f}")
    print(f"  {'group':32s} {'faces':>6s} {'mean |d|':>9s} {'max |d|':>8s} {'corr':>7s} {'decisions differ':>17s}")
    for group in ["all", *sorted(set(data.group))]:
        mask = np.ones(len(data), dtype=bool) if group == "all" else data.group == group
        found = agreement(a[mask], b[mask], threshold)
        print(f"  {group:32s} {found.faces:6d} {found.mean_difference:9.4f} {found.max_difference:8.3f} "
              f"{found.correlation:7.4f} {100 * found.decisions_differ:16.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
