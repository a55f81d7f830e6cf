"""Every Python snippet of the README runs as written: the quick start on the demo video, and the
consumer attached to a running pipeline (slow tier: whole pipelines)."""
from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, needs_model, needs_weights

pytestmark = [pytest.mark.slow, needs_model, needs_weights]


def readme_snippets() -> list[str]:
    """The README's ```python blocks, in order."""
    return re.findall(r"^```python\n(.*?)^```$", (REPO / "README.md").read_text(), re.S | re.M)


def _run(snippet: str, index: int) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet, f"README.md python snippet {index}", "exec"), {"__name__": "__readme__"})
    return out.getvalue()


def test_every_readme_python_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from examples.make_demo_video import write_demo_video

    snippets = readme_snippets()
    assert len(snippets) >= 2 and "pipeline.run(" in snippets[0] and "subscribe(" in snippets[1]
    monkeypatch.chdir(tmp_path)  # as a user would: the demo video in runs/, configs found from anywhere
    monkeypatch.setenv("LIVENESS_RUNS_DIR", str(tmp_path / "run-info"))
    write_demo_video(tmp_path / "runs" / "demo.avi")
    for index, snippet in enumerate(snippets):
        background = None
        if "subscribe(" in snippet:  # a consumer: a pipeline must be running for it to find
            background = subprocess.Popen([sys.executable, str(REPO / "run_pipeline.py"), "--config", "configs/file.yaml",
                                           "--source", "runs/demo.avi", "--set", "source.pace=true", "--set", "display.enabled=false",
                                           "--jsonl", "runs/background.jsonl"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while not list((tmp_path / "run-info").glob("*.json")) and time.monotonic() < deadline:
                time.sleep(0.05)
        try:
            printed = _run(snippet, index)
        finally:
            if background is not None:
                assert background.wait(timeout=120) == 0
        lines = printed.splitlines()
        assert len(lines) >= 30, (index, printed[-500:])  # the demo's face, frame after frame
        assert all(re.match(r"^\d+ ", line) for line in lines), lines[:3]
