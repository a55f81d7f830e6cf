"""How fast is the pipeline, how long does a frame take, how much memory does each stage use?

Prints figures as it goes and, on its last line, one JSON object (other tools read its keys):

1. file throughput, lossless, on a real video: the pipeline against a single-process loop doing
   what the seed's demo does (read, detect, classify, draw) with the same detector and model, in
   the same run, as a ratio; for res10 and for BlazeFace (full range); the pipeline with
   --detect-workers (default 2, one per core) and, for res10, with 1; the loop runs before and
   after the pipeline and the two are averaged, since the machine's load drifts;
2. live latency: a source paced at 30 fps (5 minutes unless --live-seconds) with BlazeFace, the
   detector that keeps up with 30 fps on this machine: p50/p99 capture to result, per-hop transport
   time, drop rate, latency slope over time (linear fit, ms/min); then the same detector and model
   paced alone in one process (the machine's own jitter, `alone_p99_ms`); then a shorter live run
   with res10 on 2 detection workers (keys `live_res10_*`);
3. peak RSS (VmHWM) of every stage process, and whether any stage mapped TensorFlow;
4. throughput with 1, 2 and 4 detection workers (res10, lossless).

The BlazeFace runs classify with --fast-model (default: the default model, as of 2.0) as
configs/realtime.yaml does; the res10 runs with --model (models/liveness.onnx, the default model).

The video is read from $LIVENESS_DATA (default <repo>/../shared/data) videos/*/*.mp4, letterboxed
to 640x480 into a temporary folder (never into the repository); without the data, the demo video
made from a public-domain photo is used instead.

    python bench/pipeline_bench.py                    # everything, ~11 minutes
    python bench/pipeline_bench.py --live-seconds 30  # a shorter live run
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
import zmq

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(REPO))

from face_detector import create_detector  # noqa: E402
from liveness import LivenessModel  # noqa: E402
from pipeline.transport import free_tcp_port  # noqa: E402
from pipeline.wire import WireError, decode  # noqa: E402
from stages.display import annotate  # noqa: E402
from stage_procs import stage_processes  # noqa: E402  (bench/ is on sys.path when run as a script)

DEFAULT_VIDEO = "videos/tranvanluyt2203/real.mp4"
SIZE = (640, 480)
WARMUP_S = 5.0  # live: the first seconds (process start-up, caches) are left out of the latency figures


def log(text: str) -> None:
    print(text, flush=True)


def data_root() -> Path:
    """The shared data folder: $LIVENESS_DATA, else <repo>/../shared/data."""
    return Path(os.environ.get("LIVENESS_DATA", REPO.parent / "shared" / "data"))


def prepare_video(folder: Path, frames: int, source: str | None) -> tuple[Path, str]:
    """A 640x480 MJPG copy (in `folder`) of a real video, letterboxed; (path, description)."""
    path = Path(source) if source else data_root() / DEFAULT_VIDEO
    if not path.is_file():
        candidates = sorted(data_root().glob("videos/*/*.mp4"))
        path = candidates[0] if candidates else Path()
    target = folder / "bench.avi"
    if not path.is_file():
        sys.path.insert(0, str(REPO / "examples"))
        from make_demo_video import write_demo_video

        write_demo_video(target, frames=frames)
        return target, "demo video (public-domain photo), 640x480"
    capture = cv2.VideoCapture(str(path))
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, SIZE)
    written = 0
    while written < frames:
        ok, frame = capture.read()
        if not ok:
            break
        scale = min(SIZE[0] / frame.shape[1], SIZE[1] / frame.shape[0])
        resized = cv2.resize(frame, (round(frame.shape[1] * scale), round(frame.shape[0] * scale)))
        canvas = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
        y, x = (SIZE[1] - resized.shape[0]) // 2, (SIZE[0] - resized.shape[1]) // 2
        canvas[y : y + resized.shape[0], x : x + resized.shape[1]] = resized
        writer.write(canvas)
        written += 1
    writer.release()
    capture.release()
    try:
        name = str(path.relative_to(data_root()))
    except ValueError:
        name = path.name
    return target, f"{name}, first {written} frames letterboxed to 640x480 MJPG"


# ---- the single-process loop: what the seed's demo does ---------------------------------------
LOOP_CPU_MS: dict[str, float] = {}  # backend -> CPU ms a frame of the last single-process loop (all its threads)


def single_process_fps(video: Path, frames: int, backend: str, model_path: Path) -> float:
    """Frames/s of read -> detect -> classify -> draw in one process (steady state, after the first frame).

    Its CPU time a frame goes to LOOP_CPU_MS (OpenCV may use a second thread, which counts)."""
    detector = create_detector(backend, confidence=0.5, min_size=40)
    model = LivenessModel(model_path, threads=1)
    done: list[float] = []
    from pipeline.wire import Face, Message

    for frame in looped_frames(video, frames):
        faces = [Face(box=list(f.box), det_conf=f.confidence) for f in detector.detect(frame)]
        if faces:
            scores = model.score(frame, [face.box for face in faces])
            for face, score in zip(faces, scores):
                face.score, face.label = float(score), model.label(float(score))
        annotate(frame, Message(kind="frame", source="bench", seq=len(done), faces=faces), 0.0, 0.0)
        done.append(time.perf_counter())
        if len(done) == 1:
            cpu_started = time.process_time()
    LOOP_CPU_MS[backend] = round((time.process_time() - cpu_started) * 1000.0 / max(len(done) - 1, 1), 2)
    return (len(done) - 1) / (done[-1] - done[0])


def looped_frames(video: Path, count: int) -> Iterator[np.ndarray]:
    """`count` frames of `video`, starting again at its end (as the pipeline's looping source does)."""
    capture = cv2.VideoCapture(str(video))
    read = 0
    try:
        while read < count:
            ok, frame = capture.read()
            if not ok:
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                continue
            read += 1
            yield frame
    finally:
        capture.release()


def paced_alone_ms(video: Path, seconds: float, fps: float, backend: str, model_path: Path) -> tuple[float, float]:
    """p50 and p99 ms of detect + classify on frames paced at `fps` in this one process, no pipeline.

    The machine's own jitter: what the live pipeline's p99 can at best be compared with.
    """
    detector = create_detector(backend, confidence=0.5, min_size=40)
    model = LivenessModel(model_path, threads=1)
    took: list[float] = []
    next_frame = time.monotonic()
    for frame in looped_frames(video, int(seconds * fps)):
        next_frame += 1.0 / fps
        time.sleep(max(0.0, next_frame - time.monotonic()))
        started = time.perf_counter()
        boxes = [face.box for face in detector.detect(frame)]
        if boxes:
            model.score(frame, boxes)
        took.append((time.perf_counter() - started) * 1000.0)
    return _p(took, 50), _p(took, 99)


# ---- the pipeline, with a result subscriber and a memory monitor --------------------------------
class Results(threading.Thread):
    """Subscribes to the result stream before the pipeline starts; keeps arrival time and header of each result."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(daemon=True)
        self.context = zmq.Context()
        self.sock = self.context.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, 1_000_000)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(endpoint)
        self.received: list[tuple[int, Any]] = []
        self.eos: Any = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and self.eos is None:
            if not self.sock.poll(200):
                continue
            parts = self.sock.recv_multipart()
            now = time.monotonic_ns()
            try:
                message = decode(parts[1:])
            except WireError:
                continue
            if parts[0] == b"result":
                self.received.append((now, message))
            elif parts[0] == b"eos":
                self.eos = message
        self.sock.close(0)
        self.context.term()


_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (OSError when it is gone)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_S  # utime, stime (fields 14, 15 of proc(5))


class MemoryMonitor(threading.Thread):
    """Peak RSS (VmHWM) and CPU time of every stage process under one supervisor (and of the
    supervisor), read from /proc until they exit."""

    def __init__(self, supervisor_pid: int) -> None:
        super().__init__(daemon=True)
        self.supervisor_pid = supervisor_pid
        self.peak_mb: dict[str, float] = {}
        self.tensorflow: set[str] = set()
        self.cpu: dict[str, list[tuple[int, float]]] = {}  # name -> (monotonic ns, CPU seconds so far)
        self.stop = threading.Event()

    def run(self) -> None:
        maps_read: dict[int, float] = {}
        while not self.stop.is_set():
            for pid, name in self._stages():
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
                    # reading a process's maps takes its memory-map lock: seldom, or we slow the stage we measure
                    if time.monotonic() - maps_read.get(pid, 0.0) > 5.0:
                        maps_read[pid] = time.monotonic()
                        if "tensorflow" in Path(f"/proc/{pid}/maps").read_text():
                            self.tensorflow.add(name)
                    self.cpu.setdefault(name, []).append((time.monotonic_ns(), cpu_seconds(pid)))
                except (OSError, StopIteration):
                    continue
                self.peak_mb[name] = max(self.peak_mb.get(name, 0.0), hwm / 1024.0)
            try:
                self.cpu.setdefault("supervisor", []).append((time.monotonic_ns(), cpu_seconds(self.supervisor_pid)))
            except OSError:
                pass
            time.sleep(0.25)

    def _stages(self) -> list[tuple[int, str]]:
        return [(pid, name) for name, pid in stage_processes(self.supervisor_pid).items()]


class Scraper(threading.Thread):
    """Scrapes the supervisor's Prometheus endpoint every 2 s; keeps the last answer (the stages' own timings)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.last = ""
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(2.0):
            try:
                self.last = urllib.request.urlopen(self.url, timeout=2).read().decode()
            except OSError:
                pass

    def values(self, metric: str, quantile: str = "0.5") -> dict[str, float]:
        """stage -> value (ms) of one timing at one quantile, from the last scrape."""
        found = {}
        for line in self.last.splitlines():
            if line.startswith(metric + "{") and f'quantile="{quantile}"' in line:
                stage = line.split('stage="', 1)[1].split('"', 1)[0]
                found[stage] = round(float(line.rsplit(" ", 1)[1]) * 1000.0, 3)
        return found


def run_pipeline(folder: Path, video: Path, settings: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One pipeline run; returns its results (arrival ns, message), end-of-stream info, peak RSS per stage
    and the last Prometheus scrape."""
    results_endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    metrics_port = free_tcp_port()
    config = yaml.safe_load((REPO / "configs" / "file.yaml").read_text())
    config.pop("record", None)
    config["display"] = {"window": "off", "video": None}  # the display still draws every frame, like the loop
    config["endpoints"] = {"results": results_endpoint}
    config["metrics_interval_s"] = 3600.0
    config["metrics"] = {"prometheus_port": metrics_port}
    for section, values in settings.items():
        config.setdefault(section, {}).update(values)
    path = folder / f"bench-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(config))
    results = Results(results_endpoint)
    results.start()
    process = subprocess.Popen([sys.executable, str(REPO / "run_pipeline.py"), "--config", str(path), "--source", str(video)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    memory = MemoryMonitor(process.pid)
    memory.start()
    scraper = Scraper(metrics_port)
    scraper.start()
    try:
        _, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait()
        memory.stop.set()
        memory.join()
        scraper.stop.set()
        scraper.join()
        results.stop.set()
        results.join(timeout=5)
    if process.returncode != 0:
        said = "\n".join(line for line in stderr.splitlines() if line.startswith("run_pipeline:"))
        raise SystemExit(f"pipeline run failed (exit {process.returncode}):\n{said}\n{stderr.strip()[-800:]}")
    return {"results": results.received, "eos": results.eos, "rss_mb": memory.peak_mb, "tensorflow": memory.tensorflow,
            "cpu": memory.cpu, "stderr": stderr,
            "scrape": scraper}


def cpu_ms_per_frame(run: dict[str, Any]) -> dict[str, float]:
    """CPU milliseconds each process spent a result, between the first and the last result (start-up
    and imports left out): where the two cores go. `all` is their sum, `results` the frames counted."""
    arrivals = [arrived for arrived, _ in run["results"]]
    if len(arrivals) < 2:
        return {}
    first, last = arrivals[0], arrivals[-1]
    frames = len(arrivals) - 1
    figures: dict[str, float] = {}
    for name, samples in run["cpu"].items():
        before = [cpu for t, cpu in samples if t <= first]
        # sampled every 0.25 s: the window is known to +-0.25 s at each end (a sink that exits
        # right after the last frame has its last sample before it)
        after = [cpu for t, cpu in samples if t >= last] or [samples[-1][1]]
        if before:
            figures[name] = round((after[0] - before[-1]) * 1000.0 / frames, 2)
    figures["all"] = round(sum(figures.values()), 2)
    return figures


def steady_fps(run: dict[str, Any]) -> float:
    """Results per second between the first and the last result."""
    arrivals = [arrived for arrived, _ in run["results"]]
    return (len(arrivals) - 1) / ((arrivals[-1] - arrivals[0]) / 1e9)


def file_run(folder: Path, video: Path, frames: int, backend: str, model: Path, workers: int = 1) -> tuple[float, dict]:
    run = run_pipeline(folder, video, {
        "source": {"policy": "lossless", "loop": True, "max_frames": frames},
        "detect": {"backend": backend, "workers": workers},
        "classify": {"model": str(model)},
    }, timeout=600)
    if len(run["results"]) < frames * 0.95:
        raise SystemExit(f"lossless run lost results: {len(run['results'])} of {frames}")
    return steady_fps(run), run


# ---- live latency ------------------------------------------------------------------------------
def _p(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if values else float("nan")


def live_figures(run: dict[str, Any], fps: float) -> dict[str, Any]:
    """Latency, hops, budget, slope and drops from the results' stamps."""
    latency, capture_s, budget, entrance = [], [], [], []
    hops: dict[str, list[float]] = {}
    first = min(message.t_capture_ns for _, message in run["results"])
    for _, message in run["results"]:
        stamps = sorted(message.stamps.items(), key=lambda item: item[1][0])
        publisher = stamps[-1][1]
        t = (message.t_capture_ns - first) / 1e9
        if t < WARMUP_S:
            continue
        capture_s.append(t)
        latency.append((publisher[-1] - message.t_capture_ns) / 1e6)
        work = [(times[-1] - times[0]) / 1e6 for name, times in stamps if name.startswith(("detect", "classify"))]
        budget.append(sum(work))
        if "capture" in message.stamps:  # read -> sent: the wait in the entrance's one-frame mailbox for a free detector
            entrance.append((message.stamps["capture"][-1] - message.t_capture_ns) / 1e6)
        for (before, before_t), (after, after_t) in zip(stamps, stamps[1:]):
            hops.setdefault(f"{before.split('.')[0]}->{after.split('.')[0]}", []).append((after_t[0] - before_t[-1]) / 1e6)
    frames_read = int(run["eos"].info.get("frames_read", 0)) if run["eos"] is not None else 0
    scrape: Scraper = run["scrape"]
    transport = {stage: ms for stage, ms in scrape.values("liveness_stage_hop_seconds").items() if stage != "capture"}
    minutes = np.asarray(capture_s) / 60.0
    slope = float(np.polyfit(minutes, latency, 1)[0]) if len(latency) > 2 else float("nan")
    # does latency grow by itself, or because detection got slower (a busier machine)?
    overhead = np.asarray(latency) - np.asarray(budget)
    overhead_slope = float(np.polyfit(minutes, overhead, 1)[0]) if len(latency) > 2 else float("nan")
    budget_slope = float(np.polyfit(minutes, budget, 1)[0]) if len(latency) > 2 else float("nan")
    by_minute = {str(int(m)): _p([v for v, t in zip(latency, minutes) if int(t) == m], 50) for m in sorted({int(t) for t in minutes})}
    return {
        "live_fps_offered": fps,
        "live_results": len(run["results"]),
        "live_frames_read": frames_read,
        "live_drop_rate": round(1.0 - len(run["results"]) / frames_read, 5) if frames_read else None,
        "live_drops_by_reason": run["eos"].info.get("dropped", {}) if run["eos"] is not None else {},
        "live_p50_ms": _p(latency, 50),
        "live_p99_ms": _p(latency, 99),
        "live_budget_ms": _p(budget, 50),
        "live_entrance_wait_p50_ms": _p(entrance, 50),
        "latency_slope_ms_per_min": round(slope, 4),
        "budget_slope_ms_per_min": round(budget_slope, 4),
        "latency_minus_budget_slope_ms_per_min": round(overhead_slope, 4),
        "live_p50_ms_by_minute": by_minute,
        # transport per hop as the receiving stage measures it (its queueing while busy is in inbox_ms);
        # hop_p50_ms is the slowest hop's p50, over the last ~2048 frames of the run
        "hop_p50_ms": max(transport.values()) if transport else None,
        "hop_p50_ms_by_stage": transport,
        "hop_p99_ms_by_stage": scrape.values("liveness_stage_hop_seconds", "0.99"),
        "inbox_p50_ms_by_stage": scrape.values("liveness_stage_inbox_seconds"),
        "process_p50_ms_by_stage": scrape.values("liveness_stage_process_seconds"),
        # send -> receive from the frames' stamps, queueing included
        "hop_with_queue_p50_ms": {name: _p(values, 50) for name, values in hops.items()},
    }


def log_live(title: str, live: dict[str, Any]) -> None:
    log(f"{title}: p50 {live['live_p50_ms']} ms, p99 {live['live_p99_ms']} ms, budget (detect + classify) "
        f"{live['live_budget_ms']} ms, entrance wait p50 {live['live_entrance_wait_p50_ms']} ms, slope {live['latency_slope_ms_per_min']} ms/min "
        f"(detect + classify {live['budget_slope_ms_per_min']}, the rest {live['latency_minus_budget_slope_ms_per_min']}), drop rate "
        f"{live['live_drop_rate']}, transport p50 by stage {live['hop_p50_ms_by_stage']} ms, with queueing "
        f"{live['hop_with_queue_p50_ms']} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", help=f"source video (default: $LIVENESS_DATA/{DEFAULT_VIDEO})")
    parser.add_argument("--model", default=str(REPO / "models" / "liveness.onnx"), help="liveness model (default: %(default)s)")
    parser.add_argument("--fast-model", default=str(REPO / "models" / "liveness.onnx"),
                        help="liveness model of the BlazeFace runs, as configs/realtime.yaml (default: %(default)s)")
    parser.add_argument("--detect-workers", type=int, default=2,
                        help="detection workers of the pipeline in the file comparisons (default: %(default)s, "
                             "configs/two_workers.yaml: one per core of the 2-core target machine)")
    parser.add_argument("--frames", type=int, default=200, help="frames per file run (default: %(default)s)")
    parser.add_argument("--live-seconds", type=float, default=300.0, help="length of the live run (default: %(default)s)")
    parser.add_argument("--live-backend", default="blazeface", choices=["res10", "blazeface", "blazeface_short"],
                        help="detector of the live run (default: %(default)s, the one that keeps up with 30 fps here)")
    parser.add_argument("--live-res10-seconds", type=float, default=120.0,
                        help="a second live run with res10 and 2 detection workers, keys live_res10_* (0 = leave out; "
                             "default: %(default)s)")
    parser.add_argument("--live-fps", type=float, default=30.0, help="pace of the live source (default: %(default)s)")
    parser.add_argument("--live-workers", type=int, default=1,
                        help="detection workers of the live run (default: %(default)s)")
    parser.add_argument("--skip", action="append", default=[], choices=["file", "blazeface", "live", "scaling"],
                        help="leave a part out (repeatable)")
    args = parser.parse_args(argv)
    model, fast_model = Path(args.model), Path(args.fast_model)
    for option, path in (("--model", model), ("--fast-model", fast_model)):
        if not path.is_file():
            raise SystemExit(f"{option} {path}: not found")
    live_model = fast_model if args.live_backend.startswith("blazeface") else model  # as configs/realtime.yaml
    figures: dict[str, Any] = {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="liveness-bench-") as tmp:
        folder = Path(tmp)
        video, description = prepare_video(folder, max(args.frames, 150), args.video)
        figures["video"] = description
        log(f"video: {description}; {args.frames} frames per file run; {os.cpu_count()} CPUs, "
            f"load average {figures['load_average_at_start']:.2f}")
        rss: dict[str, float] = {}
        tensorflow: set[str] = set()

        def keep(run: dict[str, Any]) -> None:
            for name, mb in run["rss_mb"].items():
                rss[name] = round(max(rss.get(name, 0.0), mb), 1)
            tensorflow.update(run["tensorflow"])

        if "file" not in args.skip:
            # the loop before and after the pipeline runs, averaged: the machine's load drifts
            before = single_process_fps(video, args.frames, "res10", model)
            piped, run = file_run(folder, video, args.frames, "res10", model, args.detect_workers)
            keep(run)
            one, run = file_run(folder, video, args.frames, "res10", model, 1)
            keep(run)
            single = (before + single_process_fps(video, args.frames, "res10", model)) / 2
            figures.update(file_fps_single_res10=round(single, 2), file_fps_pipeline_res10=round(piped, 2),
                           file_speedup_res10=round(piped / single, 3), file_detect_workers=args.detect_workers,
                           file_speedup_res10_1_worker=round(one / single, 3),
                           file_process_p50_ms_res10=run["scrape"].values("liveness_stage_process_seconds"))
            log(f"file, res10: single-process loop {single:.1f} fps, pipeline {piped:.1f} fps with {args.detect_workers} "
                f"detection workers (ratio {piped / single:.2f}), {one:.1f} fps with 1 (ratio {one / single:.2f})")
        if "blazeface" not in args.skip:
            frames = args.frames * 3  # fast enough that a longer run is needed for a stable figure
            before = single_process_fps(video, frames, "blazeface", fast_model)
            piped, run = file_run(folder, video, frames, "blazeface", fast_model, args.detect_workers)
            keep(run)
            single = (before + single_process_fps(video, frames, "blazeface", fast_model)) / 2
            figures.update(file_fps_single_blazeface=round(single, 2), file_fps_blazeface=round(piped, 2),
                           file_speedup_blazeface=round(piped / single, 3),
                           file_cpu_ms_per_frame_blazeface=cpu_ms_per_frame(run),
                           file_cpu_ms_per_frame_single_blazeface=LOOP_CPU_MS.get("blazeface"),
                           file_process_p50_ms_blazeface=run["scrape"].values("liveness_stage_process_seconds"))
            log(f"file, BlazeFace: single-process loop {single:.1f} fps, pipeline {piped:.1f} fps, ratio {piped / single:.2f}")
            log(f"file, BlazeFace: CPU ms a frame, single-process loop {LOOP_CPU_MS.get('blazeface')}, pipeline "
                + ", ".join(f"{name} {ms}" for name, ms in sorted(cpu_ms_per_frame(run).items())))
        if "scaling" not in args.skip:
            scaling = {}
            for workers in (1, 2, 4):
                scaling[str(workers)], run = file_run(folder, video, args.frames, "res10", model, workers)
                scaling[str(workers)] = round(scaling[str(workers)], 2)
                keep(run)
                log(f"scaling, res10, {workers} detection worker(s): {scaling[str(workers)]:.1f} fps")
            figures["file_fps_by_detect_workers"] = scaling
        if "live" not in args.skip:
            frames = int(args.live_seconds * args.live_fps)
            log(f"live: {args.live_seconds:.0f} s at {args.live_fps:.0f} fps ({frames} frames), {args.live_backend}, "
                f"{args.live_workers} detection worker(s) ...")
            run = run_pipeline(folder, video, {
                "source": {"policy": "live", "pace": True, "loop": True, "max_frames": frames},
                "detect": {"backend": args.live_backend, "workers": args.live_workers},
                "classify": {"model": str(live_model)},
            }, timeout=args.live_seconds + 120)
            keep(run)
            live = live_figures(run, args.live_fps)
            figures.update(live, live_backend=args.live_backend, live_detect_workers=args.live_workers)
            log_live("live", live)
            alone = paced_alone_ms(video, 30.0, args.live_fps, args.live_backend, live_model)
            figures.update(alone_p50_ms=alone[0], alone_p99_ms=alone[1])
            log(f"the same detect + classify alone in one process, paced at {args.live_fps:.0f} fps for 30 s: "
                f"p50 {alone[0]} ms, p99 {alone[1]} ms (this machine's own jitter)")
            if args.live_res10_seconds > 0:
                frames = int(args.live_res10_seconds * args.live_fps)
                log(f"live: {args.live_res10_seconds:.0f} s at {args.live_fps:.0f} fps ({frames} frames), res10, 2 detection workers ...")
                run = run_pipeline(folder, video, {
                    "source": {"policy": "live", "pace": True, "loop": True, "max_frames": frames},
                    "detect": {"backend": "res10", "workers": 2},
                    "classify": {"model": str(model)},
                }, timeout=args.live_res10_seconds + 120)
                keep(run)
                res10 = live_figures(run, args.live_fps)
                log_live("live, res10", res10)
                figures.update({f"live_res10_{key.removeprefix('live_')}": value for key, value in res10.items()})
        figures["stage_rss_mb"] = rss
        figures["max_stage_rss_mb"] = max(rss.values()) if rss else None
        figures["stages_with_tensorflow"] = sorted(tensorflow)
        log(f"peak RSS per stage (MB): {rss}; stages that loaded TensorFlow: {sorted(tensorflow) or 'none'}")
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
