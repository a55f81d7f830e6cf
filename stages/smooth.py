"""Smooth: put frames back in capture order, average each face's score over its frames, publish.

The one step that sees every frame in capture order, whatever the number of detection or
classification workers: the framework reorders before `process` (`reorders`), and what it returns
goes to the result stream and the display (`publishes`). In videos and camera streams each face
is followed from frame to frame and its score averaged over the last `classify.smoothing_s`
seconds (liveness.tracking); stills and `smoothing_s: 0` pass unchanged.
"""
from __future__ import annotations

from liveness.tracking import ScoreSmoother, smooth_frame
from pipeline.config import PipelineConfig
from pipeline.runner import main
from pipeline.stage import Stage
from pipeline.wire import Message


class Smooth(Stage):
    """Gives each classified face its track and time-averaged score, in capture order, and publishes the frame."""

    name = "smooth"
    reorders = True
    publishes = True

    def setup(self, config: PipelineConfig) -> None:
        seconds = config.classify.smoothing_s
        self.smoother = ScoreSmoother(seconds) if seconds > 0 else None

    def process(self, message: Message) -> list[Message]:
        smooth_frame(self.smoother, message.seq, message.info, message.faces)
        return [message]


if __name__ == "__main__":
    raise SystemExit(main(Smooth))
