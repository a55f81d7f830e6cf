"""Detect: find every face in a frame (several of these workers may share the load)."""
from __future__ import annotations

from face_detector import create_detector
from pipeline.config import PipelineConfig
from pipeline.runner import main
from pipeline.stage import Stage, StageError
from pipeline.wire import Face, Message


class Detect(Stage):
    """Adds a box and detector confidence for each face above the confidence and size limits."""

    name = "detect"
    output = "detections"
    workers_field = "detect.workers"

    def setup(self, config: PipelineConfig) -> None:
        settings = config.detect
        params = {"runtime": settings.runtime} if settings.backend.startswith("blazeface") else {}
        try:
            self.detector = create_detector(settings.backend, confidence=settings.confidence, min_size=settings.min_size, **params)
        except (FileNotFoundError, ValueError) as error:
            raise StageError(f"detect.backend {settings.backend!r}: {error}") from None

    def process(self, message: Message) -> list[Message]:
        message.faces = [Face(box=list(face.box), det_conf=face.confidence) for face in self.detector.detect(message.frame)]
        return [message]


if __name__ == "__main__":
    raise SystemExit(main(Detect))
