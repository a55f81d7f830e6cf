"""Per-stage metrics: the Prometheus endpoint scraped over real HTTP during a real run."""
from __future__ import annotations

import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port, make_config, needs_model, run_pipeline, start_pipeline
from pipeline.metrics import StageMetrics, summary_line


def _scrape(port: int) -> dict[tuple[str, str], float]:
    """{(metric name, label text): value} from one scrape of /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        match = re.match(r"^(\w+)\{([^}]*)\} (\S+)$", line)
        if match:
            values[(match.group(1), match.group(2))] = float(match.group(3))
    return values


def _value(values: dict[tuple[str, str], float], name: str, stage: str, extra: str = "") -> float | None:
    for (metric, labels), value in values.items():
        if metric == name and f'stage="{stage}"' in labels and extra in labels:
            return value
    return None


@needs_model
@pytest.mark.slow
def test_prometheus_endpoint_during_a_run(tmp_path: Path, face_video: Path) -> None:
    port = free_port()
    config = make_config(tmp_path, source={"pace": True, "loop": True}, metrics={"prometheus_port": port})
    process = start_pipeline("--config", str(config), "--source", str(face_video))
    try:
        values: dict = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # stages report every second; wait for a few results
            try:
                values = _scrape(port)
            except OSError:
                values = {}
            # each stage reports on its own one-second clock: wait until every figure asserted is in
            wanted = [("liveness_stage_hop_seconds", "classify"), ("liveness_stage_process_seconds", "detect"),
                      ("liveness_stage_inbox_seconds", "detect"), ("liveness_stage_queue_seconds", "classify"),
                      ("liveness_stage_latency_seconds", "classify"), ("liveness_stage_send_wait_seconds", "capture")]
            if (_value(values, "liveness_stage_frames_out_total", "classify") or 0) >= 5 and \
                    all(_value(values, name, stage, 'quantile="0.5"') is not None for name, stage in wanted):
                break
            time.sleep(0.3)
        for stage in ("capture", "detect", "classify", "smooth", "display", "record"):
            assert _value(values, "liveness_stage_frames_in_total", stage) is not None, (stage, values)
        assert _value(values, "liveness_stage_frames_out_total", "classify") >= 5
        assert _value(values, "liveness_stage_process_seconds", "detect", 'quantile="0.5"') > 0
        assert _value(values, "liveness_stage_hop_seconds", "classify", 'quantile="0.99"') >= 0
        assert _value(values, "liveness_stage_queue_seconds", "classify", 'quantile="0.5"') >= 0
        assert _value(values, "liveness_stage_inbox_seconds", "detect", 'quantile="0.5"') >= 0
        assert _value(values, "liveness_stage_latency_seconds", "classify", 'quantile="0.5"') > 0
        assert _value(values, "liveness_stage_send_wait_seconds", "capture", 'quantile="0.5"') >= 0
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
        assert process.returncode == 130
        assert f"Prometheus metrics on http://127.0.0.1:{port}/metrics" in stderr
        with pytest.raises(OSError):  # the endpoint goes away with the run
            _scrape(port)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@needs_model
@pytest.mark.slow
def test_prometheus_port_in_use_is_one_line(tmp_path: Path, face_video: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = make_config(tmp_path, metrics={"prometheus_port": port})
        result = run_pipeline("--config", str(config), "--source", str(face_video), timeout=30)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "metrics.prometheus_port" in errors[0] and str(port) in errors[0], result.stderr


def test_queue_and_send_wait_in_snapshot_and_summary() -> None:
    metrics = StageMetrics("smooth")
    metrics.frames_out = 3
    metrics.queue_ms.extend([1.0, 2.0, 3.0])
    metrics.send_wait_ms.extend([0.0, 0.0, 4.0])
    metrics.latency_ms.extend([10.0, 20.0, 30.0])
    snapshot = metrics.snapshot()
    assert snapshot["queue_ms"]["p50"] == 2.0 and snapshot["send_wait_ms"]["p50"] == 0.0
    line = summary_line({"smooth": snapshot, "classify.0": StageMetrics("classify.0").snapshot()}, publisher="smooth")
    assert "latency p50 20.0 ms" in line  # the publisher's figures lead the line
