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
