"""Display: draw boxes, labels and scores; show a window and/or write an annotated video."""
from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from pipeline.config import PipelineConfig
from pipeline.runner import main
from pipeline.stage import SinkStage, StageError, StopPipeline
from stages.webview import WebView, frame_stats
from pipeline.wire import Message

GREEN, RED, WHITE = (0, 200, 0), (0, 0, 230), (255, 255, 255)
_WRITER_LAG_FRAMES = 16  # > 256 KiB of MJPG frames, the most OpenCV's AVI writer holds back


def display_available() -> bool:
    """True where a window can open; cv2.imshow without a display aborts the whole process."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def attribute_text(attributes: dict, name: str) -> str | None:
    """`namespace.key` of a face's attributes as a short label ("side_px 120"), None when absent."""
    namespace, _, key = name.partition(".")
    value = attributes.get(namespace, {}).get(key)
    if value is None:
        return None
    return f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}"[:40]


def annotate(frame: np.ndarray, message: Message, fps: float, latency_ms: float, attributes: Sequence[str] = ()) -> np.ndarray:
    """A copy of `frame` with every face boxed (green real, red fake), the named attributes under
    each box (`namespace.key`), and an FPS/latency overlay."""
    canvas = frame.copy()
    for face in message.faces:
        x1, y1, x2, y2 = face.box
        colour = GREEN if face.label == "real" else RED if face.label == "fake" else WHITE
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
        text = f"{face.label} {face.score:.2f}" if face.score is not None else f"face {face.det_conf:.2f}"
        cv2.putText(canvas, text, (x1, max(y1 - 8, 14)), cv2.FONT_HERSHEY_SIMPLEX, 0.55, colour, 2)
        lines = [line for line in (attribute_text(face.attributes, name) for name in attributes) if line]
        for row, line in enumerate(lines):
            cv2.putText(canvas, line, (x1, y2 + 18 + 18 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1)
    overlay = f"{fps:5.1f} fps  {latency_ms:6.1f} ms  #{message.seq}"
    cv2.putText(canvas, overlay, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3)
    cv2.putText(canvas, overlay, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, WHITE, 1)
    return canvas


class Display(SinkStage):
    """Shows each annotated frame in a window where a display exists, and writes the video file if asked."""

    name = "display"
    acknowledges = True
    enabled_field = "display.enabled"

    def setup(self, config: PipelineConfig) -> None:
        settings = config.display
        self.title = settings.title
        self.attributes = tuple(settings.attributes)
        wants_window = settings.window == "on" or (settings.window == "auto" and display_available())
        self.window = wants_window and display_available()
        video = settings.video
        if not self.window and settings.window != "off":
            if settings.headless_video and not video:
                video = settings.headless_video
            print(f"display: no display found; {'writing the annotated video to ' + video if video else 'nothing is shown (set display.video)'}",
                  file=sys.stderr)
        self.video_path = Path(video) if video else None
        if self.video_path is not None:
            self.video_path.parent.mkdir(parents=True, exist_ok=True)
        self.writer: cv2.VideoWriter | None = None
        # several sources: a window and a video each (the video's name gets _ID before its suffix)
        self.several = len(config.sources) > 1
        self.source_videos: dict[str, tuple[cv2.VideoWriter, tuple[int, int]]] = {}
        self.arrivals: deque[float] = deque(maxlen=30)
        self.resume_after = -1
        if self.video_path is not None:
            # OpenCV's writer keeps up to 256 KiB in memory (several frames) that a kill -9 loses:
            # acknowledge frames only once that many newer ones are written
            self.ack_lag = _WRITER_LAG_FRAMES
            if self.attempt and not self.several:  # several sources' videos start again after a restart
                self.resume_after = self._recover(config.source.id)
        self.web: WebView | None = None
        if settings.web_port:  # the live page, for machines without a screen
            try:
                self.web = WebView(settings.web_host, settings.web_port, self.title,
                                   sources=[source.id for source in config.all_sources()])
            except OSError as error:
                raise StageError(f"display.web_port: cannot serve on {settings.web_host}:{settings.web_port} "
                                 f"({error.strerror or error})") from None
            print(f"display: live view on {self.web.url}", file=sys.stderr, flush=True)
        self.quit = False

    def process(self, message: Message) -> list[Message]:
        now = time.monotonic()
        self.arrivals.append(now)
        fps = (len(self.arrivals) - 1) / (self.arrivals[-1] - self.arrivals[0]) if len(self.arrivals) > 1 else 0.0
        latency_ms = (time.monotonic_ns() - message.t_capture_ns) / 1e6
        canvas = annotate(message.frame, message, fps, latency_ms, self.attributes)
        if self.web is not None:
            self.web.publish(canvas, {"fps": round(fps, 1), "latency": round(latency_ms, 1), "seq": message.seq,
                                      "faces": len(message.faces), "stages": frame_stats(message.stamps)},
                             message.source)
        if self.video_path is not None and self.several:
            self._write_source(message.source, canvas, float(message.info.get("fps", 30.0)))
        elif self.video_path is not None:
            self._write(canvas, float(message.info.get("fps", 30.0)))
        if self.window:
            cv2.imshow(f"{self.title} {message.source}" if self.several else self.title, canvas)
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                raise StopPipeline("q pressed in the display window")
        return []

    def resume_point(self) -> int:
        return self.resume_after

    def _recover(self, source: str) -> int:
        """Restarted: copy the decodable frames of the video a killed process left into a fresh file.

        Returns the seq of the last frame kept (one video frame per source frame, from seq 0). The
        last decodable frame may be cut short, so it is not kept; it comes again from capture.
        """
        assert self.video_path is not None
        left = self.video_path.with_name(self.video_path.stem + ".recover" + self.video_path.suffix)
        if self.video_path.is_file() and not left.is_file():
            self.video_path.rename(left)  # if this process dies while copying, the next one starts from `left` again
        if not left.is_file():
            return -1
        reader = cv2.VideoCapture(str(left))
        frames = []
        while reader.isOpened():
            ok, image = reader.read()
            if not ok:
                break
            frames.append(image)
        fps = float(reader.get(cv2.CAP_PROP_FPS)) or 30.0
        reader.release()
        for image in frames[:-1]:
            self._write(image, fps if 1.0 <= fps <= 240.0 else 30.0)
        left.unlink()
        print(f"display: restarted; kept {max(len(frames) - 1, 0)} frames of {self.video_path}", file=sys.stderr)
        return len(frames) - 2 if frames else -1

    def _write(self, canvas: np.ndarray, fps: float) -> None:
        if self.writer is None:
            fourcc = "mp4v" if self.video_path.suffix.lower() in (".mp4", ".m4v", ".mov") else "MJPG"
            self.video_size = (canvas.shape[1], canvas.shape[0])
            self.writer = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter_fourcc(*fourcc), fps, self.video_size)
            if not self.writer.isOpened():
                raise StageError(f"display.video {self.video_path}: cannot write this file ({fourcc})")
        if (canvas.shape[1], canvas.shape[0]) != self.video_size:
            canvas = cv2.resize(canvas, self.video_size)  # a folder of mixed sizes still makes one video
        self.writer.write(canvas)

    def source_video(self, source: str) -> Path:
        """Several sources: the annotated video of one (display.video with _SOURCE before the suffix)."""
        assert self.video_path is not None
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in source)[:64] or "source"
        return self.video_path.with_name(f"{self.video_path.stem}_{safe}{self.video_path.suffix}")

    def _write_source(self, source: str, canvas: np.ndarray, fps: float) -> None:
        if source not in self.source_videos:
            if len(self.source_videos) >= 64:
                return  # bounded, whatever names arrive
            path = self.source_video(source)
            fourcc = "mp4v" if path.suffix.lower() in (".mp4", ".m4v", ".mov") else "MJPG"
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (canvas.shape[1], canvas.shape[0]))
            if not writer.isOpened():
                raise StageError(f"display.video {path}: cannot write this file ({fourcc})")
            self.source_videos[source] = (writer, (canvas.shape[1], canvas.shape[0]))
        writer, size = self.source_videos[source]
        writer.write(canvas if (canvas.shape[1], canvas.shape[0]) == size else cv2.resize(canvas, size))

    def end_of_stream(self) -> None:
        self.teardown()

    def teardown(self) -> None:
        if getattr(self, "web", None) is not None:
            self.web.close()
            self.web = None
        if getattr(self, "writer", None) is not None:
            self.writer.release()
            self.writer = None
        for writer, _ in getattr(self, "source_videos", {}).values():
            writer.release()
        self.source_videos = {}
        if getattr(self, "window", False):
            cv2.destroyAllWindows()


if __name__ == "__main__":
    raise SystemExit(main(Display))
