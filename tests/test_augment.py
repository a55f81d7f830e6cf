"""Training augmentation: random erasing touches one rectangle per tile and nothing else."""
from __future__ import annotations

import numpy as np
import pytest

from training.augment import augment_batch
from training.train import main as train_main


def test_erasing_changes_one_rectangle_per_tile_and_leaves_the_rest_as_without_it() -> None:
    crops = np.random.default_rng(1).integers(0, 256, (16, 64, 64, 6), dtype=np.uint8)
    labels = np.array([0, 1] * 8)
    plain = augment_batch(crops, labels, np.random.default_rng(5))
    erased = augment_batch(crops, labels, np.random.default_rng(5), erase_p=1.0)
    for i in range(len(crops)):
        for j in range(2):
            changed = np.any(plain[i, :, :, 3 * j : 3 * j + 3] != erased[i, :, :, 3 * j : 3 * j + 3], axis=-1)
            rows, cols = np.nonzero(changed)
            assert rows.size, f"sample {i} tile {j} was not erased"
            # Everything that changed lies in one rectangle of 5-25% of the tile (a noise pixel can
            # equal the old one by chance, so the bounding box is checked, not every pixel).
            height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
            assert 0.04 * 64 * 64 <= height * width <= 0.26 * 64 * 64
            assert changed[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].mean() > 0.9


def test_erase_probability_outside_zero_to_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        train_main(["--dataset", "missing", "--model", "x.onnx", "--erase-p", "1.5"])
    assert stopped.value.code == 2
    assert "--erase-p: 1.5 is not a probability" in capsys.readouterr().err
