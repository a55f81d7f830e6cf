"""Record: write every result to a JSON-lines file (one line per source frame)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.runner import main
from pipeline.stage import Feed, SinkStage, StageError
from pipeline.wire import Message, result_record


class Record(SinkStage):
    """A consumer of the result stream like any other; it just writes what it receives.

    The file is opened (and an earlier run's file replaced) only when the first result arrives, so a
    run that fails to start leaves it as it was. Each line goes out in one write; a write that fails
    (a full disk) is cut back to the last whole line and stops the run with one line naming the file."""

    name = "record"
    feed = Feed.RESULTS
    acknowledges = True
    enabled_field = "record.jsonl"

    def setup(self, config: PipelineConfig) -> None:
        assert config.record.jsonl
        self.path = Path(config.record.jsonl)
        self.resume_after = -1
        self.fd: int | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.attempt and self.path.is_file():  # restarted: keep what the last process wrote
                self.resume_after = _repair(self.path)
                self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as error:
            raise StageError(f"record.jsonl {self.path}: cannot write ({error.strerror})") from None

        if self.fd is None and (self.path.is_dir() or not os.access(self.path if self.path.exists() else self.path.parent, os.W_OK)):
            raise StageError(f"record.jsonl {self.path}: cannot write ({'a folder' if self.path.is_dir() else 'permission denied'})")

    def resume_point(self) -> int:
        return self.resume_after

    def _open(self) -> int:
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            except OSError as error:
                raise StageError(f"record.jsonl {self.path}: cannot write ({error.strerror})") from None
        return self.fd

    def process(self, message: Message) -> list[Message]:
        line = (json.dumps(result_record(message), allow_nan=False) + "\n").encode()
        fd = self._open()
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            written = 0
            while written < len(line):  # one line, whole: `tail -f` and a crash both see only finished frames
                written += os.write(fd, line[written:])
        except OSError as error:
            try:
                os.ftruncate(fd, start)  # no half-written record
            except OSError:
                pass  # not a regular file (/dev/full): nothing to cut
            raise StageError(f"record.jsonl {self.path}: cannot write ({error.strerror}); results after seq "
                             f"{message.seq - 1} are not in it") from None
        return []

    def end_of_stream(self) -> None:
        self._open()  # a run with no frames still leaves its (empty) file
        self.teardown()

    def teardown(self) -> None:
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)
            self.fd = None


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
