"""Classify: score every face of a frame as live or spoof, in one batch."""
from __future__ import annotations

import time

from liveness import LivenessModel, ModelError
from liveness.tracking import ScoreSmoother, smooth_frame
from pipeline.config import PipelineConfig, resolve_path
from pipeline.runner import main
from pipeline.stage import Stage, StageError
from pipeline.wire import Message


class Classify(Stage):
    """Adds score = P(real), label and threshold to each face; in videos, averaged over each face's frames."""

    name = "classify"

    def setup(self, config: PipelineConfig) -> None:
        try:
            self.model = LivenessModel(resolve_path(config.classify.model), threads=1, threshold=config.classify.threshold)
        except ModelError as error:
            raise StageError(f"classify.model: {error}") from None
        self.delay_s = config.classify.debug_delay_ms / 1000.0
        # several classifiers see frames out of order: then collect averages, after reordering
        alone = config.classify.workers == 1 and config.classify.smoothing_s > 0
        self.smoother = ScoreSmoother(config.classify.smoothing_s) if alone else None

    def process(self, message: Message) -> list[Message]:
        if message.faces:
            scores = self.model.score(message.frame, [face.box for face in message.faces])
            for face, score in zip(message.faces, scores):
                face.score = float(score)
                face.label = self.model.label(float(score))
                face.threshold = self.model.threshold
            smooth_frame(self.smoother, message.seq, message.info, message.faces)
        if self.delay_s:
            time.sleep(self.delay_s)
        return [message]


if __name__ == "__main__":
    raise SystemExit(main(Classify))
