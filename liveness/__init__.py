"""The liveness model contract shared by training and the classify stage.

A model is one ONNX file whose metadata (key "liveness", JSON) says everything needed to use
it: how to crop the face from a detector box, how to scale pixels, the labels and the
decision threshold. `LivenessModel` reads it; training writes it with `write_metadata`.
"""
from liveness.crop import crop_face, crop_faces
from liveness.metadata import METADATA_KEY, ModelMetadata, ModelMetadataError
from liveness.model import LivenessModel, ModelError

__all__ = [
    "METADATA_KEY",
    "LivenessModel",
    "ModelError",
    "ModelMetadata",
    "ModelMetadataError",
    "crop_face",
    "crop_faces",
]
