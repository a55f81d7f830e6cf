"""Shared fixtures: free loopback ports, a real video of a real (public-domain) face, a pipeline runner."""
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
import yaml

from pipeline.transport import free_tcp_port as free_port  # noqa: F401  (tests import it from here)

REPO = Path(__file__).resolve().parent.parent
MODEL = Path(os.environ.get("LIVENESS_MODEL", REPO / "models" / "liveness.onnx"))  # the shipped model unless told
DATA = Path(os.environ.get("LIVENESS_DATA", REPO.parent / "shared" / "data"))

needs_model = pytest.mark.skipif(not MODEL.is_file(), reason="models/liveness.onnx is not built yet")
needs_data = pytest.mark.skipif(not (DATA / "manifest.csv").is_file(),
                                reason=f"shared liveness data not found at {DATA} (set LIVENESS_DATA)")
needs_weights = pytest.mark.skipif(not (REPO / "face_detector" / "weights" / "deploy.prototxt").is_file(),
                                   reason="res10 weights absent: run python -m face_detector.fetch_weights res10")


# Test modules of the training side that train or evaluate models: the slow tier with the whole
# pipelines (marked in their own files); `pytest -m "not slow"` runs the rest in a few minutes.
_SLOW_MODULES = {"test_training", "test_augment", "test_agreement", "test_evaluate_calibrate", "test_evaluate_videos",
                 "test_shared_videos"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__ in _SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def write_face_video(path: Path, frames: int = 24, fps: float = 30.0) -> Path:
    """A 640x480 video of the public-domain astronaut photo drifting across the frame."""
    photo = cv2.resize(astronaut_bgr(), (320, 320))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    for i in range(frames):
        canvas = np.full((480, 640, 3), 40, np.uint8)
        x, y = 40 + (i * 7) % 260, 60 + (i * 3) % 90
        canvas[y : y + 320, x : x + 320] = photo
        writer.write(canvas)
    writer.release()
    return path


@pytest.fixture
def loopback():
    """Open ZeroMQ sockets for one test, the way pyzmq's own tests do: one context, binds on loopback
    at a random port, linger 0, everything closed at the end (a hung peer fails the test, not CI).

        pull, endpoint = loopback(zmq.PULL)             # bound: its endpoint comes back
        push, _ = loopback(zmq.PUSH, connect=endpoint)  # connected to a given endpoint
    """
    import zmq

    context = zmq.Context()
    opened: list = []

    def open_socket(kind: int, connect: str | None = None) -> tuple:
        sock = context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        opened.append(sock)
        if connect is not None:
            sock.connect(connect)
            return sock, connect
        return sock, f"tcp://127.0.0.1:{sock.bind_to_random_port('tcp://127.0.0.1')}"

    yield open_socket
    for sock in opened:
        sock.close(0)
    context.term()


@pytest.fixture(scope="session")
def face_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_face_video(tmp_path_factory.mktemp("video") / "astronaut.avi")


def make_config(tmp_path: Path, **sections: dict) -> Path:
    """A config file based on configs/file.yaml with private endpoints and outputs in tmp_path."""
    config = yaml.safe_load((REPO / "configs" / "file.yaml").read_text())
    config["endpoints"] = {"results": f"tcp://127.0.0.1:{free_port()}"}
    config["display"] = {"window": "off", "video": str(tmp_path / "annotated.avi")}
    config["record"] = {"jsonl": str(tmp_path / "results.jsonl")}
    config["metrics_interval_s"] = 1.0
    config["classify"] = {"model": str(MODEL)}
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_pipeline(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "run_pipeline.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def start_pipeline(*args: str) -> subprocess.Popen:
    """The pipeline in its own process group, so a test can send it Ctrl-C like a terminal does."""
    return subprocess.Popen([sys.executable, str(REPO / "run_pipeline.py"), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_scores_are_time_averages(records: list[dict], smoothing_s: float) -> None:
    """Every face's published score is the time-average of its track's frame scores (liveness.tracking),
    replayed here from the frame scores in the records (rounded to 5 decimals, hence the tolerance)."""
    from liveness.tracking import ScoreSmoother

    smoother = ScoreSmoother(smoothing_s)
    for record in records:
        if not record["faces"]:
            continue
        faces = record["faces"]
        replay = smoother.update(record["seq"] / record["fps"], [f["box"] for f in faces], [f["frame_score"] for f in faces])
        for face, (track, score) in zip(faces, replay):
            assert face["track"] == track and abs(face["score"] - score) < 1e-4, (record["seq"], face, track, score)
            assert face["label"] == ("real" if face["score"] >= face["threshold"] else "fake")


def count_video_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    frames = 0
    while capture.read()[0]:
        frames += 1
    return frames


def stage_processes(marker: str) -> list[int]:
    """PIDs whose command line mentions `marker` (e.g. a run's temp folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def wait_for_line(process: subprocess.Popen, words: str, timeout: float = 60) -> list[str]:
    """Read the pipeline's stderr until a line containing `words` appears."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stderr is not None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if words in line:
            return seen
    raise AssertionError(f"never saw {words!r}; stderr so far:\n{''.join(seen)}")


def result_subscriber(context: "zmq.Context", endpoint: str) -> "zmq.Socket":
    """A raw SUB socket on a pipeline's result stream, for results and status notices."""
    import zmq

    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    for topic in (b"result", b"status"):
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(endpoint)
    return sub
