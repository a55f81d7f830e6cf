"""Training-time augmentation of multi-scale crop stacks (uint8, N x H x W x 3k, one RGB tile per scale).

Every transform is applied identically to all scale tiles of one sample (they show the same
scene). Image-quality damage (blur, downscaling, JPEG, noise) is applied to real faces more
often than to attacks: in the training data many attacks are smaller and blurrier than the
real faces, and the model must not learn "blurry = fake". (Equal rates were tried too: on
the six crop sources of two leave-one-source-out folds, same seed, every source's ROC AUC
was lower, 0.54 pooled against 0.66.) Work is done a batch at a time
with numpy (a per-sample Python loop cost more than the training step on two cores).
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# Probability of quality damage per label (0 = fake, 1 = real); real faces more often on purpose.
DEGRADE_P = (0.35, 0.6)


def _degrade(tile: np.ndarray, kind: int, amount: float, quality: int) -> np.ndarray:
    size = tile.shape[0]
    if kind == 0:  # defocus blur
        return cv2.GaussianBlur(tile, (0, 0), 0.4 + 1.2 * amount)
    if kind == 1:  # low-resolution camera, or a small face scaled up
        small = max(8, int(round(size * (1.0 - 0.6 * amount))))
        down = cv2.resize(tile, (small, small), interpolation=cv2.INTER_AREA)
        return cv2.resize(down, (size, size), interpolation=cv2.INTER_LINEAR)
    # Tiles are RGB; the JPEG codec expects BGR (its luma weights differ per channel).
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(tile[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1] if ok else tile


def damage_by_label(labels: np.ndarray, degrade_p: tuple[float, float] = DEGRADE_P) -> np.ndarray:
    """Per-sample probability of quality damage: `degrade_p` = (attacks, real faces) by label."""
    return np.asarray(degrade_p, dtype=np.float64)[labels]


def augment_batch(x: np.ndarray, damage_p: np.ndarray, rng: np.random.Generator, scales: Sequence[float] = (),
                  mask_p: float = 0.0) -> np.ndarray:
    """Randomly augmented float32 copies (pixel values 0..255) of a batch of uint8 crop stacks.

    `damage_p`: each sample's probability of quality damage (`damage_by_label`). `mask_p`: the
    probability of a drawn surgical mask (surgical_masks, both labels alike; needs the tiles'
    crop `scales`). Then mirror, colour, gamma, grey and noise jitter.
    """
    n, size, _, channels = x.shape
    tiles = channels // 3
    x = x.copy()
    flip = rng.random(n) < 0.5
    x[flip] = x[flip][:, :, ::-1]
    if mask_p > 0:
        surgical_masks(x, np.nonzero(rng.random(n) < mask_p)[0], scales, rng)
    degrade = rng.random(n) < damage_p
    for i in np.nonzero(degrade)[0]:
        kind, amount, quality = int(rng.integers(0, 3)), float(rng.random()), int(rng.integers(25, 90))
        for j in range(tiles):
            tile = np.ascontiguousarray(x[i, :, :, 3 * j : 3 * j + 3])
            x[i, :, :, 3 * j : 3 * j + 3] = _degrade(tile, kind, amount, quality)
    out = x.astype(np.float32)
    # Colour jitter: per-channel gain (white balance), contrast around the mean, brightness.
    gain = np.tile(rng.uniform(0.9, 1.1, (n, 1, 1, 3)).astype(np.float32), (1, 1, 1, tiles))
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    contrast = rng.uniform(0.7, 1.3, (n, 1, 1, 1)).astype(np.float32)
    shift = rng.uniform(-30, 30, (n, 1, 1, 1)).astype(np.float32)
    out = np.clip((out * gain - mean) * contrast + mean + shift, 0, 255)
    gamma = np.nonzero(rng.random(n) < 0.3)[0]
    if gamma.size:
        power = rng.uniform(0.7, 1.4, (gamma.size, 1, 1, 1)).astype(np.float32)
        out[gamma] = 255.0 * (out[gamma] / 255.0) ** power
    grey = np.nonzero(rng.random(n) < 0.2)[0]  # colour casts of screens must not be the only cue
    if grey.size:
        g = out[grey].reshape(grey.size, size, size, tiles, 3) @ np.array([0.299, 0.587, 0.114], np.float32)
        out[grey] = np.repeat(g[..., None], 3, axis=-1).reshape(grey.size, size, size, channels)
    noisy = np.nonzero(rng.random(n) < 0.2)[0]
    if noisy.size:
        sigma = rng.uniform(2, 8, (noisy.size, 1, 1, 1)).astype(np.float32)
        out[noisy] += rng.standard_normal(out[noisy].shape, dtype=np.float32) * sigma
    return np.clip(out, 0, 255)


_MASK_OUTLINE = np.array([(-0.42, -0.04), (-0.2, -0.1), (0.0, -0.13), (0.2, -0.1), (0.42, -0.04), (0.46, 0.22),
                          (0.3, 0.42), (0.0, 0.5), (-0.3, 0.42), (-0.46, 0.22)], dtype=np.float64)
_MASK_COLOURS = np.array([(150, 195, 225), (120, 170, 210), (235, 235, 238), (60, 60, 70)], dtype=np.float64)  # RGB


def surgical_masks(x: np.ndarray, samples: np.ndarray, scales: Sequence[float], rng: np.random.Generator) -> None:
    """Draw, in place, a face mask over the nose, mouth and chin of `samples` (uint8 RGB tiles).

    None of the training data shows masked faces, live or recaptured, so a masked person may be
    called fake for the mask alone. Drawn on both labels alike (a mask must not decide the label):
    light blue, darker blue, white or black cloth with pleats and shading, outline and position
    jittered, at the same face-relative place in every tile (tile j spans scales[j] face widths).
    """
    size = x.shape[1]
    for i in samples:
        outline = _MASK_OUTLINE * rng.uniform(0.9, 1.1, 2) + rng.uniform(-0.04, 0.04, 2)
        colour = _MASK_COLOURS[int(rng.integers(0, len(_MASK_COLOURS)))] * rng.uniform(0.8, 1.1)
        top, bottom = outline[:, 1].min(), outline[:, 1].max()
        for j, scale in enumerate(scales):
            if scale <= 0:
                continue  # a native-pixel tile has no face-relative extent
            unit = size / scale
            points = np.round((outline * unit + size / 2.0) * 16).astype(np.int32)  # 4 fractional bits
            shape = np.zeros((size, size), dtype=np.uint8)
            cv2.fillPoly(shape, [points], 255, cv2.LINE_AA, shift=4)
            alpha = shape.astype(np.float32)[..., None] / 255.0
            # Light from above and three horizontal pleats: cloth, not a flat sticker.
            rows = (np.arange(size, dtype=np.float32) - size / 2.0) / unit
            depth = np.clip((rows - top) / max(bottom - top, 1e-3), 0.0, 1.0)
            shade = 1.05 - 0.25 * depth - 0.12 * (np.cos(depth * 3 * 2 * np.pi) > 0.8)
            cloth = np.clip(colour[None, None, :] * shade[:, None, None], 0, 255).astype(np.float32)
            tile = x[i, :, :, 3 * j : 3 * j + 3].astype(np.float32)
            x[i, :, :, 3 * j : 3 * j + 3] = np.round(tile * (1 - alpha) + cloth * alpha).astype(np.uint8)


def background_screens(x: np.ndarray, samples: np.ndarray, scales: Sequence[float], rng: np.random.Generator) -> None:
    """Draw, in place, a switched-off screen (dark panel, thin bezel) in the background of `samples`.

    Real people often sit in front of a television or monitor, or against a dark chair back, and a
    model that learnt "dark rectangle near the face = phone replay" calls them fake (most of the
    webcam sets' rejected real faces, docs/training.md). Drawn on both labels alike, above or beside
    the face, never over the face box or the shoulders, at the same face-relative place in every
    tile (face units: the box's larger side; tile j spans scales[j] of them).
    """
    size = x.shape[1]
    for i in samples:
        aspect = float(np.exp(rng.uniform(np.log(0.6), np.log(1.9))))  # width / height
        width = rng.uniform(0.8, 2.5)
        height = width / aspect
        side = int(rng.integers(0, 5))  # top, left, right, upper left, upper right
        if side == 0:
            bottom = -rng.uniform(0.75, 1.3)
            left = rng.uniform(-0.8, 0.8) - width / 2
        else:
            bottom = rng.uniform(-0.2, 0.4) if side in (1, 2) else -rng.uniform(0.6, 1.0)
            near = rng.uniform(0.6, 1.2)
            left = -near - width if side in (1, 3) else near
        box = np.array([left, bottom - height, left + width, bottom])  # x0, y0, x1, y1 in face units
        bezel = rng.uniform(0.02, 0.08)
        panel = rng.uniform(5, 70) + rng.uniform(-10, 10, 3)
        frame = np.full(3, rng.uniform(0, 30) if rng.random() < 0.6 else rng.uniform(110, 200))
        gradient = rng.uniform(-15, 15)  # light from above or below along the panel
        for j, scale in enumerate(scales):
            if scale <= 0:
                continue  # a native-pixel tile has no face-relative extent
            unit = size / scale
            x0, y0, x1, y1 = np.round(box * unit + size / 2.0).astype(int)
            inset = max(1, int(round(bezel * unit)))
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
            if cx0 >= cx1 or cy0 >= cy1:
                continue  # the screen lies beyond this tile
            tile = x[i, :, :, 3 * j : 3 * j + 3]
            tile[cy0:cy1, cx0:cx1] = np.clip(frame, 0, 255).astype(np.uint8)
            px0, py0, px1, py1 = max(x0 + inset, 0), max(y0 + inset, 0), min(x1 - inset, size), min(y1 - inset, size)
            if px0 < px1 and py0 < py1:
                rows = (np.arange(py0, py1) - (y0 + y1) / 2.0) / max(y1 - y0, 1)
                shade = panel[None, None, :] + gradient * rows[:, None, None] * 2.0
                tile[py0:py1, px0:px1] = np.clip(np.broadcast_to(shade, (py1 - py0, px1 - px0, 3)), 0, 255).astype(np.uint8)


def background_people(x: np.ndarray, samples: np.ndarray, scales: Sequence[float], rng: np.random.Generator) -> None:
    """Paste, in place, another sample's face as a bystander beside or above the face of `samples`.

    Real people are often seen with others behind them (an office; NUAA's subjects 4 and 6, whose
    real faces 1.4's recipe rejects when NUAA is left out whole), and a model that learnt "a second
    face near the face = a screen showing people" rejects them: with a face of the set pasted
    beside each face (the "bystander" row of `evaluate --stress`), 1.4 rejects 8.1% of Replay-Attack
    devel's real people instead of 5.3% (docs/training.md). The bystander is the closest tile of
    another sample of the batch (head and shoulders; an attack's face too, as labels are not known
    here), blended through a soft head-shaped mask, so no rectangle edge looks like a screen; at one
    face-relative place in every tile, never over the face box or the shoulders (face units: the
    box's larger side; tile j spans scales[j] of them). Both labels alike.
    """
    if len(x) < 2 or not len(samples) or scales[0] <= 0:
        return
    size = x.shape[1]
    donors = x[:, :, :, 0:3].copy()  # as they were before any bystander was pasted
    for i in samples:
        donor = donors[(i + 1 + int(rng.integers(len(x) - 1))) % len(x)]  # any sample but this one
        width = rng.uniform(0.5, 1.0) * scales[0]  # the donor's face at 0.5-1 face units; its tile spans scales[0]
        rx, ry = 0.36 * width, 0.46 * width  # the head-shaped mask's radii
        cx = (1 if rng.random() < 0.5 else -1) * (0.6 + rx + rng.uniform(0.0, 0.8))
        cy = rng.uniform(-1.2, 0.36 - ry)
        for j, scale in enumerate(scales):
            if scale <= 0:
                continue  # a native-pixel tile has no face-relative extent
            unit = size / scale
            side = max(2, int(round(width * unit)))
            x0, y0 = int(round(cx * unit + size / 2.0 - side / 2.0)), int(round(cy * unit + size / 2.0 - 0.48 * side))
            tx0, ty0, tx1, ty1 = max(x0, 0), max(y0, 0), min(x0 + side, size), min(y0 + side, size)
            if tx0 >= tx1 or ty0 >= ty1:
                continue  # the bystander lies beyond this tile
            face = cv2.resize(donor, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
            rows, cols = np.mgrid[0:side, 0:side] + 0.5
            inside = ((cols - side / 2.0) / (0.36 * side)) ** 2 + ((rows - 0.48 * side) / (0.46 * side)) ** 2
            alpha = np.clip((1.0 - inside) / 0.3, 0.0, 1.0)[..., None]
            tile = x[i, :, :, 3 * j : 3 * j + 3]
            region = tile[ty0:ty1, tx0:tx1].astype(np.float32)
            a, f = alpha[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0], face[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0]
            tile[ty0:ty1, tx0:tx1] = np.clip(a * f + (1.0 - a) * region + 0.5, 0, 255).astype(np.uint8)
