"""Classify: score every face of a frame as live or spoof, in one batch (frames in any order: stages/smooth.py averages)."""
from __future__ import annotations

import time

from liveness import LivenessModel, ModelError
from pipeline.config import PipelineConfig
from pipeline.config_file import resolve_path
from pipeline.runner import main
from pipeline.stage import Stage, StageError
from pipeline.wire import Message


class Classify(Stage):
    """Adds this frame's score = P(real), label and threshold to each face."""

    name = "classify"
    workers_field = "classify.workers"

    def setup(self, config: PipelineConfig) -> None:
        try:
            self.model = LivenessModel(resolve_path(config.classify.model), threads=1, threshold=config.classify.threshold)
        except ModelError as error:
            raise StageError(f"classify.model: {error}") from None
        self.delay_s = config.classify.debug_delay_ms / 1000.0

    def process(self, message: Message) -> list[Message]:
        if message.faces:
            scores = self.model.score(message.frame, [face.box for face in message.faces])
            for face, score in zip(message.faces, scores):
                face.score = float(score)
                face.label = self.model.label(float(score))
                face.threshold = self.model.threshold
        if self.delay_s:
            time.sleep(self.delay_s)
        return [message]


if __name__ == "__main__":
    raise SystemExit(main(Classify))
