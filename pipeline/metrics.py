"""Per-stage counters and timings, kept by the framework (never by a stage)."""
from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_WINDOW = 2048  # recent samples kept per timing
_SOURCE_WINDOW = 512  # recent latency samples kept per source
MAX_SOURCES = 64  # sources counted by name; frames of any further name are counted under OTHER_SOURCE
OTHER_SOURCE = "other"


def _percentiles(samples: deque[float]) -> dict[str, float]:
    if not samples:
        return {}
    values = np.fromiter(samples, dtype=np.float64)
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "mean": round(float(values.mean()), 3)}


@dataclass
class SourceMetrics:
    """What one stage measured for the frames of one source (several sources share a stage)."""

    frames_out: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_SOURCE_WINDOW))

    def snapshot(self, elapsed: float) -> dict[str, Any]:
        return {"frames_out": self.frames_out, "fps": round(self.frames_out / elapsed, 2),
                "dropped": dict(self.dropped), "latency_ms": _percentiles(self.latency_ms)}


@dataclass
class StageMetrics:
    """What one stage process measured; `snapshot()` is sent to the supervisor periodically."""

    stage: str
    frames_in: int = 0
    frames_out: int = 0
    malformed: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    process_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))
    hop_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))  # transport: previous stage's send (or the moment we were free) -> our receive
    inbox_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))  # queued at our input while we were busy
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))  # capture -> our send
    queue_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))  # our receive -> processing starts (reorder buffer, bursts)
    send_wait_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))  # blocked on a full downstream queue
    sources: dict[str, SourceMetrics] = field(default_factory=dict)  # by source id, at most MAX_SOURCES + 1
    started: float = field(default_factory=time.monotonic)

    def source(self, source_id: str) -> SourceMetrics:
        """The figures of one source (a name past the first MAX_SOURCES is counted as OTHER_SOURCE)."""
        if source_id not in self.sources and len(self.sources) >= MAX_SOURCES:
            source_id = OTHER_SOURCE  # bounded, whatever names a message carries
        return self.sources.setdefault(source_id, SourceMetrics())

    def drop(self, reason: str, count: int = 1, source: str | None = None) -> None:
        """Count `count` dropped frames, for the source too when it is known."""
        self.dropped[reason] += count
        if source is not None:
            self.source(source).dropped[reason] += count

    def sent(self, source: str, t_capture_ns: int = 0) -> None:
        """Count one frame sent on, with its latency from capture when it carries a capture time."""
        self.frames_out += 1
        figures = self.source(source)
        figures.frames_out += 1
        if t_capture_ns:
            latency = (time.monotonic_ns() - t_capture_ns) / 1e6
            self.latency_ms.append(latency)
            figures.latency_ms.append(latency)

    def snapshot(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return {
            "stage": self.stage,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "fps": round(self.frames_out / elapsed, 2),
            "malformed": self.malformed,
            "dropped": dict(self.dropped),
            "process_ms": _percentiles(self.process_ms),
            "hop_ms": _percentiles(self.hop_ms),
            "latency_ms": _percentiles(self.latency_ms),
            "inbox_ms": _percentiles(self.inbox_ms),
            "queue_ms": _percentiles(self.queue_ms),
            "send_wait_ms": _percentiles(self.send_wait_ms),
            "sources": {name: figures.snapshot(elapsed) for name, figures in self.sources.items()},
        }


def summary_line(snapshots: dict[str, dict[str, Any]], publisher: str) -> str:
    """One line for the terminal: end-to-end fps and latency (at the `publisher`), drops, per-stage processing time."""
    published = snapshots.get(publisher, {})
    latency = published.get("latency_ms", {})
    parts = [f"fps {published.get('fps', 0):.1f}"]
    if latency:
        parts.append(f"latency p50 {latency['p50']:.1f} ms p99 {latency['p99']:.1f} ms")
    sources = published.get("sources", {})
    if len(sources) > 1:  # several sources: each one's rate and latency at the publisher
        parts.append("per source " + ", ".join(
            f"{name} {figures['fps']:.1f} fps" + (f" p50 {figures['latency_ms']['p50']:.0f} ms" if figures.get("latency_ms") else "")
            for name, figures in sorted(sources.items())))
    drops = {f"{name}:{reason}": n for name, snap in snapshots.items() for reason, n in snap.get("dropped", {}).items() if n}
    parts.append("drops " + (", ".join(f"{k}={v}" for k, v in sorted(drops.items())) if drops else "0"))
    stage_times = [
        f"{name} {snap['process_ms']['p50']:.1f}" for name, snap in sorted(snapshots.items()) if snap.get("process_ms")
    ]
    if stage_times:
        parts.append("ms/frame " + " ".join(stage_times))
    malformed = sum(snap.get("malformed", 0) for snap in snapshots.values())
    if malformed:
        parts.append(f"malformed {malformed}")
    restarts = {name: snap["restarts"] for name, snap in snapshots.items() if snap.get("restarts")}
    if restarts:
        parts.append("restarts " + ", ".join(f"{k}={v}" for k, v in sorted(restarts.items())))
    return " | ".join(parts)
