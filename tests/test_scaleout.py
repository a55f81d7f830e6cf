"""Classification scaled out (classify.workers > 1): dispatch, N classifiers, smooth; over tcp:// as across hosts."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import assert_scores_are_time_averages, count_video_frames, free_port, make_config, needs_model, read_jsonl, run_pipeline
from pipeline.config_file import load_config
from pipeline.graph import plan

pytestmark = needs_model
slow = pytest.mark.slow  # whole pipelines as processes


def _tcp_endpoints(config: Path) -> None:
    """Every data endpoint on its own loopback tcp port, as a multi-host deployment would have them."""
    raw = yaml.safe_load(config.read_text())
    for name in ("frames", "detections", "classify_in", "classify_out", "annotated"):
        raw["endpoints"][name] = f"tcp://127.0.0.1:{free_port()}"
    config.write_text(yaml.safe_dump(raw))


@slow
def test_two_classifiers_two_detectors_over_tcp_keep_order(tmp_path: Path, face_video: Path) -> None:
    config = make_config(tmp_path, detect={"workers": 2}, classify={"workers": 2})
    _tcp_endpoints(config)
    result = run_pipeline("--config", str(config), "--source", str(face_video))
    assert result.returncode == 0, result.stderr
    ready = "all 9 stages ready: capture, detect.0, detect.1, dispatch, classify.0, classify.1, smooth, display, record"
    assert ready in result.stderr, result.stderr
    records = read_jsonl(tmp_path / "results.jsonl")
    assert [r["seq"] for r in records] == list(range(24))  # every frame, once, in order
    assert all(len(r["faces"]) == 1 and r["faces"][0]["label"] in ("real", "fake") for r in records)
    assert all(r["latency_ms"] > 0 for r in records)  # capture to smooth's publication
    assert_scores_are_time_averages(records, smoothing_s=0.5)  # smooth averages in capture order
    assert {r["faces"][0]["track"] for r in records} == {0}
    assert count_video_frames(tmp_path / "annotated.avi") == 24
    summary = [line for line in result.stderr.splitlines() if "ms/frame" in line][-1]
    assert "classify.0" in summary and "classify.1" in summary  # both classifiers did work


@slow
def test_two_classifiers_live_results_in_order(tmp_path: Path, face_video: Path) -> None:
    config = make_config(tmp_path, classify={"workers": 2},
                         source={"policy": "live", "pace": True, "loop": True, "max_frames": 45})
    result = run_pipeline("--config", str(config), "--source", str(face_video))
    assert result.returncode == 0, result.stderr
    seqs = [r["seq"] for r in read_jsonl(tmp_path / "results.jsonl")]
    assert seqs == sorted(set(seqs)) and len(seqs) >= 5


def test_the_graph_by_worker_counts(tmp_path: Path) -> None:
    one = load_config(make_config(tmp_path), check_files=False)
    assert [i.key for i in plan(one)] == ["capture", "detect", "classify", "smooth", "display", "record"]
    three = load_config(make_config(tmp_path, classify={"workers": 3}, display={"enabled": False}), check_files=False)
    assert [i.key for i in plan(three)] == ["capture", "detect", "dispatch", "classify.0", "classify.1", "classify.2",
                                            "smooth", "record"]
