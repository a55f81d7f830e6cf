"""The stage contract: a small class that receives messages and returns messages.

A stage never touches ZeroMQ; `pipeline.runner` owns sockets, decoding, ordering, policy,
metrics and shutdown around it.

    class FaceSize(Stage):
        name = "face_size"
        def setup(self, config): ...
        def process(self, message):
            for face in message.faces:
                face.set_attribute(self.name, "side_px", face.box[2] - face.box[0])
            return [message]

A stage class also declares its place in the graph (its role, whether it needs frames in capture
order, publishes the results, acknowledges what it wrote, how many processes of it run);
`pipeline.graph` derives the wiring from these declarations, never from stage names.
"""
from __future__ import annotations

from collections.abc import Iterator
from enum import Enum
from typing import Any

from pydantic import BaseModel

from pipeline.config import PipelineConfig
from pipeline.wire import Message


class StageError(RuntimeError):
    """A stage cannot go on; str() is the one line the user sees (name the config field or file)."""


class StopPipeline(Exception):
    """Raised by a stage when the user asks to end the whole run (q in the display window)."""


class Role(Enum):
    """A stage's place in the chain."""

    SOURCE = "source"  # makes frames (the first stage)
    FILTER = "filter"  # frames in, frames out
    SINK = "sink"  # frames in, nothing out (the last stages)


class Feed(Enum):
    """What a sink takes from the publisher."""

    FRAMES = "frames"  # the published frames with their pixels
    RESULTS = "results"  # the result stream (no pixels), like any consumer


class Stage:
    """A processing step: `setup` once, `process` per message, `teardown` at the end."""

    name = "stage"  # its default name in the graph (a config entry may name it otherwise)
    role = Role.FILTER
    reorders = False  # frames reach `process` in capture order (the framework reorders them); runs as one process
    publishes = False  # what it sends on goes to the result stream and to the sinks that take frames
    acknowledges = False  # lossless: reports the frames it has durably handled (capture keeps the rest)
    feed = Feed.FRAMES  # sinks: what they take
    output = ""  # the endpoint name of the edge it sends on ("" = NAME_out)
    workers_field = ""  # dotted config field holding its process count ("" = the stage entry's `workers`)
    enabled_field = ""  # dotted config field that must be set for it to run ("" = always)
    Settings: type[BaseModel] | None = None  # an added stage's own settings (its entry's `settings`)
    ack_lag = 0  # lossless sinks: how many handled frames may still sit in a buffer a crash would lose

    def __init__(self, worker: int = 0) -> None:
        self.worker = worker
        self.attempt = 0  # how many times run_pipeline.py restarted this stage before this process
        self.settings: Any = None  # the validated `Settings` of its entry (set before `setup`)

    def setup(self, config: PipelineConfig) -> None:
        """Load models, open files. Raise StageError for anything the user must fix."""

    def process(self, message: Message) -> list[Message]:
        """Handle one frame message; return the messages to send on (often the same one)."""
        return [message]

    def resume_point(self) -> int:
        """Sinks: the last seq already handled by an earlier process of this stage (-1: none).

        Called after `setup`; a restarted sink that keeps a file reports how far the file got,
        and the framework skips frames up to there."""
        return -1

    def end_of_stream(self) -> None:
        """The last frame has been processed (flush files here)."""

    def teardown(self) -> None:
        """Release what setup took; called once, also after errors."""


class SourceStage(Stage):
    """A stage that produces frames instead of receiving them."""

    role = Role.SOURCE
    skipped = 0  # frames a live source replaced by newer ones before they could be sent; the framework counts them as dropped (busy)

    def frames(self, start: int = 0) -> Iterator[Message]:
        """Yield frame messages with kind, source, seq, capture times, pixels and info filled in,
        from frame `start` on (a restarted lossless capture resumes after the acknowledged frames)."""
        raise NotImplementedError


class SinkStage(Stage):
    """A stage at the end of the chain: it consumes frames and sends nothing on."""

    role = Role.SINK
