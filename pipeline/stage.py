"""The stage contract: a small class that receives messages and returns messages.

A stage never touches ZeroMQ; `pipeline.runner` owns sockets, decoding, ordering, policy,
metrics and shutdown around it.

    class Detect(Stage):
        name = "detect"
        def setup(self, config): self.detector = create_detector(config.detect.backend)
        def process(self, message): ...; return [message]
"""
from __future__ import annotations

from collections.abc import Iterator

from pipeline.config import PipelineConfig
from pipeline.wire import Message


class StageError(RuntimeError):
    """A stage cannot go on; str() is the one line the user sees (name the config field or file)."""


class StopPipeline(Exception):
    """Raised by a stage when the user asks to end the whole run (q in the display window)."""


class Stage:
    """A processing step: `setup` once, `process` per message, `teardown` at the end."""

    name = "stage"
    ack_lag = 0  # lossless sinks: how many handled frames may still sit in a buffer a crash would lose

    def __init__(self, worker: int = 0) -> None:
        self.worker = worker
        self.attempt = 0  # how many times run_pipeline.py restarted this stage before this process

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

    def frames(self, start: int = 0) -> Iterator[Message]:
        """Yield frame messages with kind, source, seq, capture times, pixels and info filled in,
        from frame `start` on (a restarted lossless capture resumes after the acknowledged frames)."""
        raise NotImplementedError
