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

from pipeline.config import REPO_ROOT, PipelineConfig


def start_counting(config: PipelineConfig) -> subprocess.Popen | None:
    """Start counting the source's frames in a child (None for live, looping or unreadable sources)."""
    sources = config.all_sources()
    if config.policy() == "live" or any(source.loop or source.effective_policy() == "live" for source in sources):
        return None
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    uris = [f"{source.uri}\t{source.max_frames or 0}" for source in sources]
    return subprocess.Popen([sys.executable, "-m", "pipeline.progress", *uris],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)


def finish_counting(child: subprocess.Popen | None, config: PipelineConfig, wait_s: float = 10.0) -> int | None:
    """The frames this run will process (each source capped by its `max_frames`), None when unknown."""
    if child is None:
        sources = config.all_sources()
        if config.live_among_sources():
            return None  # a live source among several sends what it has at its turns: no total beforehand
        if all(source.loop and source.max_frames for source in sources):  # a looping file ends at max_frames only
            return sum(source.max_frames or 0 for source in sources)
        return None
    try:
        out, _ = child.communicate(timeout=wait_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        return None
    return int(out.strip()) if child.returncode == 0 and out.strip().isdigit() and int(out.strip()) > 0 else None


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
        if self.total:
            done = min(done, self.total)  # frames resent after a restart or a stall are published again
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


def count_all(arguments: list[str]) -> int:
    """The sum over `URI<TAB>MAX_FRAMES` arguments (0 = no cap) of each source's frames; 0 when one is unknown."""
    total = 0
    for argument in arguments:
        uri, _, cap = argument.rpartition("\t")
        counted = count_frames(uri)
        if not counted:
            return 0
        total += min(counted, int(cap)) if int(cap or 0) else counted
    return total


if __name__ == "__main__":
    print(count_all(sys.argv[1:]))
