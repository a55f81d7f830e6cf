"""The display's live web view, loaded in a real headless browser (Debian's chromium) during a real run."""
from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import free_port, make_config, needs_model, start_pipeline, wait_for_line
from pipeline.client import subscribe

pytestmark = [needs_model, pytest.mark.slow]  # whole pipelines as processes
CHROMIUM = shutil.which("chromium")


class DevTools:
    """Headless chromium driven over its DevTools pipe (fd 3 in, fd 4 out, NUL-separated JSON)."""

    def __init__(self, profile: Path) -> None:
        assert CHROMIUM is not None
        # the child's ends above fd 10, so moving them onto fds 3 and 4 cannot overwrite one another
        to_browser_r, self.to_browser_w = os.pipe()
        self.from_browser_r, from_browser_w = os.pipe()
        self.to_browser_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
        self.from_browser_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
        os.close(to_browser_r)
        os.close(from_browser_w)
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                 "--remote-debugging-pipe", "about:blank"]
        child_in, child_out = self.to_browser_r, self.from_browser_w

        def onto_fds_3_and_4() -> None:  # chromium expects its DevTools pipe there
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)
            os.close(child_in)
            os.close(child_out)

        # close_fds=False: pass_fds would close 3 and 4 after the move (Python's own fds are not inherited anyway)
        self.process = subprocess.Popen([CHROMIUM, *flags], close_fds=False, preexec_fn=onto_fds_3_and_4,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        os.close(self.to_browser_r)
        os.close(self.from_browser_w)
        self.next_id = 0
        self.buffer = b""

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 20.0) -> dict[str, Any]:
        self.next_id += 1
        command: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            command["sessionId"] = session
        os.write(self.to_browser_w, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                message = json.loads(raw)
                if message.get("id") == self.next_id:
                    if "error" in message:
                        raise AssertionError(f"{method}: {message['error']}")
                    return message["result"]
            ready, _, _ = select.select([self.from_browser_r], [], [], 0.5)
            if ready:
                chunk = os.read(self.from_browser_r, 1 << 20)
                if not chunk:
                    raise AssertionError("chromium closed its DevTools pipe")
                self.buffer += chunk
        raise AssertionError(f"no answer to {method} within {timeout} s")

    def evaluate(self, session: str, expression: str) -> Any:
        return self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)["result"].get("value")

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (AssertionError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        os.close(self.to_browser_w)
        os.close(self.from_browser_r)


def _stalled_client(port: int) -> socket.socket:
    """A viewer that asks for the stream and then never reads a byte."""
    client = socket.create_connection(("127.0.0.1", port))
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: localhost\r\n\r\n")
    return client


def _frames_seen(browser: DevTools, session: str, feed: int, wanted: int = 5, within_s: float = 30) -> int:
    """Distinct, non-blank frames the page drew from one feed's MJPEG stream (waits for `wanted`)."""
    frames_seen, deadline = 0, time.monotonic() + within_s
    while frames_seen < wanted and time.monotonic() < deadline:
        frames_seen = int(browser.evaluate(session, f"document.getElementById('frames-seen-{feed}')?.textContent || '0'"))
        time.sleep(0.2)
    return frames_seen


def _open_page(browser: DevTools, port: int) -> str:
    target = browser.call("Target.createTarget", {"url": f"http://127.0.0.1:{port}/"})["targetId"]
    return browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]


def _interrupt(pipeline: subprocess.Popen) -> None:
    if pipeline.poll() is None:
        os.killpg(pipeline.pid, signal.SIGINT)
        try:
            pipeline.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(pipeline.pid, signal.SIGKILL)
            pipeline.wait()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; .ci/run does it)")
def test_live_page_in_headless_chromium(tmp_path: Path, face_video: Path) -> None:
    web_port = free_port()
    config = make_config(tmp_path, source={"pace": True, "loop": True}, display={"web_port": web_port})
    pipeline = start_pipeline("--config", str(config), "--source", str(face_video))
    stalled: list[socket.socket] = []
    browser: DevTools | None = None
    try:
        wait_for_line(pipeline, f"display: live view on http://127.0.0.1:{web_port}/")
        wait_for_line(pipeline, "stages ready")
        # viewers that stall must not hold the pipeline back (a lossless run: the display is a sink)
        stalled = [_stalled_client(web_port) for _ in range(3)]
        browser = DevTools(tmp_path / "profile")
        session = _open_page(browser, web_port)
        assert _frames_seen(browser, session, 0) >= 5  # distinct, non-blank frames drawn inside the page
        stages = browser.evaluate(session, "document.getElementById('stages-0').innerText")
        assert "detect" in stages and "classify" in stages, stages  # per-stage figures on the page
        assert float(browser.evaluate(session, "document.getElementById('fps-0').textContent")) > 0
        endpoint = yaml.safe_load(config.read_text())["endpoints"]["results"]
        results = []
        for result in subscribe(endpoint, timeout_s=10):  # results keep flowing with stalled viewers attached
            results.append(result.seq)
            if len(results) == 30:
                break
        assert len(results) == 30
        stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{web_port}/stats.json", timeout=5).read())
        assert stats["clients"] >= 1 and stats["seq"] >= 0
        frame = urllib.request.urlopen(f"http://127.0.0.1:{web_port}/frame.jpg", timeout=5).read()
        assert frame[:2] == b"\xff\xd8"  # a JPEG
    finally:
        if browser is not None:
            browser.close()
        for client in stalled:
            client.close()
        _interrupt(pipeline)
    assert pipeline.returncode == 130


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; .ci/run does it)")
def test_several_sources_each_have_a_feed_and_metrics(tmp_path: Path, face_video: Path) -> None:
    """Two live sources in one run: the page shows a stream of each, and Prometheus counts each one."""
    from test_metrics import _scrape

    web_port, metrics_port = free_port(), free_port()
    config = make_config(tmp_path, display={"web_port": web_port}, metrics={"prometheus_port": metrics_port})
    raw = yaml.safe_load(config.read_text())
    raw["sources"] = [{"uri": str(face_video), "id": "door", "policy": "live", "loop": True},
                      {"uri": str(face_video), "id": "hall & stairs", "policy": "live", "loop": True}]
    config.write_text(yaml.safe_dump(raw))
    pipeline = start_pipeline("--config", str(config))
    browser: DevTools | None = None
    try:
        wait_for_line(pipeline, "stages ready")
        browser = DevTools(tmp_path / "profile")
        session = _open_page(browser, web_port)
        titles, deadline = [], time.monotonic() + 20
        while not titles and time.monotonic() < deadline:  # (the page may still be loading)
            titles = browser.evaluate(session, "[...document.querySelectorAll('.feed h4')].map(h => h.textContent)")
            time.sleep(0.2)
        assert titles == ["door", "hall & stairs"]  # the id is shown as text, escaped in the page
        assert _frames_seen(browser, session, 0) >= 5 and _frames_seen(browser, session, 1) >= 5
        for index in (0, 1):
            assert float(browser.evaluate(session, f"document.getElementById('fps-{index}').textContent")) > 0
        one = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{web_port}/stats.json?source=hall%20%26%20stairs",
                                                timeout=5).read())
        assert one["seq"] >= 0 and one["clients"] >= 1
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"http://127.0.0.1:{web_port}/frame.jpg?source=nobody", timeout=5)
        values = _scrape(metrics_port)
        for source in ("door", "hall & stairs"):
            sent = [value for (name, labels), value in values.items() if name == "liveness_source_frames_out_total"
                    and 'stage="classify"' in labels and f'source="{source}"' in labels]
            latency = [value for (name, labels), value in values.items() if name == "liveness_source_latency_seconds"
                       and 'stage="smooth"' in labels and f'source="{source}"' in labels]
            assert sent and sent[0] > 0 and latency, (source, sorted(k for k in values if "source" in k[0]))
    finally:
        if browser is not None:
            browser.close()
        _interrupt(pipeline)
    assert pipeline.returncode == 130
    assert pipeline.stderr is not None
    summary = [line for line in pipeline.stderr.read().splitlines() if "per source" in line]
    assert summary and "door" in summary[-1] and "hall & stairs" in summary[-1], summary  # each source's rate


def test_web_port_in_use_names_the_field(tmp_path: Path, face_video: Path) -> None:
    from conftest import run_pipeline

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_pipeline("--config", str(make_config(tmp_path, display={"web_port": port})),
                              "--source", str(face_video), timeout=60)
    assert result.returncode == 1
    assert f"display.web_port: cannot serve on 127.0.0.1:{port}" in result.stderr, result.stderr
