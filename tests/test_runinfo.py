"""Ports that never collide by accident: `auto` result endpoints, run-info files, finding a run; progress; the CLI's help."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.client import find_endpoint
from pipeline.config import PipelineConfig
from pipeline.config_file import find_config, load_config
from pipeline.progress import Progress
from pipeline.runinfo import find_run, remove_run_info, resolve_ports, running, write_run_info

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "runs"
    monkeypatch.setenv("LIVENESS_RUNS_DIR", str(folder))
    return folder


def test_auto_and_port_zero_get_free_ports() -> None:
    config = PipelineConfig.model_validate({"endpoints": {"results": "auto", "frames": "tcp://0.0.0.0:0"}})
    resolved = resolve_ports(config)
    results, frames = resolved.endpoints.results, resolved.endpoints.model_dump()["frames"]
    assert results.startswith("tcp://127.0.0.1:") and int(results.rsplit(":", 1)[1]) > 0
    assert frames.startswith("tcp://0.0.0.0:") and int(frames.rsplit(":", 1)[1]) > 0
    assert resolve_ports(config).endpoints.results != results  # never the same port twice
    fixed = PipelineConfig.model_validate({"endpoints": {"results": "tcp://127.0.0.1:5599"}})
    assert resolve_ports(fixed).endpoints.results == "tcp://127.0.0.1:5599"


def test_every_shipped_config_picks_its_port() -> None:
    for path in sorted((REPO / "configs").glob("*.yaml")):
        config = load_config(path, check_files=False)
        assert config.endpoints.results == "auto", path.name


def test_run_info_is_found_while_the_run_lives(runs: Path) -> None:
    config = resolve_ports(PipelineConfig.model_validate({"endpoints": {"results": "auto"}, "record": {"jsonl": "x.jsonl"}}))
    path = write_run_info(config, REPO / "configs" / "file.yaml")
    info = json.loads(path.read_text())
    assert info["results"] == config.endpoints.results and info["pid"] == os.getpid() and info["jsonl"] == "x.jsonl"
    assert find_run()["results"] == config.endpoints.results
    assert find_run("file")["path"] == str(path) and find_run("configs/file.yaml")["name"] == "file"
    assert find_endpoint(run_info=str(path)) == config.endpoints.results == find_endpoint(config="file")
    with pytest.raises(ValueError, match="no pipeline of config 'default' is running"):
        find_run("default")
    stale = runs / "file-999999999.json"  # a run killed before it could remove its file
    stale.write_text(json.dumps({**info, "pid": 999999999, "started": info["started"] + 1}))
    assert [found["path"] for found in running()] == [str(path)]
    assert not stale.exists()  # removed on the way
    remove_run_info(path)
    with pytest.raises(ValueError, match="no pipeline is running on this machine"):
        find_run()


def test_a_pid_given_to_another_process_is_not_the_run(runs: Path) -> None:
    config = resolve_ports(PipelineConfig.model_validate({"endpoints": {"results": "auto"}}))
    path = write_run_info(config, REPO / "configs" / "file.yaml")
    info = json.loads(path.read_text())
    assert isinstance(info["pid_started"], int) and running()
    path.write_text(json.dumps({**info, "pid_started": info["pid_started"] - 1}))  # our pid, an earlier process
    assert running() == [] and not path.exists()


def test_a_dead_runs_folder_takes_only_its_own_run_info_with_it(tmp_path: Path, runs: Path) -> None:
    from pipeline.lifetime import RUN_INFO_LIST, remove_run_folder

    folder = tmp_path / "liveness-run-x"
    folder.mkdir()
    (folder / "supervisor.pid").write_text("4242")
    runs.mkdir()
    own, other, plain = runs / "file-4242.json", runs / "file-77.json", tmp_path / "notes.json"
    own.write_text(json.dumps({"pid": 4242, "results": "tcp://127.0.0.1:1"}))
    other.write_text(json.dumps({"pid": 77, "results": "tcp://127.0.0.1:2"}))
    plain.write_text("[1, 2]")
    (folder / RUN_INFO_LIST).write_text(f"{own}\n{other}\n{plain}\n{tmp_path / 'missing.json'}\n")
    remove_run_folder(folder)
    assert not folder.exists() and not own.exists()
    assert other.exists() and plain.exists()  # listed, but not this run's: left alone


def test_unreadable_run_info_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read run info"):
        find_endpoint(run_info=str(tmp_path / "none.json"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not a run-info file"):
        find_endpoint(run_info=str(tmp_path / "bad.json"))


def test_configs_are_found_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config("configs/file.yaml") == REPO / "configs" / "file.yaml"
    assert find_config("file") == REPO / "configs" / "file.yaml" == find_config("file.yaml")
    (tmp_path / "mine.yaml").write_text("{}")
    assert find_config("mine.yaml") == Path("mine.yaml")
    assert find_config("nothing.yaml") == Path("nothing.yaml")


def test_progress_lines() -> None:
    progress = Progress(90)
    assert progress.line({"frames_out": 0, "fps": 0.0}) == "frame 0 of 90 (0%), 0.0 fps"
    assert progress.line({"frames_out": 30, "fps": 10.0}) == "frame 30 of 90 (33%), 10.0 fps, about 6s left"
    assert progress.line({"frames_out": 90}, final=True).startswith("processed 90 of 90 frames in 0s")
    assert Progress(None).line({"frames_out": 12, "fps": 3.0}) == "frame 12, 3.0 fps"


def test_help_names_configs_outputs_and_exit_codes() -> None:
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--help"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0
    for text in ("configs/file.yaml", "configs/default.yaml", "--source", "--jsonl", "--set", "JSON lines", "run-info",
                 "exit status", "130"):
        assert text in done.stdout, text
    version = subprocess.run([sys.executable, "-m", "pipeline.cli", "--version"], capture_output=True, text=True, cwd=REPO)
    assert version.returncode == 0 and version.stdout.startswith("liveness-pipeline ")


def test_make_run_passes_options_and_records_json_lines() -> None:
    done = subprocess.run(["make", "-n", "-W", "setup", "run", "SOURCE=video.mp4", "ARGS=--set detect.workers=2"],
                          capture_output=True, text=True, cwd=REPO)
    line = next(line for line in done.stdout.splitlines() if "run_pipeline.py" in line)
    assert '--source "video.mp4" --jsonl "runs/results.jsonl" --set detect.workers=2' in line


def test_image_folder_results_carry_the_file_name_and_no_frame_rate(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    from pipeline.wire import decode, encode, result_record
    from stages.capture import Capture

    for name in ("b.png", "a.jpg"):
        cv2.imwrite(str(tmp_path / name), np.full((40, 60, 3), 90, np.uint8))
    capture = Capture()
    capture.setup(PipelineConfig.model_validate({"source": {"uri": str(tmp_path)}}))
    messages = list(capture.frames())
    assert [m.info["file"] for m in messages] == ["a.jpg", "b.png"]
    assert [m.info["file"] for m in capture.frames(start=1)] == ["b.png"]  # a resumed capture names the right image
    record = result_record(decode(encode(messages[1])))
    assert record["file"] == "b.png" and "fps" not in record and record["size"] == [60, 40]


@pytest.mark.skipif(not (REPO / "face_detector" / "weights" / "deploy.prototxt").is_file(), reason="res10 weights absent")
def test_the_demo_boxes_its_face_in_every_frame(tmp_path: Path) -> None:
    import cv2

    from face_detector import create_detector
    from examples.make_demo_video import write_demo_video

    detect = load_config(REPO / "configs" / "file.yaml", check_files=False).detect
    assert detect.min_size == 20  # the documented default
    detector = create_detector(detect.backend, confidence=detect.confidence, min_size=detect.min_size)
    write_demo_video(tmp_path / "demo.avi")
    capture = cv2.VideoCapture(str(tmp_path / "demo.avi"))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 90
    assert [len(detector.detect(frame)) for frame in frames[::3]] == [1] * 30  # every third frame: one face, boxed


def test_a_hand_started_stage_says_what_it_is() -> None:
    from pipeline.graph import build_graph
    from pipeline.runner import describe_process

    config = load_config(REPO / "configs" / "two_workers.yaml", ["endpoints.results=tcp://127.0.0.1:5599",
                                                                  "endpoints.frames=tcp://127.0.0.1:5550"], check_files=False)
    node = build_graph(config).node("detect")
    line = describe_process(node, 1, config, "configs/two_workers.yaml")
    assert line.startswith("detect.1: stage detect (stages.detect, process 2 of 2) of configs/two_workers.yaml, started by hand;")
    assert "in frames tcp://127.0.0.1:5550" in line and "\n" not in line


def test_a_looping_file_counts_up_to_max_frames() -> None:
    from pipeline.progress import finish_counting, start_counting

    config = PipelineConfig.model_validate({"source": {"uri": "video.mp4", "loop": True, "max_frames": 500}})
    assert start_counting(config) is None and finish_counting(None, config) == 500
    endless = PipelineConfig.model_validate({"source": {"uri": "video.mp4", "loop": True}})
    assert finish_counting(None, endless) is None


def test_progress_never_counts_past_the_total() -> None:
    assert Progress(40).line({"frames_out": 42}, final=True).startswith("processed 40 of 40 frames")
