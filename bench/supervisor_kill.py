#!/usr/bin/env python3
"""Kill -9 the supervisor (run_pipeline.py) at moments spread over a run's whole life (its first
instruction, start-up, the run of a looping video at 30 fps, its end) and count what outlives it.

    python bench/supervisor_kill.py [--trials 24] [--until 14] [--frames 300] [--config configs/file.yaml]

Trial k kills the supervisor k x until / (trials - 1) seconds after it was started. After each kill it
waits up to 5 s for every process whose command line names the run's folder to be gone and for
the folder itself to be removed; it prints one line a trial and a summary. Exit status 1 when any
trial left a stage alive or a folder behind after 5 s. Not a test: `make supervisor-kill`.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_GRACE_S = 5.0


def _processes_naming(marker: str) -> list[int]:
    """PIDs whose command line holds `marker` (a run folder: the stages are handed its path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _run_folders_of(pid: int) -> list[Path]:
    """The run folders whose supervisor.pid names `pid` (none yet, very early in start-up)."""
    folders = []
    for folder in Path(tempfile.gettempdir()).glob("liveness-run-*"):
        try:
            if (folder / "supervisor.pid").read_text().strip() == str(pid):
                folders.append(folder)
        except OSError:
            continue
    return folders


def trial(command: list[str], delay: float) -> tuple[str, int, bool]:
    """Start a run, kill -9 its supervisor after `delay` s; (what it was doing, stages left, folder left)."""
    supervisor = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    folders: list[Path] = []
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        folders = folders or _run_folders_of(supervisor.pid)
        time.sleep(0.005)
    folders = folders or _run_folders_of(supervisor.pid)
    stages_then = sum(len(_processes_naming(str(folder))) for folder in folders)
    ended = supervisor.poll() is not None
    if not ended:
        try:
            os.kill(supervisor.pid, signal.SIGKILL)
        except ProcessLookupError:
            ended = True  # it ended just now
    supervisor.wait()
    moment = "after its end" if ended else f"{stages_then} stage processes up" if folders else "before its run folder"
    deadline = time.monotonic() + _GRACE_S
    left, folder_left = 0, False
    while time.monotonic() < deadline:
        left = sum(len(_processes_naming(str(folder))) for folder in folders)
        folder_left = any(folder.exists() for folder in folders)
        if not left and not folder_left:
            break
        time.sleep(0.05)
    for folder in folders:  # clean up after a failed trial, so the next one starts clean
        for pid in _processes_naming(str(folder)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return moment, left, folder_left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--until", type=float, default=14.0, help="the last trial's kill, seconds after start")
    parser.add_argument("--frames", type=int, default=300, help="frames a run plays at 30 fps (300: about 10 s after start-up)")
    parser.add_argument("--config", default=str(REPO / "configs" / "file.yaml"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="supervisor-kill-") as folder:
        video = Path(folder) / "demo.avi"
        subprocess.run([sys.executable, str(REPO / "examples" / "make_demo_video.py"), str(video)], check=True, cwd=REPO,
                       stdout=subprocess.DEVNULL)
        command = [sys.executable, str(REPO / "run_pipeline.py"), "--config", args.config, "--source", str(video),
                   "--set", "source.pace=true", "--set", "source.loop=true",
                   "--set", f"source.max_frames={args.frames}", "--set", "display.video=null", "--set", f"record.jsonl={folder}/out.jsonl"]
        failures = 0
        for k in range(args.trials):
            delay = args.until * k / max(1, args.trials - 1)
            moment, left, folder_left = trial(command, delay)
            failed = bool(left or folder_left)
            failures += failed
            print(f"kill at {delay:5.2f} s ({moment}): {left} stage processes and "
                  f"{'a' if folder_left else 'no'} run folder left {_GRACE_S:.0f} s later{'  FAIL' if failed else ''}", flush=True)
    print(f"supervisor kill -9 at {args.trials} moments over 0-{args.until:.0f} s: {failures} left something behind")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
