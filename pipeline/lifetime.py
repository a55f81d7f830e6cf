"""Stage processes live no longer than their supervisor, from their first instruction.

    python -m pipeline.lifetime SUPERVISOR_PID RUN_FOLDER pipeline.runner ARGS...
    python -m pipeline.lifetime --janitor RUN_FOLDER PIPE_FD      (start_janitor)

run_pipeline.py starts every stage this way. Before anything heavy is imported, the process asks
Linux for SIGTERM when its parent dies (PR_SET_PDEATHSIG, through ctypes), checks once that the
parent is still the supervisor (it may have died already), and until the runner takes over,
SIGTERM ends it at once. A stage that outlives its supervisor removes the run's private folder
on its way out (`orphaned_exit`), with the run-info files the folder lists, so a run killed with
SIGKILL leaves neither processes nor its `liveness-run-*` folder nor a run-info file. A stage that
is already stopping when the supervisor dies cannot tell; for that moment the supervisor starts a
small janitor process first, which outlives it, waits for its stages to go and removes what is left. Elsewhere than Linux the runner's own look at its parent applies.
"""
from __future__ import annotations

import ctypes
import json
import os
import runpy
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

RUN_FOLDER_PREFIX = "liveness-run-"
_PR_SET_PDEATHSIG = 1


def tie_to_parent(parent: int, folder: Path | None = None) -> None:
    """Ask for SIGTERM when the parent dies (Linux); exit at once (removing `folder`) if it already has."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass  # no prctl: the runner's check of its parent remains
    if os.getppid() != parent:
        orphaned_exit(folder)


RUN_INFO_LIST = "run_info_paths"  # in the run folder: the run-info files to remove with it, one a line


def remove_run_folder(folder: Path | None) -> None:
    """Remove a run's private folder (only one named like one), and the run-info files it lists
    (only those that name the folder's supervisor: nothing else can be removed through the list)."""
    if folder is None or not folder.name.startswith(RUN_FOLDER_PREFIX):
        return
    try:
        supervisor = int((folder / "supervisor.pid").read_text())
        listed = (folder / RUN_INFO_LIST).read_text().splitlines()
    except (OSError, ValueError):
        listed = []
    for line in listed[:8]:
        path = Path(line)
        try:
            if path.suffix == ".json" and json.loads(path.read_text(errors="replace")).get("pid") == supervisor:
                path.unlink()
        except (OSError, ValueError, AttributeError):
            continue  # gone already, not readable, or not a run-info file of this run: leave it
    shutil.rmtree(folder, ignore_errors=True)


def parent_gone(parent: int, wait_s: float = 0.5) -> bool:
    """Whether `parent` has died, waiting up to `wait_s` for it to be sure.

    PR_SET_PDEATHSIG fires when the *thread* that started us exits. When a multi-threaded
    supervisor is killed, that thread can go first: we are handed to one of its other threads
    (getppid() unchanged) and signalled while the process is still dying, so a moment's wait is
    needed to tell that from a SIGTERM the living supervisor sent."""
    deadline = time.monotonic() + wait_s
    while os.getppid() == parent:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def orphaned_exit(folder: Path | None) -> None:
    """The supervisor is gone: remove the run folder and exit without further ado."""
    remove_run_folder(folder)
    os._exit(1)


_JANITOR_GRACE_S = 3.0  # after the supervisor died: how long its stages get to exit by themselves


def _stage_processes(folder: Path) -> list[int]:
    """PIDs of the stage processes of the run whose folder is `folder` (started through this module)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"pipeline.lifetime" in args and str(folder).encode() in args and b"--janitor" not in args:
                found.append(int(entry.name))
    return found


def start_janitor(folder: Path) -> tuple[int, "subprocess.Popen[bytes]"]:
    """Start the run's janitor; returns the pipe end the caller keeps open for as long as it runs
    (closing it ends the janitor, which the caller then waits for) and the janitor's process.

    The janitor waits for that pipe to close: the supervisor ended, whichever way. If the run folder
    is still there (the supervisor was killed, perhaps while its stages were stopping), it gives the
    stages `_JANITOR_GRACE_S` to go, kills those left, and removes the folder and its run-info files.
    """
    import subprocess  # here, not at the top: a stage imports this module before anything else

    read_end, write_end = os.pipe()
    process = subprocess.Popen([sys.executable, "-m", "pipeline.lifetime", "--janitor", str(folder), str(read_end)],
                     pass_fds=(read_end,), start_new_session=True,  # Ctrl-C or a group kill must not take it too
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     env={**os.environ, "PYTHONPATH": os.pathsep.join(
                         p for p in (str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")) if p)})
    os.close(read_end)
    return write_end, process


def janitor(folder: Path, pipe: int) -> None:
    """The janitor's life (start_janitor): wait for the supervisor to go, then clean up after it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            if not os.read(pipe, 64):
                break  # end of file: the supervisor's end of the pipe is closed
        except InterruptedError:
            continue
    if not folder.exists():
        return  # the supervisor ended and cleaned up itself
    deadline = time.monotonic() + _JANITOR_GRACE_S
    while _stage_processes(folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in _stage_processes(folder):
        try:
            os.kill(pid, signal.SIGKILL)  # a stage stuck past the grace: ours, and its supervisor is gone
        except OSError:
            pass
    remove_run_folder(folder)


def main(argv: list[str]) -> None:
    """Tie this process to its parent, then run `module` as __main__ with the remaining arguments."""
    if argv[:1] == ["--janitor"]:
        janitor(Path(argv[1]), int(argv[2]))
        return
    parent, folder, module = int(argv[0]), Path(argv[1]), argv[2]
    tie_to_parent(parent, folder)

    def on_term(signum: int, frame: Any) -> None:
        if parent_gone(parent):
            orphaned_exit(folder)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)  # until the runner installs its own handler
    sys.argv = [module, *argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
