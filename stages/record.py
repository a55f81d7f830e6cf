"""Record: write every result to a JSON-lines file (one line per source frame)."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.runner import main
from pipeline.stage import Stage, StageError
from pipeline.wire import Message, result_record


class Record(Stage):
    """A consumer of the result stream like any other; it just writes what it receives."""

    name = "record"

    def setup(self, config: PipelineConfig) -> None:
        assert config.record.jsonl
        path = Path(config.record.jsonl)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = path.open("w", encoding="utf-8")
        except OSError as error:
            raise StageError(f"record.jsonl {path}: cannot write ({error.strerror})") from None

    def process(self, message: Message) -> list[Message]:
        self.file.write(json.dumps(result_record(message)) + "\n")
        self.file.flush()  # so `tail -f` and a crash both see every finished frame
        return []

    def end_of_stream(self) -> None:
        self.file.close()

    def teardown(self) -> None:
        if getattr(self, "file", None) is not None and not self.file.closed:
            self.file.close()


if __name__ == "__main__":
    raise SystemExit(main(Record))
