"""Starts every stage as its own process, waits until all are ready, watches them, stops them.

The run is over when every sink has handled end of stream (exit 0), when a stage dies (exit 1,
naming the stage and its exit status), or on Ctrl-C / SIGTERM (every process asked to stop,
then terminated, then killed; exit 130). The private run folder with its ipc sockets is removed.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import zmq

from pipeline.config import REPO_ROOT, EndpointsConfig, PipelineConfig
from pipeline.config_file import dump_config
from pipeline.control import DONE, END, ERROR, METRICS, QUIT, READY, START, STOP
from pipeline.recovery import ACK, ACK_TIMEOUT_S, EPOCH, MAX_RESENDS, RESEND, SENT
from pipeline.graph import CONTROL, Graph, StageInstance, build_graph
from pipeline.metrics import summary_line
from pipeline.stage import Role
from pipeline.progress import Progress
from pipeline.prometheus import PrometheusExporter
from pipeline.lifetime import RUN_FOLDER_PREFIX, remove_run_folder, start_janitor
from pipeline.transport import Role as Side, open_socket

EXIT_OK, EXIT_STAGE_FAILED, EXIT_INTERRUPTED = 0, 1, 130
_STOP_GRACE_S = 3.0


def log(text: str) -> None:
    print(f"run_pipeline: {text}", file=sys.stderr, flush=True)


def remove_stale_run_folders() -> None:
    """Remove run folders that a supervisor killed outright left behind (its pid is no longer alive)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{RUN_FOLDER_PREFIX}*"):
        try:
            pid = int((folder / "supervisor.pid").read_text())
            if folder.stat().st_uid != os.getuid():
                continue
            os.kill(pid, 0)
        except ProcessLookupError:
            remove_run_folder(folder)
        except (OSError, ValueError):
            continue  # not ours, not readable, or alive (PermissionError): leave it


@dataclass
class Running:
    instance: StageInstance
    process: subprocess.Popen
    ready: bool = False
    done: bool = False
    error: str | None = None
    fatal: bool = False  # its error is one to fix (a StageError): not restarted
    snapshot: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0  # how many times this stage was started again
    restart_at: float | None = None  # dead, to be started again at this time (monotonic)
    resumed: bool = True  # False: restarted, and the pipeline has not yet been told (start / resend)
    acked: int = -1  # lossless: the last seq this stage (a sink) acknowledged
    handled: int = -1  # lossless: the last seq it has handled (acknowledged or still in its buffer)


class Supervisor:
    """One pipeline run."""

    def __init__(self, config: PipelineConfig, graph: Graph | None = None) -> None:
        """`graph` defaults to the one the config describes (build_graph raises ConfigError for a bad one)."""
        self.config = config
        self.graph = graph or build_graph(config)
        remove_stale_run_folders()
        self.run_dir = Path(tempfile.mkdtemp(prefix=RUN_FOLDER_PREFIX))
        (self.run_dir / "supervisor.pid").write_text(str(os.getpid()))
        self._janitor_pipe, self._janitor = start_janitor(self.run_dir)  # cleans up if this process is killed outright
        self.stages: dict[str, Running] = {}
        self.interrupted = False
        self.summary_at_exit = False
        self.quit_by: str | None = None  # a stage through which the user ended the run
        self._end: int | None = None  # the source's last seq, once it has sent its end of stream
        self._sent = -1  # lossless: the last seq capture reports sent
        self._progress_at = time.monotonic()  # when the floor last moved (or the watchdog last resent)
        self._resends = 0  # watchdog resends since the sinks last got a new frame
        self._delivered_seen = -1
        self.context = zmq.Context()
        self.exporter = PrometheusExporter(lambda: {key: s.snapshot for key, s in list(self.stages.items()) if s.snapshot})
        self.progress: Progress | None = None  # finite runs: "frame N of M" in every summary line (pipeline.progress)

    def _start_exporter(self) -> bool:
        """Serve /metrics when `metrics.prometheus_port` is set; False (logged) when it cannot bind."""
        host, port = self.config.metrics.prometheus_host, self.config.metrics.prometheus_port
        if not port:
            return True
        try:
            self.exporter.start(host, port)
        except OSError as error:
            log(f"error: metrics.prometheus_port: cannot serve on {host}:{port} ({error.strerror or error})")
            return False
        log(f"Prometheus metrics on http://{host}:{port}/metrics")
        return True

    def resolve_endpoints(self) -> PipelineConfig:
        """Replace every "auto" endpoint of the graph with an ipc socket in this run's private folder."""
        given = self.config.endpoints.model_dump()
        endpoints = {name: given.get(name, "auto") for name in self.graph.endpoints()}
        endpoints = {name: f"ipc://{self.run_dir / name}.sock" if value == "auto" else value for name, value in endpoints.items()}
        return self.config.model_copy(update={"endpoints": EndpointsConfig.model_validate(endpoints)})

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        control = None
        try:
            resolved = self.resolve_endpoints()
            config_path = self.run_dir / "config.yaml"
            dump_config(resolved, config_path)
            self.graph.save(self.run_dir / "graph.json")
            control_endpoint = resolved.endpoints.model_dump()[CONTROL]
            try:
                control = open_socket(self.context, zmq.ROUTER, control_endpoint, Side.BIND, 1000)
                control.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted stage reuses its identity at once
            except zmq.ZMQError as error:
                log(f"error: endpoints.control: {error}")
                return EXIT_STAGE_FAILED
            if not self._start_exporter():
                return EXIT_STAGE_FAILED
            log(f"{resolved.policy()} run of {resolved.source.uri!r}; results on {resolved.endpoints.results}")
            for instance in self.graph.instances():
                self._start(instance, config_path, control_endpoint)
            code = self._supervise(control)
            return code
        finally:
            self._stop_all(control)
            self.exporter.stop()
            if control is not None:
                while control.poll(0):  # each stage's final figures, sent as it stopped
                    self._on_control(control)
                if self.summary_at_exit:
                    self._print_summary(final=True)
                control.close(0)
            self.context.term()
            shutil.rmtree(self.run_dir, ignore_errors=True)
            os.close(self._janitor_pipe)  # the janitor finds the folder gone and ends
            try:
                self._janitor.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass  # it ends by itself; never hold the run's exit for it
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.interrupted = True

    def _start(self, instance: StageInstance, config_path: Path, control: str, attempt: int = 0) -> None:
        self._launch = (config_path, control)
        # pipeline.lifetime ties the process to this one before it imports anything else
        command = [sys.executable, "-m", "pipeline.lifetime", str(os.getpid()), str(self.run_dir),
                   "pipeline.runner", "--stage", instance.node.name, "--module", instance.node.module,
                   "--graph", str(self.run_dir / "graph.json"), "--config", str(config_path),
                   "--worker", str(instance.worker), "--control", control, "--attempt", str(attempt)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        self.stages[instance.key] = Running(instance, subprocess.Popen(command, env=env))

    def _supervise(self, control: zmq.Socket) -> int:
        started = False
        ready_deadline = time.monotonic() + self.config.transport.ready_timeout_s
        last_summary = time.monotonic()
        while not self.interrupted:
            if control.poll(100):
                self._on_control(control)
                while control.poll(0):
                    self._on_control(control)
            if self.quit_by:
                log(f"stopped by the user ({self.quit_by}); stopping every stage")
                self.summary_at_exit = True
                return EXIT_OK
            if self.interrupted:
                break  # Ctrl-C reaches every stage too: the exits that follow it are not failures
            failed = self._failed_stage()
            if failed:
                self.await_last_word(control, failed)
                if self.interrupted:
                    break  # the stage stopped on the same Ctrl-C, seen before our own handler ran
                failed = None if self.quit_by else self._failed_stage()
            if self.quit_by:
                continue
            if failed and not (started and self._schedule_restart(failed)):
                return self._fail(failed)
            self._restart_due(control)
            if started and self.config.policy() == "lossless" and not self._watchdog(control):
                return EXIT_STAGE_FAILED
            if not started:
                if all(s.ready for s in self.stages.values()):
                    control.send_multipart([self._source_key, msgpack.packb({"type": START, "epoch": 0, "floor": -1})])
                    started = True
                    log(f"all {len(self.stages)} stages ready: {', '.join(self.stages)}")
                elif time.monotonic() > ready_deadline:
                    waiting = [key for key, s in self.stages.items() if not s.ready]
                    log(f"error: stages never became ready: {', '.join(waiting)} (transport.ready_timeout_s)")
                    return EXIT_STAGE_FAILED
                continue
            if self._finished():
                log("end of stream: every frame processed")
                self.summary_at_exit = True  # printed once every stage has sent its last figures
                return EXIT_OK
            if time.monotonic() - last_summary >= self.config.metrics_interval_s:
                last_summary = time.monotonic()
                self._print_summary()
        log("interrupted: stopping every stage")
        self.summary_at_exit = True  # the final counts (drops, lost sources) are part of the run's record
        return EXIT_INTERRUPTED

    def _on_control(self, control: zmq.Socket) -> None:
        identity, raw = control.recv_multipart()
        stage = self.stages.get(identity.decode(errors="replace"))
        try:
            message = msgpack.unpackb(raw)
        except Exception:
            return
        if stage is None or not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == READY:
            stage.ready = True
            if self._end is not None:  # a stage (re)started after the source finished needs its word too
                self._tell(control, stage, {"type": END, "last_seq": self._end})
        elif kind == QUIT:
            self.quit_by = stage.instance.key
        elif kind == DONE:
            stage.done = True
            last = message.get("info", {}).get("last_seq") if isinstance(message.get("info"), dict) else None
            if stage.instance.node.role is Role.SOURCE and isinstance(last, int) and self._end is None:
                self._end = last  # the one end of stream the other stages take (pipeline/runner.py)
                for other in self.stages.values():
                    self._tell(control, other, {"type": END, "last_seq": last})
        elif kind == ERROR:
            stage.error = str(message.get("text", "unknown error"))
            stage.fatal = message.get("fatal") is True
        elif kind == METRICS and isinstance(message.get("snapshot"), dict):
            stage.snapshot = {**message["snapshot"], "restarts": stage.restarts}
        elif kind == ACK and isinstance(message.get("seq"), int):
            stage.acked = max(stage.acked, message["seq"])
            handled = message.get("handled")
            stage.handled = max(stage.handled, stage.acked, handled if isinstance(handled, int) else -1)
            delivered = self._delivered()
            if delivered > self._delivered_seen:  # frames still arrive: the watchdog waits
                self._delivered_seen, self._progress_at, self._resends = delivered, time.monotonic(), 0
            self._relay_floor(control)
        elif kind == SENT and isinstance(message.get("seq"), int) and stage.instance.node.role is Role.SOURCE:
            self._sent = max(self._sent, message["seq"])

    def _tell(self, control: zmq.Socket, stage: Running, message: dict[str, Any]) -> None:
        """Send one control message to a stage that is not the source (dropped if it cannot take it now)."""
        if stage.instance.node.role is Role.SOURCE:
            return
        try:
            control.send_multipart([stage.instance.key.encode(), msgpack.packb(message)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def await_last_word(self, control: zmq.Socket, stage: Running, wait_s: float = 1.0) -> None:
        """Read what an exited stage said just before it exited (its error, QUIT or DONE).

        On a loaded machine that report can come in after the exit is seen; without waiting for it
        (at most `wait_s`) the reason of a failure would be lost from the run's one-line error.
        """
        deadline = time.monotonic() + wait_s
        while (stage.error is None and not stage.done and not self.quit_by and not self.interrupted
               and time.monotonic() < deadline):
            if control.poll(20):
                self._on_control(control)

    @property
    def _source_key(self) -> bytes:
        return self.graph.source.key(0).encode()

    def _floor(self) -> int:
        """Lossless: the last seq every acknowledging stage (the sinks, or else the publisher) has acknowledged."""
        names = {node.name for node in self.graph.acknowledging()}
        return min((s.acked for s in self.stages.values() if s.instance.node.name in names), default=-1)

    def _delivered(self) -> int:
        """Lossless: the last seq every acknowledging stage has handled (durably or not yet)."""
        names = {node.name for node in self.graph.acknowledging()}
        return min((s.handled for s in self.stages.values() if s.instance.node.name in names), default=-1)

    def _relay_floor(self, control: zmq.Socket) -> None:
        floor = self._floor()
        if floor > getattr(self, "_floor_sent", -1):
            self._floor_sent = floor
            control.send_multipart([self._source_key, msgpack.packb({"type": ACK, "seq": floor})])

    def _schedule_restart(self, stage: Running) -> bool:
        """Apply the stage's restart policy to a dead stage: True when it will be started again.

        A stage that never became ready is not restarted: its error (a missing camera, a bad
        model) is one the user has to fix; neither is one that reported a StageError (a full disk)."""
        policy, limit, backoff = self.config.restart.for_stage(stage.instance.node.name)
        if policy != "on-failure" or stage.fatal or (not stage.ready and stage.restarts == 0):
            return False  # (a restarted stage that dies again before it is ready counts as one more restart)
        key = stage.instance.key
        if stage.restarts >= limit:
            log(f"stage {key}: not restarted again, it already was {stage.restarts} times (restart.max_restarts)")
            return False
        code = stage.process.poll()
        status = f"exit status {code}" if code is None or code >= 0 else f"killed by signal {-code}"
        delay = min(backoff * 2 ** stage.restarts, self.config.restart.max_backoff_s)
        reason = f": {stage.error}" if stage.error else ""
        log(f"stage {key} stopped ({status}{reason}); restart {stage.restarts + 1} of {limit} in {delay:.1f} s")
        stage.restart_at = time.monotonic() + delay
        return True

    def _restart_due(self, control: zmq.Socket) -> None:
        """Start the stages whose back-off is over; tell capture when a restarted stage is ready."""
        for key, stage in list(self.stages.items()):
            if stage.restart_at is not None and time.monotonic() >= stage.restart_at:
                config_path, endpoint = self._launch
                self._start(stage.instance, config_path, endpoint, attempt=stage.restarts + 1)
                new = self.stages[key]
                new.restarts, new.acked, new.handled, new.resumed = stage.restarts + 1, stage.acked, stage.acked, False
            elif not stage.resumed and stage.ready:
                # a new epoch: capture sends every unacknowledged frame again (a restarted capture
                # starts after the acknowledged ones); see pipeline/recovery.py
                stage.resumed = True
                self._new_epoch(control, START if stage.instance.node.role is Role.SOURCE else RESEND)

    def _new_epoch(self, control: zmq.Socket, kind: str) -> None:
        """Announce a new epoch to every stage, then tell capture to start or resend in it."""
        self._epoch = getattr(self, "_epoch", 0) + 1
        for other in self.stages.values():  # announced before capture may stamp it (pipeline/recovery.py)
            self._tell(control, other, {"type": EPOCH, "epoch": self._epoch})
        control.send_multipart([self._source_key, msgpack.packb({"type": kind, "epoch": self._epoch, "floor": self._floor()})])
        self._progress_at, self._delivered_seen = time.monotonic(), self._delivered()

    def _watchdog(self, control: zmq.Socket) -> bool:
        """Lossless: resend frames sent but not acknowledged for ACK_TIMEOUT_S; False (logged) once
        MAX_RESENDS resends in a row brought nothing (those frames cannot be delivered)."""
        settled = all(s.ready and s.resumed and s.restart_at is None for s in self.stages.values())
        delivered = self._delivered()
        outstanding = self._sent > delivered or (self._end is not None and not self._finished())
        if not settled or not outstanding:
            self._progress_at = time.monotonic()  # nothing outstanding, or a restart under way
            return True
        if time.monotonic() - self._progress_at < ACK_TIMEOUT_S:
            return True
        floor = delivered
        if self._resends >= MAX_RESENDS:
            behind = f" (frames {floor + 2}-{self._sent} wait behind it)" if self._sent > floor + 1 else ""
            log(f"error: lossless: frame {floor + 1} never reached the sinks{behind} after {MAX_RESENDS} resends "
                f"({ACK_TIMEOUT_S:.0f} s each); stopping the pipeline")
            return False
        self._resends += 1
        log(f"lossless: frames after seq {floor} not acknowledged for {ACK_TIMEOUT_S:.0f} s; resending them ({self._resends} of {MAX_RESENDS})")
        # the same epoch: the stages keep their ordering and drop what they already have; only gaps fill
        control.send_multipart([self._source_key, msgpack.packb({"type": RESEND, "epoch": getattr(self, "_epoch", 0), "floor": self._floor()})])
        self._progress_at = time.monotonic()
        return True

    def _failed_stage(self) -> Running | None:
        for stage in self.stages.values():
            if stage.restart_at is not None:
                continue  # dead, waiting for its restart
            code = stage.process.poll()
            if stage.error is not None and code is None:
                try:
                    stage.process.wait(timeout=2)  # it reported an error and is exiting
                except subprocess.TimeoutExpired:
                    pass
                code = stage.process.poll()
            if code is not None and (code != 0 or stage.error is not None):
                return stage
            if code == 0 and not stage.done and stage.instance.node.role is not Role.SOURCE:
                return stage  # a stage that exits 0 before end of stream has failed too
        return None

    def _fail(self, stage: Running) -> int:
        code = stage.process.poll()
        status = f"exit status {code}" if code is None or code >= 0 else f"killed by signal {-code}"
        if stage.error:
            log(f"error: {stage.instance.key}: {stage.error}")
        log(f"stage {stage.instance.key} stopped ({status}); stopping the pipeline")
        return EXIT_STAGE_FAILED

    def _finished(self) -> bool:
        sinks = [s for s in self.stages.values() if s.instance.node.role is Role.SINK]
        if sinks:
            return all(s.done and s.process.poll() == 0 for s in sinks)
        publisher = self.stages.get(self.graph.publisher.key(0))
        return publisher is not None and publisher.done

    def _print_summary(self, final: bool = False) -> None:
        snapshots = {key: s.snapshot for key, s in self.stages.items() if s.snapshot}
        if snapshots:
            line = summary_line(snapshots, self.graph.publisher.key(0))
            if self.progress is not None:
                line = f"{self.progress.line(snapshots.get(self.graph.publisher.key(0), {}), final)} | {line}"
            log(line)

    def _stop_all(self, control: zmq.Socket | None) -> None:
        """Ask politely, then terminate, then kill: no process outlives the run."""
        alive = [s for s in self.stages.values() if s.process.poll() is None]
        if control is not None:
            for stage in alive:
                try:
                    control.send_multipart([stage.instance.key.encode(), msgpack.packb({"type": STOP})], zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
        deadline = time.monotonic() + _STOP_GRACE_S
        for stage in alive:
            try:
                stage.process.wait(timeout=max(deadline - time.monotonic(), 0.05))
            except subprocess.TimeoutExpired:
                stage.process.terminate()
        for stage in alive:
            try:
                stage.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                stage.process.kill()
                stage.process.wait()
