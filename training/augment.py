"""Training-time augmentation of multi-scale crop stacks (uint8, H x W x 3k, BGR tiles).

Every transform is applied identically to all scale tiles of one sample (they show the same
scene). Image-quality damage (blur, downscaling, JPEG, noise) is applied to real faces at
least as often as to attacks: in the training data many attacks are smaller and blurrier
than the real faces, and the model must not learn "blurry = fake".
"""
from __future__ import annotations

import cv2
import numpy as np

# Probability of quality damage per class; real faces get it more often on purpose (see above).
DEGRADE_P = {"real": 0.6, "fake": 0.35}


def _tiles(stack: np.ndarray) -> list[np.ndarray]:
    return [np.ascontiguousarray(stack[:, :, 3 * j : 3 * j + 3]) for j in range(stack.shape[2] // 3)]


def _degrade(tile: np.ndarray, kind: int, amount: float, quality: int) -> np.ndarray:
    size = tile.shape[0]
    if kind == 0:  # defocus / motion-free blur
        return cv2.GaussianBlur(tile, (0, 0), 0.4 + 1.2 * amount)
    if kind == 1:  # low-resolution camera or a small face upscaled
        small = max(8, int(round(size * (1.0 - 0.6 * amount))))
        down = cv2.resize(tile, (small, small), interpolation=cv2.INTER_AREA)
        return cv2.resize(down, (size, size), interpolation=cv2.INTER_LINEAR)
    ok, encoded = cv2.imencode(".jpg", tile, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else tile


def augment(stack: np.ndarray, label: str, rng: np.random.Generator) -> np.ndarray:
    """One randomly augmented copy of a crop stack (same shape and dtype)."""
    tiles = _tiles(stack)
    if rng.random() < 0.5:
        tiles = [t[:, ::-1] for t in tiles]
    if rng.random() < DEGRADE_P.get(label, 0.5):
        kind, amount, quality = int(rng.integers(0, 3)), float(rng.random()), int(rng.integers(25, 90))
        tiles = [_degrade(np.ascontiguousarray(t), kind, amount, quality) for t in tiles]
    out = np.concatenate(tiles, axis=2).astype(np.float32)
    # Colour jitter: brightness, contrast, per-channel gain (white balance), gamma.
    gain = rng.uniform(0.9, 1.1, 3).astype(np.float32)
    out = out * np.tile(gain, len(tiles))
    contrast = rng.uniform(0.7, 1.3)
    out = (out - out.mean()) * contrast + out.mean() + rng.uniform(-30, 30)
    out = np.clip(out, 0, 255)
    if rng.random() < 0.3:
        gamma = rng.uniform(0.7, 1.4)
        out = 255.0 * (out / 255.0) ** gamma
    if rng.random() < 0.2:  # greyscale: colour cast of screens must not be the only cue
        grey = out.reshape(*out.shape[:2], -1, 3) @ np.array([0.114, 0.587, 0.299], dtype=np.float32)
        out = np.repeat(grey, 3, axis=-1).reshape(out.shape)
    if rng.random() < 0.2:
        out = out + rng.normal(0, rng.uniform(2, 8), out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)
