"""Stage processes live no longer than their supervisor, from their first instruction.

    python -m pipeline.lifetime SUPERVISOR_PID RUN_FOLDER pipeline.runner ARGS...

run_pipeline.py starts every stage this way. Before anything heavy is imported, the process asks
Linux for SIGTERM when its parent dies (PR_SET_PDEATHSIG, through ctypes), checks once that the
parent is still the supervisor (it may have died already), and until the runner takes over,
SIGTERM ends it at once. A stage that outlives its supervisor removes the run's private folder
on its way out (`orphaned_exit`), so a run killed with SIGKILL leaves neither processes nor its
`liveness-run-*` folder. Elsewhere than Linux the runner's own look at its parent applies.
"""
from __future__ import annotations

import ctypes
import os
import runpy
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

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


def remove_run_folder(folder: Path | None) -> None:
    """Remove a run's private folder (only one named like one)."""
    if folder is not None and folder.name.startswith(RUN_FOLDER_PREFIX):
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


def main(argv: list[str]) -> None:
    """Tie this process to its parent, then run `module` as __main__ with the remaining arguments."""
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
