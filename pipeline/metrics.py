"""Per-stage counters and timings, kept by the framework (never by a stage)."""
from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_WINDOW = 2048  # recent samples kept per timing


def _percentiles(samples: deque[float]) -> dict[str, float]:
    if not samples:
        return {}
    values = np.fromiter(samples, dtype=np.float64)
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "mean": round(float(values.mean()), 3)}


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
    started: float = field(default_factory=time.monotonic)

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] += count

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
        }


def summary_line(snapshots: dict[str, dict[str, Any]], publisher: str) -> str:
    """One line for the terminal: end-to-end fps and latency (at the `publisher`), drops, per-stage processing time."""
    published = snapshots.get(publisher, {})
    latency = published.get("latency_ms", {})
    parts = [f"fps {published.get('fps', 0):.1f}"]
    if latency:
        parts.append(f"latency p50 {latency['p50']:.1f} ms p99 {latency['p99']:.1f} ms")
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
