"""The one wire format: every ZeroMQ message between stages and to consumers.

A message is multipart `[header, pixels?]`: the header a msgpack map (schema below), the pixels
the frame's raw bytes, sent without copies. Results published to consumers are
`[topic, header]` with no pixels. Nothing is pickled. `decode` validates everything it reads
and raises `WireError` for anything malformed, oversized or of another version; callers count
and drop such messages.

Header fields (version 1), also documented for users in docs/result_schema.md:
  v            int    schema version (1)
  kind         str    "frame" (a source frame), "eos" (end of stream), "status" (a notice)
  source       str    source id from the config
  seq          int    frame index in its source, from 0
  prev_seq     int    seq of the previous frame that entered the pipeline (-1: none); frames
                      dropped at the entrance leave gaps, this lets the classifier reorder exactly
  t_capture_ns int    capture time, CLOCK_MONOTONIC ns (comparable between processes of one host)
  t_wall       float  capture time, Unix seconds
  stamps       map    stage name -> [received_ns, sent_ns] (monotonic), filled by the framework
  shape        list   [height, width, channels] of the pixels part, or absent
  faces        list   maps: box [x1,y1,x2,y2] px, det_conf; after classify also score = P(real),
                      label "real"/"fake", threshold; in videos also track (int) and frame_score
                      (this frame's own score; score is then the face's time-averaged one); attributes,
                      when a stage added any: {namespace (the stage's name): {key: JSON value}}
  info         map    kind-specific extras: eos {last_seq, frames_read, dropped}; frame {fps (videos and
                      streams), size, still (an image of a folder: not part of a video), file (that
                      image's file name), source_seq and source_last (several sources: the
                      frame's number in its own source, its last frame), error}
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

SCHEMA_VERSION = 1
KINDS = ("frame", "eos", "status")
MAX_HEADER_BYTES = 1 << 20
MAX_FRAME_BYTES = 8192 * 8192 * 3
MAX_FACES = 256
MAX_SIDE = 8192  # pixels a side of a frame
MAX_COORDINATE = 1 << 31  # box coordinates and sizes, in pixels
MAX_SEQ = 1 << 53  # frame numbers stay exact in JSON
MAX_INFO_DEPTH, MAX_INFO_TEXT, MAX_INFO_NODES = 4, 4096, 1024  # the info map: plain JSON, shallow and small
MAX_FPS = 1000.0
# per-face attributes: plain JSON values, bounded so that no stage (or peer) can bloat a message
MAX_NAMESPACES, MAX_KEYS, MAX_DEPTH, MAX_TEXT, MAX_ITEMS, MAX_NODES = 16, 32, 4, 256, 64, 512
TOPIC_RESULT = b"result"
TOPIC_STATUS = b"status"


class WireError(ValueError):
    """A message that does not follow the wire format."""


Attributes = dict[str, dict[str, Any]]  # namespace (a stage's name) -> key -> JSON value


@dataclass
class Face:
    """One face in a frame. score/label/threshold are set by the classifier; track and
    frame_score where scores are averaged over a video's frames (liveness.tracking)."""

    box: list[int]
    det_conf: float
    score: float | None = None
    label: str | None = None
    threshold: float | None = None
    frame_score: float | None = None
    track: int | None = None
    attributes: Attributes = field(default_factory=dict)  # what other stages add, by stage name (docs/result_schema.md)

    def set_attribute(self, namespace: str, key: str, value: Any) -> None:
        """Add one attribute under a stage's namespace: `face.set_attribute(self.name, "side_px", 120)`."""
        self.attributes.setdefault(namespace, {})[key] = value

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"box": self.box, "det_conf": round(self.det_conf, 5)}
        if self.score is not None:
            data.update(score=round(self.score, 5), label=self.label, threshold=self.threshold)
        if self.track is not None and self.frame_score is not None:
            data.update(track=self.track, frame_score=round(self.frame_score, 5))
        if self.attributes:
            data["attributes"] = self.attributes
        return data


@dataclass
class Message:
    """A frame (or end-of-stream / status notice) travelling through the pipeline."""

    kind: str
    source: str
    seq: int
    prev_seq: int = -1
    t_capture_ns: int = 0
    t_wall: float = 0.0
    stamps: dict[str, list[int]] = field(default_factory=dict)
    faces: list[Face] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    frame: np.ndarray | None = None

    def header(self) -> dict[str, Any]:
        header: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "kind": self.kind,
            "source": self.source,
            "seq": self.seq,
            "prev_seq": self.prev_seq,
            "t_capture_ns": self.t_capture_ns,
            "t_wall": self.t_wall,
            "stamps": self.stamps,
            "faces": [face.to_dict() for face in self.faces],
            "info": self.info,
        }
        if self.frame is not None:
            header["shape"] = list(self.frame.shape)
        return header


def encode(message: Message, with_pixels: bool = True) -> list[Any]:
    """Multipart parts for `message`: [header] or [header, pixel buffer] (zero-copy view)."""
    parts: list[Any] = [msgpack.packb(message.header() if with_pixels else _without_shape(message))]
    if with_pixels and message.frame is not None:
        frame = message.frame
        if frame.dtype != np.uint8 or frame.ndim != 3:
            raise WireError(f"frame must be uint8 HxWxC, got {frame.dtype} {frame.shape}")
        parts.append(memoryview(np.ascontiguousarray(frame)).cast("B"))
    return parts


def _without_shape(message: Message) -> dict[str, Any]:
    header = message.header()
    header.pop("shape", None)
    return header


def decode(parts: list[Any]) -> Message:
    """Validate and decode [header] or [header, pixels]; raises WireError on anything malformed."""
    if not 1 <= len(parts) <= 2:
        raise WireError(f"expected 1 or 2 parts, got {len(parts)}")
    raw_header = bytes(parts[0].buffer if hasattr(parts[0], "buffer") else parts[0])
    if len(raw_header) > MAX_HEADER_BYTES:
        raise WireError(f"header of {len(raw_header)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = msgpack.unpackb(raw_header, strict_map_key=True)
    except Exception as error:  # msgpack raises several exception types for bad input
        raise WireError(f"header is not msgpack: {type(error).__name__}") from None
    if not isinstance(header, dict):
        raise WireError("header is not a map")
    if header.get("v") != SCHEMA_VERSION:
        raise WireError(f"schema version {header.get('v')!r} is not {SCHEMA_VERSION}")
    kind = _get(header, "kind", str)
    if kind not in KINDS:
        raise WireError(f"unknown kind {kind!r}")
    message = Message(
        kind=kind,
        source=_get(header, "source", str),
        seq=_get(header, "seq", int),
        prev_seq=_get(header, "prev_seq", int),
        t_capture_ns=_get(header, "t_capture_ns", int),
        t_wall=float(_get(header, "t_wall", (int, float))),  # checked finite below
        stamps=_stamps(header.get("stamps", {})),
        faces=[_face(raw) for raw in _get(header, "faces", list)],
        info=_info(header.get("info")),
    )
    if not math.isfinite(message.t_wall):
        raise WireError("field 't_wall' is not a finite number")
    if not -1 <= message.prev_seq < message.seq < MAX_SEQ:
        raise WireError(f"seq {message.seq} / prev_seq {message.prev_seq} out of order or range (-1 <= prev_seq < seq < 2^53)")
    if len(message.faces) > MAX_FACES:
        raise WireError(f"{len(message.faces)} faces exceed {MAX_FACES}")
    shape = header.get("shape")
    if len(parts) == 2:
        message.frame = _pixels(parts[1], shape)
    elif shape is not None:
        raise WireError("header has a shape but no pixels follow")
    return message


def _get(header: dict[str, Any], key: str, kinds: type | tuple[type, ...]) -> Any:
    value = header.get(key)
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise WireError(f"field {key!r} missing or of the wrong type")
    return value


def _stamps(raw: Any) -> dict[str, list[int]]:
    if not isinstance(raw, dict) or len(raw) > 64:
        raise WireError("field 'stamps' is not a small map")
    for name, value in raw.items():
        if not isinstance(name, str) or not isinstance(value, list) or not all(isinstance(v, int) for v in value):
            raise WireError("field 'stamps' has a bad entry")
    return raw


def _face(raw: Any) -> Face:
    if not isinstance(raw, dict):
        raise WireError("a face is not a map")
    box = raw.get("box")
    if not isinstance(box, list) or len(box) != 4 or not all(
            isinstance(v, int) and not isinstance(v, bool) and -MAX_COORDINATE < v < MAX_COORDINATE for v in box):
        raise WireError("a face box is not 4 integers within +-2^31")
    det_conf = raw.get("det_conf")
    if not isinstance(det_conf, (int, float)) or isinstance(det_conf, bool):
        raise WireError("a face has no det_conf number")
    score, label, threshold = raw.get("score"), raw.get("label"), raw.get("threshold")
    if score is not None and (not _finite(score) or label not in ("real", "fake") or not _finite(threshold)):
        raise WireError("a face score/label/threshold is malformed")
    if not _finite(det_conf):
        raise WireError("a face det_conf is not a finite number")
    track, frame_score = raw.get("track"), raw.get("frame_score")
    if (track is None) != (frame_score is None) or track is not None and (
            not isinstance(track, int) or isinstance(track, bool) or not _finite(frame_score) or score is None):
        raise WireError("a face track/frame_score is malformed")
    return Face(box=box, det_conf=float(det_conf), score=score, label=label, threshold=threshold,
                frame_score=frame_score, track=track, attributes=_attributes(raw.get("attributes", {})))


def _attributes(raw: Any) -> Attributes:
    """Per-face attributes: {namespace: {key: JSON value}}, within the size and depth bounds."""
    if not isinstance(raw, dict) or len(raw) > MAX_NAMESPACES:
        raise WireError(f"a face's attributes are not a map of at most {MAX_NAMESPACES} namespaces")
    budget = [MAX_NODES]
    for namespace, values in raw.items():
        if not isinstance(namespace, str) or not isinstance(values, dict):
            raise WireError("a face's attribute namespace is not a map")
        _plain({namespace: values}, 0, budget, MAX_DEPTH, MAX_TEXT, "an attribute")
    return raw


def _plain(value: Any, depth: int, budget: list[int], max_depth: int, max_text: int, what: str) -> None:
    """Check one plain JSON value: bounded depth, size and text; finite numbers; no other types."""
    budget[0] -= 1
    if budget[0] < 0 or depth > max_depth:
        raise WireError(f"{what} value exceeds its size or depth {max_depth}")
    if isinstance(value, str):
        if len(value) > max_text:
            raise WireError(f"{what} text is longer than {max_text} characters")
    elif isinstance(value, list):
        if len(value) > MAX_ITEMS:
            raise WireError(f"{what} list is longer than {MAX_ITEMS}")
        for item in value:
            _plain(item, depth + 1, budget, max_depth, max_text, what)
    elif isinstance(value, dict):
        if len(value) > MAX_KEYS or not all(isinstance(k, str) and 0 < len(k) <= MAX_TEXT for k in value):
            raise WireError(f"{what} map has more than {MAX_KEYS} keys, or a key that is not text")
        for item in value.values():
            _plain(item, depth + 1, budget, max_depth, max_text, what)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise WireError(f"{what} number is not finite")
    elif isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= 1 << 53:
            raise WireError(f"{what} integer is too large for JSON")
    elif value is not None and not isinstance(value, bool):
        raise WireError(f"{what} value is not plain JSON ({type(value).__name__})")


def check_attributes(message: Message, stage: str, namespace: str | None = None, given: frozenset[str] = frozenset()) -> None:
    """Check the attributes a stage left on a message's faces (WireError naming the stage otherwise):
    within bounds, and, with `namespace`, added under that namespace only (`given`: those it received)."""
    for face in message.faces:
        if face.attributes:
            try:
                _attributes(face.attributes)
            except WireError as error:
                raise WireError(f"{stage}: {error}") from None
            foreign = set(face.attributes) - given - {namespace} if namespace is not None else set()
            if foreign:
                raise WireError(f"{stage}: added attributes under {', '.join(sorted(foreign))}; a stage writes under its own name, {namespace}")


def _finite(value: Any) -> bool:
    """A real number that JSON can carry (no bool, NaN or infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _info(raw: Any) -> dict[str, Any]:
    """The info map: plain JSON (shallow, small, finite numbers); the fields the framework and the
    JSON lines read are checked. An `fps` that is not a frame rate is dropped (the frame is kept)."""
    if not isinstance(raw, dict):
        raise WireError("field 'info' missing or of the wrong type")
    fps = raw.get("fps")
    if fps is not None and not (_finite(fps) and 0 < fps <= MAX_FPS):
        del raw["fps"]  # odd but harmless: a frame whose rate is unknown
    _plain(raw, 0, [MAX_INFO_NODES], MAX_INFO_DEPTH, MAX_INFO_TEXT, "an info")
    for key in ("last_seq", "frames_read", "epoch", "floor"):
        if key in raw and not (isinstance(raw[key], int) and not isinstance(raw[key], bool)):
            raise WireError(f"field 'info.{key}' is not an integer")
    size = raw.get("size")
    if size is not None and not (isinstance(size, list) and len(size) == 2
                                 and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 31 for v in size)):
        raise WireError("field 'info.size' is not [width, height]")
    if "error" in raw and not isinstance(raw["error"], str):
        raise WireError("field 'info.error' is not text")
    if "still" in raw and not isinstance(raw["still"], bool):
        raise WireError("field 'info.still' is not true/false")
    if "file" in raw and not (isinstance(raw["file"], str) and len(raw["file"]) <= 4096):
        raise WireError("field 'info.file' is not a file name")
    own = raw.get("source_seq")
    if own is not None and not (isinstance(own, int) and not isinstance(own, bool) and 0 <= own < 1 << 53):
        raise WireError("field 'info.source_seq' is not a frame number")
    if "source_last" in raw and not isinstance(raw["source_last"], bool):
        raise WireError("field 'info.source_last' is not true/false")
    return raw


def _pixels(part: Any, shape: Any) -> np.ndarray:
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise WireError("pixels without a valid [height, width, channels] shape")
    if shape[2] not in (1, 3, 4):
        raise WireError(f"unsupported channel count {shape[2]}")
    if shape[0] > MAX_SIDE or shape[1] > MAX_SIDE:
        raise WireError(f"a {shape[1]}x{shape[0]} frame exceeds {MAX_SIDE} pixels a side")
    buffer = part.buffer if hasattr(part, "buffer") else memoryview(part)
    expected = shape[0] * shape[1] * shape[2]
    if expected > MAX_FRAME_BYTES or len(buffer) != expected:
        raise WireError(f"pixel part has {len(buffer)} bytes, shape {shape} needs {expected}")
    return np.frombuffer(buffer, dtype=np.uint8).reshape(shape)


def result_record(message: Message) -> dict[str, Any]:
    """The JSON-friendly view of a classified frame: what consumers read and the JSON-lines file holds.

    latency_ms is capture to classification (same host clocks); size is [width, height]; fps the source's.
    """
    record: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "source": message.source,
        "seq": message.seq,
        "t_wall": message.t_wall,
        "size": message.info.get("size"),
        "faces": [face.to_dict() for face in message.faces],
    }
    if message.info.get("fps"):
        record["fps"] = message.info["fps"]  # seq / fps is the frame's media time (what score averaging runs on)
    published = max((times[-1] for times in message.stamps.values() if len(times) >= 2), default=0)
    if published and message.t_capture_ns:  # the latest send so far: the publisher's (a sink has only received)
        record["latency_ms"] = round((published - message.t_capture_ns) / 1e6, 3)
    if "error" in message.info:
        record["error"] = message.info["error"]
    if "file" in message.info:
        record["file"] = message.info["file"]  # an image folder's image
    if "source_seq" in message.info:  # several sources: the frame's number in its own source, and its last
        record["source_seq"] = message.info["source_seq"]
        if message.info.get("source_last"):
            record["source_last"] = True
    return record
