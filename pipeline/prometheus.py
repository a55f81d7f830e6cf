"""Serve the supervisor's per-stage metrics on a Prometheus endpoint (`metrics.prometheus_port`).

Stages already send their `StageMetrics` snapshots to the supervisor every second; this module
turns the latest snapshots into Prometheus metric families at scrape time, so nothing is kept
twice and a stage never serves HTTP itself.

    exporter = PrometheusExporter(lambda: {"detect.0": {...snapshot...}})
    exporter.start("127.0.0.1", 9100)   # http://127.0.0.1:9100/metrics
    exporter.stop()
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

Snapshots = dict[str, dict[str, Any]]

# snapshot timing key -> (metric name, help); exported in seconds, as Prometheus expects
_TIMINGS = {
    "process_ms": ("liveness_stage_process_seconds", "Time a stage spends processing one frame"),
    "hop_ms": ("liveness_stage_hop_seconds", "Transport time to this stage: from the previous stage's send, or from when this stage was free, to its receive"),
    "inbox_ms": ("liveness_stage_inbox_seconds", "Time a frame sat in this stage's input queue while the stage was busy"),
    "queue_ms": ("liveness_stage_queue_seconds", "Time a frame waits inside a stage before processing (reorder buffer, bursts)"),
    "send_wait_ms": ("liveness_stage_send_wait_seconds", "Time a stage waits for room in a full downstream queue"),
    "latency_ms": ("liveness_stage_latency_seconds", "Capture to this stage's send"),
}
_QUANTILES = {"p50": "0.5", "p99": "0.99"}


class _SnapshotCollector:
    """A custom collector: reads the supervisor's latest snapshots on every scrape."""

    def __init__(self, snapshots: Callable[[], Snapshots]) -> None:
        self._snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        snapshots = dict(self._snapshots())  # a copy: the supervisor thread replaces entries meanwhile
        frames_in = CounterMetricFamily("liveness_stage_frames_in", "Frames a stage received", labels=["stage"])
        frames_out = CounterMetricFamily("liveness_stage_frames_out", "Frames a stage sent on", labels=["stage"])
        malformed = CounterMetricFamily("liveness_stage_malformed", "Malformed messages dropped", labels=["stage"])
        dropped = CounterMetricFamily("liveness_stage_dropped", "Frames dropped, by reason", labels=["stage", "reason"])
        fps = GaugeMetricFamily("liveness_stage_fps", "Frames sent per second since the stage started", labels=["stage"])
        restarts = CounterMetricFamily("liveness_stage_restarts", "Times run_pipeline.py restarted the stage (restart.policy)", labels=["stage"])
        timings = {key: GaugeMetricFamily(name, help_text, labels=["stage", "quantile"]) for key, (name, help_text) in _TIMINGS.items()}
        means = {key: GaugeMetricFamily(f"{name}_mean", f"{help_text} (mean)", labels=["stage"]) for key, (name, help_text) in _TIMINGS.items()}
        # several sources share a stage: each one's frames, drops and latency, labelled by source
        source_frames = CounterMetricFamily("liveness_source_frames_out", "Frames of one source a stage sent on", labels=["stage", "source"])
        source_dropped = CounterMetricFamily("liveness_source_dropped", "Frames of one source dropped, by reason", labels=["stage", "source", "reason"])
        source_fps = GaugeMetricFamily("liveness_source_fps", "Frames of one source sent per second since the stage started", labels=["stage", "source"])
        source_latency = GaugeMetricFamily("liveness_source_latency_seconds", "Capture to this stage's send, for one source", labels=["stage", "source", "quantile"])
        for stage, snap in sorted(snapshots.items()):
            for source, figures in sorted(snap.get("sources", {}).items()):
                source_frames.add_metric([stage, source], figures.get("frames_out", 0))
                source_fps.add_metric([stage, source], figures.get("fps", 0.0))
                for reason, count in figures.get("dropped", {}).items():
                    source_dropped.add_metric([stage, source, reason], count)
                latency = figures.get("latency_ms") or {}
                for name, quantile in _QUANTILES.items():
                    if name in latency:
                        source_latency.add_metric([stage, source, quantile], latency[name] / 1000.0)
            frames_in.add_metric([stage], snap.get("frames_in", 0))
            frames_out.add_metric([stage], snap.get("frames_out", 0))
            malformed.add_metric([stage], snap.get("malformed", 0))
            fps.add_metric([stage], snap.get("fps", 0.0))
            restarts.add_metric([stage], snap.get("restarts", 0))
            for reason, count in snap.get("dropped", {}).items():
                dropped.add_metric([stage, reason], count)
            for key in _TIMINGS:
                values = snap.get(key) or {}
                for name, quantile in _QUANTILES.items():
                    if name in values:
                        timings[key].add_metric([stage, quantile], values[name] / 1000.0)
                if "mean" in values:
                    means[key].add_metric([stage], values["mean"] / 1000.0)
        yield from (frames_in, frames_out, malformed, dropped, fps, restarts, *timings.values(), *means.values(),
                    source_frames, source_dropped, source_fps, source_latency)


class PrometheusExporter:
    """An HTTP server thread answering /metrics from the latest stage snapshots."""

    def __init__(self, snapshots: Callable[[], Snapshots]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_SnapshotCollector(snapshots))
        self._server: Any = None
        self._thread: Any = None

    def start(self, host: str, port: int) -> None:
        """Bind and serve in a daemon thread. Raises OSError when the address cannot be used."""
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
