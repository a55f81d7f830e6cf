"""Kill -9 any stage in the middle of a lossless run: it is restarted and every frame's result
still reaches the sinks exactly once, in order."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from conftest import result_subscriber, count_video_frames, make_config, needs_model, stage_processes, start_pipeline, write_face_video

pytestmark = [needs_model, pytest.mark.slow]  # whole pipelines as processes
FRAMES = 90


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_face_video(tmp_path_factory.mktemp("video") / "long.avi", frames=FRAMES)


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def _stage_pid(module: str, group: int) -> int:
    pids = [pid for pid in stage_processes(module) if os.getpgid(pid) == group]
    assert len(pids) == 1, pids
    return pids[0]


def _kill_stage_after(process, stage: str, jsonl: Path, lines: int) -> str:
    """kill -9 the run's `stage` once `jsonl` holds `lines` results; the run's stderr when it has ended."""
    try:
        deadline = time.monotonic() + 60
        while _lines(jsonl) < lines:
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1]
            time.sleep(0.02)
        os.kill(_stage_pid(f"stages.{stage}", process.pid), signal.SIGKILL)
        return process.communicate(timeout=90)[1]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.parametrize("stage", ["capture", "detect", "classify", "smooth", "record", "display"])
def test_kill_9_mid_run_loses_nothing(tmp_path: Path, long_video: Path, stage: str) -> None:
    config = make_config(tmp_path, source={"pace": True},
                         restart={"policy": "on-failure", "backoff_s": 0.1, "max_restarts": 2})
    jsonl = tmp_path / "results.jsonl"
    process = start_pipeline("--config", str(config), "--source", str(long_video))
    stderr = _kill_stage_after(process, stage, jsonl, 15)  # well into the run, with frames in flight everywhere
    assert process.returncode == 0, stderr
    key = stage
    assert f"stage {key} stopped (killed by signal 9); restart 1 of 2" in stderr
    assert f"restarts {key}=1" in stderr  # counted in the metrics summary
    import json

    seqs = [json.loads(line)["seq"] for line in jsonl.read_text().splitlines()]
    assert seqs == list(range(FRAMES)), stderr  # each frame once, in order, none missing
    assert count_video_frames(tmp_path / "annotated.avi") == FRAMES



@pytest.mark.parametrize("stage", ["capture", "classify"])
def test_kill_9_with_a_live_source_among_files_loses_no_file_frame(tmp_path: Path, long_video: Path, stage: str) -> None:
    """Two files and a live source (a looping file at its frame rate): after a stage is killed,
    every frame of each file still arrives once, in order; the live one goes on with its newest."""
    import json

    import yaml

    config = make_config(tmp_path, source={"pace": True}, restart={"policy": "on-failure", "backoff_s": 0.1, "max_restarts": 2})
    short = write_face_video(tmp_path / "short.avi", frames=40)
    settings = yaml.safe_load(config.read_text())
    settings["sources"] = [{"uri": str(long_video)}, {"uri": str(short)},
                           {"uri": str(short), "policy": "live", "loop": True, "max_frames": 60}]
    config.write_text(yaml.safe_dump(settings))
    jsonl = tmp_path / "results.jsonl"
    process = start_pipeline("--config", str(config))
    stderr = _kill_stage_after(process, stage, jsonl, 30)
    assert process.returncode == 0, stderr
    assert f"stage {stage} stopped (killed by signal 9); restart 1 of 2" in stderr
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    seqs = [r["seq"] for r in records]
    assert seqs == sorted(set(seqs)), stderr  # once each, in the order they entered
    for source, frames in (("source0", FRAMES), ("source1", 40)):
        assert [r["source_seq"] for r in records if r["source"] == source] == list(range(frames)), (source, stderr)
    live = [r for r in records if r["source"] == "source2"]
    assert live and all(r["seq"] % 3 == 2 and r["seq"] < 3 * 60 for r in live)


def test_policy_never_still_stops_the_run(tmp_path: Path, long_video: Path) -> None:
    config = make_config(tmp_path, source={"pace": True}, restart={"policy": "on-failure", "record": {"policy": "never"}})
    jsonl = tmp_path / "results.jsonl"
    process = start_pipeline("--config", str(config), "--source", str(long_video))
    try:
        while _lines(jsonl) < 3:
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.02)
        os.kill(_stage_pid("stages.record", process.pid), signal.SIGKILL)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 1
    assert "stage record stopped (killed by signal 9); stopping the pipeline" in stderr


def test_live_run_goes_on_with_the_newest_frames_after_restarts(tmp_path: Path, long_video: Path) -> None:
    import yaml
    import zmq

    from pipeline.wire import decode

    config = make_config(tmp_path, source={"policy": "live", "pace": True, "loop": True},
                         restart={"policy": "on-failure", "backoff_s": 0.1})
    endpoint = yaml.safe_load(config.read_text())["endpoints"]["results"]
    process = start_pipeline("--config", str(config), "--source", str(long_video))
    context = zmq.Context()
    sub = result_subscriber(context, endpoint)
    deadline = time.monotonic() + 90

    def read_until(results: int, status: str | None = None) -> None:
        seen, found = 0, status is None
        while seen < results or not found:
            assert time.monotonic() < deadline and process.poll() is None, "the live run stalled"
            if sub.poll(500):
                topic, *parts = sub.recv_multipart()
                seen += topic == b"result"
                found = found or (topic == b"status" and decode(parts).info.get("event") == status)

    try:
        read_until(10)
        os.kill(_stage_pid("stages.capture", process.pid), signal.SIGKILL)
        read_until(10, status="capture_restarted")  # numbering starts again, and results flow again
        os.kill(_stage_pid("stages.classify", process.pid), signal.SIGKILL)
        read_until(10)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        sub.close(0)
        context.term()
    assert process.returncode == 130, stderr
    assert "stage capture stopped (killed by signal 9); restart 1 of 5" in stderr
    assert "stage classify stopped (killed by signal 9); restart 1 of 5" in stderr
    assert "Traceback" not in stderr


def test_restarts_are_exported_to_prometheus() -> None:
    from pipeline.prometheus import _SnapshotCollector

    families = {m.name: m for m in _SnapshotCollector(lambda: {"record": {"restarts": 2}, "capture": {}}).collect()}
    samples = {s.labels["stage"]: s.value for s in families["liveness_stage_restarts"].samples}
    assert samples == {"capture": 0, "record": 2}
