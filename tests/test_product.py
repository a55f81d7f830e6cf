"""The product as a newcomer meets it: shipped configs side by side, consumers that find the run (slow tier)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, needs_model, needs_weights, read_jsonl, write_face_video

pytestmark = [pytest.mark.slow, needs_model, needs_weights]


def _start(*args: str, cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "run_pipeline.py"), *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_runs_of_one_shipped_config_coexist_and_consumers_find_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    env = {**os.environ, "LIVENESS_RUNS_DIR": str(tmp_path / "runs")}
    monkeypatch.setenv("LIVENESS_RUNS_DIR", env["LIVENESS_RUNS_DIR"])
    video = write_face_video(tmp_path / "face.avi", frames=40)
    runs = []
    for name in ("a", "b"):
        runs.append(_start("--config", "configs/file.yaml", "--source", str(video), "--jsonl", str(tmp_path / f"{name}.jsonl"),
                           "--set", f"display.video={tmp_path / name}.avi", "--run-info", str(tmp_path / f"{name}.run.json"),
                           "--set", "source.pace=true", cwd=tmp_path, env=env))
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"{name}.run.json").is_file() for name in "ab") and time.monotonic() < deadline:
        time.sleep(0.1)
    consumer = subprocess.run([sys.executable, str(REPO / "examples" / "consumer.py"), "--run-info", str(tmp_path / "b.run.json"),
                               "--count", "2", "--timeout", "60"], capture_output=True, text=True, timeout=120)
    outs = [run.communicate(timeout=180) for run in runs]
    for run, (out, err) in zip(runs, outs):
        assert run.returncode == 0, err
        assert "liveness-pipeline: results on tcp://127.0.0.1:" in out
        assert "processed 40 of 40 frames" in err, err
    endpoints = {out.split("results on ")[1].split()[0] for out, _ in outs}
    assert len(endpoints) == 2  # each run its own port
    assert consumer.returncode == 0 and "consumer: 2 results" in consumer.stderr, consumer.stderr
    for name in "ab":
        assert [r["seq"] for r in read_jsonl(tmp_path / f"{name}.jsonl")] == list(range(40))
        assert not (tmp_path / f"{name}.run.json").exists()  # removed at the end of the run
    assert not list((tmp_path / "runs").glob("*.json"))


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_the_python_api_iterates_in_order_and_stops_every_stage(tmp_path: Path) -> None:
    import pipeline

    video = write_face_video(tmp_path / "face.avi", frames=30)
    config = {"source": {"uri": str(video)}, "display": {"enabled": False}, "endpoints": {"results": "auto"}}
    with pipeline.run(config, jsonl=tmp_path / "kept.jsonl") as results:
        seen = [result.seq for result in results]
    assert seen == list(range(30)) and results.returncode == 0
    assert [r["seq"] for r in read_jsonl(tmp_path / "kept.jsonl")] == seen  # jsonl= keeps them too
    with pipeline.run("configs/file.yaml", source=str(video), overrides=["display.enabled=false", "source.pace=true"]) as results:
        stages: list[int] = []
        for result in results:
            stages = stages or _children(results.process.pid)
            if result.seq == 3:
                break
    assert results.returncode == 130 and len(stages) == 6  # capture, detect, classify, smooth, record, the janitor
    assert not [pid for pid in stages if Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]]


def test_the_python_api_raises_the_runs_one_line(tmp_path: Path) -> None:
    import pipeline
    from pipeline.api import PipelineError
    from pipeline.config import ConfigError

    video = write_face_video(tmp_path / "face.avi", frames=5)
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="detect.workers"):
        pipeline.run("file", source=str(video), overrides=["detect.workers=0"])
    with pytest.raises(PipelineError, match="classify"):
        with pipeline.run("file", source=str(video), overrides=[f"classify.model={tmp_path / 'broken.onnx'}",
                                                                "display.enabled=false"]) as results:
            list(results)
