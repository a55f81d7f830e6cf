"""How sharp the face tile is per source and label, and how well sharpness alone tells real from
attack: the training data's "blurry = fake" bias, measured the way the network sees the crops.

    python -m training.sharpness --data ../shared/data [--size 64 --scales 1.5 2.7]

Sharpness is the mean absolute Laplacian of the grey first tile (the 1.5x crop by default) at the
model's crop size, over pixels away from black padding. "AUC" is the ROC AUC of that number used
as a liveness score (sharper = real): near 1 where the attacks are the blurry crops, near 0 where
the real ones are, 0.5 where sharpness says nothing. Detector boxes only, no jitter copies.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from training import metrics
from training.examples import Examples, detector_box_examples


def tile_sharpness(tile: np.ndarray) -> float:
    """Mean absolute Laplacian of an RGB uint8 tile, ignoring pixels next to black padding (0 if all padding)."""
    grey = cv2.cvtColor(tile, cv2.COLOR_RGB2GRAY).astype(np.float32)
    content = (tile.max(axis=-1) > 0).astype(np.uint8)
    # The Laplacian of a pixel next to the padding sees the padding's edge, not the picture.
    inner = cv2.erode(content, np.ones((3, 3), np.uint8)).astype(bool)
    if not inner.any():
        return 0.0
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F, ksize=1))[inner].mean())


def sharpness(data: Examples, tile: int = 0) -> np.ndarray:
    """Sharpness of tile number `tile` of every sample: shape (samples,)."""
    channels = slice(3 * tile, 3 * tile + 3)
    return np.array([tile_sharpness(np.ascontiguousarray(x[..., channels])) for x in data.x], dtype=np.float64)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    data = detector_box_examples(__doc__, argv)
    values = sharpness(data)
    print(f"sharpness of the {data.scales[0]:g}x tile at {data.size} px: median real | attack, AUC of sharper = real")
    for source in sorted(set(data.source.tolist())) + ["all"]:
        mask = np.ones(len(data), bool) if source == "all" else data.source == source
        real, attack = values[mask & (data.y == 1)], values[mask & (data.y == 0)]
        if not len(real) or not len(attack):
            print(f"  {source:30s} {'-':>7s} | {'-':>7s}   one label only")
            continue
        auc = metrics.roc_auc(data.y[mask], values[mask])
        print(f"  {source:30s} {np.median(real):7.2f} | {np.median(attack):7.2f}   AUC {auc:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
