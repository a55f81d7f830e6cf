"""The control channel between each stage process and run_pipeline.py.

Each stage has a DEALER socket (identity = its key, e.g. "detect.1") connected to the
supervisor's ROUTER. Messages are small msgpack maps with a "type":
  stage -> supervisor: ready, done (end of stream handled), error {text}, metrics {snapshot},
                       ack {seq} (lossless sinks: handled up to seq, see pipeline/recovery.py)
  supervisor -> stage: start {epoch, floor} (capture may begin), stop, end {last_seq} (the source
                       finished: the one end of stream a stage takes), epoch {epoch} (lossless),
                       ack {seq} and resend {epoch, floor} (to capture, lossless)
DEALER/ROUTER never hangs on a dead peer, unlike REQ/REP.
"""
from __future__ import annotations

from typing import Any

import msgpack
import zmq

READY, DONE, ERROR, METRICS, START, STOP = "ready", "done", "error", "metrics", "start", "stop"
QUIT = "quit"  # stage -> supervisor: the user asked to end the whole run (q in the window)
END = "end"  # supervisor -> every other stage {last_seq}: the source has sent its last frame (an end of stream must say the same)


class StageControl:
    """The stage side of the control channel; a no-op when the stage runs on its own."""

    def __init__(self, context: zmq.Context, endpoint: str | None, key: str) -> None:
        self.socket: zmq.Socket | None = None
        self.last: dict[str, Any] = {}
        if endpoint:
            self.socket = context.socket(zmq.DEALER)
            self.socket.setsockopt(zmq.IDENTITY, key.encode())
            self.socket.setsockopt(zmq.LINGER, 1000)
            self.socket.connect(endpoint)

    def send(self, kind: str, **fields: Any) -> None:
        if self.socket is not None:
            try:
                self.socket.send(msgpack.packb({"type": kind, **fields}), zmq.NOBLOCK)
            except zmq.Again:
                pass  # the supervisor is gone or busy; control messages are advisory

    def receive(self) -> str | None:
        """The type of a pending supervisor message, if any (never blocks)."""
        if self.socket is None:
            return None
        try:
            raw = self.socket.recv(zmq.NOBLOCK)
        except zmq.Again:
            return None
        try:
            message = msgpack.unpackb(raw)
        except Exception:
            return None
        if not isinstance(message, dict):
            return None
        self.last = message  # the whole message, for types that carry fields (start, ack, resend)
        return message.get("type")

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
