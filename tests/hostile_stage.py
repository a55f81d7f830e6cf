"""A stage for the hostile-input tests: it loses one frame (returns nothing for it), every time it sees it.

    stages: [{name: loser, module: tests.hostile_stage, after: classify, settings: {lose: 5}}]
"""
from __future__ import annotations

from pydantic import BaseModel

from pipeline.stage import Stage
from pipeline.wire import Message


class Loser(Stage):
    """Passes every frame on except the one numbered `lose` (as a stage with a bug might)."""

    name = "loser"

    class Settings(BaseModel):
        lose: int = -1

    def process(self, message: Message) -> list[Message]:
        return [] if message.seq == self.settings.lose else [message]
