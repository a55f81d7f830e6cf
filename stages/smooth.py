"""Smooth: put frames back in capture order, average each face's score over its frames, publish.

The one step that sees every frame in capture order, whatever the number of detection or
classification workers: the framework reorders before `process` (`reorders`), and what it returns
goes to the result stream and the display (`publishes`). In videos and camera streams each face
is followed from frame to frame and its score averaged over the last `classify.smoothing_s`
seconds (liveness.tracking), each source on its own; stills and `smoothing_s: 0` pass unchanged.
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
        self.seconds = config.classify.smoothing_s
        self.smoothers: dict[str, ScoreSmoother] = {}  # one per source: faces are followed within their own source
        self.most_sources = max(len(config.all_sources()), 1)

    def process(self, message: Message) -> list[Message]:
        smoother = None
        if self.seconds > 0:
            if message.source not in self.smoothers and len(self.smoothers) >= self.most_sources:
                self.smoothers.pop(next(iter(self.smoothers)))  # bounded, whatever names arrive
            smoother = self.smoothers.setdefault(message.source, ScoreSmoother(self.seconds))
        own = message.info.get("source_seq")  # several sources: the frame's number in its own source (media time)
        seq = own if isinstance(own, int) and not isinstance(own, bool) and own >= 0 else message.seq
        smooth_frame(smoother, seq, message.info, message.faces)
        return [message]


if __name__ == "__main__":
    raise SystemExit(main(Smooth))
