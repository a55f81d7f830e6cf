"""Several files or folders through one pipeline: `sources` (or `--source` given several times), one
frame of each in turn, results tagged by source with each source's own frame numbers and order."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, needs_model, needs_weights, read_jsonl, write_face_video
from pipeline.cli import source_overrides
from pipeline.config import ConfigError, PipelineConfig
from pipeline.config_file import load_config
from pipeline.wire import Face, Message, WireError, decode, encode, result_record


@pytest.fixture
def two_sources(tmp_path: Path) -> tuple[Path, Path]:
    video = write_face_video(tmp_path / "face.avi", frames=5)
    folder = tmp_path / "stills"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(folder / name), np.full((48, 64, 3), 80, np.uint8))
    return video, folder


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(f"source: {{policy: lossless, pace: false}}\nclassify: {{model: {REPO / 'models' / 'liveness.onnx'}}}\n")
    return path


def test_sources_take_source_fields_and_their_own_ids(tmp_path: Path, two_sources: tuple[Path, Path]) -> None:
    video, folder = two_sources
    config = load_config(_config_file(tmp_path), source_overrides([str(video), str(folder)]))
    assert [(s.id, s.uri, s.policy) for s in config.sources] == [("source0", str(video), "lossless"), ("source1", str(folder), "lossless")]
    assert config.policy() == "lossless" and config.all_sources() == config.sources
    assert source_overrides([str(video)]) == [f'source.uri="{video}"'] and source_overrides(None) == []
    again = PipelineConfig.model_validate(config.model_dump())  # the resolved config handed to every stage
    assert again.sources == config.sources
    named = PipelineConfig.model_validate({"sources": [{"uri": "a.mp4", "id": "door"}, {"uri": "b.mp4"}]})
    assert [s.id for s in named.sources] == ["door", "source1"]


@pytest.mark.parametrize("sources, field, problem", [
    ('[{"uri": "VIDEO", "id": "a"}, {"uri": "VIDEO", "id": "a"}]', "sources", "every source needs its own id"),
    ('[{"uri": "VIDEO"}, {"uri": "/no/such.mp4"}]', "sources.1.uri", "no such file or folder"),
    ('[{"uri": "VIDEO", "fps": 3}]', "sources.0.fps", "unknown field (known: uri, id,"),
])
def test_bad_sources_are_one_line(tmp_path: Path, two_sources: tuple[Path, Path], sources: str, field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(_config_file(tmp_path), [f"sources={sources.replace('VIDEO', str(two_sources[0]))}"])
    assert f": {field}: {problem}" in str(error.value) and "\n" not in str(error.value)


def test_capture_takes_a_frame_of_each_in_turn(tmp_path: Path, two_sources: tuple[Path, Path]) -> None:
    from stages.capture import Capture

    capture = Capture()
    capture.setup(load_config(_config_file(tmp_path), source_overrides([str(p) for p in two_sources])))
    messages = list(capture.frames())
    assert [m.seq for m in messages] == list(range(7))
    assert [(m.source, m.info["source_seq"]) for m in messages] == [
        ("source0", 0), ("source1", 0), ("source0", 1), ("source1", 1), ("source0", 2), ("source0", 3), ("source0", 4)]
    assert [m.seq for m in messages if m.info.get("source_last")] == [3, 6]
    assert messages[1].info["file"] == "a.png" and messages[0].info["fps"] == 30.0
    resumed = list(capture.frames(start=3))  # a restarted capture resumes after the acknowledged frames
    assert [(m.seq, m.source, m.info["source_seq"]) for m in resumed][:2] == [(3, "source1", 1), (4, "source0", 2)]
    capture.teardown()


def test_smooth_follows_faces_within_each_source() -> None:
    from stages.smooth import Smooth

    smooth = Smooth()
    smooth.setup(PipelineConfig.model_validate({"sources": [{"uri": "a.mp4"}, {"uri": "b.mp4"}]}))
    out = []
    for seq, (source, own) in enumerate([("source0", 0), ("source1", 0), ("source0", 1), ("source1", 1)]):
        face = Face(box=[10, 10, 60, 60], det_conf=0.9, score=0.9 if source == "source0" else 0.1, label="real", threshold=0.5)
        out += smooth.process(Message(kind="frame", source=source, seq=seq, info={"fps": 30.0, "source_seq": own}, faces=[face]))
    assert [m.faces[0].track for m in out] == [0, 0, 0, 0]  # each source's own track 0, never merged
    assert [m.faces[0].label for m in out] == ["real", "fake", "real", "fake"]  # nor their scores averaged together


def test_results_carry_each_sources_frame_number_and_last_frame() -> None:
    message = Message(kind="frame", source="source1", seq=9, info={"source_seq": 4, "source_last": True, "fps": 25.0})
    record = result_record(decode(encode(message)))
    assert record["source"] == "source1" and record["seq"] == 9 and record["source_seq"] == 4 and record["source_last"] is True
    for bad in ({"source_seq": -1}, {"source_seq": "4"}, {"source_last": 1}):
        with pytest.raises(WireError, match="source_"):
            decode(encode(Message(kind="frame", source="s", seq=0, info=bad)))


@pytest.mark.slow
@needs_model
@needs_weights
def test_two_videos_through_file_yaml_every_frame_once_in_order_per_source(tmp_path: Path) -> None:
    first, second = write_face_video(tmp_path / "first.avi", frames=24), write_face_video(tmp_path / "second.avi", frames=11, fps=25.0)
    env = {**os.environ, "LIVENESS_RUNS_DIR": str(tmp_path / "runs")}
    done = subprocess.run([sys.executable, str(REPO / "run_pipeline.py"), "--config", "configs/file.yaml", "--source", str(first),
                           "--source", str(second), "--jsonl", str(tmp_path / "out.jsonl"), "--set", f"display.video={tmp_path / 'out.avi'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "processed 35 of 35 frames" in done.stderr
    records = read_jsonl(tmp_path / "out.jsonl")
    assert [r["seq"] for r in records] == list(range(35))
    for source, frames, fps in (("source0", 24, 30.0), ("source1", 11, 25.0)):
        own = [r for r in records if r["source"] == source]
        assert [r["source_seq"] for r in own] == list(range(frames)) and {r["fps"] for r in own} == {fps}
        assert [r["source_seq"] for r in own if r.get("source_last")] == [frames - 1]
        assert all(len(r["faces"]) == 1 for r in own)
        capture = cv2.VideoCapture(str(tmp_path / f"out_{source}.avi"))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == frames


def test_a_live_source_among_files_sends_its_newest_frame_at_its_turn(tmp_path: Path) -> None:
    from stages.capture import Capture

    still, live = write_face_video(tmp_path / "still.avi", frames=4), write_face_video(tmp_path / "live.avi", frames=30)
    config = PipelineConfig.model_validate({"sources": [{"uri": str(still), "policy": "lossless"},
                                                        {"uri": str(live), "policy": "live", "loop": True, "max_frames": 6}]})
    assert config.policy() == "lossless" and config.lossless_window() == 4 and config.seq_span() == 8
    capture = Capture()
    capture.setup(config)
    messages = []
    for message in capture.frames():
        messages.append(message)
        time.sleep(0.1)  # a slow pipeline: the live file (30 fps) has moved on ~3 frames by its next turn
    capture.teardown()
    files = [m for m in messages if m.source == "source0"]
    assert [m.seq for m in files] == [0, 2, 4, 6] and [m.info["source_seq"] for m in files] == [0, 1, 2, 3]
    assert [m.seq for m in files if m.info.get("source_last")] == [6]
    lives = [m for m in messages if m.source == "source1"]
    assert 3 <= len(lives) <= 6 and all(m.seq % 2 == 1 and m.seq < 12 for m in lives)  # turn r is frame 2r + 1
    own = [m.info["source_seq"] for m in lives]
    assert own == sorted(own) and own[-1] - own[0] > len(lives) - 1  # the newest, not the next
    assert capture.skipped == own[-1] + 1 - len(lives)  # every live frame read and not sent counts as dropped

    resumed = Capture()  # a restarted capture (a new process in a run) resumes each file where the floor left it
    resumed.setup(config)
    after = [(m.seq, m.source, m.info["source_seq"]) for m in resumed.frames(start=3) if m.source == "source0"]
    resumed.teardown()
    assert after == [(4, "source0", 2), (6, "source0", 3)]


@pytest.mark.slow
@needs_model
@needs_weights
def test_files_and_live_sources_through_one_pipeline(tmp_path: Path) -> None:
    """Two files lossless and two live sources (looping files played at their rate) in one run:
    every file frame once and in order, the live ones' newest frames at their turns, tagged."""
    files = [write_face_video(tmp_path / "a.avi", frames=20), write_face_video(tmp_path / "b.avi", frames=9, fps=25.0)]
    lives = [write_face_video(tmp_path / f"live{i}.avi", frames=30) for i in range(2)]
    sources = [{"uri": str(p)} for p in files] + [{"uri": str(p), "policy": "live", "loop": True, "max_frames": 12} for p in lives]
    config = tmp_path / "four.yaml"
    config.write_text((REPO / "configs" / "file.yaml").read_text().replace("models/liveness.onnx", str(REPO / "models" / "liveness.onnx"))
                      + f"sources: {json.dumps(sources)}\n")
    env = {**os.environ, "LIVENESS_RUNS_DIR": str(tmp_path / "runs")}
    done = subprocess.run([sys.executable, str(REPO / "run_pipeline.py"), "--config", str(config), "--jsonl", str(tmp_path / "out.jsonl"),
                           "--set", f"display.video={tmp_path / 'out.avi'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    records = read_jsonl(tmp_path / "out.jsonl")
    seqs = [r["seq"] for r in records]
    assert seqs == sorted(set(seqs))  # one result a frame, in the order they entered
    for source, frames in (("source0", 20), ("source1", 9)):
        own = [r for r in records if r["source"] == source]
        assert [r["source_seq"] for r in own] == list(range(frames)), source
        assert [r["source_seq"] for r in own if r.get("source_last")] == [frames - 1]
        assert all(len(r["faces"]) == 1 for r in own)
    latencies = []
    for source in ("source2", "source3"):
        own = [r for r in records if r["source"] == source]
        assert 1 <= len(own) <= 12 and all(r["seq"] % 4 == int(source[-1]) for r in own), source
        assert [r["source_seq"] for r in own] == sorted({r["source_seq"] for r in own})
        latencies += [r["latency_ms"] for r in own]
    print(f"\nlive sources among files: {len(latencies)} live frames, latency p50 {np.median(latencies):.0f} ms, "
          f"max {max(latencies):.0f} ms")
