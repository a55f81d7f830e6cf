"""Progress of a finite run: frames done of the total where it is known, rate, time left, and a summary.

The total of a video file is read by a short-lived child (`python -m pipeline.progress URI`), so
the supervisor never imports OpenCV; a folder's is its number of images.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from pipeline.config import REPO_ROOT, PipelineConfig, source_is_live


def start_counting(config: PipelineConfig) -> subprocess.Popen | None:
    """Start counting the source's frames in a child (None for live, looping or unreadable sources)."""
    if config.policy() == "live" or config.source.loop or source_is_live(config.source.uri):
        return None
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    return subprocess.Popen([sys.executable, "-m", "pipeline.progress", config.source.uri],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)


def finish_counting(child: subprocess.Popen | None, config: PipelineConfig, wait_s: float = 10.0) -> int | None:
    """The frames this run will process (capped by `source.max_frames`), None when unknown."""
    if child is None:
        return config.source.max_frames if config.source.loop else None  # a looping file ends at max_frames only
    try:
        out, _ = child.communicate(timeout=wait_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        return None
    total = int(out.strip()) if child.returncode == 0 and out.strip().isdigit() and int(out.strip()) > 0 else None
    if total is not None and config.source.max_frames is not None:
        total = min(total, config.source.max_frames)
    return total


def count_frames(uri: str) -> int | None:
    """Frames in a video file (its header's count) or images in a folder; None when unknown."""
    import cv2

    from pipeline.config_file import resolve_path
    from stages.capture import IMAGE_SUFFIXES

    path = resolve_path(uri)
    if path.is_dir():
        return sum(1 for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        return 1
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    return count or None


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Frames published so far against the total; one short text per summary line."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.started = time.monotonic()
        self.first: tuple[float, int] | None = None  # (time, frames) when frames were first seen published

    def line(self, publisher: dict[str, Any], final: bool = False) -> str:
        """"frame 40 of 90 (44%), 7.9 fps, about 6s left" (the total and time left where known);
        at the end: "processed 90 of 90 frames in 11s (7.9 fps with start-up)"."""
        done, now = int(publisher.get("frames_out", 0)), time.monotonic()
        elapsed = max(now - self.started, 1e-6)
        if final:
            rate = done / elapsed
        elif self.first is None or now - self.first[0] < 1.0:  # the publisher's own rate until ours has a span
            self.first = self.first or ((now, done) if done else None)
            rate = float(publisher.get("fps", 0.0))
        else:
            rate = (done - self.first[1]) / (now - self.first[0])
        of = f" of {self.total}" if self.total else ""
        if final:
            return f"processed {done}{of} frames in {_duration(elapsed)} ({rate:.1f} fps with start-up)"
        text = f"frame {done}{of}"
        if self.total:
            text += f" ({100 * done / self.total:.0f}%)"
        text += f", {rate:.1f} fps"
        if self.total and rate > 0 and done < self.total:
            text += f", about {_duration((self.total - done) / rate)} left"
        return text


if __name__ == "__main__":
    counted = count_frames(sys.argv[1]) if len(sys.argv) == 2 else None
    print(counted or 0)
