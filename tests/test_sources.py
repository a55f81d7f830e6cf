"""Sources that fail: a stream that goes away and comes back, a stream that never opens, a
truncated video file."""
from __future__ import annotations

import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import pytest
import numpy as np
import yaml
import zmq

from conftest import result_subscriber, astronaut_bgr, free_port, make_config, needs_model, read_jsonl, run_pipeline, start_pipeline, write_face_video
from pipeline.wire import decode

pytestmark = [needs_model, pytest.mark.slow]  # whole pipelines as processes


class MJPEGServer:
    """The public-domain astronaut photo as an endless MJPEG-over-HTTP stream on 127.0.0.1, in a thread."""

    def __init__(self, port: int, fps: float = 30.0) -> None:
        canvas = np.full((480, 640, 3), 40, np.uint8)
        canvas[80:400, 160:480] = cv2.resize(astronaut_bgr(), (320, 320))
        jpeg = cv2.imencode(".jpg", canvas)[1].tobytes()
        stopping = self.stopping = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not stopping.is_set():
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
                        self.wfile.write(jpeg + b"\r\n")
                        time.sleep(1 / fps)
                except OSError:
                    pass  # the client went away

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def _next_status(sub: zmq.Socket, want: str, results: list[int], deadline: float) -> dict:
    """Read the result stream until a status message with event `want`; collect result seqs on the way."""
    while time.monotonic() < deadline:
        if not sub.poll(500):
            continue
        topic, *parts = sub.recv_multipart()
        message = decode(parts)
        if topic == b"result":
            results.append(message.seq)
        elif topic == b"status" and message.info.get("event") == want:
            return message.info
    raise AssertionError(f"no {want!r} status message")


def test_stream_that_goes_away_is_picked_up_again(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/stream.mjpg"
    server = MJPEGServer(port)
    config = make_config(tmp_path, source={"policy": "live"})
    endpoint = yaml.safe_load(config.read_text())["endpoints"]["results"]
    process = start_pipeline("--config", str(config), "--source", url)
    context = zmq.Context()
    sub = result_subscriber(context, endpoint)
    try:
        results: list[int] = []
        deadline = time.monotonic() + 60
        while len(results) < 10:
            assert time.monotonic() < deadline and process.poll() is None
            if sub.poll(500):
                topic, *parts = sub.recv_multipart()
                if topic == b"result":
                    results.append(decode(parts).seq)
        server.stop()  # the camera goes away ...
        lost = _next_status(sub, "source_lost", results, time.monotonic() + 60)
        assert lost["uri"] == url
        server = MJPEGServer(port)  # ... and comes back on the same address
        back = _next_status(sub, "source_back", results, time.monotonic() + 60)
        assert back["gap_s"] > 0 and back["attempts"] >= 1
        before = len(results)
        while len(results) < before + 10:  # frames flow again
            assert time.monotonic() < deadline + 60 and process.poll() is None
            if sub.poll(500):
                topic, *parts = sub.recv_multipart()
                if topic == b"result":
                    results.append(decode(parts).seq)
        assert results == sorted(results)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        assert f"capture: source {url} lost; reopening" in stderr
        assert f"capture: source {url} back after" in stderr
        assert "capture:source_lost=1" in stderr  # counted in the metrics
    finally:
        server.stop()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        sub.close(0)
        context.term()


def test_stream_that_never_opens_fails_with_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/nothing.mjpg"
    result = run_pipeline("--config", str(make_config(tmp_path, source={"policy": "live"})), "--source", url)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [f"run_pipeline: error: capture: source.uri {url!r}: cannot open stream (unreadable, unsupported or unreachable)"]


def test_truncated_video_processes_what_decodes_and_reports_the_rest(tmp_path: Path) -> None:
    video = write_face_video(tmp_path / "whole.avi", frames=30)
    data = video.read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: len(data) * 6 // 10])
    result = run_pipeline("--config", str(make_config(tmp_path)), "--source", str(truncated))
    assert result.returncode == 0, result.stderr
    seqs = [r["seq"] for r in read_jsonl(tmp_path / "results.jsonl")]
    assert 5 < len(seqs) < 30 and seqs == list(range(len(seqs)))
    decoded = sum(1 for r in read_jsonl(tmp_path / "results.jsonl") if "error" not in r)
    assert f"capture: {truncated.name}: decoded {decoded} of 30 frames; the rest is corrupt or truncated" in result.stderr
