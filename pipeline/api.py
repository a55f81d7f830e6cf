"""Run a pipeline from Python and iterate its results.

    import pipeline

    with pipeline.run("configs/file.yaml", source="video.mp4") as results:
        for result in results:
            print(result.seq, [(face.label, round(face.score, 2)) for face in result.faces])

`pipeline.run` checks the config at once (ConfigError, one line), starts the run (a supervisor
child process, which starts every stage as its own process) and yields every frame's Result in
order, read from the run's JSON lines; leaving the `with` block stops every stage. A run that
fails raises PipelineError with the run's one-line reason once its results are read.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import yaml

from pipeline.cli import source_overrides
from pipeline.client import Result
from pipeline.config import REPO_ROOT
from pipeline.config_file import ConfigError, find_config, load_config

_STOP_WAIT_S = 15.0  # after SIGTERM the supervisor stops every stage (3 s grace each, in parallel)


class PipelineError(RuntimeError):
    """The run ended with a non-zero exit status; str() is its one-line reason."""

    def __init__(self, text: str, returncode: int) -> None:
        super().__init__(text)
        self.returncode = returncode


class PipelineRun:
    """One pipeline run: a context manager and an iterator of its results (see the module docstring)."""

    def __init__(self, config: str | Path | Mapping[str, Any], source: str | int | list[str] | None = None,
                 jsonl: str | Path | None = None, overrides: list[str] | None = None, verbose: bool = False) -> None:
        """`config`: a YAML path, a shipped config's name ("file") or a mapping of sections;
        `source`: source.uri (a list: several files or folders, `sources`); `jsonl`: also keep the results in this file; `overrides`:
        `dotted.key=value` strings as for --set; `verbose`: show the run's log on stderr."""
        self._folder = Path(tempfile.mkdtemp(prefix="liveness-api-"))
        if isinstance(config, Mapping):
            self.config_path = self._folder / "config.yaml"
            self.config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        else:
            self.config_path = find_config(config)
        sources = None if source is None else [str(uri) for uri in source] if isinstance(source, (list, tuple)) else [str(source)]
        self.overrides = list(overrides or []) + source_overrides(sources)
        self.jsonl = Path(jsonl) if jsonl is not None else self._folder / "results.jsonl"
        self.overrides.append(f"record.jsonl={json.dumps(str(self.jsonl))}")
        try:
            self.config = load_config(self.config_path, self.overrides)  # ConfigError now, before anything starts
        except ConfigError:
            shutil.rmtree(self._folder, ignore_errors=True)
            raise
        self.run_info = self._folder / "run.json"
        self.verbose = verbose
        self.process: subprocess.Popen | None = None
        self.returncode: int | None = None
        self._log: IO[str] | None = None
        self._stopped = False

    def start(self) -> "PipelineRun":
        """Start the run (done by `with`); returns self."""
        if self.process is not None:
            return self
        self.jsonl.unlink(missing_ok=True)  # the recorder writes it anew: never read an older run's lines
        command = [sys.executable, "-m", "pipeline.cli", "run", str(self.config_path), "--run-info", str(self.run_info)]
        command += [arg for override in self.overrides for arg in ("--set", override)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        self._log = None if self.verbose else (self._folder / "run.log").open("w+")
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=self._log)  # verbose: this terminal
        return self

    @property
    def endpoint(self) -> str:
        """The run's result endpoint, for more consumers (waits until the run has announced it)."""
        deadline = time.monotonic() + 120
        while not self.run_info.is_file():
            code = self.process.poll() if self.process is not None else None
            if self.process is None or code is not None or time.monotonic() > deadline:
                raise PipelineError(self._reason() or "the run is not running (start it with `with` first)", code or 1)
            time.sleep(0.05)
        return json.loads(self.run_info.read_text())["results"]

    def __iter__(self) -> Iterator[Result]:
        """Every frame's result in order, until the source ends (or the run is stopped)."""
        self.start()
        assert self.process is not None
        handle, pending = None, ""
        try:
            while True:
                if handle is None and self.jsonl.is_file():
                    handle = self.jsonl.open()
                exited = self.process.poll() is not None
                chunk = handle.read() if handle is not None else ""
                if chunk:
                    pending += chunk
                    *lines, pending = pending.split("\n")
                    for line in lines:
                        if line.strip():
                            yield Result.from_record(json.loads(line))
                    continue
                if exited:
                    break
                time.sleep(0.02)
        finally:
            if handle is not None:
                handle.close()
        self.returncode = self.process.wait()
        if self.returncode != 0 and not self._stopped:
            raise PipelineError(self._reason() or f"the run ended with exit status {self.returncode}", self.returncode)

    def _reason(self) -> str:
        """The last line the run logged about an error (the supervisor's or a stage's)."""
        if self._log is None:
            return ""
        self._log.flush()
        lines = [line.strip() for line in (self._folder / "run.log").read_text().splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line]
        return (errors or lines or [""])[-1]

    def stop(self) -> int:
        """Stop every stage (SIGTERM to the supervisor, which stops them all); returns the exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self._stopped = True
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=_STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.returncode = self.process.wait()
        return self.returncode

    def close(self) -> None:
        """Stop the run and remove its temporary files (the results file given as `jsonl` is kept)."""
        self.stop()
        if self._log is not None:
            self._log.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> "PipelineRun":
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()
