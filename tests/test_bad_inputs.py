"""Bad models, missing key files and unreadable sources: one line naming the thing, a non-zero
exit, no traceback. What a function call shows is tested in-process (a stage's `setup`, the config
loader); one whole run shows that a stage's one line ends the run with it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import astronaut_bgr, make_config, run_pipeline
from liveness.metadata import ModelMetadata, write_metadata
from pipeline.config_file import ConfigError, load_config
from pipeline.stage import StageError
from pipeline.wire import Face, Message
from stages.capture import Capture
from stages.classify import Classify


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
def test_unusable_model_is_one_line_from_setup(tmp_path: Path, case: str) -> None:
    model, problem = _models(tmp_path)[case]
    config = load_config(make_config(tmp_path, classify={"model": str(model)}), check_files=False)
    with pytest.raises(StageError) as caught:
        Classify().setup(config)
    message = str(caught.value)
    assert message.startswith("classify.model") and str(model) in message and problem in message and "\n" not in message


@pytest.mark.slow
def test_unusable_model_ends_the_run_with_one_line(tmp_path: Path, face_video: Path) -> None:
    model, problem = _models(tmp_path)["no_metadata"]
    result = run_pipeline("--config", str(make_config(tmp_path, classify={"model": str(model)})), "--source", str(face_video),
                          timeout=60)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "classify: classify.model" in errors[0] and problem in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_tiny_valid_model_scores_a_face(tmp_path: Path) -> None:
    model = _onnx_model(tmp_path / "tiny.onnx", 32)
    write_metadata(model, ModelMetadata(input_size=32, crop_scales=[1.0]))
    classify = Classify()
    classify.setup(load_config(make_config(tmp_path, classify={"model": str(model)}), check_files=False))
    frame = astronaut_bgr()
    message = Message(kind="frame", source="s", seq=0, faces=[Face([160, 40, 330, 250], 0.99)], frame=frame)
    face = classify.process(message)[0].faces[0]
    assert face.score == pytest.approx(0.5) and face.label in ("real", "fake")  # zero weights: even odds


def test_missing_key_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "allowed").mkdir()
    with pytest.raises(ConfigError) as caught:
        load_config(make_config(tmp_path), [f"curve.server_secret_key={tmp_path / 'gone.key_secret'}",
                                            f"curve.allowed_clients={tmp_path / 'allowed'}"])
    assert str(caught.value).startswith("--set curve.server_secret_key=")
    assert str(caught.value).endswith(f"curve.server_secret_key: key file not found: {tmp_path / 'gone.key_secret'}")


@pytest.mark.slow
def test_unreadable_image_as_source(tmp_path: Path) -> None:
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    result = run_pipeline("--config", str(make_config(tmp_path)), "--source", str(image), timeout=60)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and str(image) in errors[0] and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("kind", ["text file", "empty folder"])
def test_bad_sources_are_one_line_from_setup(tmp_path: Path, kind: str) -> None:
    if kind == "text file":
        source = tmp_path / "notes.mp4"
        source.write_text("this is text")
        problem = f"source.uri {str(source)!r}: cannot open video file (unreadable, unsupported or unreachable)"
    else:
        source = tmp_path / "empty"
        source.mkdir()
        problem = f"source.uri {str(source)!r}: folder holds no images"
    config = load_config(make_config(tmp_path), [f"source.uri={source}"], check_files=False)
    with pytest.raises(StageError) as caught:
        Capture().setup(config)
    assert str(caught.value).startswith(problem)


def test_missing_camera_says_how_to_use_a_file(tmp_path: Path) -> None:
    if Path("/dev/video0").exists():
        pytest.skip("this machine has a camera")
    config = load_config(make_config(tmp_path), ["source.uri=0"], check_files=False)
    with pytest.raises(StageError) as caught:
        Capture().setup(config)
    assert "no camera at index 0" in str(caught.value) and "--source" in str(caught.value)
