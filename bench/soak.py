#!/usr/bin/env python3
"""Soak: run the whole pipeline for a long time on a looping 30 fps file, watch memory and latency.

    python bench/soak.py [--seconds 600] [--warmup 60] [--video FILE] [--set key=value ...]

Every few seconds it reads each stage process's resident memory (VmRSS in /proc/PID/status).
After the warm-up it compares the median of the first samples with the median of the last ones
per stage, and fits a line through the per-frame latency (capture to classification) from the
JSON lines. Exit status 1 when a stage's memory grew by more than --max-growth (5%) after the
warm-up, or when the pipeline stopped on its own; 0 otherwise. Not a test: `make soak`.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stage_procs import stage_processes  # bench/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parent.parent
_SAMPLE_EVERY_S = 5.0
_EDGE_SAMPLES = 5  # samples averaged (median) at each end of the window


def _rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _slope_ms_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of latency (ms) over time (minutes)."""
    if len(points) < 2:
        return 0.0
    times = [t / 60.0 for t, _ in points]
    values = [v for _, v in points]
    mean_t, mean_v = statistics.fmean(times), statistics.fmean(values)
    spread = sum((t - mean_t) ** 2 for t in times)
    return sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values)) / spread if spread else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)))
    parser.add_argument("--warmup", type=float, default=None, help="seconds ignored at the start (default: 20%%, at most 60)")
    parser.add_argument("--video", type=Path, default=None, help="a video to loop (default: the astronaut demo video)")
    parser.add_argument("--config", default=str(REPO / "configs" / "file.yaml"))
    parser.add_argument("--max-growth", type=float, default=5.0, help="allowed RSS growth after warm-up, percent")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more config overrides")
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else min(60.0, args.seconds * 0.2)
    if args.seconds <= warmup + _SAMPLE_EVERY_S * 2 * _EDGE_SAMPLES:
        print(f"soak: --seconds must exceed the warm-up ({warmup:.0f} s) by {_SAMPLE_EVERY_S * 2 * _EDGE_SAMPLES:.0f} s", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="soak-") as folder:
        work = Path(folder)
        video = args.video
        if video is None:
            video = work / "soak.avi"
            subprocess.run([sys.executable, str(REPO / "examples" / "make_demo_video.py"), str(video)], check=True, cwd=REPO)
        jsonl = work / "soak.jsonl"
        command = [sys.executable, str(REPO / "run_pipeline.py"), "--config", args.config, "--source", str(video),
                   "--jsonl", str(jsonl), "--set", "source.loop=true", "--set", "source.pace=true",
                   "--set", "display.video=null", "--set", "display.window=\"off\"", "--set", "metrics_interval_s=60"]
        for override in args.set:
            command += ["--set", override]
        print(f"soak: {args.seconds:.0f} s on {video.name} looping at its own frame rate; warm-up {warmup:.0f} s", flush=True)
        pipeline = subprocess.Popen(command, cwd=REPO, start_new_session=True)
        samples: dict[str, list[tuple[float, int]]] = {}
        started = time.monotonic()
        try:
            while time.monotonic() - started < args.seconds:
                time.sleep(_SAMPLE_EVERY_S)
                if pipeline.poll() is not None:
                    print(f"soak: FAIL: the pipeline stopped on its own (exit status {pipeline.returncode})")
                    return 1
                elapsed = time.monotonic() - started
                for key, pid in stage_processes(pipeline.pid).items():
                    rss = _rss_kib(pid)
                    if rss is not None and elapsed >= warmup:
                        samples.setdefault(key, []).append((elapsed, rss))
        finally:
            if pipeline.poll() is None:
                os.killpg(pipeline.pid, signal.SIGINT)
                try:
                    pipeline.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(pipeline.pid, signal.SIGKILL)
                    pipeline.wait()
        records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()] if jsonl.is_file() else []
    first_wall = records[0]["t_wall"] if records else 0.0
    latency = [(r["t_wall"] - first_wall, r["latency_ms"]) for r in records
               if "latency_ms" in r and r["t_wall"] - first_wall >= warmup]
    failed = False
    print(f"{'stage':<12} {'RSS start MiB':>14} {'RSS end MiB':>12} {'growth':>8}")
    for key in sorted(samples):
        values = [rss for _, rss in samples[key]]
        if len(values) < 2 * _EDGE_SAMPLES:
            print(f"{key:<12} too few samples ({len(values)})")
            continue
        start = statistics.median(values[:_EDGE_SAMPLES])
        end = statistics.median(values[-_EDGE_SAMPLES:])
        growth = 100.0 * (end - start) / start
        verdict = "FAIL" if growth > args.max_growth else "ok"
        failed |= growth > args.max_growth
        print(f"{key:<12} {start / 1024:>14.1f} {end / 1024:>12.1f} {growth:>7.2f}% {verdict}")
    if latency:
        values = [v for _, v in latency]
        print(f"latency after warm-up: {len(values)} frames, median {statistics.median(values):.1f} ms, "
              f"slope {_slope_ms_per_min(latency):+.2f} ms/min")
    print(f"frames recorded: {len(records)} in {args.seconds:.0f} s")
    print("soak: " + ("FAIL: memory grew by more than " + f"{args.max_growth:g}%" if failed else "ok"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
