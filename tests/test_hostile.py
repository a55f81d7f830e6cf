"""Hostile input (issue 41): no message, consumer or fault may crash, hang, forge or silently shorten a run.

Each attack is a case, with real sockets on loopback at random ports; the whole pipelines (real
processes) are in the slow tier."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import zmq

from conftest import free_port, make_config, needs_model, read_jsonl, stage_processes, start_pipeline, wait_for_line, write_face_video
from hostile_peer import RawPeer
from pipeline.transport import MAX_CONSUMERS, MAX_SUBSCRIPTIONS, ResultPublisher


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def _receives(sub: zmq.Socket, publisher: ResultPublisher, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        publisher.send([b"result", b"x"])
        if sub.poll(20):
            return True
    return False


@pytest.fixture
def publisher():
    """A result publisher on a free loopback port, with its own context."""
    context = zmq.Context()
    port = free_port()
    publisher = ResultPublisher(context, f"tcp://127.0.0.1:{port}", 1000)
    publisher.port = port
    yield publisher
    publisher.close()
    context.term()


# ---- 1. the result publisher: consumers cannot load it ------------------------------------------
def test_subscription_flood_rebuilds_the_publisher_and_consumers_come_back(publisher, loopback) -> None:
    sub, _ = loopback(zmq.SUB, connect=publisher.endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"result")
    assert _receives(sub, publisher)
    flooder = RawPeer(publisher.port)
    try:
        for i in range(20 * MAX_SUBSCRIPTIONS):
            flooder.subscribe(i.to_bytes(4, "big") * 8)  # distinct 32-byte topics: each would stay in memory
            if i % 64 == 0:
                publisher.service()
    except OSError:
        pass  # the rebuild cut the connection
    deadline = time.monotonic() + 10
    while publisher.rebuilds == 0 and time.monotonic() < deadline:
        publisher.service()
        time.sleep(0.01)
    assert publisher.rebuilds >= 1 and publisher.subscriptions <= MAX_SUBSCRIPTIONS
    assert not flooder.alive()
    while sub.poll(0):
        sub.recv()
    assert _receives(sub, publisher, 10.0), "a well-behaved consumer did not get results again after the rebuild"


def test_an_oversized_subscription_drops_its_peer_unread(publisher) -> None:
    flooder = RawPeer(publisher.port)
    try:
        flooder.subscribe(b"r" * (4 << 20))  # 4 MB: never stored, the connection is cut
    except OSError:
        pass
    for _ in range(20):
        publisher.service()
        time.sleep(0.01)
    assert not flooder.alive() and publisher.subscriptions == 0 and publisher.rebuilds == 0


def test_idle_connections_beyond_the_limit_rebuild_the_publisher(publisher) -> None:
    peers = []
    try:
        for _ in range(MAX_CONSUMERS + 10):
            try:
                peers.append(RawPeer(publisher.port))
            except OSError:
                break  # rebuilt while this one was connecting
            publisher.service()
        deadline = time.monotonic() + 10
        while publisher.rebuilds == 0 and time.monotonic() < deadline:
            publisher.service()
            time.sleep(0.01)
        assert publisher.rebuilds >= 1 and publisher.consumers <= 16
    finally:
        for peer in peers:
            peer.close()


@pytest.fixture(scope="module")
def paced_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_face_video(tmp_path_factory.mktemp("video") / "paced.avi", frames=150)


def _pid_of(module: str, group: int) -> int:
    pids = [pid for pid in stage_processes(module) if os.getpgid(pid) == group]
    assert len(pids) == 1, pids
    return pids[0]


@needs_model
@pytest.mark.slow
def test_a_consumer_flood_neither_loads_the_publisher_nor_shortens_the_run(tmp_path: Path, paced_video: Path) -> None:
    config = make_config(tmp_path, source={"pace": True})
    port = int(__import__("yaml").safe_load(config.read_text())["endpoints"]["results"].rsplit(":", 1)[1])
    process = start_pipeline("--config", str(config), "--source", str(paced_video))
    try:
        wait_for_line(process, "stages ready")
        smooth = _pid_of("stages.smooth", process.pid)
        before = _rss_mb(smooth)
        for _ in range(4):  # four 4 MB subscriptions (the issue: 101 -> 882 MB)
            try:
                RawPeer(port).subscribe(b"r" * (4 << 20))
            except OSError:
                pass
        flooder, sent = None, 0
        while sent < 50000:  # distinct small subscriptions, reconnecting whenever the publisher cuts us off
            try:
                flooder = flooder or RawPeer(port)
                flooder.subscribe(os.urandom(48))
                sent += 1
            except OSError:
                flooder = None
        idle = [RawPeer(port) for _ in range(3 * MAX_CONSUMERS)]
        grown = _rss_mb(smooth) - before
        for peer in idle:
            peer.close()
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    print(f"smooth VmRSS {before:.0f} MB, +{grown:.1f} MB under the flood")
    assert grown < 50, f"smooth grew by {grown:.0f} MB"
    assert process.returncode == 0, stderr
    assert [r["seq"] for r in read_jsonl(tmp_path / "results.jsonl")] == list(range(150))


# ---- 3. per-role CurveZMQ key lists: a consumer's key reads results, never feeds a stage ----------
@needs_model
@pytest.mark.slow
def test_a_consumer_key_gets_results_but_cannot_send_into_a_stage(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    import yaml

    from conftest import REPO
    from test_curve import _client, _frame, _keys
    from pipeline.wire import Message, decode, encode

    keys, stages_dir, consumers_dir = tmp_path / "keys", tmp_path / "stages", tmp_path / "consumers"
    server_public, server_secret = _keys(keys, "server")
    stage_public, stage_secret = _keys(keys, "stage")
    consumer_public, consumer_secret = _keys(keys, "consumer")
    stages_dir.mkdir()
    consumers_dir.mkdir()
    shutil.copy(stage_public, stages_dir)
    shutil.copy(consumer_public, consumers_dir)
    into, results = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    config = make_config(tmp_path, display={"enabled": False})
    raw = yaml.safe_load(config.read_text())
    raw["endpoints"].update(classify_out=into, results=results)
    raw["curve"] = {"server_secret_key": str(server_secret), "allowed_clients": str(stages_dir), "allowed_consumers": str(consumers_dir)}
    config.write_text(yaml.safe_dump(raw))
    context = zmq.Context()
    stage = subprocess.Popen([sys.executable, "-m", "stages.smooth", "--config", str(config)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    sockets = []
    try:
        consumer = _client(context, zmq.SUB, results, consumer_secret, server_public)
        forger = _client(context, zmq.PUSH, into, consumer_secret, server_public)
        sender = _client(context, zmq.PUSH, into, stage_secret, server_public)
        sockets = [consumer, forger, sender]
        forger.send_multipart(_frame(0, "consumer"), zmq.NOBLOCK)  # queued until a handshake that never succeeds
        sender.send_multipart(_frame(0, "stage"))
        sender.send_multipart(encode(Message(kind="eos", source="s", seq=1, prev_seq=0, info={"last_seq": 0})))
        seen = []
        while True:
            assert consumer.poll(30000), "the consumer's key got no results"
            topic, *parts = consumer.recv_multipart()
            seen.append((topic, decode(parts)))
            if topic == b"eos":
                break
        assert [(topic, m.seq, m.info.get("who")) for topic, m in seen[:-1]] == [(b"result", 0, "stage")]
        assert stage.wait(timeout=30) == 0
    finally:
        if stage.poll() is None:
            stage.kill()
            stage.wait()
        for sock in sockets:
            sock.close(0)
        context.term()
