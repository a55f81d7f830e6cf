"""The context crops the classifier sees: the two resize methods agree, and a model's metadata picks one."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import astronaut_bgr
from liveness.crop import crop_face, crop_faces
from liveness.metadata import ModelMetadata, ModelMetadataError

FACE = (180.0, 60.0, 270.0, 180.0)  # the astronaut's face in the 512x512 photo


@pytest.mark.parametrize("scale", [1.0, 1.5, 2.7, 4.0])
def test_fast_resize_gives_nearly_the_same_pixels(scale: float) -> None:
    photo = astronaut_bgr()
    area = crop_face(photo, FACE, scale, 64, "area").astype(np.float64)
    fast = crop_face(photo, FACE, scale, 64, "area_fast").astype(np.float64)
    assert fast.shape == area.shape == (64, 64, 3)
    # The same picture (at most a pixel's shift at the far edges from whole 2x2 cells), not a copy.
    assert np.abs(fast - area).mean() < 3.0
    assert np.corrcoef(fast.ravel(), area.ravel())[0, 1] > 0.98


def test_fast_resize_keeps_black_outside_the_frame() -> None:
    photo = astronaut_bgr()
    corner = (0.0, 0.0, 100.0, 100.0)  # a 4.0x square reaches far past the top-left corner
    crops = crop_faces(photo, [corner], [4.0], 64, "area_fast")[0]
    assert crops[:20, :20].max() == 0 and crops[40:, 40:].mean() > 20


def test_unknown_resize_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown crop resize 'nearest'"):
        crop_face(astronaut_bgr(), FACE, 1.5, 64, "nearest")


def test_metadata_without_crop_resize_means_area() -> None:
    # Models up to 1.0 were trained on single INTER_AREA crops and carry no such field.
    assert ModelMetadata.from_json('{"input_size": 64, "crop_scales": [1.5, 2.7]}').crop_resize == "area"
    with pytest.raises(ModelMetadataError, match="crop_resize must be one of area, area_fast"):
        ModelMetadata(input_size=64, crop_scales=[1.5], crop_resize="cubic")
