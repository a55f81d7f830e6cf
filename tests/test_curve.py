"""CurveZMQ on tcp:// endpoints: a listed client gets results and may send frames; a client
without an accepted key (no key, or a key not listed) neither receives results nor injects frames."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
import zmq
import zmq.auth

from conftest import REPO, free_port, make_config, needs_model
from pipeline.wire import Message, decode, encode


def _keys(folder: Path, name: str) -> tuple[Path, Path]:
    result = subprocess.run([sys.executable, "-m", "pipeline.keys", str(folder), name], cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return folder / f"{name}.key", folder / f"{name}.key_secret"


def _client(context: zmq.Context, kind: int, endpoint: str, secret: Path | None, server_public: Path) -> zmq.Socket:
    sock = context.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if secret is not None:
        sock.curve_publickey, sock.curve_secretkey = zmq.auth.load_certificate(str(secret))
        sock.curve_serverkey = zmq.auth.load_certificate(str(server_public))[0]
    if kind == zmq.SUB:
        sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    return sock


def _frame(seq: int, who: str) -> list:
    message = Message(kind="frame", source="s", seq=seq, prev_seq=seq - 1, t_capture_ns=time.monotonic_ns(),
                      t_wall=time.time(), info={"who": who}, frame=np.zeros((8, 8, 3), np.uint8))
    return encode(message)


def test_keys_command_refuses_to_overwrite(tmp_path: Path) -> None:
    public, secret = _keys(tmp_path, "server")
    assert public.is_file() and secret.is_file() and secret.stat().st_mode & 0o077 == 0
    again = subprocess.run([sys.executable, "-m", "pipeline.keys", str(tmp_path), "server"], cwd=REPO,
                           capture_output=True, text=True, timeout=30)
    assert again.returncode == 1 and "not overwriting" in again.stderr


@needs_model
@pytest.mark.slow
def test_only_listed_clients_get_results_or_inject_frames(tmp_path: Path) -> None:
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    server_public, server_secret = _keys(keys, "server")
    friend_public, friend_secret = _keys(keys, "friend")
    _, stranger_secret = _keys(keys, "stranger")
    allowed.mkdir()
    shutil.copy(friend_public, allowed)
    detections, results = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"  # smooth's input and output
    config = make_config(tmp_path, display={"enabled": False})
    raw = yaml.safe_load(config.read_text())
    raw["endpoints"].update(classify_out=detections, results=results)
    raw["curve"] = {"server_secret_key": str(server_secret), "allowed_clients": str(allowed)}
    config.write_text(yaml.safe_dump(raw))
    context = zmq.Context()
    # the publisher (smooth) alone, as on its own host: it binds both endpoints, so it is the CURVE server
    stage = subprocess.Popen([sys.executable, "-m", "stages.smooth", "--config", str(config)], cwd=REPO,
                             stderr=subprocess.PIPE, text=True)
    sockets = []
    try:
        plain_listener = _client(context, zmq.SUB, results, None, server_public)
        stranger_listener = _client(context, zmq.SUB, results, stranger_secret, server_public)
        plain_sender = _client(context, zmq.PUSH, detections, None, server_public)
        stranger_sender = _client(context, zmq.PUSH, detections, stranger_secret, server_public)
        sockets = [plain_listener, stranger_listener, plain_sender, stranger_sender]
        for sender in (plain_sender, stranger_sender):
            sender.send_multipart(_frame(0, "stranger"), zmq.NOBLOCK)  # queued until a handshake that never succeeds
        friend_listener = _client(context, zmq.SUB, results, friend_secret, server_public)
        friend_sender = _client(context, zmq.PUSH, detections, friend_secret, server_public)
        sockets += [friend_listener, friend_sender]
        # the publisher starts once the one subscriber it waits for (the recorder's place) has joined
        friend_sender.send_multipart(_frame(0, "friend"))
        friend_sender.send_multipart(encode(Message(kind="eos", source="s", seq=1, prev_seq=0, info={"last_seq": 0})))
        seen = []
        while True:
            assert friend_listener.poll(30000), "the listed client got no results"
            topic, *parts = friend_listener.recv_multipart()
            seen.append((topic, decode(parts)))
            if topic == b"eos":
                break
        assert [(topic, m.seq, m.info.get("who")) for topic, m in seen[:-1]] == [(b"result", 0, "friend")]
        assert stage.wait(timeout=30) == 0
        # by now every message the classifier published has reached every accepted subscriber
        assert not plain_listener.poll(200) and not stranger_listener.poll(200)
    finally:
        if stage.poll() is None:
            stage.kill()
            stage.wait()
        for sock in sockets:
            sock.close(0)
        context.term()
    assert stage.stderr is not None
    assert "Traceback" not in stage.stderr.read()
