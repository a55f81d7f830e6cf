"""The wire format: round trips, and malformed input rejected (never a crash)."""
from __future__ import annotations

import msgpack
import numpy as np
import pytest

from pipeline.wire import Face, Message, WireError, decode, encode, result_record


def _frame_message() -> Message:
    frame = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    return Message(kind="frame", source="cam", seq=7, prev_seq=5, t_capture_ns=123, t_wall=1.5,
                   stamps={"capture": [100, 123]}, faces=[Face([1, 2, 30, 40], 0.9, 0.8, "real", 0.5)],
                   info={"fps": 30.0, "size": [64, 48]}, frame=frame)


def _bytes(parts: list) -> list[bytes]:
    return [bytes(part) for part in parts]


def test_round_trip_with_pixels() -> None:
    message = _frame_message()
    decoded = decode(_bytes(encode(message)))
    assert np.array_equal(decoded.frame, message.frame)
    assert (decoded.seq, decoded.prev_seq, decoded.source, decoded.info) == (7, 5, "cam", message.info)
    assert decoded.faces[0].box == [1, 2, 30, 40] and decoded.faces[0].label == "real"
    assert decoded.stamps == {"capture": [100, 123]}


def test_round_trip_without_pixels() -> None:
    decoded = decode(_bytes(encode(_frame_message(), with_pixels=False)))
    assert decoded.frame is None and decoded.seq == 7


def test_encode_is_zero_copy() -> None:
    message = _frame_message()
    pixels = encode(message)[1]
    assert isinstance(pixels, memoryview)
    assert np.shares_memory(np.frombuffer(pixels, np.uint8), message.frame)


def test_result_record_fields() -> None:
    message = _frame_message()
    message.stamps["classify"] = [200, 1_000_123]
    record = result_record(message)
    assert record["seq"] == 7 and record["size"] == [64, 48]
    assert record["faces"] == [{"box": [1, 2, 30, 40], "det_conf": 0.9, "score": 0.8, "label": "real", "threshold": 0.5}]
    assert record["latency_ms"] == pytest.approx(1.0)


def test_track_and_frame_score_round_trip() -> None:
    message = _frame_message()
    message.faces[0].track, message.faces[0].frame_score = 3, 0.25
    message.info["still"] = False
    decoded = decode(_bytes(encode(message)))
    assert (decoded.faces[0].track, decoded.faces[0].frame_score, decoded.info["still"]) == (3, 0.25, False)
    assert result_record(decoded)["faces"][0] == {"box": [1, 2, 30, 40], "det_conf": 0.9, "score": 0.8, "label": "real",
                                                  "threshold": 0.5, "track": 3, "frame_score": 0.25}


def _header(**changes) -> bytes:
    header = _frame_message().header()
    header.update(changes)
    return msgpack.packb({k: v for k, v in header.items() if v is not None})


@pytest.mark.parametrize(
    "parts",
    [
        [],
        [b"not msgpack \xc1"],
        [msgpack.packb([1, 2, 3])],
        [_header(v=2)],
        [_header(kind="boom")],
        [_header(seq="7")],
        [_header(seq=None)],
        [_header(faces=[{"box": [1, 2, 3], "det_conf": 0.5}])],
        [_header(faces=[{"box": [1, 2, 3, 4], "det_conf": 0.5, "score": 0.3, "label": "maybe"}])],
        [_header(), b"\x00" * 10],  # pixel bytes do not match the shape
        [_header(shape=[48, 64, 7]), b"\x00" * (48 * 64 * 7)],
        [_header(shape=[-1, 64, 3]), b""],
        [_header(shape=[100000, 100000, 3]), b"\x00"],
        [_header()],  # a shape but no pixels
        [_header(), b"", b""],
        [_header(stamps={"x": "y"})],
        [_header(faces=[{"box": [1, 2, 3, 4], "det_conf": 0.5, "score": 0.3, "label": "fake", "threshold": 0.5, "track": 1}])],
        [_header(faces=[{"box": [1, 2, 3, 4], "det_conf": 0.5, "score": 0.3, "label": "fake", "threshold": 0.5,
                         "track": "1", "frame_score": 0.2}])],
        [_header(faces=[{"box": [1, 2, 3, 4], "det_conf": 0.5, "track": 1, "frame_score": 0.2}])],  # a track but no score
        [_header(info={"fps": 30.0, "still": "yes"})],
    ],
)
def test_malformed_messages_raise_wire_error(parts: list) -> None:
    with pytest.raises(WireError):
        decode(parts)


def test_random_bytes_never_crash() -> None:
    rng = np.random.default_rng(1)
    for _ in range(2000):
        blob = rng.integers(0, 256, rng.integers(0, 64), dtype=np.uint8).tobytes()
        try:
            decode([blob])
        except WireError:
            pass


def test_attributes_round_trip_into_the_json_lines_and_the_client() -> None:
    from pipeline.client import Result

    message = _frame_message()
    message.faces[0].set_attribute("face_size", "side_px", 38)
    message.faces[0].set_attribute("face_size", "hist", [0.5, {"bins": 4}, None, True, "x"])
    decoded = decode(_bytes(encode(message)))
    assert decoded.faces[0].attributes == {"face_size": {"side_px": 38, "hist": [0.5, {"bins": 4}, None, True, "x"]}}
    record = result_record(decoded)
    assert record["faces"][0]["attributes"]["face_size"]["side_px"] == 38
    assert Result.from_record(record).faces[0].attributes["face_size"]["hist"][1] == {"bins": 4}
    assert "attributes" not in result_record(_frame_message())["faces"][0]  # absent when no stage added any


@pytest.mark.parametrize("attributes", [
    {"ns": {"x": float("nan")}},
    {"ns": {"x": 1 << 60}},
    {"ns": {"x": "t" * 300}},
    {"ns": {"x": [[[[[1]]]]]}},
    {"ns": {"x": list(range(100))}},
    {"ns": {f"k{i}": i for i in range(40)}},
    {f"ns{i}": {"x": 1} for i in range(20)},
    {"ns": 3},
    {"ns": {"x": b"bytes"}},
])
def test_attributes_out_of_bounds_are_refused(attributes: dict) -> None:
    from pipeline.wire import check_attributes

    message = _frame_message()
    message.faces[0].attributes = attributes
    with pytest.raises(WireError, match="face_size: "):
        check_attributes(message, "face_size")  # what the runner checks after a stage returns
    if not any(isinstance(v, dict) and any(isinstance(x, bytes) for x in v.values()) for v in attributes.values()):
        header = msgpack.unpackb(encode(message, with_pixels=False)[0])
        with pytest.raises(WireError):
            decode([msgpack.packb(header)])  # and what every receiver checks when decoding


def test_display_draws_the_attributes_it_is_asked_for() -> None:
    from stages.display import annotate

    message = _frame_message()
    message.frame = np.zeros((120, 160, 3), np.uint8)
    message.faces = [Face([10, 10, 60, 50], 0.9, 0.8, "real", 0.5, attributes={"face_size": {"side_px": 40}})]
    plain = annotate(message.frame, message, 30.0, 10.0)
    drawn = annotate(message.frame, message, 30.0, 10.0, ["face_size.side_px", "face_size.absent"])
    assert (drawn[55:80] != plain[55:80]).any()  # a line of text under the box


def test_a_stage_writes_attributes_under_its_own_name_only() -> None:
    from pipeline.wire import check_attributes

    message = _frame_message()
    message.faces[0].attributes = {"upstream": {"x": 1}, "face_size": {"side_px": 3}}
    check_attributes(message, "face_size", "face_size", frozenset({"upstream"}))  # kept from upstream, its own added
    message.faces[0].set_attribute("classify", "x", 2)
    with pytest.raises(WireError, match="face_size: added attributes under classify"):
        check_attributes(message, "face_size", "face_size", frozenset({"upstream"}))
