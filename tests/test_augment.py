"""Training augmentation: random erasing touches one rectangle per tile and nothing else."""
from __future__ import annotations

import numpy as np
import pytest

from training.augment import (augment_batch, background_people, background_screens, damage_by_label, frame_edges,
                              backlighting, camera_tones, screen_recaptures, side_lighting, surgical_masks)
from training.train import main as train_main, mix_samples


def test_erasing_changes_one_rectangle_per_tile_and_leaves_the_rest_as_without_it() -> None:
    crops = np.random.default_rng(1).integers(0, 256, (16, 64, 64, 6), dtype=np.uint8)
    labels = np.array([0, 1] * 8)
    plain = augment_batch(crops, damage_by_label(labels), np.random.default_rng(5))
    erased = augment_batch(crops, damage_by_label(labels), np.random.default_rng(5), erase_p=1.0)
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


def test_frame_edges_black_out_the_same_face_relative_band_in_every_tile() -> None:
    crops = np.full((200, 64, 64, 6), 200, dtype=np.uint8)
    frame_edges(crops, np.arange(1, 200), [1.5, 2.7], np.random.default_rng(3))
    assert (crops[0] == 200).all()  # a sample not drawn is untouched
    # at least one edge per sample, 0.5-1.35 face widths out: inside the 2.7x tile but for the rare draw at its border
    assert np.mean([crop[..., 3:].min() == 0 for crop in crops[1:]]) > 0.95
    for crop in crops[1:]:
        small, large = crop[..., :3].max(axis=-1) > 0, crop[..., 3:].max(axis=-1) > 0
        # what is left is one axis-aligned rectangle per tile, around the centre (the face)
        for kept in (small, large):
            rows, cols = np.nonzero(kept)
            assert kept[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all() and kept[32, 32]
        # the same edge, seen from both tiles: a cut at d face widths from the centre sits at
        # 32 + 64 d / scale pixels; mapped from the large tile into the small one it must agree
        rows, cols = np.nonzero(large)
        for edge_large, sign in ((cols.max() + 1, 1), (rows.max() + 1, 1), (cols.min(), -1), (rows.min(), -1)):
            distance = (edge_large - 32) / 64 * 2.7
            edge_small = 32 + 64 * distance / 1.5
            if 0 < edge_small < 64:  # the cut falls inside the small tile too
                line = small[32, :] if edge_large in (cols.max() + 1, cols.min()) else small[:, 32]
                inside = np.nonzero(line)[0]
                got = inside.max() + 1 if sign > 0 else inside.min()
                assert abs(got - edge_small) <= 1.5, (edge_large, got, edge_small)


@pytest.mark.parametrize("option", ["edge_p", "mask_p", "screen_p", "bystander_p"])
def test_optional_drawings_are_off_by_default_and_leave_the_random_stream_alone(option: str) -> None:
    """Recipes without the option keep their exact random draws; with it on, the batch changes."""
    crops = np.random.default_rng(1).integers(1, 256, (8, 64, 64, 6), dtype=np.uint8)
    labels = np.array([0, 1] * 4)
    plain = augment_batch(crops, damage_by_label(labels), np.random.default_rng(5))
    again = augment_batch(crops, damage_by_label(labels), np.random.default_rng(5), scales=[1.5, 2.7], **{option: 0.0})
    assert np.array_equal(plain, again)
    drawn = augment_batch(crops, damage_by_label(labels), np.random.default_rng(5), scales=[1.5, 2.7], **{option: 1.0})
    assert not np.array_equal(plain, drawn)


def test_an_unknown_drawing_is_refused() -> None:
    crops = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(TypeError, match="unknown drawing hat_p"):
        augment_batch(crops, np.zeros(2), np.random.default_rng(0), hat_p=0.5)


def test_an_unknown_fold_to_leave_out_is_refused(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        train_main(["--dataset", str(tmp_path), "--model", "x.onnx", "--leave-out", "crops_z"])
    assert stopped.value.code == 2
    assert "--leave-out 'crops_z': not a fold (nuaa, " in capsys.readouterr().err


def test_erase_probability_outside_zero_to_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        train_main(["--dataset", "missing", "--model", "x.onnx", "--erase-p", "1.5"])
    assert stopped.value.code == 2
    assert "--erase-p: 1.5 is not a probability" in capsys.readouterr().err


def test_mixup_blends_each_sample_with_one_partner_and_its_targets_alike() -> None:
    values = np.random.default_rng(2).permutation(64).astype(np.float32)  # sample i is a constant image of values[i]
    x = np.broadcast_to(values[:, None, None, None], (64, 4, 4, 6)).copy()
    labels = np.arange(64) % 2
    y = np.eye(2, dtype=np.float32)[labels]
    mixed_x, mixed_y = mix_samples(x, y, np.random.default_rng(3), alpha=0.4)
    assert not np.allclose(mixed_x, x)
    for i in range(64):
        assert np.ptp(mixed_x[i]) < 1e-4  # still one blend of two constant images
        value = float(mixed_x[i, 0, 0, 0])
        # Some partner j and weight w in [0, 1] give both the pixels and the targets.
        found = False
        for j in range(64):
            if j == i or values[j] == values[i]:
                same = abs(value - values[i]) < 1e-4 and np.allclose(mixed_y[i], y[i])
            else:
                weight = (value - values[j]) / (values[i] - values[j])
                same = -1e-5 <= weight <= 1 + 1e-5 and np.allclose(mixed_y[i], weight * y[i] + (1 - weight) * y[j], atol=1e-4)
            found = found or same
        assert found, f"sample {i} is not a blend of itself and one partner"
    np.testing.assert_allclose(mixed_y.sum(axis=1), 1.0, atol=1e-6)


def test_a_drawn_mask_covers_the_lower_face_at_the_same_place_in_every_tile() -> None:
    crops = np.full((4, 64, 64, 6), 128, dtype=np.uint8)
    masked = crops.copy()
    surgical_masks(masked, np.array([1, 3]), [1.5, 2.7], np.random.default_rng(2))
    assert np.array_equal(masked[[0, 2]], crops[[0, 2]])  # samples not asked for are untouched
    for i in (1, 3):
        small = np.any(masked[i, :, :, :3] != 128, axis=-1)
        large = np.any(masked[i, :, :, 3:] != 128, axis=-1)
        extents = []
        for tile, scale in ((small, 1.5), (large, 2.7)):
            rows, cols = np.nonzero(tile)
            unit = 64 / scale  # pixels per face width
            extents.append((np.array([rows.min(), rows.max(), cols.min(), cols.max()]) - 32) / unit)
            # from under the eyes (a fifth of a face above the box centre), down to about the chin, narrower than the face
            assert (rows.min() - 32) / unit > -0.25 and 0.35 < (rows.max() - 32) / unit < 0.6
            assert (cols.max() - cols.min()) / unit < 1.1
            assert tile[32 + int(0.25 * unit), 32]  # the mouth is covered
            assert not tile[32 - int(0.3 * unit), 32]  # the eyes are not
        # the same face-relative outline in both tiles, to within the large tile's pixels (and antialiasing)
        assert np.abs(extents[0] - extents[1]).max() < 2 / (64 / 2.7)


def test_the_stress_report_scores_masked_and_screened_copies_of_the_faces() -> None:
    from pathlib import Path

    from training.evaluate import stress_report
    from training.examples import Examples

    from liveness.model import LivenessModel

    n = 8
    text = lambda k: np.array([k] * n)  # noqa: E731
    model = Path(__file__).resolve().parents[1] / "models" / "liveness.onnx"
    size = LivenessModel(model).metadata.input_size  # crops at the shipped model's own size
    faces = Examples(np.random.default_rng(3).integers(0, 256, (n, size, size, 6), dtype=np.uint8), np.array([0, 1] * 4),
                     text("s"), text("s"), text("replay"), text("frame"), text("o"), text("v"), size, [1.5, 2.7])
    rows = {line.split()[0]: line.split() for line in stress_report(model, faces, 0.5).splitlines()[1:]}
    assert set(rows) == {"none", "blur", "downscale", "jpeg30", "face", "screen", "bystander"}
    assert rows["face"][-2:] != rows["none"][-2:]  # mean P(real) of real faces and attacks moved with the mask
    assert rows["screen"][-2:] != rows["none"][-2:]  # and with the screen
    assert rows["bystander"][-2:] != rows["none"][-2:]  # and with a bystander


def _drawn_off_the_face_at_one_place(drawn: np.ndarray, background: np.ndarray, samples: range) -> int:
    """Check what a background drawing changed in 64 px tiles at 1.5x and 2.7x; return how many reach the wide tile.

    Per sample drawn on: nothing changed over the face box or below the chin (shoulders, body) in
    either tile, and every changed pixel of the small tile, mapped into the large one, is changed
    there too (to a pixel's rounding): one face-relative place in both tiles.
    """
    seen = 0
    for i in samples:
        changed = [np.any(drawn[i, :, :, 3 * j : 3 * j + 3] != background[i], axis=-1) for j in range(2)]
        for j, scale in enumerate((1.5, 2.7)):
            face = [int(round(32 + 64 * d / scale)) for d in (-0.5, 0.5)]
            assert not changed[j][face[0] : face[1], face[0] : face[1]].any()  # the face box
            assert not changed[j][int(np.ceil(32 + 64 * 0.42 / scale)) :, :].any()  # below the chin
        seen += int(changed[1].any())
        rows, cols = np.nonzero(changed[0])
        for r, c in zip(rows[::7], cols[::7]):
            r_large, c_large = ((np.array([r, c]) + 0.5 - 32) * 1.5 / 2.7 + 32).astype(int)
            assert changed[1][max(r_large - 1, 0) : r_large + 2, max(c_large - 1, 0) : c_large + 2].any(), (i, r, c)
    return seen


def test_a_background_screen_stays_off_the_face_and_the_shoulders_at_one_place_in_every_tile() -> None:
    crops = np.full((40, 64, 64, 6), 200, dtype=np.uint8)
    drawn = crops.copy()
    background_screens(drawn, np.arange(0, 40, 2), [1.5, 2.7], np.random.default_rng(4))
    assert np.array_equal(drawn[1::2], crops[1::2])  # samples not asked for are untouched
    assert _drawn_off_the_face_at_one_place(drawn, np.full(40, 200), range(0, 40, 2)) >= 15  # nearly every screen reaches the wide tile


def test_a_bystander_is_another_samples_face_off_the_face_and_the_shoulders_at_one_place_in_every_tile() -> None:
    # Sample k is filled with the grey level 10 + 6 k, so a pasted pixel tells whose face it came from.
    levels_of = 10 + 6 * np.arange(40)
    crops = np.stack([np.full((64, 64, 6), level, dtype=np.uint8) for level in levels_of])
    drawn = crops.copy()
    background_people(drawn, np.arange(0, 40, 2), [1.5, 2.7], np.random.default_rng(4))
    assert np.array_equal(drawn[1::2], crops[1::2])  # samples not asked for are untouched
    assert _drawn_off_the_face_at_one_place(drawn, levels_of, range(0, 40, 2)) >= 15  # nearly every bystander reaches the wide tile
    for i in range(0, 40, 2):
        own = int(levels_of[i])
        for j in range(2):
            tile = drawn[i, :, :, 3 * j : 3 * j + 3].astype(int)
            levels = tile[np.any(tile != own, axis=-1)][:, 0]
            if not levels.size:
                continue
            # Blended towards one other sample's level: every changed pixel lies between the two ...
            fits = [d for d in levels_of if d != own and np.all((levels - own) * (d - own) >= 0)
                    and np.all(np.abs(levels - own) <= abs(d - own))]
            assert fits, (i, j)
            # ... and some only partly (soft edges, no hard rectangle).
            assert np.any(np.abs(levels - own) < abs(fits[0] - own))


def test_a_recapture_changes_tone_and_adds_a_grating_but_keeps_the_padding_black() -> None:
    crops = np.full((12, 64, 64, 6), 140, dtype=np.uint8)
    crops[:, :, :10, 3:] = 0  # the wide tile reaches past the frame's left edge: black padding
    drawn = crops.copy()
    screen_recaptures(drawn, np.arange(0, 12, 2), [1.5, 2.7], np.random.default_rng(6))
    assert np.array_equal(drawn[1::2], crops[1::2])  # samples not asked for are untouched
    for i in range(0, 12, 2):
        assert not drawn[i, :, :10, 3:].any()  # padding stays black
        for j in range(2):
            shown = drawn[i, :, 10:, 3 * j : 3 * j + 3].astype(float)
            assert shown.std() > 1.0  # a flat grey face now carries a grating (and maybe glare)


def test_a_camera_tone_is_one_monotone_curve_per_sample_and_keeps_the_padding_black() -> None:
    ramp = np.tile(np.linspace(1, 255, 64).astype(np.uint8)[None, :, None], (64, 1, 6))  # grey levels left to right
    crops = np.stack([ramp] * 6)
    crops[:, :8, :, 3:] = 0  # the wide tile reaches past the frame's top: black padding
    drawn = crops.copy()
    camera_tones(drawn, np.array([0, 2, 4]), [1.5, 2.7], np.random.default_rng(2))
    assert np.array_equal(drawn[1::2], crops[1::2])  # samples not asked for are untouched
    for i in (0, 2, 4):
        assert not drawn[i, :8, :, 3:].any()  # padding stays black
        assert not np.array_equal(drawn[i], crops[i])
        for j in range(2):
            row = drawn[i, 20, :, 3 * j : 3 * j + 3].astype(int)
            assert np.all(np.diff(row, axis=0) >= 0)  # darker stays darker in every channel: a tone, no pattern
        np.testing.assert_array_equal(drawn[i, 20, :, :3], drawn[i, 20, :, 3:])  # the same curve in both tiles


def test_side_lighting_is_one_smooth_field_shared_by_the_tiles_and_keeps_the_padding_black() -> None:
    crops = np.full((6, 64, 64, 6), 160, dtype=np.uint8)
    crops[:, :, :8, 3:] = 0  # the wide tile reaches past the frame's left edge: black padding
    drawn = crops.copy()
    side_lighting(drawn, np.array([1, 3]), [1.5, 2.7], np.random.default_rng(4))
    assert np.array_equal(drawn[[0, 2, 4, 5]], crops[[0, 2, 4, 5]])  # samples not asked for are untouched
    for i in (1, 3):
        assert not drawn[i, :, :8, 3:].any()  # padding stays black
        gain = drawn[i].astype(float) / 160.0
        assert gain[..., :3].max() - gain[..., :3].min() > 0.1  # light falls off across the face
        assert gain[32, 32, 0] < 1.0 + 1e-9  # never brighter than the scene at the face centre (exposure <= 1)
        # face centre and a point half a face width to the right: the same light in both tiles
        for du in (0.0, 0.5):
            narrow, wide = drawn[i, 32, int(32 + du * 64 / 1.5), 0], drawn[i, 32, int(32 + du * 64 / 2.7), 3]
            assert abs(int(narrow) - int(wide)) <= 3


def test_backlighting_darkens_the_face_brightens_the_scene_alike_in_both_tiles_and_keeps_the_padding_black() -> None:
    crops = np.full((4, 64, 64, 6), 120, dtype=np.uint8)
    crops[:, :, :4, 3:] = 0  # the wide tile reaches past the frame's left edge: black padding
    drawn = crops.copy()
    backlighting(drawn, np.array([2]), [1.5, 2.7], np.random.default_rng(5))
    assert np.array_equal(drawn[[0, 1, 3]], crops[[0, 1, 3]])  # samples not asked for are untouched
    assert not drawn[2, :, :4, 3:].any()  # padding stays black
    gain = drawn[2].astype(float) / 120.0
    assert 0.35 - 0.01 <= gain[32, 32, 0] <= 0.75 + 0.01  # the face centre darker (narrow tile)
    assert gain[32, 32, 3] == pytest.approx(gain[32, 32, 0], abs=0.01)  # the same gain at the centre of the wide tile
    assert 1.1 - 0.01 <= gain[2, 32, 3] <= 1.6 + 0.01  # a face width above the centre (wide tile): the scene, brighter
    row = gain[32, 32:, 3]
    assert np.all(np.diff(row) >= -1e-9)  # rising smoothly from the face out to the scene
