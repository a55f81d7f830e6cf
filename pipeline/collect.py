"""Collect: with `classify.workers` > 1, put the classifiers' frames back in capture order and publish them.

A framework step: the runner reorders (the spec is `ordered`), then publishes the results and
feeds the display exactly as a single classifier does, scores averaged over each face's frames
included (that needs capture order, which only this step sees); end of stream goes out once
every frame up to the last one has been released.

    python -m pipeline.collect --config my.yaml
"""
from __future__ import annotations

from liveness.tracking import ScoreSmoother, smooth_frame
from pipeline.config import PipelineConfig
from pipeline.runner import main
from pipeline.stage import Stage
from pipeline.wire import Message


class Collect(Stage):
    """Passes classified frames on, in order, to the result stream and the display."""

    name = "collect"

    def setup(self, config: PipelineConfig) -> None:
        self.smoother = ScoreSmoother(config.classify.smoothing_s) if config.classify.smoothing_s > 0 else None

    def process(self, message: Message) -> list[Message]:
        smooth_frame(self.smoother, message.seq, message.info, message.faces)
        return [message]


if __name__ == "__main__":
    raise SystemExit(main(Collect))
