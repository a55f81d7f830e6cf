"""The display's live web view: the annotated stream (MJPEG) and a small live page, over HTTP.

Runs in a thread of the display process (`display.web_port`). The display hands each annotated
frame to `publish`, which only swaps a reference under a lock: slow or stalled HTTP clients each
have their own thread that sends the newest frame when it can and skips the rest, so they never
hold the pipeline back. Frames are JPEG-encoded only while somebody watches, at most `max_fps`.

    GET /            the live page (stream, fps, latency, per-stage times)
    GET /stream.mjpg multipart/x-mixed-replace JPEG stream
    GET /frame.jpg   the newest frame
    GET /stats.json  the newest figures
"""
from __future__ import annotations

import json
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

_BOUNDARY = "liveness-frame"
_MAX_CLIENTS = 16  # streaming clients at once; more get 503 instead of another thread each
_CLIENT_TIMEOUT_S = 10.0  # a client that accepts nothing for this long is dropped
_WATCH_GRACE_S = 2.0  # keep encoding this long after the last /frame.jpg request

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>TITLE - live</title>
<style>
 body { font-family: sans-serif; background: #111; color: #eee; margin: 1em; }
 img { max-width: 100%; border: 1px solid #444; }
 table { border-collapse: collapse; margin-top: .5em; } td, th { padding: 2px 10px; text-align: right; }
 th:first-child, td:first-child { text-align: left; }
</style></head>
<body>
<h3>TITLE</h3>
<img id="stream" src="/stream.mjpg" alt="annotated stream">
<p>frames seen here: <b id="frames-seen">0</b> &middot; fps <b id="fps">-</b> &middot;
 latency <b id="latency">-</b> ms &middot; frame #<b id="seq">-</b> &middot; faces <b id="faces">-</b></p>
<table><thead><tr><th>stage</th><th>ms / frame</th><th>hop ms</th></tr></thead><tbody id="stages"></tbody></table>
<script>
// Count the frames that really reach this page: sample the stream image and count changes.
const img = document.getElementById("stream");
const canvas = document.createElement("canvas");
canvas.width = 32; canvas.height = 24;
const ctx = canvas.getContext("2d", {willReadFrequently: true});
let last = "", seen = 0;
setInterval(() => {
  if (!img.complete || !img.naturalWidth) return;
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0, bright = 0;
  for (let i = 0; i < pixels.length; i += 4) { sum = (sum * 31 + pixels[i] + pixels[i + 1] * 7 + pixels[i + 2] * 13) % 1000000007; bright += pixels[i]; }
  const key = String(sum);
  if (bright > 0 && key !== last) { seen += 1; last = key; document.getElementById("frames-seen").textContent = seen; }
}, 100);
async function refresh() {
  try {
    const stats = await (await fetch("/stats.json", {cache: "no-store"})).json();
    for (const name of ["fps", "latency", "seq", "faces"]) document.getElementById(name).textContent = stats[name] ?? "-";
    const rows = Object.entries(stats.stages || {}).map(([stage, t]) =>
      `<tr><td>${stage}</td><td>${t.process_ms ?? "-"}</td><td>${t.hop_ms ?? "-"}</td></tr>`);
    document.getElementById("stages").innerHTML = rows.join("");
  } catch (error) { /* the run ended; keep the last figures */ }
}
setInterval(refresh, 1000); refresh();
</script>
</body></html>
"""


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


class WebView:
    """An HTTP server thread serving the newest annotated frame and figures."""

    def __init__(self, host: str, port: int, title: str = "liveness", max_fps: float = 30.0, quality: int = 80) -> None:
        """Bind and start serving. Raises OSError when the address cannot be used."""
        self.title = title
        self.min_interval_s = 1.0 / max_fps
        self.quality = quality
        self.condition = threading.Condition()
        self.jpeg: bytes | None = None
        self.frame_id = 0
        self.stats: dict[str, Any] = {}
        self.streaming = 0
        self.last_request = 0.0
        self.last_encode = 0.0
        self.closed = False
        self.server = ThreadingHTTPServer((host, port), self._handler_class())
        self.server.daemon_threads = True  # a stuck client thread never keeps the display process alive
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
                                       name="web-view")
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def watched(self) -> bool:
        """True while a client streams, or fetched a frame a moment ago."""
        return self.streaming > 0 or time.monotonic() - self.last_request < _WATCH_GRACE_S

    def publish(self, canvas: np.ndarray, stats: dict[str, Any]) -> None:
        """Offer one annotated frame (never blocks on clients)."""
        now = time.monotonic()
        with self.condition:
            self.stats = stats
        if not self.watched() or now - self.last_encode < self.min_interval_s:
            return  # nobody watching, or faster than the web view needs: skip the JPEG encoding
        ok, encoded = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return
        self.last_encode = now
        with self.condition:
            self.jpeg = encoded.tobytes()
            self.frame_id += 1
            self.condition.notify_all()

    def close(self) -> None:
        with self.condition:
            self.closed = True
            self.condition.notify_all()
        self.server.shutdown()
        self.server.server_close()

    def _next_frame(self, after: int) -> tuple[int, bytes | None]:
        """Wait (bounded) for a frame newer than `after`; (id, jpeg) or (after, None) at close/timeout."""
        with self.condition:
            self.condition.wait_for(lambda: self.closed or (self.frame_id > after and self.jpeg is not None), timeout=1.0)
            if self.closed or self.frame_id <= after:
                return after, None
            return self.frame_id, self.jpeg

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        view = self

        class Handler(BaseHTTPRequestHandler):
            timeout = _CLIENT_TIMEOUT_S  # socket timeout: a client that stops reading is dropped

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep stderr for the pipeline
                pass

            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                view.last_request = time.monotonic()
                path = self.path.split("?", 1)[0]
                if path in ("/", "/index.html"):
                    self._send(HTTPStatus.OK, "text/html; charset=utf-8", _PAGE.replace("TITLE", view.title).encode())
                elif path == "/stats.json":
                    with view.condition:
                        body = json.dumps({**view.stats, "clients": view.streaming}).encode()
                    self._send(HTTPStatus.OK, "application/json", body)
                elif path == "/frame.jpg":
                    fresh = view.jpeg is not None and time.monotonic() - view.last_encode < 1.0
                    _, jpeg = view._next_frame(view.frame_id - 1 if fresh else view.frame_id)  # stale: wait for a new one
                    if jpeg is None:
                        self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame yet\n")
                    else:
                        self._send(HTTPStatus.OK, "image/jpeg", jpeg)
                elif path == "/stream.mjpg":
                    self._stream()
                else:
                    self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")

            def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _stream(self) -> None:
                with view.condition:
                    if view.streaming >= _MAX_CLIENTS:
                        full = True
                    else:
                        full, view.streaming = False, view.streaming + 1
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
                        frame_id, jpeg = view._next_frame(frame_id)
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
                        view.streaming -= 1

        return Handler
