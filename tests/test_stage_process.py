"""One stage started on its own (as on another host) with tcp:// endpoints: garbage is counted
and dropped, valid frames still flow, end of stream ends it."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest
import yaml
import zmq

from conftest import REPO, astronaut_bgr, free_port, make_config, needs_model
from pipeline.wire import Message, decode, encode


@pytest.mark.slow
@needs_model  # the config names the model; the stage checks that it exists
def test_detect_stage_alone_survives_malformed_messages(tmp_path: Path) -> None:
    frames, detections = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    config = make_config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["endpoints"].update(frames=frames, detections=detections)
    config.write_text(yaml.safe_dump(raw))
    context = zmq.Context()
    push, pull = context.socket(zmq.PUSH), context.socket(zmq.PULL)
    push.setsockopt(zmq.SNDTIMEO, 20000)  # a stage that never came up fails the test instead of hanging it
    push.bind(frames)
    pull.bind(detections)
    stage = subprocess.Popen([sys.executable, "-m", "stages.detect", "--config", str(config)], cwd=REPO,
                             stderr=subprocess.PIPE, text=True)
    try:
        push.send_multipart([b"\x00garbage"])
        push.send_multipart([msgpack.packb({"v": 1, "kind": "frame"})])
        push.send_multipart([msgpack.packb({"v": 99})])
        frame = Message(kind="frame", source="s", seq=0, t_capture_ns=time.monotonic_ns(), t_wall=time.time(),
                        frame=astronaut_bgr())
        push.send_multipart(encode(frame))
        push.send_multipart(encode(Message(kind="eos", source="s", seq=1, prev_seq=0, info={"last_seq": 0})))
        assert pull.poll(30000), "no output from the detect stage"
        out = decode(pull.recv_multipart())
        assert out.seq == 0 and len(out.faces) == 1 and "detect" in out.stamps
        assert pull.poll(10000)
        assert decode(pull.recv_multipart()).kind == "eos"
        stage.wait(timeout=20)
        assert stage.returncode == 0  # alone (no supervisor), a stage exits after end of stream
        assert stage.stderr is not None and stage.stderr.read().count("dropped a malformed message") == 3
    finally:
        if stage.poll() is None:
            stage.kill()
        push.close(0)
        pull.close(0)
        context.term()


@pytest.mark.slow
@needs_model
def test_stage_alone_with_auto_endpoint_explains(tmp_path: Path) -> None:
    config = make_config(tmp_path)  # frames/detections are "auto"
    result = subprocess.run([sys.executable, "-m", "stages.detect", "--config", str(config)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "endpoints.frames is 'auto', which only run_pipeline.py can resolve" in result.stderr
