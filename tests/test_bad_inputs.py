"""Bad models, bad restart/CURVE settings and unreadable sources: one line naming the thing, a
non-zero exit, no traceback."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import make_config, run_pipeline
from liveness.metadata import ModelMetadata, write_metadata

pytestmark = pytest.mark.slow  # whole pipelines as processes


def _onnx_model(path: Path, side: int) -> Path:
    """A tiny valid ONNX classifier (flatten, matmul, softmax) taking N x side x side x 3."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.zeros((side * side * 3, 2), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["image"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=1)],
        "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", side, side, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 2])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _models(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07this is not a protobuf" * 10)
    no_metadata = _onnx_model(tmp_path / "no_metadata.onnx", 32)
    wrong_shape = _onnx_model(tmp_path / "wrong_shape.onnx", 64)
    write_metadata(wrong_shape, ModelMetadata(input_size=32, crop_scales=[1.0]))
    return {
        "corrupt": (corrupt, "not a loadable ONNX model"),
        "no_metadata": (no_metadata, "no 'liveness' metadata"),
        "wrong_shape": (wrong_shape, "does not match metadata"),
    }


@pytest.mark.parametrize("case", ["corrupt", "no_metadata", "wrong_shape"])
def test_unusable_model_fails_with_one_line(tmp_path: Path, face_video: Path, case: str) -> None:
    model, problem = _models(tmp_path)[case]
    config = make_config(tmp_path, classify={"model": str(model)})
    result = run_pipeline("--config", str(config), "--source", str(face_video), timeout=60)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "classify: classify.model" in errors[0] and str(model) in errors[0], result.stderr
    assert problem in errors[0]
    assert "Traceback" not in result.stderr


def test_tiny_valid_model_runs(tmp_path: Path, face_video: Path) -> None:
    model = _onnx_model(tmp_path / "tiny.onnx", 32)
    write_metadata(model, ModelMetadata(input_size=32, crop_scales=[1.0]))
    result = run_pipeline("--config", str(make_config(tmp_path, classify={"model": str(model)})), "--source", str(face_video))
    assert result.returncode == 0, result.stderr


def test_missing_key_file_is_named(tmp_path: Path, face_video: Path) -> None:
    (tmp_path / "allowed").mkdir()
    result = run_pipeline("--config", str(make_config(tmp_path)), "--source", str(face_video),
                          "--set", f"curve.server_secret_key={tmp_path / 'gone.key_secret'}",
                          "--set", f"curve.allowed_clients={tmp_path / 'allowed'}", timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(f"curve.server_secret_key: key file not found: {tmp_path / 'gone.key_secret'}")


def test_unreadable_image_as_source(tmp_path: Path) -> None:
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    result = run_pipeline("--config", str(make_config(tmp_path)), "--source", str(image), timeout=60)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and str(image) in errors[0] and "Traceback" not in result.stderr, result.stderr
