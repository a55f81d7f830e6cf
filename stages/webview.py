"""The display's live web view: the annotated streams (MJPEG) and a small live page, over HTTP.

Runs in a thread of the display process (`display.web_port`). The display hands each annotated
frame to `publish`, which only swaps a reference under a lock: slow or stalled HTTP clients each
have their own thread that sends the newest frame when it can and skips the rest, so they never
hold the pipeline back. Frames are JPEG-encoded only while somebody watches that source, at most
`max_fps`. Several sources each get a feed of their own, side by side on the page.

    GET /                         the live page (a stream each, fps, latency, per-stage times)
    GET /stream.mjpg[?source=ID]  multipart/x-mixed-replace JPEG stream (the first source by default)
    GET /frame.jpg[?source=ID]    the newest frame
    GET /stats.json[?source=ID]   the newest figures (of all sources: `sources` holds each one's)
"""
from __future__ import annotations

import html
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import cv2
import numpy as np

_BOUNDARY = "liveness-frame"
_MAX_CLIENTS = 16  # streaming clients at once, over all sources; more get 503 instead of another thread each
_CLIENT_TIMEOUT_S = 10.0  # a client that accepts nothing for this long is dropped
_WATCH_GRACE_S = 2.0  # keep encoding this long after the last /frame.jpg request

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>TITLE - live</title>
<style>
 body { font-family: sans-serif; background: #111; color: #eee; margin: 1em; }
 .feeds { display: flex; flex-wrap: wrap; gap: 1em; }
 .feed { flex: 1 1 420px; max-width: FEED_WIDTH; }
 img { max-width: 100%; border: 1px solid #444; }
 table { border-collapse: collapse; margin-top: .5em; } td, th { padding: 2px 10px; text-align: right; }
 th:first-child, td:first-child { text-align: left; }
</style></head>
<body>
<h3>TITLE</h3>
<div class="feeds">FEEDS</div>
<script>
// Count the frames that really reach this page: sample each stream image and count changes.
const feeds = [...document.querySelectorAll(".feed")];
const canvas = document.createElement("canvas");
canvas.width = 32; canvas.height = 24;
const ctx = canvas.getContext("2d", {willReadFrequently: true});
const last = feeds.map(() => ""), seen = feeds.map(() => 0);
setInterval(() => feeds.forEach((feed, index) => {
  const img = document.getElementById(`stream-${index}`);
  if (!img.complete || !img.naturalWidth) return;
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0, bright = 0;
  for (let i = 0; i < pixels.length; i += 4) { sum = (sum * 31 + pixels[i] + pixels[i + 1] * 7 + pixels[i + 2] * 13) % 1000000007; bright += pixels[i]; }
  const key = String(sum);
  if (bright > 0 && key !== last[index]) { seen[index] += 1; last[index] = key; document.getElementById(`frames-seen-${index}`).textContent = seen[index]; }
}), 100);
async function refresh() {
  try {
    const all = await (await fetch("/stats.json", {cache: "no-store"})).json();
    feeds.forEach((feed, index) => {
      const stats = (all.sources || {})[feed.dataset.source] || {};
      for (const name of ["fps", "latency", "seq", "faces"]) document.getElementById(`${name}-${index}`).textContent = stats[name] ?? "-";
      const rows = Object.entries(stats.stages || {}).map(([stage, t]) =>
        `<tr><td>${stage}</td><td>${t.process_ms ?? "-"}</td><td>${t.hop_ms ?? "-"}</td></tr>`);
      document.getElementById(`stages-${index}`).innerHTML = rows.join("");
    });
  } catch (error) { /* the run ended; keep the last figures */ }
}
setInterval(refresh, 1000); refresh();
</script>
</body></html>
"""

_FEED = """<div class="feed" data-source="SOURCE">
<h4>SOURCE</h4>
<img id="stream-N" src="/stream.mjpg?source=QUOTED" alt="annotated stream of SOURCE">
<p>frames seen here: <b id="frames-seen-N">0</b> &middot; fps <b id="fps-N">-</b> &middot;
 latency <b id="latency-N">-</b> ms &middot; frame #<b id="seq-N">-</b> &middot; faces <b id="faces-N">-</b></p>
<table><thead><tr><th>stage</th><th>ms / frame</th><th>hop ms</th></tr></thead><tbody id="stages-N"></tbody></table>
</div>"""


def render_page(title: str, sources: Sequence[str]) -> str:
    """The live page: one feed (stream, figures, stage table) per source."""
    feeds = [_FEED.replace("-N", f"-{index}").replace("QUOTED", html.escape(quote(source, safe="")))
             .replace("SOURCE", html.escape(source)) for index, source in enumerate(sources)]
    width = "100%" if len(sources) == 1 else "48%"
    return _PAGE.replace("TITLE", html.escape(title)).replace("FEED_WIDTH", width).replace("FEEDS", "\n".join(feeds))


def frame_stats(stamps: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    """Per-stage processing and hop times (ms) of one frame, from the stamps it carries."""
    stages: dict[str, dict[str, float]] = {}
    previous_sent: int | None = None
    for name, times in sorted(stamps.items(), key=lambda item: item[1][0]):
        entry: dict[str, float] = {}
        if len(times) >= 2:
            entry["process_ms"] = round((times[-1] - times[0]) / 1e6, 2)
        if previous_sent is not None:
            entry["hop_ms"] = round((times[0] - previous_sent) / 1e6, 2)
        stages[name] = entry
        previous_sent = times[-1]
    return stages


@dataclass
class _Feed:
    """One source's newest annotated frame (JPEG), its figures and who watches it."""

    jpeg: bytes | None = None
    frame_id: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    streaming: int = 0
    last_request: float = 0.0
    last_encode: float = 0.0


class WebView:
    """An HTTP server thread serving the newest annotated frame and figures of each source."""

    def __init__(self, host: str, port: int, title: str = "liveness", max_fps: float = 30.0, quality: int = 80,
                 sources: Sequence[str] = ("source",)) -> None:
        """Bind and start serving a feed for each of `sources`. Raises OSError when the address cannot be used."""
        self.title = title
        self.sources = list(dict.fromkeys(sources)) or ["source"]
        self.min_interval_s = 1.0 / max_fps
        self.quality = quality
        self.condition = threading.Condition()
        self.feeds = {source: _Feed() for source in self.sources}
        self.newest: dict[str, Any] = {}  # the figures of the newest frame of any source
        self.closed = False
        self.page = render_page(title, self.sources).encode()
        self.server = ThreadingHTTPServer((host, port), self._handler_class())
        self.server.daemon_threads = True  # a stuck client thread never keeps the display process alive
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
                                       name="web-view")
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def streaming(self) -> int:
        """Streaming clients over all sources."""
        return sum(feed.streaming for feed in self.feeds.values())

    def watched(self, source: str | None = None) -> bool:
        """True while a client streams the source (the first by default), or fetched its frame a moment ago."""
        feed = self.feeds.get(self.sources[0] if source is None else source)
        return feed is not None and (feed.streaming > 0 or time.monotonic() - feed.last_request < _WATCH_GRACE_S)

    def publish(self, canvas: np.ndarray, stats: dict[str, Any], source: str | None = None) -> None:
        """Offer one annotated frame of `source` (the first by default); never blocks on clients.

        A source the view was not started with is not shown (the feeds are fixed and bounded)."""
        feed = self.feeds.get(self.sources[0] if source is None else source)
        if feed is None:
            return
        now = time.monotonic()
        with self.condition:
            feed.stats = stats
            self.newest = stats
        if not self.watched(source) or now - feed.last_encode < self.min_interval_s:
            return  # nobody watching, or faster than the web view needs: skip the JPEG encoding
        ok, encoded = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return
        feed.last_encode = now
        with self.condition:
            feed.jpeg = encoded.tobytes()
            feed.frame_id += 1
            self.condition.notify_all()

    def close(self) -> None:
        with self.condition:
            self.closed = True
            self.condition.notify_all()
        self.server.shutdown()
        self.server.server_close()

    def _next_frame(self, feed: _Feed, after: int) -> tuple[int, bytes | None]:
        """Wait (bounded) for a frame of `feed` newer than `after`; (id, jpeg) or (after, None) at close/timeout."""
        with self.condition:
            self.condition.wait_for(lambda: self.closed or (feed.frame_id > after and feed.jpeg is not None), timeout=1.0)
            if self.closed or feed.frame_id <= after:
                return after, None
            return feed.frame_id, feed.jpeg

    def _stats(self, source: str | None) -> dict[str, Any]:
        with self.condition:
            if source is not None:
                feed = self.feeds[source]
                return {**feed.stats, "clients": feed.streaming}
            return {**self.newest, "clients": self.streaming,
                    "sources": {name: {**feed.stats, "clients": feed.streaming} for name, feed in self.feeds.items()}}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        view = self

        class Handler(BaseHTTPRequestHandler):
            timeout = _CLIENT_TIMEOUT_S  # socket timeout: a client that stops reading is dropped

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep stderr for the pipeline
                pass

            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                url = urlsplit(self.path)
                asked = parse_qs(url.query).get("source", [None])[0]
                if asked is not None and asked not in view.feeds:
                    self._send(HTTPStatus.NOT_FOUND, "text/plain", b"no such source\n")
                    return
                feed = view.feeds[asked or view.sources[0]]
                feed.last_request = time.monotonic()
                if url.path in ("/", "/index.html"):
                    self._send(HTTPStatus.OK, "text/html; charset=utf-8", view.page)
                elif url.path == "/stats.json":
                    self._send(HTTPStatus.OK, "application/json", json.dumps(view._stats(asked)).encode())
                elif url.path == "/frame.jpg":
                    fresh = feed.jpeg is not None and time.monotonic() - feed.last_encode < 1.0
                    _, jpeg = view._next_frame(feed, feed.frame_id - 1 if fresh else feed.frame_id)  # stale: wait for a new one
                    if jpeg is None:
                        self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame yet\n")
                    else:
                        self._send(HTTPStatus.OK, "image/jpeg", jpeg)
                elif url.path == "/stream.mjpg":
                    self._stream(feed)
                else:
                    self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")

            def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _stream(self, feed: _Feed) -> None:
                with view.condition:
                    if view.streaming >= _MAX_CLIENTS:
                        full = True
                    else:
                        full, feed.streaming = False, feed.streaming + 1
                if full:
                    self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"too many viewers\n")
                    return
                try:
                    self.send_response(HTTPStatus.OK)
                    self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
                    self.send_header("Cache-Control", "no-store")
                    self.end_headers()
                    frame_id = 0
                    while not view.closed:
                        frame_id, jpeg = view._next_frame(feed, frame_id)
                        if jpeg is None:
                            continue
                        # the newest frame only: a slow client simply sees fewer frames
                        self.wfile.write(f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode())
                        self.wfile.write(jpeg)
                        self.wfile.write(b"\r\n")
                        self.wfile.flush()
                except OSError:
                    pass  # the client went away or stalled past the timeout
                finally:
                    with view.condition:
                        feed.streaming -= 1

        return Handler
