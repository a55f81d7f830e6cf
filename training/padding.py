"""How much of each crop tile is black padding (the face box's context reaching past the frame),
per source and label: the training data's "padding goes with attacks" bias, measured.

    python -m training.padding --data ../shared/data [--size 64 --scales 1.5 2.7]

A pixel counts as padding when all three channels are exactly 0 (what liveness.crop pads with;
real dark pixels rarely are). Detector boxes only, no jitter copies.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.examples import Examples, detector_box_examples


def padding_shares(data: Examples | np.ndarray) -> np.ndarray:
    """Per sample and tile, the share of pixels that are padding: shape (samples, tiles).

    `data`: examples, or their crop stacks (uint8, N x S x S x 3k).
    """
    x = data if isinstance(data, np.ndarray) else data.x
    tiles = x.reshape(*x.shape[:3], -1, 3)
    return (tiles.max(axis=-1) == 0).mean(axis=(1, 2))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    data = detector_box_examples(__doc__, argv)
    shares = padding_shares(data)
    tiles = ", ".join(f"{s:g}x" for s in data.scales)
    print(f"mean share of black padding per tile ({tiles}), real | attack")
    for group in sorted(set(data.group.tolist())) + ["all"]:
        mask = np.ones(len(data), bool) if group == "all" else data.group == group
        cells = []
        for label in (1, 0):
            pick = mask & (data.y == label)
            cells.append(" ".join(f"{v:.2f}" for v in shares[pick].mean(axis=0)) + f" (n {int(pick.sum())})" if pick.any() else "-")
        print(f"  {group:30s} {cells[0]:>22s} | {cells[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
