"""End to end with real processes and real sockets: the whole pipeline on real videos."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (count_video_frames, make_config, needs_model, read_jsonl, run_pipeline, stage_processes,
                      wait_for_line,
                      start_pipeline)
from pipeline.client import subscribe

pytestmark = [needs_model, pytest.mark.slow]  # whole pipelines as processes


def test_video_through_every_stage(tmp_path: Path, face_video: Path) -> None:
    config = make_config(tmp_path)
    result = run_pipeline("--config", str(config), "--source", str(face_video))
    assert result.returncode == 0, result.stderr
    records = read_jsonl(tmp_path / "results.jsonl")
    assert [r["seq"] for r in records] == list(range(24))  # one line per frame, in order, none missing
    assert count_video_frames(tmp_path / "annotated.avi") == 24
    for record in records:
        assert len(record["faces"]) == 1, record  # the photo holds one face
        face = record["faces"][0]
        assert 0.0 <= face["score"] <= 1.0 and face["label"] in ("real", "fake")
        assert face["label"] == ("real" if face["score"] >= face["threshold"] else "fake")
        assert record["size"] == [640, 480] and record["latency_ms"] > 0
    assert "end of stream: every frame processed" in result.stderr


def test_two_detection_workers_keep_order(tmp_path: Path, face_video: Path) -> None:
    config = make_config(tmp_path, detect={"workers": 2}, classify={"smoothing_s": 0})
    result = run_pipeline("--config", str(config), "--source", str(face_video))
    assert result.returncode == 0, result.stderr
    assert "detect.0" in result.stderr and "detect.1" in result.stderr
    records = read_jsonl(tmp_path / "results.jsonl")
    assert [r["seq"] for r in records] == list(range(24))
    # averaging off: each frame's own score, no tracks
    assert all(set(face) == {"box", "det_conf", "score", "label", "threshold"} for r in records for face in r["faces"])


def test_image_folder_with_an_unreadable_image(tmp_path: Path, face_video: Path) -> None:
    import cv2

    folder = tmp_path / "images"
    folder.mkdir()
    capture = cv2.VideoCapture(str(face_video))
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:03d}.png"), capture.read()[1])
    (folder / "001b.jpg").write_bytes(b"not an image")
    result = run_pipeline("--config", str(make_config(tmp_path)), "--source", str(folder))
    assert result.returncode == 0, result.stderr
    records = read_jsonl(tmp_path / "results.jsonl")
    assert [r["seq"] for r in records] == [0, 1, 2, 3]
    assert records[2]["error"].startswith("unreadable image 001b.jpg") and records[2]["faces"] == []
    assert len(records[3]["faces"]) == 1
    # stills are independent pictures: each image is scored alone, no track, no average
    assert all("track" not in face and "frame_score" not in face for r in records for face in r["faces"])


def test_live_policy_bounds_latency_and_counts_drops(tmp_path: Path, face_video: Path) -> None:
    # 30 fps offered, the classifier needs 100 ms a frame: frames must be dropped at the
    # entrance, not queued, so no frame waits behind others.
    config = make_config(tmp_path, source={"policy": "live", "pace": True, "loop": True, "max_frames": 60},
                         classify={"debug_delay_ms": 100.0})
    result = run_pipeline("--config", str(config), "--source", str(face_video))
    assert result.returncode == 0, result.stderr
    records = read_jsonl(tmp_path / "results.jsonl")
    seqs = [r["seq"] for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert 3 <= len(records) < 60  # some frames dropped ...
    assert "capture:busy=" in result.stderr  # ... and counted
    # No queue builds up: when a frame was captured, the frame three results earlier was done
    # (one frame in flight, one waiting in the entrance's slot, one more if a stalled frame's
    # credit expired). Judged against the run's own results, not a fixed time, so a starved
    # machine that stalls every stage cannot fail it; a queue would put a frame behind dozens.
    captured = [r["t_wall"] for r in records]
    done = [r["t_wall"] + r["latency_ms"] / 1000.0 for r in records]
    for i in range(3, len(records)):
        assert captured[i] >= done[i - 3] - 0.05, (i, seqs, [r["latency_ms"] for r in records])


def test_consumer_attached_mid_run_and_ctrl_c(tmp_path: Path, face_video: Path) -> None:
    config = make_config(tmp_path, source={"pace": True, "loop": True})
    process = start_pipeline("--config", str(config), "--source", str(face_video))
    try:
        wait_for_line(process, "all 6 stages ready")
        time.sleep(1.0)  # the run is well under way when the consumer attaches
        endpoint = __import__("yaml").safe_load(config.read_text())["endpoints"]["results"]
        results = []
        for result in subscribe(endpoint, timeout_s=10):
            results.append(result)
            if len(results) == 10:
                break
        assert len(results) == 10
        assert results[0].seq > 0  # a late consumer starts with the next result
        assert [r.seq for r in results] == list(range(results[0].seq, results[0].seq + 10))
        assert all(len(r.faces) == 1 for r in results)
        marker = f"--worker"  # every stage process carries it
        pids_before = [pid for pid in stage_processes(marker) if os.getpgid(pid) == process.pid]
        assert len(pids_before) == 6  # capture, detect, classify, smooth, display, record
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        process.wait(timeout=20)
        assert process.returncode == 130
        time.sleep(0.2)
        assert not [pid for pid in pids_before if Path(f"/proc/{pid}").exists() and
                    "Z" not in (Path(f"/proc/{pid}/stat").read_text().split()[2])]
        assert not list(Path("/tmp").glob("liveness-run-*/config.yaml")) or all(
            str(process.pid) not in str(p) for p in Path("/tmp").glob("liveness-run-*"))
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_sigterm_to_the_supervisor_stops_every_stage(tmp_path: Path, face_video: Path) -> None:
    config = make_config(tmp_path, source={"pace": True, "loop": True})
    process = start_pipeline("--config", str(config), "--source", str(face_video))
    try:
        lines = wait_for_line(process, "all 6 stages ready")
        children = [pid for pid in stage_processes("--worker") if os.getpgid(pid) == process.pid]
        run_dirs = {arg for pid in children for arg in Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
                    if arg.endswith("config.yaml")}
        process.send_signal(signal.SIGTERM)  # only the supervisor: it must stop the others itself
        process.wait(timeout=20)
        assert process.returncode == 130, lines
        time.sleep(0.2)
        assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
        assert run_dirs and not any(Path(p).exists() for p in run_dirs)  # private ipc folder removed
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_dead_stage_stops_the_run_naming_it(tmp_path: Path, face_video: Path) -> None:
    config = make_config(tmp_path, source={"pace": True, "loop": True}, restart={"policy": "never"})
    process = start_pipeline("--config", str(config), "--source", str(face_video))
    try:
        wait_for_line(process, "all 6 stages ready")
        detect = [pid for pid in stage_processes("stages.detect") if os.getpgid(pid) == process.pid]
        os.kill(detect[0], signal.SIGKILL)
        _, stderr = process.communicate(timeout=20)
        assert process.returncode == 1
        assert "stage detect stopped (killed by signal 9)" in stderr
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
