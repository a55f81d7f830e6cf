"""Capture: read frames from a camera, video file, network stream or image folder."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import cv2

from pipeline.config import PipelineConfig, resolve_path
from pipeline.runner import main
from pipeline.stage import SourceStage, StageError
from pipeline.wire import Message

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
_NO_CAMERA_HINT = (
    "point --source at a video file, an rtsp:// or http:// stream or an image folder, "
    "e.g. python run_pipeline.py --config configs/file.yaml --source VIDEO.mp4"
)


class Capture(SourceStage):
    """Frames from `source.uri`, each with its index, capture times and size."""

    name = "capture"

    def setup(self, config: PipelineConfig) -> None:
        self.config = config.source
        uri = self.config.uri
        self.images: list[Path] | None = None
        self.capture: cv2.VideoCapture | None = None
        path = resolve_path(uri)
        if uri.isdigit():
            self.capture = cv2.VideoCapture(int(uri))
            if not self.capture.isOpened():
                raise StageError(f"source.uri {uri!r}: no camera at index {uri} on this machine; {_NO_CAMERA_HINT}")
            if self.config.width and self.config.height:
                self.capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.config.width)
                self.capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.config.height)
        elif path.is_dir():
            self.images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.images:
                raise StageError(f"source.uri {uri!r}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        else:
            target = uri if "://" in uri else str(path)
            self.capture = cv2.VideoCapture(target)
            if not self.capture.isOpened():
                kind = "stream" if "://" in uri else "video file"
                raise StageError(f"source.uri {uri!r}: cannot open {kind} (unreadable, unsupported or unreachable)")
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS)) if self.capture is not None else 0.0
        if not 1.0 <= self.fps <= 240.0:
            self.fps = 30.0

    def frames(self, start: int = 0) -> Iterator[Message]:
        seq = start
        started = time.monotonic() - start / self.fps
        limit = self.config.max_frames
        for image, error in self._read(skip=start):
            if limit is not None and seq >= limit:
                return
            if self.config.pace:
                delay = started + seq / self.fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            info: dict = {"fps": self.fps}
            if image is not None:
                info["size"] = [int(image.shape[1]), int(image.shape[0])]
            if error:
                info["error"] = error
            yield Message(kind="frame", source=self.config.id, seq=seq, t_capture_ns=time.monotonic_ns(),
                          t_wall=time.time(), info=info, frame=image)
            seq += 1

    def _read(self, skip: int = 0) -> Iterator[tuple]:
        """(frame or None, error text) pairs until the source ends, after skipping `skip` frames unread."""
        while True:
            if self.images is not None:
                for path in self.images[skip:]:
                    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                    yield (image, None) if image is not None else (None, f"unreadable image {path.name}")
            else:
                assert self.capture is not None
                for _ in range(skip):
                    if not self.capture.grab():  # grab without decoding: a cheap seek that counts exactly
                        break
                while True:
                    ok, image = self.capture.read()
                    if not ok:
                        break
                    yield image, None
            skip = 0
            if not self.config.loop:
                return
            if self.capture is not None:
                self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)

    def teardown(self) -> None:
        if getattr(self, "capture", None) is not None:
            self.capture.release()


if __name__ == "__main__":
    raise SystemExit(main(Capture))
