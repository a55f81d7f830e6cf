"""Listen to a running pipeline's results from any Python program.

    from pipeline.client import subscribe
    for result in subscribe("tcp://127.0.0.1:5556"):
        for face in result.faces:
            print(result.seq, face.box, face.score, face.label)

A consumer that attaches mid-run starts with the next result; one that detaches or stalls
never disturbs a live pipeline. Iteration ends at end of stream (or after `timeout_s` with no
message, when given).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.auth

from pipeline.wire import TOPIC_RESULT, TOPIC_STATUS, WireError, decode, result_record

TOPIC_EOS = b"eos"


@dataclass(frozen=True)
class FaceResult:
    """One face: box [x1, y1, x2, y2] in pixels, detector confidence, P(real), label, threshold;
    in videos also the face's track id and this frame's own score (score is then time-averaged);
    `attributes` what added stages measured, by stage name: `face.attributes["face_size"]["side_px"]`."""

    box: tuple[int, int, int, int]
    det_conf: float
    score: float
    label: str
    threshold: float
    track: int | None = None
    frame_score: float | None = None
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    """One classified frame, as in docs/result_schema.md."""

    source: str
    seq: int
    t_wall: float
    faces: list[FaceResult] = field(default_factory=list)
    size: tuple[int, int] | None = None
    latency_ms: float | None = None
    error: str | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Result":
        faces = [
            FaceResult(tuple(f["box"]), f["det_conf"], f.get("score", 0.0), f.get("label", "fake"), f.get("threshold", 0.0),
                       f.get("track"), f.get("frame_score"), f.get("attributes", {}))
            for f in record["faces"]
        ]
        size = tuple(record["size"]) if record.get("size") else None
        return cls(record["source"], record["seq"], record["t_wall"], faces, size, record.get("latency_ms"), record.get("error"))


def subscribe(endpoint: str, timeout_s: float | None = None, stop_at_eos: bool = True,
              context: zmq.Context | None = None, secret_key: str | None = None,
              server_public_key: str | None = None) -> Iterator[Result]:
    """Yield every result published on `endpoint` from now on. Malformed messages are skipped.

    With CurveZMQ on the pipeline, pass this client's secret key file and the server's public key
    file (`python -m pipeline.keys`); the pipeline must list this client's public key."""
    context = context or zmq.Context.instance()
    sock = context.socket(zmq.SUB)
    if secret_key and server_public_key:
        sock.curve_publickey, sock.curve_secretkey = zmq.auth.load_certificate(secret_key)
        sock.curve_serverkey = zmq.auth.load_certificate(server_public_key)[0]
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 10000)
    for topic in (TOPIC_RESULT, TOPIC_EOS, TOPIC_STATUS):
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    sock.connect(endpoint)
    try:
        while True:
            if not sock.poll(None if timeout_s is None else int(timeout_s * 1000)):
                return
            parts = sock.recv_multipart()
            try:
                message = decode(parts[1:])
            except WireError:
                continue
            if parts[0] == TOPIC_EOS:
                if stop_at_eos:
                    return
                continue
            if parts[0] == TOPIC_RESULT:
                yield Result.from_record(result_record(message))
    finally:
        sock.close()
