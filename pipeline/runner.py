"""Runs one stage as an OS process: sockets, decoding, ordering, delivery policy, metrics, shutdown.

    python -m stages.detect --config configs/file.yaml [--worker 1] [--control ipc://...]
    python -m pipeline.runner --stage NAME --config ... [--graph run/graph.json]

Started by run_pipeline.py (which passes --stage, --graph and --control) or by hand on another
host (no control: the stage starts at once and exits after end of stream). Its ports come from
the stage graph (pipeline/graph.py).
"""
from __future__ import annotations

import argparse
import faulthandler
import gc
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import zmq

from pipeline.config import PipelineConfig
from pipeline.config_file import ConfigError, load_config
import numpy as np

from pipeline.control import DONE, END, ERROR, METRICS, QUIT, READY, START, STOP, StageControl
from pipeline.graph import RESULTS, SINK_RESULTS, Format, Graph, Node, Port, derive_in_child, stage_class
from pipeline.lifetime import parent_gone, remove_run_folder
from pipeline.metrics import StageMetrics
from pipeline.recovery import ACK, EPOCH, RESEND, SENT, EpochGate, SendWindow, SinkGate, stamp
from pipeline.reorder import Reorderer
from pipeline.stage import Role, SourceStage, Stage, StageError, StopPipeline
from pipeline.transport import (CONSUMERS, MAX_CONSUMERS, MAX_SUBSCRIPTION_BYTES, MAX_SUBSCRIPTIONS, STAGES, ResultPublisher,
                                Role as Side, open_socket, stop_authenticator)
from pipeline.wire import MAX_FRAME_BYTES, MAX_HEADER_BYTES, TOPIC_RESULT, TOPIC_STATUS, Message, WireError, check_attributes, decode, encode

_SOCKET_TYPES = {"push": zmq.PUSH, "pull": zmq.PULL, "pub": zmq.XPUB, "sub": zmq.SUB}
_TOPIC_EOS = b"eos"
_POLL_MS = 100
_METRICS_EVERY_S = 1.0
_LIVE_REORDER_WAIT_S = 1.0  # live mode: a frame lost in flight stops holding the others back after this
_LIVE_CREDIT_EXPIRY_S = 2.0  # live mode: a frame whose result never came stops counting as in flight
_NOTICES_PER_POLL = 256  # subscription notices read per loop turn: a flood cannot starve the stage
_LIVE_STALE_RUN = 8  # live: this many frames in a row older than the ordering's position reset it (they are the real ones)


def main(cls: type[Stage] | None = None, argv: list[str] | None = None) -> int:
    """Entry point of `python -m stages.NAME` (cls given) and of `python -m pipeline.runner --stage NAME`."""
    parser = argparse.ArgumentParser(prog=f"python -m {cls.__module__ if cls else 'pipeline.runner'}",
                                     description=cls.__doc__ if cls else __doc__)
    parser.add_argument("--config", required=True, help="pipeline YAML config")
    parser.add_argument("--stage", default=cls.name if cls else None, required=cls is None, help="its name in the graph")
    parser.add_argument("--module", default=None, help="its module (set by run_pipeline.py, for ps; the graph says the same)")
    parser.add_argument("--graph", default=None, help="the run's graph (set by run_pipeline.py; else derived from the config)")
    parser.add_argument("--worker", type=int, default=0, help="worker index when several run")
    parser.add_argument("--control", default=None, help="supervisor control endpoint (set by run_pipeline.py)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    parser.add_argument("--attempt", type=int, default=0, help="restart count (set by run_pipeline.py)")
    args = parser.parse_args(argv)
    # A crash inside native code (OpenCV, FFmpeg, onnxruntime) prints the Python lines it happened under
    # before the supervisor reports the signal, instead of leaving only "died of signal 11".
    faulthandler.enable()
    try:
        config = load_config(args.config, args.set)
        if args.graph:
            graph = Graph.load(Path(args.graph))
        else:  # by hand: derived by a short-lived child, so that this process imports only its own stage's module
            with tempfile.TemporaryDirectory(prefix="liveness-graph-") as folder:
                graph = derive_in_child(args.config, args.set, Path(folder) / "graph.json")
        node = graph.node(args.stage)
        stage = make_stage(node, args.worker, cls)
    except (ConfigError, ImportError) as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    stage.attempt = args.attempt
    if args.control is None:  # started by hand: one line saying what this process is
        print(describe_process(node, args.worker, config, args.config), file=sys.stderr, flush=True)
    runner = StageRunner(stage, node, graph, config, args.control)
    runner.run_folder = Path(args.graph).parent if args.graph else None
    return runner.run()


def describe_process(node: Node, worker: int, config: PipelineConfig, config_path: str) -> str:
    """"detect: stage detect (stages.detect, process 1 of 2) of my.yaml; in frames tcp://..., out detections ipc://..."."""
    endpoints = config.endpoints.model_dump()
    ports = [("in", node.input)] if node.input else []
    ports += [("out", port) for port in node.outputs]
    wiring = ", ".join(f"{way} {port.endpoint} {endpoints.get(port.endpoint, 'auto')}" for way, port in ports)
    return (f"{node.key(worker)}: stage {node.name} ({node.module}, process {worker + 1} of {node.workers}) of {config_path}, "
            f"started by hand; {wiring}; runs until end of stream or Ctrl-C")


def make_stage(node: Node, worker: int = 0, cls: type[Stage] | None = None) -> Stage:
    """The stage object of one process of `node`: named as in the graph (the namespace of the
    attributes it adds), with its entry's settings checked against its class's `Settings`."""
    stage_type = cls or stage_class(node.module, node.class_name)
    stage = stage_type(worker)
    stage.name = node.name
    stage.settings = stage_type.Settings.model_validate(node.settings) if stage_type.Settings else node.settings
    return stage


class StageRunner:
    """The loop around one stage."""

    def __init__(self, stage: Stage, node: Node, graph: Graph, config: PipelineConfig, control_endpoint: str | None) -> None:
        self.stage, self.node, self.graph, self.config = stage, node, graph, config
        self.key = node.key(stage.worker)
        self.live = config.policy() == "live"
        self.metrics = StageMetrics(self.key)
        self.control_endpoint = control_endpoint
        self.stop_requested = False
        self.parent_pid = os.getppid()
        self.context = zmq.Context()
        self.control = StageControl(self.context, control_endpoint, self.key)
        self.input: zmq.Socket | None = None
        self.results: zmq.Socket | None = None  # live source only: the result stream, for flow control
        self.outputs: list[tuple[Port, zmq.Socket]] = []
        self.publisher: ResultPublisher | None = None  # the publisher: the result stream towards consumers
        self._rebuilds_seen = 0  # times the result stream was started afresh under consumers' load (reported)
        self._last_metrics = 0.0
        self._idle_since = 0  # when this stage last finished a message: what arrives earlier waits in our queue
        # lossless under a supervisor: acknowledgements and resends (pipeline/recovery.py)
        self.recovering = not self.live and control_endpoint is not None
        self.acks = self.recovering and node.name in {n.name for n in graph.acknowledging()}
        self.sink_gate: SinkGate | None = None
        self.epoch_gate = EpochGate() if self.recovering and node.reorders else None
        self.started = False  # capture: the supervisor said start
        self.epoch, self.floor, self.resend = 0, -1, False  # capture: from the supervisor
        self.last_handled, self._ack_sent, self._ack_time, self._handled_sent = -1, -1, 0.0, -1
        self.announced_end: int | None = None  # under a supervisor: the source's last seq, once it has finished
        self.run_folder: Path | None = None  # the run's private folder (removed by the last stage out when the supervisor died)
        self._refused = 0  # messages refused by the role checks (counted as malformed)
        self._terminated = False  # a SIGTERM came

    # ---- lifecycle -------------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        code = 0
        try:
            self.stage.setup(self.config)
            # Everything set up so far (modules, models) lives as long as the process: keep it out of
            # the garbage collector's full passes, which would otherwise pause the loop for milliseconds.
            gc.collect()
            gc.freeze()
            if self.recovering and self.node.role is Role.SINK:
                self.last_handled = self._ack_sent = self.stage.resume_point()  # a restarted sink skips what it has
                self.sink_gate = SinkGate(self.last_handled)
            self._open_sockets()
            self.control.send(READY)
            if isinstance(self.stage, SourceStage):
                self._run_source(self.stage)
            else:
                self._run_loop()
        except StopPipeline:
            self.control.send(QUIT)  # a clean end asked for by the user, not a failure
        except StageError as error:  # for the user to fix (a full disk, a bad file): restarting cannot help
            self._report_error(str(error), fatal=True)
            code = 1
        except (zmq.ZMQError, OSError) as error:
            self._report_error(str(error))
            code = 1
        except Exception as error:  # a bug: one line with where it happened, not a traceback wall
            where = traceback.extract_tb(error.__traceback__)[-1]
            self._report_error(f"{type(error).__name__}: {error} (at {Path(where.filename).name}:{where.lineno})")
            code = 1
        finally:
            try:
                self.stage.teardown()
            except Exception as error:  # teardown must not hide the first error
                print(f"{self.key}: teardown failed: {error}", file=sys.stderr)
            self.control.send(METRICS, snapshot=self.metrics.snapshot())
            for sock in [self.input, self.results, *(s for _, s in self.outputs)]:
                if sock is not None:
                    sock.close()
            if self.publisher is not None:
                self.publisher.close()
            self.control.close()
            stop_authenticator(self.context)
            self.context.term()
            if self.control_endpoint and (os.getppid() != self.parent_pid or (self._terminated and parent_gone(self.parent_pid))):
                remove_run_folder(self.run_folder)  # the supervisor was killed outright: nobody else will
        return code

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop_requested = True
        self._terminated = self._terminated or signum == signal.SIGTERM  # perhaps the supervisor dying (PDEATHSIG)

    def _report_error(self, text: str, fatal: bool = False) -> None:
        if self.control.socket is not None:
            self.control.send(ERROR, text=text, fatal=fatal)
        else:
            print(f"{self.key}: error: {text}", file=sys.stderr)

    def _should_stop(self) -> bool:
        """Stop on a signal, a supervisor STOP, or when the supervisor died."""
        self._read_control()
        self._flush_ack()
        if self.control_endpoint and os.getppid() != self.parent_pid:
            self.stop_requested = True
        self._maybe_send_metrics()
        return self.stop_requested

    def _read_control(self) -> None:
        """Take every pending supervisor message (never blocks)."""
        kind = self.control.receive()
        while kind is not None:
            fields = self.control.last
            if kind == STOP:
                self.stop_requested = True
            elif kind in (START, RESEND):
                self.started = True
                self.epoch = int(fields.get("epoch", 0))
                self.floor = max(self.floor, int(fields.get("floor", -1)))
                self.resend = kind == RESEND
            elif kind == ACK:
                self.floor = max(self.floor, int(fields.get("seq", -1)))
            elif kind == END and isinstance(fields.get("last_seq"), int):
                self.announced_end = fields["last_seq"]
            elif kind == EPOCH and isinstance(fields.get("epoch"), int) and self.epoch_gate is not None:
                self.epoch_gate.allowed = max(self.epoch_gate.allowed, fields["epoch"])
            kind = self.control.receive()

    def _flush_ack(self, final: bool = False) -> None:
        """Tell the supervisor how far this sink got (at most every 50 ms, and once more at the end)."""
        if not self.acks:
            return
        lag = min(self.stage.ack_lag, self.config.lossless_window() // 2)  # a lag as long as the window would stall capture
        seq = self.last_handled if final else self.last_handled - lag
        moved = seq > self._ack_sent or self.last_handled > self._handled_sent
        if moved and (final or time.monotonic() - self._ack_time >= 0.05):
            # `handled` (not yet durable beyond `seq`) tells the watchdog that frames still arrive
            self.control.send(ACK, seq=max(seq, self._ack_sent), handled=self.last_handled)
            self._ack_sent, self._handled_sent, self._ack_time = max(seq, self._ack_sent), self.last_handled, time.monotonic()

    def _maybe_send_metrics(self) -> None:
        now = time.monotonic()
        if now - self._last_metrics >= _METRICS_EVERY_S:
            self._last_metrics = now
            self.control.send(METRICS, snapshot=self.metrics.snapshot())

    # ---- sockets ---------------------------------------------------------------------------
    def _endpoint(self, name: str) -> str:
        """The address of endpoint `name` (config `endpoints.NAME`; the graph's edges default to "auto")."""
        endpoint = self.config.endpoints.model_dump().get(name, "auto")
        if endpoint == "auto" and name == SINK_RESULTS and self.control_endpoint is None:
            return self._endpoint(RESULTS)  # by hand: the sinks subscribe to the result stream like any consumer
        if endpoint == "auto":
            raise StageError(
                f"endpoints.{name} is 'auto', which only run_pipeline.py can resolve; "
                "set a tcp:// or ipc:// endpoint to run a stage on its own"
            )
        return endpoint

    def _hwm(self, port: Port) -> int:
        if port.format is Format.RESULT:
            return self.config.transport.results_hwm
        return self.config.transport.live_hwm if self.live else self.config.transport.lossless_hwm

    def _open(self, port: Port) -> zmq.Socket:
        subscribe = b"" if port.socket == "sub" else None
        endpoint = self._endpoint(port.endpoint)
        public = port.format is Format.RESULT and endpoint == self._endpoint(RESULTS)
        # what a peer may send: subscriptions of a few bytes to a publisher; frames within the wire's bounds
        largest = MAX_SUBSCRIPTION_BYTES + 1 if port.socket == "pub" else MAX_HEADER_BYTES if port.format is Format.RESULT else MAX_FRAME_BYTES
        sock = open_socket(self.context, _SOCKET_TYPES[port.socket], endpoint, port.side, self._hwm(port), subscribe,
                           curve=self.config.curve, peers=CONSUMERS if public else STAGES,
                           max_message=largest)
        if port.socket == "pub" and not self.live:
            sock.setsockopt(zmq.XPUB_NODROP, 1)  # lossless: a slow recorder slows us down instead of losing results
        return sock

    def _open_sockets(self) -> None:
        if self.node.input is not None:
            self.input = self._open(self.node.input)
        for port in self.node.outputs:
            if port.endpoint == RESULTS:
                if self._endpoint(RESULTS) != self._endpoint(SINK_RESULTS):  # else (by hand) one socket serves both
                    self.publisher = ResultPublisher(self.context, self._endpoint(RESULTS), self._hwm(port), self.config.curve)
                continue
            self.outputs.append((port, self._open(port)))
        if isinstance(self.stage, SourceStage) and self.live:
            # the live flow limiter counts finished frames on the sinks' result stream; subscribe before
            # reporting ready, because the publisher waits for this subscription
            self.results = open_socket(self.context, zmq.SUB, self._endpoint(SINK_RESULTS), Side.CONNECT,
                                       self.config.transport.results_hwm, subscribe=TOPIC_RESULT, curve=self.config.curve,
                                       max_message=MAX_HEADER_BYTES)
        for port, sock in self.outputs:
            if port.socket == "pub":
                self._wait_for_subscribers(sock, self.graph.result_subscribers(self.config))

    def _wait_for_subscribers(self, sock: zmq.Socket, required: int) -> None:
        """Block until the pipeline's own result subscribers have joined (no slow-joiner loss)."""
        joined = 0
        deadline = time.monotonic() + self.config.transport.ready_timeout_s
        while joined < required:
            if self._should_stop():
                return
            if time.monotonic() > deadline:
                raise StageError(f"endpoints.results: {required - joined} of {required} subscribers never joined")
            if sock.poll(_POLL_MS):
                if sock.recv()[:1] == b"\x01":
                    joined += 1

    def _send(self, port: Port, sock: zmq.Socket, parts: list[Any], source: str | None = None) -> bool:
        """Send with the port's policy: live ports that may drop never wait; others wait (backpressure).

        `source` names the frame's source, for the per-source count of frames dropped here."""
        may_drop = self.live and port.live_drops
        blocked_since = 0
        while True:
            try:
                sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
                # backpressure: time spent waiting for room downstream (0 when there was room)
                self.metrics.send_wait_ms.append((time.monotonic_ns() - blocked_since) / 1e6 if blocked_since else 0.0)
                return True
            except zmq.Again:
                if may_drop:
                    self.metrics.drop(f"{port.endpoint}_busy", source=source)
                    return False
                blocked_since = blocked_since or time.monotonic_ns()
            if self._should_stop():
                return False
            sock.poll(_POLL_MS, zmq.POLLOUT)

    def _emit(self, message: Message) -> None:
        """Send one processed message on every output port (and to consumers, when publishing)."""
        for port, sock in self.outputs:
            own = message.stamps.get(self.key)
            if own:  # sent now: the receiver's hop time must not include our sends on earlier ports
                own[-1] = time.monotonic_ns()
            if port.format is Format.RESULT:
                for parts in _result_parts(message):
                    self._send(port, sock, parts, message.source)
            else:
                self._send(port, sock, encode(message), message.source)
        if self.publisher is not None:
            for parts in _result_parts(message):
                self.publisher.send(parts)

    # ---- receiving stages ------------------------------------------------------------------
    def _receive(self) -> Message | None:
        assert self.input is not None
        parts = self.input.recv_multipart(flags=zmq.NOBLOCK, copy=False)
        received = time.monotonic_ns()
        if self.node.input is not None and self.node.input.format is Format.RESULT:
            parts = parts[1:]  # drop the topic
        try:
            message = decode(parts)
        except WireError as error:
            self.metrics.malformed += 1
            if self.metrics.malformed <= 3:
                print(f"{self.key}: dropped a malformed message ({error})", file=sys.stderr)
            return None
        problem = self._role_problem(message)
        if problem:
            self._refuse(problem)
            return None
        if message.stamps:
            last_sent = max(stamp[-1] for stamp in message.stamps.values())
            # split the hop: time queued while we were busy with earlier messages, then transport
            self.metrics.inbox_ms.append(max(0, self._idle_since - last_sent) / 1e6)
            self.metrics.hop_ms.append((received - max(last_sent, self._idle_since)) / 1e6)
        message.stamps[self.key] = [received]
        return message

    def _service_publisher(self) -> None:
        """Let the result stream read what consumers sent; say so when their load made it start afresh."""
        assert self.publisher is not None
        self.publisher.service()  # (sending does this too)
        if self.publisher.rebuilds > self._rebuilds_seen:
            self.metrics.drop("consumers_reset", self.publisher.rebuilds - self._rebuilds_seen)
            self._rebuilds_seen = self.publisher.rebuilds
            if self.publisher.rebuilds <= 3:
                print(f"{self.key}: endpoints.results: consumers exceeded {MAX_SUBSCRIPTIONS} subscriptions or {MAX_CONSUMERS} "
                      "connections; the socket was closed and bound again", file=sys.stderr, flush=True)

    def _refuse(self, problem: str) -> None:
        """Count and drop a message this stage's upstream cannot have sent (three are named on stderr)."""
        self.metrics.malformed += 1
        if self.metrics.malformed <= 3:
            print(f"{self.key}: dropped a message its upstream cannot have sent ({problem})", file=sys.stderr)

    def _role_problem(self, message: Message) -> str:
        """What is wrong with a well-formed message for this stage's input ("" when nothing): frames
        where frames belong, with pixels (or an unread frame's error and no faces); pixels made
        three-channel and boxes kept within reach of the frame, so that no stage sees odd input."""
        assert self.node.input is not None
        if self.node.input.format is not Format.FRAME:
            return "" if message.frame is None else "pixels on the result stream"
        if message.kind == "status":
            return "a status notice where frames belong"
        if message.kind == "eos":
            last = message.info.get("last_seq")
            return "" if last == message.prev_seq else "an end of stream whose last_seq is not its prev_seq"
        if message.frame is None:
            if "error" not in message.info or message.faces:
                return "a frame without pixels (only a frame the source could not read has none, and then no faces)"
            return ""
        if message.frame.shape[2] == 1:
            message.frame = np.repeat(message.frame, 3, axis=2)
        elif message.frame.shape[2] == 4:
            message.frame = np.ascontiguousarray(message.frame[:, :, :3])
        height, width = message.frame.shape[:2]
        faces = []
        for face in message.faces:
            x1, y1, x2, y2 = face.box  # a face may stick out of the frame a little, never by more than the frame
            box = [min(max(x1, -width), 2 * width), min(max(y1, -height), 2 * height),
                   min(max(x2, -width), 2 * width), min(max(y2, -height), 2 * height)]
            if box[2] > box[0] and box[3] > box[1]:
                face.box = box
                faces.append(face)
        message.faces = faces
        return ""

    def _take_eos(self, message: Message, reorder: Reorderer | None) -> bool:
        """Whether an end of stream is the source's: under a supervisor it must name the last seq the
        source reported (announced over the control channel); by hand no later frame may be waiting."""
        last = message.info.get("last_seq")
        if reorder is not None and isinstance(last, int) and (reorder.last_released > last or reorder.waiting_after(last)):
            return False
        if self.control.socket is None:
            return True
        return self.announced_end is not None and last == self.announced_end

    def _run_loop(self) -> None:
        assert self.input is not None
        poller = zmq.Poller()
        poller.register(self.input, zmq.POLLIN)
        for port, sock in self.outputs:
            if port.socket == "pub":
                poller.register(sock, zmq.POLLIN)  # subscription notices: read so they never pile up
        reorder = None
        if self.node.reorders:  # how far ahead a frame can be: capture's window (lossless), else generous
            window = self.config.seq_span() + 1 if self.recovering else 1 << 16
            # held at most: capture's window (lossless), else what the queues of a few hops can hold
            reorder = Reorderer(max_ahead=window, max_pending=min(window, self.config.lossless_window() + 64))
        eos: Message | None = None
        candidates: dict[Any, Message] = {}  # ends of stream waiting for the supervisor's word, by last_seq
        stale = 0
        while not self._should_stop():
            events = dict(poller.poll(_POLL_MS))
            for port, sock in self.outputs:
                if sock in events:
                    for _ in range(_NOTICES_PER_POLL):
                        try:
                            sock.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
            if self.publisher is not None:
                self._service_publisher()
            if self.input in events:
                burst_ends = time.monotonic() + _POLL_MS / 1000
                for _ in range(64):  # drain a burst, then look at control (and send metrics) again
                    if time.monotonic() > burst_ends:  # a slow stage must not go silent for 64 frames
                        break
                    try:
                        message = self._receive()
                    except zmq.Again:
                        break
                    if message is None:
                        continue
                    self.metrics.frames_in += message.kind == "frame"
                    if self.epoch_gate is not None and message.info.get("epoch", 0) > self.epoch_gate.allowed:
                        self._read_control()  # the supervisor announces an epoch before capture uses it
                    if self.epoch_gate is not None and reorder is not None and not self.epoch_gate.admit(message, reorder):
                        if self.epoch_gate.refused > self._refused:
                            self._refused = self.epoch_gate.refused
                            self._refuse("an epoch the supervisor never announced")
                        else:
                            self.metrics.drop("repeat", source=message.source)  # sent again after a restart: not a loss
                        continue
                    if self.sink_gate is not None and not self.sink_gate.admit(message):
                        if message.kind == "frame":
                            self.metrics.drop("repeat" if message.seq <= self.sink_gate.last_handled else "ahead",
                                              source=message.source)
                        continue
                    if message.kind == "eos":
                        if self.control.socket is None and not self._take_eos(message, reorder):
                            self._refuse(f"an end of stream after seq {message.info.get('last_seq')} with later frames seen")
                        elif len(candidates) < 16:
                            candidates.setdefault(message.info.get("last_seq"), message)
                    elif reorder is not None:
                        if self.live and message.prev_seq == -1 and reorder.last_released >= 0:
                            reorder.reset(-1)  # live: a restarted capture numbers its frames from 0 again
                        stale = stale + 1 if self.live and message.seq <= reorder.last_released else 0
                        if stale >= _LIVE_STALE_RUN:  # live: the ordering was pushed ahead; these are the real frames
                            reorder.reset(message.prev_seq)
                            stale = 0
                        refused = reorder.refused
                        for ready in reorder.push(message):
                            self._handle(ready)
                        if reorder.refused > refused:
                            self._refuse(f"seq {message.seq} outside the window after {reorder.last_released}")
                    else:
                        self._handle(message)
            if reorder is not None and self.live:
                released, skipped = reorder.expire(_LIVE_REORDER_WAIT_S)
                if skipped:
                    self.metrics.drop("lost_in_flight", skipped)
                for ready in released:
                    self._handle(ready)
            if candidates and (self.control.socket is None or self.announced_end is not None):
                # (under a supervisor, kept until the source has finished: its word may still be on its way)
                for candidate in candidates.values():
                    if eos is not None and candidate.info.get("last_seq") == eos.info.get("last_seq"):
                        continue  # the same end of stream, sent again in a new epoch
                    if eos is None and self._take_eos(candidate, reorder):
                        eos = candidate
                    else:
                        self._refuse(f"an end of stream after seq {candidate.info.get('last_seq')}, which is not the source's last")
                candidates.clear()
            if eos is not None and (reorder is None or reorder.complete(eos.info.get("last_seq", -1))):
                self._finish(eos)
                if self.node.role is Role.SINK or self.control.socket is None:
                    return
                eos = None  # stay up (quietly) until the supervisor says stop

    def _handle(self, message: Message) -> None:
        started = time.monotonic_ns()
        received = message.stamps.get(self.key)
        if received:  # time spent waiting in this stage (reorder buffer, a drained burst) before processing
            self.metrics.queue_ms.append((started - received[0]) / 1e6)
        if message.frame is None and self.node.input is not None and self.node.input.format is Format.FRAME:
            outputs = [message]  # a frame the source could not read: pass its error on untouched
        else:
            given = frozenset(namespace for face in message.faces for namespace in face.attributes)
            outputs = self.stage.process(message)
            try:
                for out in outputs:  # what a stage wrote is checked once, here, before it is sent
                    check_attributes(out, self.key, self.stage.name, given)
            except WireError as error:
                raise StageError(str(error)) from None
        done = time.monotonic_ns()
        self.metrics.process_ms.append((done - started) / 1e6)
        for out in outputs:
            out.stamps.setdefault(self.key, [started]).append(time.monotonic_ns())
            self._emit(out)
            self.metrics.sent(out.source, out.t_capture_ns)
        self._idle_since = time.monotonic_ns()
        if message.kind == "frame":
            self.last_handled = message.seq
            if self.sink_gate is not None:
                self.sink_gate.handled(message)

    def _finish(self, eos: Message) -> None:
        self.stage.end_of_stream()
        if self.acks:
            self.last_handled = max(self.last_handled, int(eos.info.get("last_seq", -1)))
            self._flush_ack(final=True)
        eos.stamps.setdefault(self.key, []).append(time.monotonic_ns())
        for port, sock in self.outputs:
            self._emit_one(port, sock, eos)
        if self.publisher is not None:
            self.publisher.send([_TOPIC_EOS, *encode(eos, with_pixels=False)])
        self.control.send(DONE, info=eos.info)

    def _emit_one(self, port: Port, sock: zmq.Socket, message: Message) -> None:
        if port.format is Format.RESULT:
            self._send(port, sock, [_TOPIC_EOS, *encode(message, with_pixels=False)])
        else:
            # end of stream must arrive even on a port that drops frames in live mode
            while not self.stop_requested:
                try:
                    sock.send_multipart(encode(message), flags=zmq.NOBLOCK)
                    return
                except zmq.Again:
                    sock.poll(_POLL_MS, zmq.POLLOUT)
                    self._should_stop()

    # ---- the source ------------------------------------------------------------------------
    def _run_source(self, source: SourceStage) -> None:
        if self.control.socket is not None:
            while not self._wait_for_start():
                if self.stop_requested:
                    return
        if self.recovering:
            self._run_recovering_source(source)
            return
        port, sock = self.outputs[0]
        frames = _LiveEntrance(self, source) if self.live else self._lossless_frames(source)
        previous = -1
        for message in frames:
            message.prev_seq = previous
            message.stamps[self.key] = [message.t_capture_ns, time.monotonic_ns()]
            if not self._send(port, sock, encode(message), message.source):
                break
            previous = message.seq
            self.metrics.sent(message.source)
        if self.stop_requested:
            return
        eos = Message(kind="eos", source=self.config.source.id, seq=previous + 1, prev_seq=previous,
                      info={"last_seq": previous, "frames_read": self.metrics.frames_in, "dropped": dict(self.metrics.dropped)})
        self._send(port, sock, encode(eos))
        self.control.send(DONE, info=eos.info)

    def _wait_for_start(self) -> bool:
        assert self.control.socket is not None
        self.control.socket.poll(_POLL_MS)
        self._should_stop()  # reads start (with the epoch and floor to resume from) or stop
        return self.started

    def _run_recovering_source(self, source: SourceStage) -> None:
        """Lossless under a supervisor: keep every frame until the sinks acknowledge it, resend on request.

        Runs until the supervisor says stop (not at end of stream): a stage restarted after the
        last frame still needs the window resent.
        """
        assert self.control.socket is not None
        port, sock = self.outputs[0]
        window = SendWindow(self.config.lossless_window())
        window.acknowledge(self.floor)
        previous = self.floor
        frames = iter(source.frames(start=self.floor + 1))  # a restarted capture resumes after the floor
        eos: Message | None = None
        sent_reported = 0.0
        self.resend = False  # the start already set the epoch; nothing was sent yet
        while not self._should_stop():
            window.acknowledge(self.floor)
            if self.resend:
                self.resend = False
                again = window.pending() + ([eos] if eos is not None else [])
                for message in again:
                    if not self._send(port, sock, encode(stamp(message, self.epoch, window.floor))):
                        return
                print(f"{self.key}: resending {len(again)} unacknowledged frames (epoch {self.epoch})", file=sys.stderr, flush=True)
                continue
            if eos is None and not window.full():
                message = next(frames, None)
                if message is None:
                    eos = Message(kind="eos", source=self.config.source.id, seq=previous + 1, prev_seq=previous,
                                  info={"last_seq": previous, "frames_read": self.metrics.frames_in,
                                        "dropped": dict(self.metrics.dropped)})
                    if not self._send(port, sock, encode(stamp(eos, self.epoch, window.floor))):
                        return
                    self.control.send(DONE, info=eos.info)
                    continue
                self.metrics.frames_in += 1
                _count_source_event(self.metrics, message)
                _count_skipped(self.metrics, source, message)
                message.prev_seq = previous
                message.stamps[self.key] = [message.t_capture_ns, time.monotonic_ns()]
                window.add(message)
                if not self._send(port, sock, encode(stamp(message, self.epoch, window.floor)), message.source):
                    return
                previous = message.seq
                self.metrics.sent(message.source)
                if time.monotonic() - sent_reported >= 0.05:  # the supervisor's watchdog compares it with the floor
                    self.control.send(SENT, seq=previous)
                    sent_reported = time.monotonic()
                continue
            if previous > -1 and sent_reported:
                self.control.send(SENT, seq=previous)  # the window is full or the stream over: say where we are
                sent_reported = 0.0
            self.control.socket.poll(_POLL_MS)  # window full or stream over: wait for acknowledgements

    def _lossless_frames(self, source: SourceStage):
        for message in source.frames():
            self.metrics.frames_in += 1
            _count_source_event(self.metrics, message)
            _count_skipped(self.metrics, source, message)
            if self._should_stop():
                return
            yield message


def _result_parts(message: Message) -> list[list[Any]]:
    """The result stream's messages for one processed message: its status notice, if any, then the result."""
    parts = []
    event = message.info.get("source_event")
    if isinstance(event, dict) and message.kind == "frame":  # a camera or stream lost or back
        status = Message(kind="status", source=message.source, seq=message.seq, prev_seq=message.prev_seq,
                         t_capture_ns=message.t_capture_ns, t_wall=message.t_wall, info=dict(event))
        parts.append([TOPIC_STATUS, *encode(status, with_pixels=False)])
    topic = _TOPIC_EOS if message.kind == "eos" else TOPIC_RESULT
    return parts + [[topic, *encode(message, with_pixels=False)]]


def _count_source_event(metrics: StageMetrics, message: Message) -> None:
    """A camera or stream that went away is counted (frames it did not deliver are lost)."""
    event = message.info.get("source_event")
    if isinstance(event, dict) and event.get("event") == "source_lost":
        metrics.drop("source_lost", source=message.source)


def _count_skipped(metrics: StageMetrics, source: SourceStage, message: Message) -> None:
    """Frames a live source among several replaced before they were sent are dropped (busy).

    They were replaced by `message`, the frame of that source just read, so they count as its source's."""
    if source.skipped:
        metrics.frames_in += source.skipped
        metrics.drop("busy", source.skipped, source=message.source)
        source.skipped = 0


class _LiveEntrance:
    """Live policy at the pipeline's entrance (a flow limiter, as in MediaPipe).

    A reader thread keeps only the newest frame in a one-slot mailbox; a frame is sent on only
    while fewer than `max_in_flight` frames are between capture and result (counted from the
    result stream), so queues never build up and latency cannot grow. Replaced frames are
    counted as dropped.
    """

    def __init__(self, runner: StageRunner, source: SourceStage) -> None:
        self.runner = runner
        config = runner.config
        self.max_in_flight = runner.graph.max_in_flight(config)
        self.slot: Message | None = None
        self.lock = threading.Lock()
        self.finished = threading.Event()
        self.wake_address = f"inproc://wake-{id(self)}"
        self.wake_pull = runner.context.socket(zmq.PULL)
        self.wake_pull.bind(self.wake_address)
        assert runner.results is not None
        self.results = runner.results
        self.in_flight: dict[int, float] = {}
        self.thread = threading.Thread(target=self._read, args=(source,), daemon=True)
        self.thread.start()

    def _read(self, source: SourceStage) -> None:
        wake = self.runner.context.socket(zmq.PUSH)
        wake.setsockopt(zmq.LINGER, 0)
        wake.connect(self.wake_address)
        try:
            for message in source.frames():
                self.runner.metrics.frames_in += 1
                _count_source_event(self.runner.metrics, message)
                with self.lock:
                    if self.slot is not None:
                        self.runner.metrics.drop("busy", source=self.slot.source)
                        if "source_event" in self.slot.info and "source_event" not in message.info:
                            message.info["source_event"] = self.slot.info["source_event"]  # a status must not be dropped
                    self.slot = message
                try:
                    wake.send(b"", zmq.NOBLOCK)
                except zmq.Again:
                    pass
                except zmq.ZMQError:
                    break  # the context is gone: the stage is shutting down
                if self.runner.stop_requested:
                    break
        except StageError as error:
            self.runner._report_error(str(error))
        finally:
            self.finished.set()
            try:
                wake.send(b"", zmq.NOBLOCK)
            except zmq.ZMQError:
                pass  # full, or the context is gone at shutdown
            wake.close()

    def _collect_results(self) -> None:
        while self.results.poll(0):
            parts = self.results.recv_multipart()
            try:
                self.in_flight.pop(decode(parts[1:]).seq, None)
            except WireError:
                pass
        now = time.monotonic()
        for seq in [s for s, sent in self.in_flight.items() if now - sent > _LIVE_CREDIT_EXPIRY_S]:
            del self.in_flight[seq]

    def __iter__(self):
        poller = zmq.Poller()
        poller.register(self.wake_pull, zmq.POLLIN)
        poller.register(self.results, zmq.POLLIN)
        try:
            while not self.runner._should_stop():
                events = dict(poller.poll(_POLL_MS))
                if self.wake_pull in events:
                    while self.wake_pull.poll(0):
                        self.wake_pull.recv()
                self._collect_results()
                if len(self.in_flight) < self.max_in_flight:
                    with self.lock:
                        message, self.slot = self.slot, None
                    if message is not None:
                        self.in_flight[message.seq] = time.monotonic()
                        yield message
                        continue
                if self.finished.is_set() and self.slot is None:
                    return
        finally:
            self.wake_pull.close(0)


if __name__ == "__main__":
    raise SystemExit(main())
