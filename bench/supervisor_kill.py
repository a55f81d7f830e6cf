#!/usr/bin/env python3
"""Kill -9 the supervisor (run_pipeline.py) at moments spread over a run's whole life (its first
instruction, start-up, the run of a looping video at 30 fps, its end) and count what outlives it.

    python bench/supervisor_kill.py [--trials 24] [--until 14] [--frames 300] [--after-end 8] [--config configs/file.yaml]

Trial k kills the supervisor k x until / (trials - 1) seconds after it was started; then each of
`--after-end` trials kills it k x 0.25 / (after_end - 1) seconds after it printed its end of stream
(the stages are finishing and being stopped). After each kill it waits up to 5 s for every
process whose command line names the run's folder to be gone, for the folder itself to be removed,
and for the run's run-info file to go; it prints one line a trial and a summary. Exit status 1 when
any trial left a stage, a folder or a run-info file behind after 5 s. Not a test: `make supervisor-kill`.
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
_AFTER_END_S = 0.25  # a supervisor here exits within ~0.3 s of its end of stream


def _processes_naming(marker: str, janitor: bool = True) -> list[int]:
    """PIDs whose command line holds `marker` (a run folder: the stages and the run's janitor are
    handed its path); without the janitor when `janitor` is false."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().decode(errors="replace")
                if marker in command and (janitor or "--janitor" not in command):
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


def _wait_for_end(supervisor: subprocess.Popen, folders: list[Path]) -> None:
    """Read the supervisor's stderr until it says the stream ended (or it exits)."""
    assert supervisor.stderr is not None
    for line in supervisor.stderr:
        folders[:] = folders or _run_folders_of(supervisor.pid)
        if "end of stream" in line:
            return


def trial(command: list[str], delay: float, runs: Path, after_end: bool = False) -> tuple[str, int, bool, int]:
    """Start a run, kill -9 its supervisor `delay` s after its start (or after its end of stream);
    (what it was doing, stages left, folder left, run-info files left)."""
    supervisor = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "LIVENESS_RUNS_DIR": str(runs)})
    folders: list[Path] = []
    if after_end:
        _wait_for_end(supervisor, folders)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        folders = folders or _run_folders_of(supervisor.pid)
        time.sleep(0.005)
    folders = folders or _run_folders_of(supervisor.pid)
    stages_then = sum(len(_processes_naming(str(folder), janitor=False)) for folder in folders)
    ended = supervisor.poll() is not None
    if not ended:
        try:
            os.kill(supervisor.pid, signal.SIGKILL)
        except ProcessLookupError:
            ended = True  # it ended just now
    supervisor.wait()
    moment = "after it exited" if ended else f"{stages_then} stage processes up" if folders else "before its run folder"
    if after_end and not ended:
        moment += ", its stream ended"
    deadline = time.monotonic() + _GRACE_S
    left, folder_left, infos_left = 0, False, 0
    while time.monotonic() < deadline:
        left = sum(len(_processes_naming(str(folder))) for folder in folders)
        folder_left = any(folder.exists() for folder in folders)
        infos_left = len(list(runs.glob("*.json")))
        if not left and not folder_left and not infos_left:
            break
        time.sleep(0.05)
    for info in runs.glob("*.json"):  # so the next trial counts its own
        info.unlink()
    for folder in folders:  # clean up after a failed trial, so the next one starts clean
        for pid in _processes_naming(str(folder)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return moment, left, folder_left, infos_left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--until", type=float, default=14.0, help="the last trial's kill, seconds after start")
    parser.add_argument("--frames", type=int, default=300, help="frames a run plays at 30 fps (300: about 10 s after start-up)")
    parser.add_argument("--after-end", type=int, default=8, help="trials killing 0-0.25 s after the end of stream")
    parser.add_argument("--config", default=str(REPO / "configs" / "file.yaml"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="supervisor-kill-") as folder:
        video = Path(folder) / "demo.avi"
        subprocess.run([sys.executable, str(REPO / "examples" / "make_demo_video.py"), str(video)], check=True, cwd=REPO,
                       stdout=subprocess.DEVNULL)
        command = [sys.executable, str(REPO / "run_pipeline.py"), "--config", args.config, "--source", str(video),
                   "--set", "source.pace=true", "--set", "source.loop=true",
                   "--set", f"source.max_frames={args.frames}", "--set", "display.video=null", "--set", f"record.jsonl={folder}/out.jsonl"]
        runs = Path(folder) / "runs"
        failures = 0
        moments = [(args.until * k / max(1, args.trials - 1), False) for k in range(args.trials)]
        moments += [(_AFTER_END_S * k / max(1, args.after_end - 1), True) for k in range(args.after_end)]
        for delay, after_end in moments:
            moment, left, folder_left, infos_left = trial(command, delay, runs, after_end)
            failed = bool(left or folder_left or infos_left)
            failures += failed
            when = f"{delay:5.2f} s after its end of stream" if after_end else f"{delay:5.2f} s"
            print(f"kill at {when} ({moment}): {left} stage processes, {'a' if folder_left else 'no'} run folder and "
                  f"{infos_left} run-info files left {_GRACE_S:.0f} s later{'  FAIL' if failed else ''}", flush=True)
    print(f"supervisor kill -9 at {len(moments)} moments ({args.trials} over 0-{args.until:.0f} s, {args.after_end} over "
          f"0-{_AFTER_END_S} s after the end of stream): {failures} left something behind")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
