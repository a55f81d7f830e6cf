"""Capture: read frames from a camera, video file, network stream or image folder."""
from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.wire import MAX_SIDE, Message

# OpenCV refuses to decode an image over this many pixels (read before cv2 is imported): an absurd
# image costs nothing instead of gigabytes
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_SIDE * MAX_SIDE))

import cv2  # noqa: E402

from pipeline.config import PipelineConfig  # noqa: E402
from pipeline.config_file import resolve_path  # noqa: E402
from pipeline.runner import main  # noqa: E402
from pipeline.stage import SourceStage, StageError  # noqa: E402

_STREAM_TIMEOUT_MS = 5000
_REOPEN_FIRST_S, _REOPEN_MAX_S = 0.25, 8.0  # back-off between attempts to reopen a lost camera or stream
_BAD_FRAMES_IN_A_ROW = 3  # a file whose frames fail to decode this many times in a row ends there
_LIVE_TURN_WAIT_S = 1.0  # several sources: how long a live source's turn waits for a new frame
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
_NO_CAMERA_HINT = (
    "point --source at a video file, an rtsp:// or http:// stream or an image folder, "
    "e.g. python run_pipeline.py --config configs/file.yaml --source VIDEO.mp4"
)


class Capture(SourceStage):
    """Frames from `source.uri`, each with its index, capture times and size."""

    name = "capture"
    output = "frames"

    def setup(self, config: PipelineConfig) -> None:
        self.parts: list[Capture] = []  # several sources: one reader each, interleaved by `frames`
        self.limits: list[int | None] = []  # several sources: a live one's turns (its max_frames)
        if len(config.sources) > 1:
            for source in config.sources:
                live = source.effective_policy() == "live"
                self.limits.append(source.max_frames if live else None)
                if live:  # its reader runs at its own pace (a file's: its frame rate); turns count against max_frames
                    source = source.model_copy(update={"max_frames": None, "pace": True})
                part = Capture(self.worker)
                part.setup(config.model_copy(update={"source": source, "sources": []}))
                self.parts.append(part)
            self.config, self.live = config.source, False
            return
        if config.sources:
            config = config.model_copy(update={"source": config.sources[0], "sources": []})
        self.config = config.source
        self.live = config.policy() == "live"
        uri = self.config.uri
        self.images: list[Path] | None = None
        self.capture: cv2.VideoCapture | None = None
        path = resolve_path(uri)
        if uri.isdigit():
            self.capture = cv2.VideoCapture(int(uri))
            if not self.capture.isOpened():
                raise StageError(f"source.uri {uri!r}: no camera at index {uri} on this machine; {_NO_CAMERA_HINT}")
            if self.config.width and self.config.height:
                self.capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.config.width)
                self.capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.config.height)
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:  # one image: a folder of one
            if cv2.imread(str(path), cv2.IMREAD_COLOR) is None:
                raise StageError(f"source.uri {uri!r}: unreadable image (not a decodable {path.suffix} file, "
                                 f"or larger than {MAX_SIDE}x{MAX_SIDE} pixels)")
            self.images = [path]
        elif path.is_dir():
            self.images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.images:
                raise StageError(f"source.uri {uri!r}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        else:
            self.capture = self._open()
            if not self.capture.isOpened():
                kind = "stream" if "://" in uri else "video file"
                raise StageError(f"source.uri {uri!r}: cannot open {kind} (unreadable, unsupported or unreachable)")
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS)) if self.capture is not None else 0.0
        if not 1.0 <= self.fps <= 240.0:
            self.fps = 30.0

    def _open(self) -> cv2.VideoCapture:
        """Open the camera, stream or file (again); streams get open and read timeouts so a silent peer cannot hang us."""
        uri = self.config.uri
        if uri.isdigit():
            return cv2.VideoCapture(int(uri))
        if "://" in uri:
            return cv2.VideoCapture(uri, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, _STREAM_TIMEOUT_MS,
                                                         cv2.CAP_PROP_READ_TIMEOUT_MSEC, _STREAM_TIMEOUT_MS])
        return cv2.VideoCapture(str(resolve_path(uri)))

    def _reopen(self) -> Iterator[tuple]:
        """A camera or stream stopped sending: report it, reopen with back-off until it is back."""
        uri = self.config.uri
        lost = time.monotonic()
        print(f"capture: source {uri} lost; reopening with back-off", file=sys.stderr, flush=True)
        yield None, f"source lost: {uri} stopped sending frames", {"event": "source_lost", "uri": uri}
        delay, attempts = _REOPEN_FIRST_S, 0
        while True:
            assert self.capture is not None
            self.capture.release()
            time.sleep(delay)
            attempts += 1
            self.capture = self._open()
            ok, image = self.capture.read() if self.capture.isOpened() else (False, None)
            if ok:
                gap = time.monotonic() - lost
                print(f"capture: source {uri} back after {gap:.1f} s ({attempts} attempts)", file=sys.stderr, flush=True)
                yield image, None, {"event": "source_back", "uri": uri, "gap_s": round(gap, 3), "attempts": attempts}
                return
            delay = min(delay * 2, _REOPEN_MAX_S)

    def frames(self, start: int = 0) -> Iterator[Message]:
        if self.parts:
            yield from self._interleave(start)
            return
        seq = start
        started = time.monotonic() - start / self.fps
        limit = self.config.max_frames
        reader = self._read(skip=start)
        while limit is None or seq < limit:
            if self.config.pace:
                # wait first, then read: like a camera, a paced file decodes each frame when it is due,
                # not right after the previous one left (where decoding would compete with its trip)
                delay = started + seq / self.fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            item = next(reader, None)
            if item is None:
                return
            image, error, event = item
            if image is not None and (image.shape[0] > MAX_SIDE or image.shape[1] > MAX_SIDE):
                error = f"frame of {image.shape[1]}x{image.shape[0]} pixels refused: more than {MAX_SIDE} a side"
                image = None
            info: dict = {}
            if self.images is not None:  # independent pictures: classify does not average scores across them
                info["still"] = True
                info["file"] = self.images[seq % len(self.images)].name  # (a looping folder starts again)
            else:
                info["fps"] = self.fps  # videos and streams only: a still has no frame rate
            if image is not None:
                info["size"] = [int(image.shape[1]), int(image.shape[0])]
            if error:
                info["error"] = error
            if self.live and self.attempt and seq == 0:
                event = event or {"event": "capture_restarted", "uri": self.config.uri}  # seq starts again at 0
            if event:
                info["source_event"] = event  # published as a status message by the framework
            yield Message(kind="frame", source=self.config.id, seq=seq, t_capture_ns=time.monotonic_ns(),
                          t_wall=time.time(), info=info, frame=image)
            seq += 1

    def _interleave(self, start: int) -> Iterator[Message]:
        """Several sources: a frame of each in turn (one that has ended drops out); `info.source_seq` is
        the frame's number in its own source and `info.source_last` marks each source's last frame.

        Files and folders alone are numbered in one sequence from 0, and a restarted capture reads
        them again up to `start`. With a live source among them, turn r of source i of n is frame
        r * n + i (a turn a live source had no new frame for, or a source that has ended, leaves a
        gap), so a restarted capture knows where each file was without reading it. A live source is
        read by its own thread, which keeps only the newest frame, so the files' queue never makes
        it lag (frames it replaced count as dropped)."""
        count = len(self.parts)
        by_turn = any(part.live for part in self.parts)
        # turns each source had before a restart (numbering by turn only; else all are read again)
        done = [max(0, -(-(start - index) // count)) if by_turn else 0 for index in range(count)]
        readers: list[_Newest | Iterator[Message] | None] = []  # None: that source has ended
        ahead: list[Message | None] = []  # a file's next frame: its last is known when it is sent
        live: list[_Newest] = []
        try:
            for index, part in enumerate(self.parts):
                part.attempt = self.attempt
                if part.live:
                    live.append(_Newest(part))
                    readers.append(live[-1])
                    ahead.append(None)
                else:
                    reader = part.frames(start=done[index])
                    ahead.append(next(reader, None))
                    readers.append(reader if ahead[index] is not None else None)
            stalled = [False] * count
            round_, sent = min(done), 0
            while any(reader is not None for reader in readers):
                for index, reader in enumerate(readers):
                    if reader is None:
                        continue
                    seq = round_ * count + index if by_turn else sent
                    if isinstance(reader, _Newest):
                        limit = self.limits[index]
                        if limit is not None and round_ >= limit:
                            readers[index] = None
                            continue
                        if seq < start:
                            continue
                        # wait for a new frame, but not again for one that missed its last turn
                        message, replaced = reader.take(timeout=0.0 if stalled[index] else _LIVE_TURN_WAIT_S)
                        self.skipped += replaced
                        stalled[index] = message is None
                        if message is None:
                            readers[index] = None if reader.ended else reader
                            continue
                        if limit is not None and round_ + 1 >= limit:
                            message.info["source_last"] = True
                    else:
                        if by_turn and seq < start:
                            continue
                        message = ahead[index]
                        assert message is not None
                        ahead[index] = next(reader, None)
                        if ahead[index] is None:
                            readers[index] = None
                            message.info["source_last"] = True
                        message.t_capture_ns, message.t_wall = time.monotonic_ns(), time.time()  # sent now
                    message.info["source_seq"] = message.seq
                    message.seq = seq
                    sent += 1
                    if seq >= start:  # (files alone: a restarted capture read them again up to here)
                        yield message  # a live frame keeps its capture time: its wait for the turn is latency
                round_ += 1
        finally:
            for reader in live:
                reader.stop()

    def _read(self, skip: int = 0) -> Iterator[tuple]:
        """(frame or None, error text) pairs until the source ends, after skipping `skip` frames unread."""
        while True:
            if self.images is not None:
                for path in self.images[skip:]:
                    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                    yield (image, None, None) if image is not None else (None, f"unreadable image {path.name} (not decodable, or larger than {MAX_SIDE}x{MAX_SIDE} pixels)", None)
            else:
                assert self.capture is not None
                for _ in range(skip):
                    if not self.capture.grab():  # grab without decoding: a cheap seek that counts exactly
                        break
                live = self.config.uri.isdigit() or "://" in self.config.uri
                total = 0 if live else int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
                index, decoded, failures = skip, 0, 0
                while True:
                    ok, image = self.capture.read()
                    if ok:
                        index, decoded, failures = index + 1, decoded + 1, 0
                        yield image, None, None
                    elif live:
                        yield from self._reopen()
                    elif index < total and failures < _BAD_FRAMES_IN_A_ROW:
                        failures += 1  # a frame the decoder rejects: try the next ones before giving up
                        index += 1
                        yield None, "undecodable frame", None
                    else:
                        if decoded + skip < total:
                            name = Path(self.config.uri).name
                            print(f"capture: {name}: decoded {decoded} of {total} frames; the rest is corrupt or truncated",
                                  file=sys.stderr, flush=True)
                        break
            skip = 0
            if not self.config.loop:
                return
            if self.capture is not None:
                self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)

    def teardown(self) -> None:
        for part in getattr(self, "parts", []):
            part.teardown()
        if getattr(self, "capture", None) is not None:
            self.capture.release()


class _Newest:
    """A live source among several, read by its own thread at the source's pace: only the newest frame
    waits for its turn (a one-frame mailbox), so a slow turn drops old frames instead of adding lag."""

    def __init__(self, part: Capture) -> None:
        self._frames = part.frames()
        self._ready = threading.Condition()
        self._newest: Message | None = None
        self._replaced = 0
        self._failure: BaseException | None = None
        self._stopping = False
        self.ended = False
        self._thread = threading.Thread(target=self._read, name=f"capture-{part.config.id}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for message in self._frames:
                with self._ready:
                    if self._stopping:
                        return
                    if self._newest is not None:
                        self._replaced += 1
                        event = self._newest.info.get("source_event")
                        if event and "source_event" not in message.info:  # a lost or back notice is never replaced
                            message.info["source_event"] = event
                    self._newest = message
                    self._ready.notify()
        except BaseException as failure:  # raised again in the capture's own thread, by take()
            self._failure = failure
        finally:
            with self._ready:
                self.ended = True
                self._ready.notify()

    def take(self, timeout: float) -> tuple[Message | None, int]:
        """The newest frame not taken yet (None when none came within `timeout` seconds) and how many
        frames newer ones replaced since the last take (read under one lock: the count matches the frame)."""
        with self._ready:
            self._ready.wait_for(lambda: self._newest is not None or self.ended, timeout)
            if self._failure is not None:
                raise self._failure
            message, self._newest = self._newest, None
            replaced, self._replaced = self._replaced, 0
            return message, replaced

    def stop(self) -> None:
        """Stop reading; waits briefly so the source is not released under a read in progress."""
        with self._ready:
            self._stopping = True
        self._thread.join(timeout=2.0)


if __name__ == "__main__":
    raise SystemExit(main(Capture))
