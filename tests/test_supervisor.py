"""The supervisor keeps the reason a stage gave for stopping, even when it arrives after the exit, and tells
a stage stopped by Ctrl-C from one that failed."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import zmq

from conftest import make_config
from pipeline.config_file import load_config
from pipeline.control import ERROR
from pipeline.graph import plan
from pipeline.supervisor import EXIT_INTERRUPTED, EXIT_STAGE_FAILED, Running, Supervisor


def _late_error(tmp_path: Path, wait_s: float) -> str | None:
    """A stage process that has exited, whose error report reaches the supervisor 0.3 s later."""
    supervisor = Supervisor(load_config(make_config(tmp_path), check_files=False))
    capture = plan(supervisor.config)[0]
    exited = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    exited.wait()
    stage = supervisor.stages[capture.key] = Running(capture, exited)
    endpoint = f"ipc://{tmp_path}/control"
    router = supervisor.context.socket(zmq.ROUTER)
    router.bind(endpoint)
    dealer = supervisor.context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.IDENTITY, capture.key.encode())
    dealer.connect(endpoint)

    def report() -> None:
        time.sleep(0.3)
        dealer.send(msgpack.packb({"type": ERROR, "text": "source.uri: folder holds no images"}))

    reporter = threading.Thread(target=report)
    reporter.start()
    try:
        supervisor.await_last_word(router, stage, wait_s=wait_s)
    finally:
        reporter.join()
        dealer.close(0)
        router.close(0)
        supervisor.context.term()
        shutil.rmtree(supervisor.run_dir, ignore_errors=True)
    return stage.error


def test_error_reported_after_the_exit_is_kept(tmp_path: Path) -> None:
    assert _late_error(tmp_path, wait_s=1.0) == "source.uri: folder holds no images"


def test_without_waiting_the_late_error_would_be_lost(tmp_path: Path) -> None:
    # The situation the wait exists for (seen in CI on a loaded machine): the exit is seen first.
    assert _late_error(tmp_path, wait_s=0.0) is None


class _Poll:
    """A control socket with nothing to read; optionally Ctrl-C arrives while the supervisor waits on it."""

    def __init__(self, interrupt: bool) -> None:
        self.interrupt = interrupt

    def poll(self, timeout: int = 0) -> int:
        if self.interrupt:
            os.kill(os.getpid(), signal.SIGINT)  # the real signal, handled by the supervisor's own handler
        return 0


def _run_with_a_stage_that_exited_0(tmp_path: Path, interrupt: bool) -> int:
    supervisor = Supervisor(load_config(make_config(tmp_path), check_files=False))
    detect = next(i for i in supervisor.graph.instances() if i.node.name == "detect")
    exited = subprocess.Popen([sys.executable, "-c", "pass"])  # as a stage does once Ctrl-C stopped it
    exited.wait()
    supervisor.stages[detect.key] = Running(detect, exited, ready=True)
    previous = signal.signal(signal.SIGINT, supervisor._on_signal)
    try:
        return supervisor._supervise(_Poll(interrupt))  # type: ignore[arg-type]
    finally:
        signal.signal(signal.SIGINT, previous)
        supervisor.context.term()
        shutil.rmtree(supervisor.run_dir, ignore_errors=True)


def test_stage_exits_after_ctrl_c_are_not_failures(tmp_path: Path) -> None:
    # Ctrl-C reaches every process of the group: a stage can be gone before the supervisor's loop
    # looks at the flag its own handler set (seen as a rare "stage classify stopped" under load).
    assert _run_with_a_stage_that_exited_0(tmp_path, interrupt=True) == EXIT_INTERRUPTED


def test_a_stage_that_exits_early_without_ctrl_c_fails_the_run(tmp_path: Path) -> None:
    assert _run_with_a_stage_that_exited_0(tmp_path, interrupt=False) == EXIT_STAGE_FAILED
