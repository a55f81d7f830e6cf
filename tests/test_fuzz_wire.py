"""Fuzz the wire decoder: whatever bytes arrive, `decode` returns a valid message or raises WireError,
quickly, and what it returns can be written as a JSON line.

The test suite runs a few hundred cases; `make fuzz` runs 100,000 byte-level mutations of real
messages (FUZZ_EXAMPLES) plus a tenth as many structured cases (the structured ones are slower).
"""
from __future__ import annotations

import json
import os
import resource
import time

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.wire import Face, Message, WireError, decode, encode, result_record

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))


def _settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, derandomize=examples <= 1000,
                    suppress_health_check=list(HealthCheck))
_SLOWEST_S = 0.5  # a single decode taking longer than this is a hang

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=True), st.text(max_size=20),
                    st.binary(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=5)),
                      max_leaves=20)


def _valid_header() -> dict:
    message = Message(kind="frame", source="s", seq=3, prev_seq=2, t_capture_ns=1, t_wall=1.0,
                      faces=[Face(box=[1, 2, 3, 4], det_conf=0.9, score=0.5, label="real", threshold=0.5,
                                  attributes={"face_size": {"side_px": 2, "tags": ["a", 1.5]}})],
                      info={"size": [2, 2], "fps": 30.0}, frame=np.zeros((2, 2, 3), np.uint8))
    return msgpack.unpackb(encode(message)[0])


# headers that are almost right: a valid header with fields replaced by anything
def _mutate(valid: dict, keys: list[str]) -> st.SearchStrategy[dict]:
    return st.builds(lambda changes, drop: {**{k: v for k, v in valid.items() if k not in drop}, **changes},
                     st.dictionaries(st.sampled_from(keys + ["extra"]), values, max_size=4),
                     st.sets(st.sampled_from(keys), max_size=2))


_HEADER = _valid_header()
faces = st.one_of(_mutate(_HEADER["faces"][0], sorted(_HEADER["faces"][0])),
                  st.builds(lambda attributes: {**_HEADER["faces"][0], "attributes": attributes},
                            st.dictionaries(st.text(max_size=8), st.dictionaries(st.text(max_size=8), values, max_size=4), max_size=3)))
infos = _mutate(_HEADER["info"], ["size", "fps", "error", "last_seq", "epoch", "floor"])
mutated = st.one_of(_mutate(_HEADER, sorted(_HEADER)),
                    st.builds(lambda face, info: {**_HEADER, "faces": [face], "info": info}, faces, infos))
headers = st.one_of(st.binary(max_size=200), values.map(msgpack.packb), mutated.map(msgpack.packb))
pixels = st.one_of(st.binary(max_size=64), st.just(bytes(12)))
parts = st.one_of(st.lists(st.binary(max_size=64), max_size=4),
                  st.tuples(headers).map(list), st.tuples(headers, pixels).map(list))


def _check(raw_parts: list[bytes]) -> None:
    started = time.monotonic()
    try:
        message = decode(raw_parts)
    except WireError:
        return
    finally:
        assert time.monotonic() - started < _SLOWEST_S
    record = result_record(message)
    json.dumps(record, allow_nan=False)  # what record writes and consumers read: never NaN
    for face in record["faces"]:  # attributes are plain, finite JSON within their bounds
        json.dumps(face.get("attributes", {}), allow_nan=False)


@_settings(max(EXAMPLES // 10, 100))
@given(parts)
def test_decode_never_crashes(raw_parts: list[bytes]) -> None:
    _check(raw_parts)


def _seeds() -> list[list[bytes]]:
    """Real messages of every kind: a frame with pixels and faces, a result, an end of stream, a status."""
    frame = Message(kind="frame", source="s", seq=3, prev_seq=2, t_capture_ns=1, t_wall=1.0,
                    stamps={"capture": [1, 2]}, faces=[Face(box=[1, 2, 3, 4], det_conf=0.9)],
                    info={"size": [4, 2], "fps": 30.0, "epoch": 0, "floor": 1}, frame=np.zeros((2, 4, 3), np.uint8))
    result = Message(kind="frame", source="s", seq=3, prev_seq=2, t_wall=1.0,
                     faces=[Face(box=[1, 2, 3, 4], det_conf=0.9, score=0.7, label="real", threshold=0.5)])
    eos = Message(kind="eos", source="s", seq=4, prev_seq=3, info={"last_seq": 3, "frames_read": 4, "dropped": {}})
    status = Message(kind="status", source="s", seq=4, info={"event": "source_lost", "uri": "rtsp://x"})
    return [[bytes(p) for p in encode(m)] for m in (frame, result, eos, status)]


SEEDS = _seeds()
edits = st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6)


@_settings(EXAMPLES)
@given(st.sampled_from(range(len(SEEDS))), edits, st.integers(0, 400), st.integers(0, 2), st.booleans())
def test_decode_survives_mutated_messages(seed: int, changes: list[tuple[int, int]], cut: int, part: int,
                                          extra_part: bool) -> None:
    raw = [bytearray(p) for p in SEEDS[seed]]
    target = raw[min(part, len(raw) - 1)]
    for position, value in changes:  # overwrite bytes, or insert them past the end
        if position < len(target):
            target[position] = value
        else:
            target.append(value)
    if cut:
        del target[-min(cut, len(target)):]
    _check([bytes(p) for p in raw] + ([b"\x00"] if extra_part else []))


def test_oversized_and_deep_inputs_are_refused_quickly() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    nested = b"\x91" * 100_000 + b"\x00"  # 100,000 nested one-element arrays
    huge_claim = b"\xdd\xff\xff\xff\xff"  # an array that claims 4 billion items
    for raw in ([nested], [huge_claim], [b"\x00" * (2 << 20)], [msgpack.packb({"v": 1, "faces": [{}] * 100_000})]):
        _check(raw)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: no runaway allocation
