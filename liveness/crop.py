"""Cut the square context crops a liveness model sees around a detector box.

Training and the classify stage both call these functions, so a model sees at run time
exactly the crops it was trained on.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

Box = Sequence[float]  # [x1, y1, x2, y2] in pixels

# How a square is shrunk to the model's size (a model's metadata names the one it was trained with):
# "area": one cv2.INTER_AREA resize (models up to 1.0);
# "area_fast": halve with 2x2 INTER_AREA steps (OpenCV's vectorised path) while the square is at least
# four times the target, then one INTER_AREA over the remaining factor of 2 to 4. Stopping the
# halvings there keeps the texture: a last step below 2 blurs (the crop's Laplacian variance fell by
# up to a third); this keeps 86-100% of it at a half to a fifth of the cost of one direct INTER_AREA
# resize. Models trained on it measured worse on unseen people (docs/training.md): an option.
CROP_RESIZES = ("area", "area_fast")

# What a square reaching past the frame edge shows (a model's metadata names the one it was trained with):
# "black": the square keeps its side and centre, the part outside the frame is black (models up to 1.1);
# "fit": the square shrinks to the frame's shorter side if it is larger and slides inside the frame, so a
# crop is never padded. In the training data black padding goes with attacks (attack faces are larger
# in their frames); "fit" was tried against that shortcut and measured worse on unseen people
# (docs/training.md): an option.
CROP_BORDERS = ("black", "fit")

# A crop scale of NATIVE asks for a size x size patch of the frame's own pixels centred on the box:
# no resize, so print halftone, screen moire and pixel grids keep the detail that shrinking a whole
# context square averages away.
NATIVE = 0.0


def crop_face(frame: np.ndarray, box: Box, scale: float, size: int, resize: str = "area",
              border: str = "black") -> np.ndarray:
    """A size x size crop of the square of side scale * max(w, h) centred on `box` (side `size` for NATIVE).

    With border "black", parts of the square outside the frame are black, so a face at the frame
    edge keeps its position and scale inside the crop; with "fit" the square is made to lie inside
    the frame (CROP_BORDERS). `resize` is one of CROP_RESIZES.
    """
    if resize not in CROP_RESIZES:
        raise ValueError(f"unknown crop resize {resize!r} (known: {', '.join(CROP_RESIZES)})")
    if border not in CROP_BORDERS:
        raise ValueError(f"unknown crop border {border!r} (known: {', '.join(CROP_BORDERS)})")
    height, width = frame.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    side = float(size) if scale == NATIVE else max(x2 - x1, y2 - y1, 1.0) * scale
    if border == "fit":
        side = min(side, float(width), float(height))
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    left, top = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    side_px = max(int(round(side)), 1)
    if border == "fit":
        left, top = min(max(left, 0), width - side_px), min(max(top, 0), height - side_px)
    halvings = max(int(np.log2(side_px / size)) - 1, 0) if resize == "area_fast" else 0
    if halvings:
        side_px -= side_px % (1 << halvings)  # whole 2^k cells only: drops < 2^k pixels at the far edges
    canvas = np.zeros((side_px, side_px, frame.shape[2]), dtype=frame.dtype)
    src_x1, src_y1 = max(left, 0), max(top, 0)
    src_x2, src_y2 = min(left + side_px, width), min(top + side_px, height)
    if src_x2 > src_x1 and src_y2 > src_y1:
        canvas[src_y1 - top : src_y2 - top, src_x1 - left : src_x2 - left] = frame[src_y1:src_y2, src_x1:src_x2]
    for _ in range(halvings):
        side_px //= 2
        canvas = cv2.resize(canvas, (side_px, side_px), interpolation=cv2.INTER_AREA)
    interpolation = cv2.INTER_AREA if side_px > size else cv2.INTER_LINEAR
    return cv2.resize(canvas, (size, size), interpolation=interpolation)


def crop_faces(frame: np.ndarray, boxes: Sequence[Box], scales: Sequence[float], size: int, resize: str = "area",
               border: str = "black") -> np.ndarray:
    """uint8 array (N, size, size, 3 * len(scales)): every box cropped at every scale."""
    out = np.empty((len(boxes), size, size, 3 * len(scales)), dtype=np.uint8)
    for i, box in enumerate(boxes):
        for j, scale in enumerate(scales):
            out[i, :, :, 3 * j : 3 * j + 3] = crop_face(frame, box, scale, size, resize, border)
    return out
