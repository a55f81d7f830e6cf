"""Listen to a running pipeline's results from any Python program.

    from pipeline.client import subscribe
    for result in subscribe():                 # the newest pipeline running on this machine
        for face in result.faces:
            print(result.seq, face.box, face.score, face.label)

`subscribe()` finds the run through its run-info file (pipeline/runinfo.py; waiting up to
`wait_s` for one to start); `subscribe("tcp://HOST:PORT")`, `subscribe(run_info=FILE)` and
`subscribe(config="file")` name one. A consumer that attaches mid-run starts with the next
result; one that detaches or stalls never disturbs a live pipeline. Iteration ends at end of
stream (or after `timeout_s` with no message, when given).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.auth

from pipeline.runinfo import find_run, read_run_info
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
    file: str | None = None  # image folders: the image's file name
    fps: float | None = None  # videos and streams: the source's frame rate (none for stills)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Result":
        faces = [
            FaceResult(tuple(f["box"]), f["det_conf"], f.get("score", 0.0), f.get("label", "fake"), f.get("threshold", 0.0),
                       f.get("track"), f.get("frame_score"), f.get("attributes", {}))
            for f in record["faces"]
        ]
        size = tuple(record["size"]) if record.get("size") else None
        return cls(record["source"], record["seq"], record["t_wall"], faces, size, record.get("latency_ms"), record.get("error"),
                   record.get("file"), record.get("fps"))


def find_endpoint(run_info: str | None = None, config: str | None = None, wait_s: float = 0.0) -> str:
    """The result endpoint of a run: from its run-info file, else the newest running pipeline
    (of config `config` when given), waiting up to `wait_s` for one. ValueError when none is found."""
    return read_run_info(run_info)["results"] if run_info else find_run(config, wait_s)["results"]


def subscribe(endpoint: str | None = None, timeout_s: float | None = None, stop_at_eos: bool = True,
              context: zmq.Context | None = None, secret_key: str | None = None,
              server_public_key: str | None = None, run_info: str | None = None, config: str | None = None,
              wait_s: float = 30.0) -> Iterator[Result]:
    """Yield every result published on `endpoint` from now on. Malformed messages are skipped.

    Without `endpoint`, the run is found by `find_endpoint(run_info, config, wait_s)`.
    With CurveZMQ on the pipeline, pass this client's secret key file and the server's public key
    file (`python -m pipeline.keys`); the pipeline must list this client's public key."""
    endpoint = endpoint or find_endpoint(run_info, config, wait_s)
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
