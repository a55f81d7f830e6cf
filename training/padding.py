"""How much of each crop tile is black padding (the face box's context reaching past the frame),
per source and label: the training data's "padding goes with attacks" bias, measured.

    python -m training.padding --data ../shared/data [--size 64 --scales 1.5 2.7]

A pixel counts as padding when all three channels are exactly 0 (what liveness.crop pads with;
real dark pixels rarely are). Detector boxes only, no jitter copies. Besides the mean shares, each
row gives how well padding alone tells the labels apart (ROC AUC of "less padding in the widest
tile = real": 0.5 is no cue, below 0.5 the cue points the other way) and the share of close-ups
(more than CLOSE_UP of the widest tile padding) among real faces and attacks.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.evaluate import SETUP_FOLDS
from training.examples import Examples, detector_box_examples
from training.metrics import roc_auc

# Share of the widest tile that is padding above which a face counts as a close-up (the face fills the frame).
CLOSE_UP = 0.6


def padding_shares(data: Examples | np.ndarray) -> np.ndarray:
    """Per sample and tile, the share of pixels that are padding: shape (samples, tiles).

    `data`: examples, or their crop stacks (uint8, N x S x S x 3k).
    """
    x = data if isinstance(data, np.ndarray) else data.x
    tiles = x.reshape(*x.shape[:3], -1, 3)
    return (tiles.max(axis=-1) == 0).mean(axis=(1, 2))


def padding_cue_auc(y: np.ndarray, widest_share: np.ndarray) -> float:
    """ROC AUC of padding alone as a liveness score: less padding in the widest tile = more likely real."""
    return roc_auc(y, -widest_share)


def report_rows(data: Examples) -> dict[str, np.ndarray]:
    """The rows of the report: every group, the setups of several groups (evaluate.SETUP_FOLDS), each kind, all."""
    rows = {group: data.group == group for group in sorted(set(data.group.tolist()))}
    setups = {f"setup {setup}": np.isin(data.group, [g for g, s in SETUP_FOLDS.items() if s == setup])
              for setup in sorted(set(SETUP_FOLDS.values()))}
    kinds = {f"kind {kind}": data.kind == kind for kind in sorted(set(data.kind.tolist()))}
    return {**rows, **setups, **kinds, "all": np.ones(len(data), bool)}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    data = detector_box_examples(__doc__, argv)
    shares = padding_shares(data)
    widest = shares[:, int(np.argmax(data.scales))]
    tiles = ", ".join(f"{s:g}x" for s in data.scales)
    print(f"mean share of black padding per tile ({tiles}), real | attack; AUC of padding alone; close-ups real / attack")
    for name, mask in report_rows(data).items():
        cells = []
        for label in (1, 0):
            pick = mask & (data.y == label)
            cells.append(" ".join(f"{v:.2f}" for v in shares[pick].mean(axis=0)) + f" (n {int(pick.sum())})" if pick.any() else "-")
        line = f"  {name:30s} {cells[0]:>22s} | {cells[1]:>22s}"
        if len(set(data.y[mask].tolist())) == 2:
            close = [float(np.mean(widest[mask & (data.y == label)] > CLOSE_UP)) for label in (1, 0)]
            line += f" | AUC {padding_cue_auc(data.y[mask], widest[mask]):.3f} | close-ups {close[0]:.1%} / {close[1]:.1%}"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
