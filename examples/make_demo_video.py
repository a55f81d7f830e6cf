#!/usr/bin/env python3
"""Write a short demo video (640x480) of a public-domain photo moving across the frame.

The photo is examples/astronaut.jpg: scikit-image's `astronaut` (Eileen Collins, a NASA photo in
the public domain), kept here so that the runtime alone can make the demo; nothing is downloaded.

    python examples/make_demo_video.py runs/demo.avi
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

PHOTO = Path(__file__).resolve().parent / "astronaut.jpg"


def write_demo_video(path: Path, frames: int = 90, fps: float = 30.0) -> None:
    """`frames` frames of the photo drifting and zooming over a grey background."""
    photo = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    for i in range(frames):
        side = 300 + int(40 * np.sin(i / 15))  # one face in every frame at detect.min_size 20 (tests/test_runinfo.py)
        canvas = np.full((480, 640, 3), 50, np.uint8)
        x, y = 30 + (i * 4) % (640 - side - 30), 40 + (i * 2) % (480 - side - 40)
        canvas[y : y + side, x : x + side] = cv2.resize(photo, (side, side))
        writer.write(canvas)
    writer.release()


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo.avi")
    write_demo_video(target)
    print(f"wrote {target}")
