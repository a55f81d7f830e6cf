"""An added stage: each face's size and sharpness as per-face attributes.

Put it between classify and the sinks with one config entry (no framework file changes):

    stages:
      - {name: face_size, module: examples.face_size, after: classify, settings: {sharpness: true}}
    display:
      attributes: [face_size.side_px, face_size.sharpness]   # drawn under each box (optional)

Every result then carries, per face, `attributes: {"face_size": {"side_px": 212, "sharpness": 81.4}}`
(JSON lines, the result stream, pipeline.client). Sharpness is the variance of the Laplacian of the
face's grey crop: low for a blurred face, the usual cue for "too blurry to trust".
"""
from __future__ import annotations

import cv2
from pydantic import BaseModel, ConfigDict, Field

from pipeline.stage import Stage
from pipeline.wire import Message


class FaceSize(Stage):
    """Adds `side_px` (the shorter side of the face box) and, if asked, `sharpness` to every face."""

    name = "face_size"

    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        sharpness: bool = Field(True, description="also measure sharpness (variance of the Laplacian of the crop)")

    def process(self, message: Message) -> list[Message]:
        for face in message.faces:
            x1, y1, x2, y2 = face.box
            face.set_attribute(self.name, "side_px", min(x2 - x1, y2 - y1))
            if self.settings.sharpness and message.frame is not None:
                crop = message.frame[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)]
                if crop.size:
                    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
                    face.set_attribute(self.name, "sharpness", round(float(cv2.Laplacian(grey, cv2.CV_64F).var()), 2))
        return [message]
