"""Record: write every result to a JSON-lines file (one line per source frame)."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.runner import main
from pipeline.stage import Feed, SinkStage, StageError
from pipeline.wire import Message, result_record


class Record(SinkStage):
    """A consumer of the result stream like any other; it just writes what it receives."""

    name = "record"
    feed = Feed.RESULTS
    acknowledges = True
    enabled_field = "record.jsonl"

    def setup(self, config: PipelineConfig) -> None:
        assert config.record.jsonl
        path = Path(config.record.jsonl)
        self.resume_after = -1
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if self.attempt and path.is_file():  # restarted: keep what the last process wrote
                self.resume_after = _repair(path)
                self.file = path.open("a", encoding="utf-8")
            else:
                self.file = path.open("w", encoding="utf-8")
        except OSError as error:
            raise StageError(f"record.jsonl {path}: cannot write ({error.strerror})") from None

    def resume_point(self) -> int:
        return self.resume_after

    def process(self, message: Message) -> list[Message]:
        self.file.write(json.dumps(result_record(message)) + "\n")
        self.file.flush()  # so `tail -f` and a crash both see every finished frame
        return []

    def end_of_stream(self) -> None:
        self.file.close()

    def teardown(self) -> None:
        if getattr(self, "file", None) is not None and not self.file.closed:
            self.file.close()


def _repair(path: Path) -> int:
    """Cut a line left half-written by a killed process; return the seq of the last whole line (-1: none)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with path.open("r+b") as file:
            file.truncate(end)
    lines = data[:end].splitlines()
    for line in reversed(lines):
        try:
            return int(json.loads(line)["seq"])
        except (ValueError, KeyError, TypeError):
            continue  # not one of ours: look further back
    return -1


if __name__ == "__main__":
    raise SystemExit(main(Record))
