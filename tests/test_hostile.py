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


def test_a_stalled_consumer_never_holds_the_publisher_back(publisher, loopback) -> None:
    sub, _ = loopback(zmq.SUB, connect=publisher.endpoint)
    sub.setsockopt(zmq.RCVHWM, 1)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    assert _receives(sub, publisher)  # joined; from now on it never reads
    before = _rss_mb(os.getpid())
    started = time.monotonic()
    for _ in range(50000):
        publisher.send([b"result", bytes(1024)])
    assert time.monotonic() - started < 10  # never waited for the consumer
    assert _rss_mb(os.getpid()) - before < 50


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
        idle = []
        for _ in range(3 * MAX_CONSUMERS):  # idle connections, past the limit (the publisher rebuilds)
            try:
                idle.append(RawPeer(port))
            except OSError:
                pass  # cut off during its handshake by a rebuild
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
    assert "the socket was closed and bound again" in stderr and "consumers_reset" in stderr
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


# ---- 2. role-checked, validated input at every socket -------------------------------------------
def _smooth_over_loopback(tmp_path: Path, loopback, messages: list[list]) -> list[tuple[bytes, object]]:
    """Run smooth (by hand: no supervisor) on these input messages; what it published, in order."""
    import numpy as np  # noqa: F401

    from pipeline.wire import decode
    from test_graph import _config, _runner

    sub, results = loopback(zmq.SUB, connect=f"tcp://127.0.0.1:{free_port()}")  # the recorder's place
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    push, into = loopback(zmq.PUSH, connect=f"tcp://127.0.0.1:{free_port()}")
    config = _config(tmp_path, endpoints={"classify_out": into, "results": results}, display={"enabled": False})
    for parts in messages:
        push.send_multipart(parts)
    started = time.monotonic()
    assert _runner(config, "smooth").run() == 0
    assert time.monotonic() - started < 30
    published = []
    while sub.poll(2000):
        topic, *parts = sub.recv_multipart()
        published.append((topic, decode(parts)))
        if topic == b"eos":
            break
    return published


def _eos(last: int) -> list:
    from pipeline.wire import Message, encode

    return encode(Message(kind="eos", source="s", seq=last + 1, prev_seq=last, info={"last_seq": last}))


def _frame_parts(seq: int, prev_seq: int, **fields) -> list:
    import numpy as np

    from pipeline.wire import Face, Message, encode

    message = Message(kind="frame", source="s", seq=seq, prev_seq=prev_seq, t_capture_ns=time.monotonic_ns(), t_wall=time.time(),
                      faces=[Face([10, 10, 40, 40], 0.99, 0.3, "fake", 0.5)], info={"fps": 30.0, "size": [64, 48]},
                      frame=np.zeros((48, 64, 3), np.uint8))
    for key, value in fields.items():
        setattr(message, key, value)
    return encode(message)


def test_a_result_where_a_frame_belongs_cannot_replace_a_frames_result(tmp_path: Path, loopback) -> None:
    from pipeline.wire import Face

    forged = _frame_parts(1, 0, frame=None, faces=[Face([10, 10, 40, 40], 0.99, 1.0, "real", 0.0)])  # no pixels, passed-through faces
    published = _smooth_over_loopback(tmp_path, loopback, [_frame_parts(0, -1), forged, _frame_parts(1, 0), _frame_parts(2, 1), _eos(2)])
    frames = [m for topic, m in published if topic == b"result"]
    assert [m.seq for m in frames] == [0, 1, 2] and published[-1][0] == b"eos"
    assert all(m.faces[0].frame_score == 0.3 and m.faces[0].threshold == 0.5 for m in frames)  # the true results


def test_a_huge_seq_cannot_silence_later_frames(tmp_path: Path, loopback) -> None:
    published = _smooth_over_loopback(tmp_path, loopback, [_frame_parts(0, -1), _frame_parts(2**40, 0), _frame_parts(1, 0),
                                                            _frame_parts(2, 1), _eos(2)])
    assert [m.seq for topic, m in published if topic == b"result"] == [0, 1, 2]


def test_an_early_end_of_stream_cannot_shorten_the_run(tmp_path: Path, loopback) -> None:
    published = _smooth_over_loopback(tmp_path, loopback, [_frame_parts(0, -1), _frame_parts(2, 1), _eos(0), _frame_parts(1, 0), _eos(2)])
    assert [(topic, m.seq) for topic, m in published] == [(b"result", 0), (b"result", 1), (b"result", 2), (b"eos", 3)]


def test_odd_fps_and_deep_nesting_never_reach_the_json_lines(tmp_path: Path, loopback) -> None:
    import json

    import msgpack

    from pipeline.wire import WireError, decode, result_record

    nan_fps = _frame_parts(0, -1, info={"fps": float("nan"), "size": [64, 48]})
    text_fps = _frame_parts(1, 0, info={"fps": "thirty", "size": [64, 48]})
    published = _smooth_over_loopback(tmp_path, loopback, [nan_fps, text_fps, _frame_parts(2, 1), _eos(2)])
    records = [result_record(m) for topic, m in published if topic == b"result"]
    assert [r["seq"] for r in records] == [0, 1, 2] and "fps" not in records[0] and "fps" not in records[1]
    for record in records:
        json.dumps(record, allow_nan=False)
    deep: object = 1
    for _ in range(990):
        deep = [deep]
    header = msgpack.unpackb(_frame_parts(0, -1)[0])
    header["info"]["deep"] = deep
    with pytest.raises(WireError):
        decode([msgpack.packb(header)])


@needs_model
def test_odd_frames_and_huge_boxes_do_not_crash_classify(tmp_path: Path, loopback) -> None:
    import numpy as np

    from pipeline.wire import Face, decode
    from test_graph import _config, _runner

    pull, out = loopback(zmq.PULL)
    push, into = loopback(zmq.PUSH, connect=f"tcp://127.0.0.1:{free_port()}")
    config = _config(tmp_path, endpoints={"detections": into, "classify_out": out})
    odd = [(np.zeros((48, 64, 1), np.uint8), [0, 0, 10**6, 10**6]), (np.zeros((48, 64, 4), np.uint8), [0, 0, 2**31 - 1, 2**31 - 1]),
           (np.zeros((64, 64, 3), np.uint8), [-20000, -20000, 20000, 20000]), (np.zeros((64, 64, 3), np.uint8), [5, 5, 5, 40])]
    for seq, (image, box) in enumerate(odd):
        push.send_multipart(_frame_parts(seq, seq - 1, frame=image, faces=[Face(box, 0.9)]))
    push.send_multipart(_eos(len(odd) - 1))
    started = time.monotonic()
    assert _runner(config, "classify").run() == 0
    assert time.monotonic() - started < 30
    got = [decode(pull.recv_multipart()) for _ in range(len(odd) + 1)]
    assert [m.kind for m in got] == ["frame"] * len(odd) + ["eos"]
    assert all(0 <= face.score <= 1 for m in got[:3] for face in m.faces) and [len(m.faces) for m in got[:4]] == [1, 1, 1, 0]
    assert got[0].faces[0].box == [0, 0, 128, 96] and got[1].frame.shape[2] == 3


@needs_model
@pytest.mark.slow
def test_forged_messages_on_a_tcp_edge_neither_end_forge_nor_hang_a_lossless_run(tmp_path: Path, paced_video: Path) -> None:
    """The issue's four single-message attacks on smooth's tcp input, in one supervised lossless run."""
    import numpy as np

    from pipeline.wire import Face

    into = f"tcp://127.0.0.1:{free_port()}"
    config = make_config(tmp_path, source={"pace": True}, endpoints={"classify_out": into})
    process = start_pipeline("--config", str(config), "--source", str(paced_video))
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    try:
        wait_for_line(process, "stages ready")
        push.connect(into)
        time.sleep(1.0)  # well into the run
        image = np.zeros((480, 640, 3), np.uint8)
        push.send_multipart(_eos(20))  # an early end of stream
        push.send_multipart(_frame_parts(100, 99, frame=None, faces=[Face([64, 178, 286, 507], 0.99, 1.0, "real", 0.0)]))  # a forged result
        push.send_multipart(_frame_parts(2**40, 40, frame=image))  # a huge seq
        marked = _frame_parts(60, 59, frame=image, info={"fps": 30.0, "size": [640, 480], "epoch": 10**6, "floor": 0})
        push.send_multipart(marked)  # an epoch nobody announced
        _, stderr = process.communicate(timeout=120)
    finally:
        push.close(0)
        context.term()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, stderr
    records = read_jsonl(tmp_path / "results.jsonl")
    assert [r["seq"] for r in records] == list(range(150)), stderr
    assert not [r for r in records for face in r["faces"] if face["threshold"] == 0.0 or face["score"] == 1.0]
    assert "cannot have sent" in stderr or "malformed" in stderr


# ---- 6. nothing lost on disk; absurd frames refused at the source ------------------------------
def _record(tmp_path: Path, jsonl: str, attempt: int = 0):
    from pipeline.config_file import load_config
    from stages.record import Record

    config = load_config(make_config(tmp_path, record={"jsonl": jsonl}), check_files=False)
    record = Record()
    record.attempt = attempt
    record.setup(config)
    return record


def _result(seq: int):
    from pipeline.wire import Face, Message

    return Message(kind="frame", source="s", seq=seq, prev_seq=seq - 1, t_wall=1.0, info={"size": [64, 48]},
                   faces=[Face([1, 2, 3, 4], 0.9, 0.7, "real", 0.5)])


def test_an_earlier_results_file_is_untouched_until_the_first_result(tmp_path: Path) -> None:
    jsonl = tmp_path / "earlier.jsonl"
    jsonl.write_text('{"seq": 0}\n' * 145)
    record = _record(tmp_path, str(jsonl))
    record.teardown()  # the run failed to start: no result ever came
    assert jsonl.read_text() == '{"seq": 0}\n' * 145
    record = _record(tmp_path, str(jsonl))
    record.process(_result(0))
    record.end_of_stream()
    assert [r["seq"] for r in read_jsonl(jsonl)] == [0]


def test_a_full_disk_stops_with_the_file_named_and_no_half_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from pipeline.stage import StageError

    jsonl = tmp_path / "full.jsonl"
    record = _record(tmp_path, str(jsonl))
    record.process(_result(0))
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        if len(data) > 20:
            return real_write(fd, data[:20])  # the disk takes part of the line, then nothing
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(StageError) as caught:
        record.process(_result(1))
    monkeypatch.undo()
    record.teardown()
    assert str(jsonl) in str(caught.value) and "No space left on device" in str(caught.value) and "\n" not in str(caught.value)
    assert [r["seq"] for r in read_jsonl(jsonl)] == [0]  # the half line was cut
    if Path("/dev/full").exists():
        record = _record(tmp_path, "/dev/full")
        with pytest.raises(StageError, match="record.jsonl /dev/full: cannot write"):
            record.process(_result(0))
        record.teardown()


def test_capture_refuses_an_absurd_frame_with_a_reason(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    from pipeline.config_file import load_config
    from pipeline.wire import MAX_SIDE
    from stages.capture import Capture

    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), np.zeros((48, 64, 3), np.uint8))
    cv2.imwrite(str(folder / "1.png"), np.zeros((4, MAX_SIDE + 8, 3), np.uint8))  # wider than any frame may be
    capture = Capture()
    capture.setup(load_config(make_config(tmp_path, source={"uri": str(folder)}), check_files=False))
    frames = list(capture.frames())
    capture.teardown()
    assert frames[0].frame is not None and frames[1].frame is None
    assert "refused" in frames[1].info["error"] and str(MAX_SIDE) in frames[1].info["error"]


@needs_model
@pytest.mark.slow
def test_a_run_that_fails_to_start_keeps_the_earlier_results_file(tmp_path: Path, paced_video: Path) -> None:
    import socket

    from conftest import run_pipeline

    jsonl = tmp_path / "results.jsonl"
    jsonl.write_text('{"seq": 0}\n' * 145)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config = make_config(tmp_path, endpoints={"results": f"tcp://127.0.0.1:{busy.getsockname()[1]}"})
        result = run_pipeline("--config", str(config), "--source", str(paced_video), timeout=90)
    assert result.returncode != 0
    assert jsonl.read_text() == '{"seq": 0}\n' * 145


@needs_model
@pytest.mark.slow
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_a_full_disk_ends_the_run_with_one_line_and_no_restarts(tmp_path: Path, paced_video: Path) -> None:
    from conftest import run_pipeline

    result = run_pipeline("--config", str(make_config(tmp_path)), "--source", str(paced_video), "--jsonl", "/dev/full", timeout=90)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors and "record.jsonl /dev/full: cannot write (No space left on device)" in errors[0], result.stderr
    assert "restart 1 of" not in result.stderr and "Traceback" not in result.stderr


# ---- 5. supervisor lifetime: stages die with it, its folder goes too -----------------------------
def _run_folder_of(pid: int, timeout: float = 30) -> Path:
    import tempfile

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for folder in Path(tempfile.gettempdir()).glob("liveness-run-*"):
            try:
                if (folder / "supervisor.pid").read_text() == str(pid):
                    return folder
            except OSError:
                continue
        time.sleep(0.02)
    raise AssertionError(f"no run folder of {pid}")


@needs_model
@pytest.mark.slow
@pytest.mark.parametrize("moment", ["start-up", "mid-run"])
def test_kill_9_of_the_supervisor_leaves_no_stage_and_no_folder(tmp_path: Path, paced_video: Path, moment: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    monkeypatch.setenv("LIVENESS_RUNS_DIR", str(runs))  # the run-info file goes with the folder
    config = make_config(tmp_path, source={"pace": True})
    process = start_pipeline("--config", str(config), "--source", str(paced_video))
    try:
        folder = _run_folder_of(process.pid)
        if moment == "start-up":
            deadline = time.monotonic() + 30
            while not stage_processes(str(folder)) and time.monotonic() < deadline:
                time.sleep(0.01)  # the first stage has just been started: still importing
        else:
            wait_for_line(process, "stages ready")
            time.sleep(1.0)
        assert stage_processes(str(folder))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 5
        while (stage_processes(str(folder)) or folder.exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not stage_processes(str(folder)), "stages outlived their supervisor"
        assert not folder.exists(), "the run folder was left behind"
        if moment == "mid-run":
            assert not list(runs.glob("*.json")), "the run-info file was left behind"
    finally:
        for pid in stage_processes(str(tmp_path)):
            os.kill(pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
            process.wait()



def test_a_stage_whose_starting_thread_dies_first_still_removes_the_folder(tmp_path: Path) -> None:
    """PDEATHSIG fires when the parent's starting *thread* exits: a supervisor killed outright can
    lose that thread first, so the stage is signalled while getppid() still names the dying
    process. Here a parent starts the stage from a thread that ends, and the parent exits 0.2 s
    later: the stage must see it go, remove the run folder and exit, not just exit."""
    import subprocess
    import sys
    import textwrap

    folder = tmp_path / "liveness-run-test"
    folder.mkdir()
    (folder / "graph.json").write_text("{}")
    (tmp_path / "slow_stage.py").write_text("import time\ntime.sleep(30)\n")
    parent = textwrap.dedent(f"""
        import os, subprocess, sys, threading, time
        env = {{**os.environ, "PYTHONPATH": os.pathsep.join([{str(tmp_path)!r}, os.getcwd()])}}
        def start():
            child = subprocess.Popen([sys.executable, "-m", "pipeline.lifetime", str(os.getpid()), {str(folder)!r}, "slow_stage"], env=env)
            print(child.pid, flush=True)
            time.sleep(1.0)  # the stage is past its start, sleeping under lifetime's handler
        thread = threading.Thread(target=start)
        thread.start()
        thread.join()  # the thread that started the stage ends: SIGTERM to the stage, parent alive
        time.sleep(0.2)
        os._exit(0)
    """)
    done = subprocess.run([sys.executable, "-c", parent], cwd=Path(__file__).resolve().parent.parent,
                          capture_output=True, text=True, timeout=30)
    child = int(done.stdout.split()[0])
    deadline = time.monotonic() + 5
    while (folder.exists() or Path(f"/proc/{child}").exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = Path(f"/proc/{child}").exists()
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive, "the stage outlived its parent"
    assert not folder.exists(), "the stage exited without removing the run folder"


def test_the_janitor_cleans_up_after_a_supervisor_killed_while_a_stage_ignores_it(tmp_path: Path) -> None:
    """A stage that does not go when its supervisor is killed (here: it ignores SIGTERM, as one in
    the middle of its own exit cannot act on it) is killed by the run's janitor, which then removes
    the run folder and the run-info file the folder lists."""
    import subprocess
    import sys
    import textwrap

    folder = tmp_path / "liveness-run-janitor"
    info = tmp_path / "runs" / "file-1.json"
    (tmp_path / "stubborn_stage.py").write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n")
    supervisor = textwrap.dedent(f"""
        import json, os, subprocess, sys, time
        from pathlib import Path
        from pipeline.lifetime import RUN_INFO_LIST, start_janitor
        folder, info = Path({str(folder)!r}), Path({str(info)!r})
        folder.mkdir()
        (folder / "supervisor.pid").write_text(str(os.getpid()))
        info.parent.mkdir()
        info.write_text(json.dumps({{"pid": os.getpid(), "results": "tcp://127.0.0.1:1"}}))
        (folder / RUN_INFO_LIST).write_text(str(info) + "\\n")
        pipe, janitor = start_janitor(folder)
        env = {{**os.environ, "PYTHONPATH": os.pathsep.join([{str(tmp_path)!r}, os.getcwd()])}}
        stage = subprocess.Popen([sys.executable, "-m", "pipeline.lifetime", str(os.getpid()), str(folder), "stubborn_stage"], env=env)
        print(stage.pid, flush=True)
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", supervisor], cwd=Path(__file__).resolve().parent.parent,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        stage = int(process.stdout.readline())
        time.sleep(1.0)  # the stage is past lifetime's start and ignores SIGTERM
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 6
        while (folder.exists() or Path(f"/proc/{stage}").exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        alive = Path(f"/proc/{stage}").exists() and "Z" not in Path(f"/proc/{stage}/stat").read_text().split()[2]
        assert not alive, "the stubborn stage outlived its supervisor by 6 s"
        assert not folder.exists() and not info.exists(), "the janitor left the run folder or its run info"
    finally:
        if process.poll() is None:
            process.kill()
        try:
            os.kill(stage, signal.SIGKILL)
        except (OSError, UnboundLocalError):
            pass


# ---- 4. the lossless watchdog: a frame lost without a stage dying is sent again, or named ---------
@needs_model
@pytest.mark.slow
def test_frames_taken_by_a_strangers_socket_are_sent_again(tmp_path: Path, paced_video: Path) -> None:
    frames = f"tcp://127.0.0.1:{free_port()}"
    config = make_config(tmp_path, source={"pace": True}, endpoints={"frames": frames})
    process = start_pipeline("--config", str(config), "--source", str(paced_video))
    context = zmq.Context()
    rogue = context.socket(zmq.PULL)
    rogue.setsockopt(zmq.LINGER, 0)
    try:
        wait_for_line(process, "stages ready")
        time.sleep(0.5)
        rogue.connect(frames)  # round robin hands it every other frame
        taken = 0
        while taken < 8 and rogue.poll(10000):
            rogue.recv_multipart()
            taken += 1
        rogue.close(0)  # gone, with the frames
        _, stderr = process.communicate(timeout=120)
    finally:
        context.term()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert taken == 8
    assert process.returncode == 0, stderr
    assert "not acknowledged" in stderr and "resending" in stderr
    assert [r["seq"] for r in read_jsonl(tmp_path / "results.jsonl")] == list(range(150))


@needs_model
@pytest.mark.slow
def test_a_frame_that_cannot_be_delivered_ends_the_run_naming_it(tmp_path: Path, face_video: Path) -> None:
    import yaml

    from conftest import run_pipeline

    config = make_config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["stages"] = [{"name": "loser", "module": "tests.hostile_stage", "after": "classify", "settings": {"lose": 5}}]
    config.write_text(yaml.safe_dump(raw))
    started = time.monotonic()
    result = run_pipeline("--config", str(config), "--source", str(face_video), timeout=200)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "frame 5 never reached the sinks" in errors[0], result.stderr
    assert time.monotonic() - started < 150  # bounded: the watchdog's resends, then the end
    assert [r["seq"] for r in read_jsonl(tmp_path / "results.jsonl")] == list(range(5))  # nothing after the gap, nothing twice


def test_out_of_order_frames_cannot_grow_the_reorder_buffer(tmp_path: Path, loopback) -> None:
    """Frames that never complete a chain are held only up to the bound (the issue: 300 x 1 MB, +310 MB)."""
    from pipeline.reorder import Reorderer
    from pipeline.wire import decode

    reorder = Reorderer(max_ahead=1 << 16, max_pending=96)
    for seq in range(2, 600, 2):  # every other frame missing: nothing is ever released
        assert reorder.push(decode(_frame_parts(seq, seq - 1))) == []
    assert len(reorder) == 96 and reorder.refused == 299 - 96


@needs_model
@pytest.mark.slow
@pytest.mark.parametrize("stage", ["detect", "smooth"])
def test_a_stage_killed_twice_within_a_second_is_restarted_twice(tmp_path: Path, paced_video: Path, stage: str) -> None:
    """With the default restart policy: the second kill lands while the first restart is starting up."""
    config = make_config(tmp_path, source={"pace": True})
    jsonl = tmp_path / "results.jsonl"
    process = start_pipeline("--config", str(config), "--source", str(paced_video))
    try:
        wait_for_line(process, "stages ready")
        deadline = time.monotonic() + 60
        while not jsonl.is_file() or jsonl.read_bytes().count(b"\n") < 20:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        first = _pid_of(f"stages.{stage}", process.pid)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while True:  # its restart (after the 0.5 s back-off), killed as soon as it exists
            pids = [pid for pid in stage_processes(f"stages.{stage}") if pid != first and os.getpgid(pid) == process.pid]
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                break
            assert time.monotonic() < deadline, "never restarted"
            time.sleep(0.01)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, stderr
    assert "restart 2 of 5" in stderr
    assert [r["seq"] for r in read_jsonl(jsonl)] == list(range(150)), stderr
