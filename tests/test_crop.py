"""The context crops the classifier sees: the two resize methods agree, and a model's metadata picks one."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import astronaut_bgr
from liveness.crop import crop_face, crop_faces
from liveness.metadata import ModelMetadata, ModelMetadataError

FACE = (180.0, 60.0, 270.0, 180.0)  # the astronaut's face in the 512x512 photo


def _sharpness(crop: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


@pytest.mark.parametrize("scale", [1.0, 1.5, 2.7, 4.0])
def test_fast_resize_keeps_the_picture_and_its_texture(scale: float) -> None:
    photo = astronaut_bgr()
    area = crop_face(photo, FACE, scale, 64, "area")
    fast = crop_face(photo, FACE, scale, 64, "area_fast")
    assert fast.shape == area.shape == (64, 64, 3)
    if 120 * scale < 4 * 64:  # squares under 4x the target take the single resize: the same pixels
        np.testing.assert_array_equal(fast, area)
        return
    difference = np.abs(fast.astype(np.float64) - area.astype(np.float64))
    assert difference.mean() < 3.0 and np.corrcoef(fast.ravel(), area.ravel())[0, 1] > 0.98
    # Fine texture is the liveness cue: halving down to below 2x the target lost a third of it.
    assert _sharpness(fast) > 0.8 * _sharpness(area)


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


def test_native_patch_is_the_frames_own_pixels_around_the_box_centre() -> None:
    from liveness.crop import NATIVE

    frame = astronaut_bgr()
    box = (150.0, 60.0, 330.0, 260.0)  # centre (240, 160)
    tiles = crop_faces(frame, [box], [1.5, NATIVE], 64)
    np.testing.assert_array_equal(tiles[0, :, :, 3:], frame[128:192, 208:272])  # no resize at all
    np.testing.assert_array_equal(tiles[0, :, :, :3], crop_face(frame, box, 1.5, 64))
    # at the frame edge the patch keeps its place and the outside is black
    edge = crop_face(frame, (-40.0, -40.0, 20.0, 20.0), NATIVE, 64)  # centre (-10, -10): the patch starts at -42
    np.testing.assert_array_equal(edge[:42], 0)
    np.testing.assert_array_equal(edge[42:, 42:], frame[:22, :22])
    assert ModelMetadata(input_size=64, crop_scales=[1.5, 2.7, NATIVE]).crop_scales[-1] == 0.0
    with pytest.raises(ModelMetadataError):
        ModelMetadata(input_size=64, crop_scales=[0.2])


def test_fit_border_keeps_the_square_inside_the_frame() -> None:
    photo = astronaut_bgr()[:, :384]  # 512 high, 384 wide
    # A square that fits is cut the same either way.
    np.testing.assert_array_equal(crop_face(photo, FACE, 1.5, 64, border="fit"), crop_face(photo, FACE, 1.5, 64))
    # Past the top-left corner: same side, slid inside, so it is the frame's own top-left square.
    corner = (0.0, 0.0, 60.0, 60.0)  # 2.7x: a 162 px square centred on (30, 30)
    fitted = crop_face(photo, corner, 2.7, 64, border="fit")
    np.testing.assert_array_equal(fitted, cv2.resize(photo[:162, :162], (64, 64), interpolation=cv2.INTER_AREA))
    assert crop_face(photo, corner, 2.7, 64)[:16, :16].max() == 0  # "black" pads the same box
    # Larger than the frame's short side: shrunk to it (384) and slid inside along the long side.
    close_up = (40.0, 300.0, 340.0, 600.0)  # a 300 px face; 2.7x = 810 px, centre y 450 -> rows 128..512
    fitted = crop_faces(photo, [close_up], [1.5, 2.7], 64, border="fit")[0]
    np.testing.assert_array_equal(fitted[:, :, 3:], cv2.resize(photo[128:512, 0:384], (64, 64), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(fitted[:, :, :3], fitted[:, :, 3:])  # both scales meet the same limit
    assert crop_face(photo, close_up, 2.7, 64)[:, :12].max() == 0  # where "black" pads the left fifth
    with pytest.raises(ValueError, match="unknown crop border 'mirror'"):
        crop_face(photo, FACE, 1.5, 64, border="mirror")


def test_metadata_without_crop_border_means_black() -> None:
    # Models up to 1.1 were trained on crops padded with black and carry no such field.
    assert ModelMetadata.from_json('{"input_size": 64, "crop_scales": [1.5, 2.7]}').crop_border == "black"
    assert ModelMetadata(input_size=64, crop_scales=[1.5], crop_border="fit").crop_border == "fit"
    with pytest.raises(ModelMetadataError, match="crop_border must be one of black, fit"):
        ModelMetadata(input_size=64, crop_scales=[1.5], crop_border="mirror")
