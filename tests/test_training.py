"""Gathering, a tiny training run with ONNX export, and the shipped model.

Tests that read the shared data set skip with a reason where it is absent (a fresh clone
outside the workplace has no ../shared/data); its location is $LIVENESS_DATA if set.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import needs_weights
from liveness import LivenessModel, crop_faces
from training.data import data_dir

REPO = Path(__file__).resolve().parent.parent
DATA = data_dir()
needs_data = pytest.mark.skipif(not (DATA / "manifest.csv").is_file(),
                                reason=f"shared liveness data not found at {DATA} (set LIVENESS_DATA)")
needs_blaze_weights = pytest.mark.skipif(
    not (REPO / "face_detector" / "weights" / "face_detection_short_range.tflite").is_file(),
    reason="BlazeFace weights absent: run python -m face_detector.fetch_weights blazeface")
needs_mesh_weights = pytest.mark.skipif(
    not (REPO / "face_detector" / "weights" / "face_landmark.tflite").is_file(),
    reason="face-mesh weights absent: run python -m face_detector.fetch_weights face_mesh")


def _rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="") as handle:
        return list(csv.DictReader(handle))


@needs_data
@needs_weights
def test_gather_on_a_shared_video_yields_crops(tmp_path: Path) -> None:
    from training.gather_examples import main, untile

    video = DATA / "videos" / "manikantha_m" / "fake.mp4"
    assert main(["--input", str(video), "--output", str(tmp_path), "--label", "fake", "--skip", "15",
                 "--size", "48", "--scales", "1.5", "2.7", "--jitter", "1"]) == 0
    rows = _rows(tmp_path / "manifest.csv")
    detected = [r for r in rows if r["variant"] == "0"]
    assert len(detected) >= 5, "res10 should find the face in most sampled frames"
    assert {r["label"] for r in rows} == {"fake"} and len(rows) == 2 * len(detected)
    first = detected[0]
    assert int(first["frame"]) % 15 == 0 and first["box_from"] == "detector"
    assert float(first["x2"]) > float(first["x1"]) and float(first["y2"]) > float(first["y1"])
    image = cv2.imread(str(tmp_path / first["file"]))
    assert image.shape == (48, 96, 3)
    assert untile(image, 48).shape == (48, 48, 6)
    # The stored crop is exactly what the classify stage cuts from that frame and box.
    from training.data import video_frames

    # Seeking in mp4 is not frame-exact: read up to the frame instead.
    frame = next(f for i, f in video_frames(video, skip=1) if i == int(first["frame"]))
    box = [float(first[k]) for k in ("x1", "y1", "x2", "y2")]
    np.testing.assert_array_equal(untile(image, 48), crop_faces(frame, [box], [1.5, 2.7], 48)[0])


@pytest.fixture(scope="module")
def gathered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small crop set (32x32 at 1.5x and 2.7x) gathered from a shared source, for the tiny training runs."""
    from training.gather_examples import main as gather_main

    folder = tmp_path_factory.mktemp("gathered")
    assert gather_main(["--input", str(DATA / "faces" / "trickyf0x"), "--crops", "--output", str(folder),
                        "--size", "32", "--scales", "1.5", "2.7"]) == 0
    return folder


@pytest.fixture
def combined(monkeypatch: pytest.MonkeyPatch) -> list[list]:
    """The member lists training.train.combine is called with during the test (it still combines them)."""
    import training.train

    calls: list[list] = []
    combine = training.train.combine

    def keep_members(members: list, *args, **kwargs):
        calls.append(list(members))
        return combine(members, *args, **kwargs)

    monkeypatch.setattr(training.train, "combine", keep_members)
    return calls


@pytest.fixture
def probe_mixes(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """(networks, probe, options) of each training.train.with_probe call during the test (it still mixes them)."""
    import training.train

    calls: list[tuple] = []
    with_probe = training.train.with_probe

    def keep_parts(model, probe, **options):
        calls.append((model, probe, options))
        return with_probe(model, probe, **options)

    monkeypatch.setattr(training.train, "with_probe", keep_parts)
    return calls


def tiny_training_run(gathered: Path, model_path: Path, *options: str) -> None:
    """Two epochs of 64 samples at 32x32 (seconds), with extra train options; asserts it succeeded."""
    from training.train import main as train_main

    assert train_main(["--dataset", str(gathered), "--model", str(model_path), "--plot", str(model_path.with_suffix(".png")),
                       "--size", "32", "--scales", "1.5", "2.7", "--epochs", "2", "--samples-per-epoch", "64",
                       "--batch-size", "32", "--val-groups", "none", "--version", "test", *options]) == 0


# 1.4's recipe without its size: a res10 member and a deep-context partner on its tuned first stage.
PAIR = ("--architecture", "res10", "--ensemble", "2", "--share-tuned-stem", "--partner-architecture", "res10_deep_context")
# The same first member with another partner (append "--partner-architecture X").
TUNED_STEM_PAIR = PAIR[:5]


def conv_kernel_sizes(model_path: Path) -> list[list[int]]:
    """(height, width) of every Conv node's kernel in an exported ONNX model, in graph order."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    kernels = {init.name: list(init.dims) for init in graph.initializer}
    return [kernels.get(node.input[1], [])[2:] for node in graph.node if node.op_type == "Conv"]


@needs_data
@needs_weights
def test_tiny_training_run_exports_a_loadable_model(gathered: Path, tmp_path: Path) -> None:
    model_path, plot = tmp_path / "tiny.onnx", tmp_path / "tiny.png"
    tiny_training_run(gathered, model_path, "--architecture", "livenessnet", "--threshold", "0.6")
    assert plot.is_file()
    model = LivenessModel(model_path)  # export passed the parity check or train_main would have raised
    meta = model.metadata
    assert (meta.input_size, meta.crop_scales, meta.channel_order) == (32, [1.5, 2.7], "RGB")
    assert meta.labels == ["fake", "real"] and model.threshold == pytest.approx(0.6)
    assert meta.crop_resize == "area"  # the crops it was trained on, so the classify stage cuts the same
    assert meta.training["faces_per_source"]["trickyf0x"]["fake"] > 0
    frame = np.random.default_rng(3).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    box = (100, 60, 180, 160)
    np.testing.assert_array_equal(model.crops(frame, [box]), crop_faces(frame, [box], [1.5, 2.7], 32)[..., [2, 1, 0, 5, 4, 3]])  # RGB
    # A model trained on area_fast crops gets area_fast crops in the classify stage.
    from dataclasses import replace

    from liveness.metadata import write_metadata

    write_metadata(model_path, replace(meta, crop_resize="area_fast"))
    fast = LivenessModel(model_path).crops(frame, [box])
    np.testing.assert_array_equal(fast, crop_faces(frame, [box], [1.5, 2.7], 32, "area_fast")[..., [2, 1, 0, 5, 4, 3]])
    # And one trained on crops fitted inside the frame gets those (this box's 2.7x square reaches past the top).
    write_metadata(model_path, replace(meta, crop_border="fit"))
    fitted = LivenessModel(model_path).crops(frame, [box])
    np.testing.assert_array_equal(fitted, crop_faces(frame, [box], [1.5, 2.7], 32, border="fit")[..., [2, 1, 0, 5, 4, 3]])
    assert not np.array_equal(fitted, model.crops(frame, [box]))
    scores = model.score(frame, [box])
    assert scores.shape == (1,) and 0.0 <= float(scores[0]) <= 1.0


@needs_weights
@pytest.mark.parametrize("name, architecture, version, members", [("liveness.onnx", "res10", "1.6", 2), ("liveness_fast.onnx", "mobile", "1.0", 1)])
def test_shipped_models_score_a_face(name: str, architecture: str, version: str, members: int) -> None:
    from skimage import data

    from face_detector import create_detector
    from pipeline.config_file import load_config

    path = REPO / "models" / name
    assert path.stat().st_size < 5_000_000
    model = LivenessModel(path)
    meta = model.metadata
    assert meta.threshold_policy and meta.training.get("faces_per_source")
    config = meta.training["config"]
    assert meta.model_version == version and config["architecture"] == architecture and config["seed"] == 7
    # the 2 ms budget (models/MODEL_CARD.md): one network, or members sharing one stem; 1.0 predates the fields
    assert config.get("ensemble", 1) == members and config.get("share_tuned_stem", False) == (members > 1)
    # 1.5 added the gated face-mesh probe to 1.4's pair, 1.6 gives it half the score where it opens; the fast model predates both
    probe = (config.get("frozen_probe", ""), config.get("probe_gate", False), config.get("probe_weight", 0.0))
    assert probe == (("mesh", True, 0.5) if members > 1 else ("", False, 0.0))
    frame = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    faces = create_detector("res10", confidence=0.5).detect(frame)
    assert faces, "res10 finds the astronaut's face"
    scores = model.score(frame, [max(faces, key=lambda f: f.area).box])
    assert scores.shape == (1,) and 0.0 <= float(scores[0]) <= 1.0
    assert model.label(float(scores[0])) in ("real", "fake")
    # the default configs classify with the res10-stem model, the real-time one with the fast mobile one
    configs = {"liveness.onnx": "default.yaml", "liveness_fast.onnx": "realtime.yaml"}
    assert Path(load_config(REPO / "configs" / configs[name]).classify.model).name == name


def test_spectrum_targets_find_stripes_on_the_right_axis() -> None:
    from training.train import spectrum_targets

    columns = np.sin(np.arange(64) * 2 * np.pi / 4.0)  # brightness changes along x only
    stripes = np.repeat(np.tile(columns[None, :, None], (64, 1, 3))[None], 2, axis=0).astype(np.float32)
    stripes = np.concatenate([stripes, np.zeros_like(stripes)], axis=-1)  # a second tile, ignored
    targets = spectrum_targets(stripes, 8)
    assert targets.shape == (2, 8, 8, 1)
    assert targets.min() >= 0.0 and targets.max() == pytest.approx(1.0)
    spectrum = targets[0, :, :, 0]
    # Energy at a horizontal frequency sits in the centre row (zero vertical frequency), off centre.
    assert spectrum[4].max() == pytest.approx(1.0) and spectrum[4].argmax() != 4
    assert spectrum[0].max() < 0.5


@needs_data
@needs_weights
def test_spectrum_head_trains_and_is_left_out_of_the_export(gathered: Path, tmp_path: Path) -> None:
    import onnxruntime

    model_path = tmp_path / "spectrum.onnx"
    tiny_training_run(gathered, model_path, "--spectrum-weight", "0.5")
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    assert [output.shape[-1] for output in session.get_outputs()] == [2]  # probabilities only
    assert LivenessModel(model_path).metadata.training["config"]["spectrum_weight"] == 0.5


def test_pixel_targets_spread_each_samples_real_share_over_the_map() -> None:
    from training.train import pixel_targets

    targets = pixel_targets(np.array([[1.0, 0.0], [0.3, 0.7]], np.float32), 4)
    assert targets.shape == (2, 4, 4, 1)
    assert np.all(targets[0] == 0.0) and np.allclose(targets[1], 0.7)
    three_way = pixel_targets(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32), 2)  # real is the last class
    assert np.all(three_way[0] == 0.0) and np.all(three_way[1] == 1.0)


@needs_data
@needs_weights
def test_pixel_head_trains_the_pair_and_is_left_out_of_the_export(gathered: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import onnx

    from training.livenessnet import build, with_pixel_head
    from training.train import TrainConfig

    assert with_pixel_head(build("res10", 32, 6)).outputs[1].shape[1:] == (2, 2, 1)  # res10's last block at 32 px
    plain_path, pixel_path = tmp_path / "plain.onnx", tmp_path / "pixel.onnx"
    tiny_training_run(gathered, plain_path, *PAIR)
    capsys.readouterr()
    tiny_training_run(gathered, pixel_path, *PAIR, "--pixel-weight", "1.0")
    log = capsys.readouterr().err
    assert log.count("pixel_map_loss") == 4  # both members, two epochs each: the head's loss was trained
    assert LivenessModel(pixel_path).metadata.training["config"]["pixel_weight"] == 1.0  # export passed parity

    def operators(path: Path) -> list[str]:
        return sorted(node.op_type for node in onnx.load(str(path)).graph.node)

    assert operators(pixel_path) == operators(plain_path)  # the map is training only
    with pytest.raises(ValueError, match="--pixel-weight"):
        TrainConfig(architecture="livenessnet", pixel_weight=1.0)
    with pytest.raises(ValueError, match="do not go together"):
        TrainConfig(architecture="res10", pixel_weight=1.0, spectrum_weight=1.0)


def test_real_compactness_is_the_spread_of_the_real_faces_only() -> None:
    from training.train import real_compactness

    targets = np.array([[0, 1], [0, 1], [1, 0]], np.float32)  # two real faces, one attack
    features = np.array([[1, 0], [0, 1], [1, 0]], np.float32)
    # centre of the real faces (0.5, 0.5); each is 0.5 away in squared distance
    assert float(real_compactness(targets, features)) == pytest.approx(0.5, abs=1e-5)
    features[2] = [-1, 0]  # the attack moved: no change
    assert float(real_compactness(targets, features)) == pytest.approx(0.5, abs=1e-5)
    features[1] = [1, 0]  # the real faces together: no loss
    assert float(real_compactness(targets, features)) == pytest.approx(0.0, abs=1e-5)
    three_way = np.array([[0, 0, 1], [0, 0, 1], [1, 0, 0]], np.float32)  # real is the last class there too
    assert float(real_compactness(three_way, np.array([[1, 0], [0, 1], [1, 0]], np.float32))) == pytest.approx(0.5, abs=1e-5)


@needs_data
@needs_weights
def test_real_compactness_pulls_real_faces_together_and_is_left_out_of_the_export(gathered: Path, tmp_path: Path) -> None:
    import keras
    import onnxruntime

    from training.examples import load_dataset
    from training.livenessnet import with_pooled_features
    from training.train import TrainConfig, normalise, train_model

    data = load_dataset(gathered, 32, [1.5, 2.7])
    real = normalise(data.x[data.y == 1])

    def real_spread(weight: float) -> float:
        config = TrainConfig(size=32, epochs=4, samples_per_epoch=256, batch_size=32, real_compact_weight=weight)
        model, _ = train_model(data, config, verbose=0)
        # batch statistics, as the loss saw them (32 steps leave the moving averages far from them)
        features = np.asarray(with_pooled_features(model)([real], training=True)[1])
        return float(np.mean(np.sum(np.square(features - features.mean(axis=0)), axis=1)))

    plain, compact = real_spread(0.0), real_spread(5.0)
    assert compact < 0.5 * plain, (plain, compact)
    model_path = tmp_path / "compact.onnx"
    tiny_training_run(gathered, model_path, "--real-compact-weight", "0.5")
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    assert [output.shape[-1] for output in session.get_outputs()] == [2]  # probabilities only
    assert LivenessModel(model_path).metadata.training["config"]["real_compact_weight"] == 0.5
    keras.backend.clear_session()


def test_gradient_reversal_is_the_identity_forward_and_negates_the_gradient() -> None:
    import tensorflow as tf

    from training.livenessnet import GradientReversal

    layer = GradientReversal()
    x = tf.constant(np.random.default_rng(2).normal(0, 1, (3, 4)).astype(np.float32))
    layer.build(x.shape)
    layer.strength.assign(0.3)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * tf.constant([[1.0, 2.0, 3.0, 4.0]]))
    np.testing.assert_allclose(y.numpy(), x.numpy(), atol=1e-6)
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), np.tile([[-0.3, -0.6, -0.9, -1.2]], (3, 1)), atol=1e-6)


def test_real_source_targets_and_loss_count_real_faces_only() -> None:
    from training.train import real_source_loss, real_source_targets, reversal_strength

    example_sources = np.array(["a", "b", "c", "a", "b"])  # c holds attacks only
    class_targets = np.array([[0, 1], [0, 1], [1, 0], [0.5, 0.5], [1, 0]], np.float32)  # row 3: half real
    targets, sources = real_source_targets(example_sources, class_targets)
    assert sources == ["a", "b"]
    np.testing.assert_array_equal(targets, [[1, 0], [0, 1], [0, 0], [0.5, 0], [0, 0]])
    probabilities = np.array([[0.8, 0.2], [0.5, 0.5], [0.1, 0.9], [0.8, 0.2], [0.9, 0.1]], np.float32)
    expected = -(np.log(0.8) + np.log(0.5) + 0.5 * np.log(0.8)) / 2.5  # the attacks' rows weigh nothing
    assert float(real_source_loss(targets, probabilities)) == pytest.approx(expected, rel=1e-5)
    assert reversal_strength(0.4, 0, 10) == pytest.approx(0.4 * (2 / (1 + np.exp(-0.5)) - 1))
    assert reversal_strength(0.4, 0, 10) < reversal_strength(0.4, 5, 10) < reversal_strength(0.4, 9, 10) < 0.4


@needs_data
@needs_weights
def test_source_adversary_trains_and_is_left_out_of_the_export(gathered: Path, tmp_path: Path, combined: list[list]) -> None:
    import onnx

    from training.examples import load_dataset
    from training.livenessnet import GRADIENT_REVERSAL
    from training.train import TrainConfig, train_model

    data = load_dataset(gathered, 32, [1.5, 2.7])
    data.source = np.where(np.arange(len(data)) % 2 == 0, data.source, "other")  # two sources of real faces
    config = TrainConfig(size=32, epochs=2, samples_per_epoch=64, batch_size=32, real_adversary_weight=1.0)
    model, history = train_model(data, config, verbose=0)
    assert [output.shape[-1] for output in model.outputs] == [2]  # the adversary stays in the training model
    assert GRADIENT_REVERSAL not in {layer.name for layer in model.layers}
    assert np.isfinite(history["loss"]).all()
    plain_path, adversary_path = tmp_path / "plain.onnx", tmp_path / "adversary.onnx"
    tiny_training_run(gathered, plain_path)
    tiny_training_run(gathered, adversary_path, "--real-adversary-weight", "0.5")
    assert LivenessModel(adversary_path).metadata.training["config"]["real_adversary_weight"] == 0.5  # parity passed

    def operators(path: Path) -> list[str]:
        return sorted(node.op_type for node in onnx.load(str(path)).graph.node)

    assert operators(adversary_path) == operators(plain_path)
    with pytest.raises(ValueError, match="do not go together"):
        TrainConfig(real_adversary_weight=0.5, real_compact_weight=1.0)


@needs_data
@needs_weights
def test_ensemble_with_flip_exports_one_averaging_model(gathered: Path, tmp_path: Path) -> None:
    model_path = tmp_path / "ensemble.onnx"
    tiny_training_run(gathered, model_path, "--ensemble", "2", "--flip-average")
    model = LivenessModel(model_path)  # the export passed the parity check against the combined Keras model
    assert model.metadata.training["config"]["ensemble"] == 2 and model.metadata.training["config"]["flip_average"]
    crops = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 6), dtype=np.uint8)
    # averaging over mirrored crops makes the score mirror-invariant
    np.testing.assert_allclose(model.predict_crops(crops), model.predict_crops(crops[:, :, ::-1].copy()), atol=1e-5)


@needs_data
@needs_weights
def test_three_way_model_exports_fake_as_print_plus_replay(gathered: Path, tmp_path: Path) -> None:
    import onnxruntime

    model_path = tmp_path / "three_way.onnx"
    # Erasing, mixup and weight averaging ride along: mixup must blend the 3-wide targets too.
    tiny_training_run(gathered, model_path, "--three-way", "--erase-p", "0.5", "--mixup-alpha", "0.4", "--average-last", "0.5")
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    assert [output.shape[-1] for output in session.get_outputs()] == [2]  # the pipeline's (fake, real)
    config = LivenessModel(model_path).metadata.training["config"]
    assert (config["three_way"], config["erase_p"], config["mixup_alpha"], config["average_last"], config["average_lr"]) == (True, 0.5, 0.4, 0.5, 0.25)


@needs_data
@needs_weights
def test_distilled_model_learns_from_teachers_kept_per_fold(gathered: Path, tmp_path: Path) -> None:
    import keras

    from training.evaluate import fold_teachers
    from training.examples import load_dataset
    from training.train import TrainConfig, predict, train_model

    data = load_dataset(gathered, 32, [1.5, 2.7])
    config = TrainConfig(size=32, epochs=2, samples_per_epoch=64, batch_size=32, distill_seeds=[1, 2], distill_weight=0.7)
    teachers = fold_teachers(data, config, tmp_path, "fold", data.x[:5])
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["fold.teacher1.csv", "fold.teacher1.keras",
                                                           "fold.teacher2.csv", "fold.teacher2.keras"]
    # the teachers are the plain recipe with their seeds: a cached teacher scores as a fresh one would
    plain, _ = train_model(data, TrainConfig(size=32, epochs=2, samples_per_epoch=64, batch_size=32, seed=2), verbose=0)
    np.testing.assert_allclose(np.loadtxt(tmp_path / "fold.teacher2.csv", delimiter=","), predict(plain, data.x[:5]), atol=1e-5)
    reloaded = fold_teachers(data, config, tmp_path, "fold", data.x[:5])
    np.testing.assert_allclose(predict(reloaded[0], data.x), predict(teachers[0], data.x), atol=1e-6)
    # the same student seed with and without teachers: the teachers' targets change what it learns
    student, _ = train_model(data, config, verbose=0, teachers=reloaded)
    untaught, _ = train_model(data, TrainConfig(size=32, epochs=2, samples_per_epoch=64, batch_size=32), verbose=0)
    assert np.max(np.abs(predict(student, data.x) - predict(untaught, data.x))) > 1e-3
    keras.backend.clear_session()


@needs_data
@needs_weights
def test_compare_runs_writes_an_ensembles_out_of_fold_scores(gathered: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    from training.compare_runs import main as compare_main
    from training.evaluate import fold_of, read_scores
    from training.examples import load_dataset

    data = load_dataset(gathered, 32, [1.5, 2.7])
    faces = data.subset(data.variant == 0)  # LOSO scores the detector boxes
    fold = fold_of(faces.group[0])
    rng = np.random.default_rng(5)
    member_scores = []
    for run in ("a", "b"):
        (tmp_path / run / "folds").mkdir(parents=True)
        (tmp_path / run / "config.json").write_text(json.dumps({"size": 32, "scales": [1.5, 2.7]}))
        member_scores.append(rng.random(len(faces)))
        np.savetxt(tmp_path / run / "folds" / f"{fold}.csv", member_scores[-1], delimiter=",", fmt="%.6f")
    out = tmp_path / "ensemble_oof.csv"
    assert compare_main([str(tmp_path / "a"), f"{tmp_path / 'a'}+{tmp_path / 'b'}", "--data", str(gathered),
                         "--write-scores", str(out)]) == 0
    labels, scores, _ = read_scores(out)  # the last run given: the two averaged, in data order
    np.testing.assert_array_equal(labels, faces.y)
    np.testing.assert_allclose(scores, np.round(np.mean(member_scores, axis=0), 6), atol=2e-6)
    # --threshold: every run reported at the given threshold, not at its own lowest-ACER one
    from training import metrics

    capsys.readouterr()
    assert compare_main([str(tmp_path / "a"), "--data", str(gathered), "--threshold", "0.5"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("  all "))
    first = np.round(member_scores[0], 6)
    apcer, bpcer = 100 * metrics.apcer(faces.y, first, 0.5), 100 * metrics.bpcer(faces.y, first, 0.5)
    assert row.split()[3:6] == [f"{apcer:.1f}", f"{bpcer:.1f}", f"{(apcer + bpcer) / 2:.1f}"]
    assert compare_main([str(tmp_path / "a"), "--data", str(gathered), "--threshold", "0.5", "--decimals", "3"]) == 0
    precise = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("  all "))
    assert precise.split()[3:6] == [f"{apcer:.3f}", f"{bpcer:.3f}", f"{(apcer + bpcer) / 2:.3f}"]
    # A finished fold whose scores do not fit the data (3 scores; this data has no face in it): one line, exit 2.
    other = "crops_b" if fold != "crops_b" else "crops_c"
    for run in ("a", "b"):
        np.savetxt(tmp_path / run / "folds" / f"{other}.csv", rng.random(3), delimiter=",", fmt="%.6f")
    capsys.readouterr()
    assert compare_main([str(tmp_path / "a"), "--data", str(gathered)]) == 2
    assert f"fold {other} has 3 scores for the 0 faces" in capsys.readouterr().err
    # --folds: only the named folds are compared, so that one is left out and the report is the one-fold one
    assert compare_main([str(tmp_path / "a"), "--data", str(gathered), "--threshold", "0.5", "--folds", fold]) == 0
    assert next(line for line in capsys.readouterr().out.splitlines() if line.startswith("  all ")) == row
    assert compare_main([str(tmp_path / "a"), "--data", str(gathered), "--folds", "no_such_fold"]) == 2
    assert "no fold no_such_fold" in capsys.readouterr().err
    # a named fold that another run has not finished is an error, not quietly dropped
    (tmp_path / "b" / "folds" / f"{other}.csv").unlink()
    assert compare_main([str(tmp_path / "a"), str(tmp_path / "b"), "--data", str(gathered), "--folds", fold, other]) == 2
    assert f"fold {other} is not finished in {tmp_path / 'b'}" in capsys.readouterr().err


def test_distilled_targets_mix_labels_with_the_teachers_mean() -> None:
    import keras

    from training.train import distilled_targets

    def constant_teacher(p_real: float):
        inputs = keras.Input((2,))
        logit = np.log(p_real / (1.0 - p_real))
        dense = keras.layers.Dense(2, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant([0.0, logit]))
        return keras.Model(inputs, keras.layers.Softmax()(dense(inputs)))

    y = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    x = np.zeros((2, 2), np.float32)
    mixed = distilled_targets(y, x, [constant_teacher(0.2), constant_teacher(0.6)], weight=0.5)
    # teachers' mean P(real) = 0.4: half label, half (0.6, 0.4)
    np.testing.assert_allclose(mixed, [[0.3, 0.7], [0.8, 0.2]], atol=1e-6)


@needs_data
@needs_weights
def test_distillation_is_recorded_and_refused_with_three_way(gathered: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model_path = tmp_path / "student.onnx"
    tiny_training_run(gathered, model_path, "--distill-seeds", "3", "--distill-weight", "0.6")
    config = LivenessModel(model_path).metadata.training["config"]
    assert (config["distill_seeds"], config["distill_weight"]) == ([3], 0.6)
    with pytest.raises(SystemExit) as refused:
        tiny_training_run(gathered, tmp_path / "x.onnx", "--distill-seeds", "3", "--three-way")
    assert refused.value.code == 2 and "--distill-seeds and --three-way" in capsys.readouterr().err


def test_weight_average_is_the_mean_after_the_start_step_with_batch_norm_measured_anew() -> None:
    import keras

    from training.train import WeightAverage

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.BatchNormalization()(keras.layers.Dense(3)(inputs)))
    average = WeightAverage(model, start_step=2)
    snapshots = []
    for step in range(5):  # steps 1 and 2 come before the start: only steps 3, 4, 5 count
        weights = [np.full(w.shape, float(step * step), np.float32) for w in model.get_weights()]
        model.set_weights(weights)
        snapshots.append(weights)
        average.update()
    x = np.random.default_rng(3).normal(2.0, 3.0, (512, 2)).astype(np.float32)
    average.apply(x)
    kernel, bias, gamma, beta, moving_mean, moving_variance = model.get_weights()
    for i, averaged in enumerate((kernel, bias, gamma, beta)):
        np.testing.assert_allclose(averaged, np.mean([snap[i] for snap in snapshots[2:]], axis=0))
    assert kernel.flat[0] == (4 + 9 + 16) / 3
    # the statistics are those of the averaged layer's outputs (mean over the two batches of 256), not averaged ones
    dense = x @ kernel + bias
    np.testing.assert_allclose(moving_mean, dense.mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(moving_variance, np.mean([dense[:256].var(axis=0), dense[256:].var(axis=0)], axis=0), rtol=1e-3)
    assert model.layers[-1].momentum == 0.99  # restored


def test_merged_three_way_output_is_print_plus_replay_then_real() -> None:
    import keras

    from training.livenessnet import merge_attack_classes

    inputs = keras.Input((3,))
    three_way = keras.Model(inputs, keras.layers.Softmax()(inputs))
    logits = np.log(np.array([[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]], np.float32))
    merged = merge_attack_classes(three_way).predict(logits, verbose=0)
    np.testing.assert_allclose(merged, [[0.5, 0.5], [0.7, 0.3]], atol=1e-6)  # (fake, real)


def test_three_way_targets_name_the_attack_instrument() -> None:
    from training.examples import Examples
    from training.train import class_targets

    n = 5
    data = Examples(x=np.zeros((n, 4, 4, 3), np.uint8), y=np.array([1, 0, 0, 0, 0]), source=np.array(["s"] * n),
                    group=np.array(["s"] * n), attack=np.array(["none", "print", "replay", "mask", "mixed"]),
                    kind=np.array(["frame"] * n), origin=np.array(["o"] * n), variant=np.zeros(n, np.int64), size=4, scales=[1.5])
    np.testing.assert_array_equal(class_targets(data, three_way=True),
                                  [[0, 0, 1], [1, 0, 0], [0, 1, 0], [1, 0, 0], [0.5, 0.5, 0]])
    np.testing.assert_array_equal(class_targets(data, three_way=False), [[0, 1], [1, 0], [1, 0], [1, 0], [1, 0]])


@needs_data
@needs_weights
def test_training_refuses_crops_of_another_kind(gathered: Path, tmp_path: Path) -> None:
    from training.train import main as train_main

    # The folder holds 32 px "area" crops padded black: a 48 px, an area_fast or a "fit" model cannot be trained on them.
    for options in (["--size", "48"], ["--size", "32", "--crop-resize", "area_fast"], ["--size", "32", "--crop-border", "fit"]):
        assert train_main(["--dataset", str(gathered), "--model", str(tmp_path / "x.onnx"), "--scales", "1.5", "2.7",
                           "--epochs", "1", "--val-groups", "none", *options]) == 2


@needs_data
@needs_weights
def test_evaluate_and_calibrate_refuse_crops_of_another_kind(gathered: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from dataclasses import replace

    from liveness.metadata import write_metadata
    from training.calibrate import main as calibrate_main
    from training.evaluate import main as evaluate_main

    model_path = tmp_path / "fast.onnx"
    tiny_training_run(gathered, model_path)
    write_metadata(model_path, replace(LivenessModel(model_path).metadata, crop_resize="area_fast"))
    capsys.readouterr()
    assert evaluate_main(["--model", str(model_path), "--data", str(gathered), "--out", str(tmp_path / "eval")]) == 2
    assert calibrate_main(["--model", str(model_path), "--data", str(gathered), "--min-acer"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all("crop resize area, border black; asked for size 32" in line for line in errors)


@needs_data
@needs_weights
def test_members_that_see_some_tiles_are_averaged_in_one_model(gathered: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from training.examples import load_gathered
    from training.train import TrainConfig, normalise, train_model

    data = load_gathered(gathered, include_jitter=False)
    config = TrainConfig(size=32, scales=[1.5, 2.7], epochs=1, samples_per_epoch=64, batch_size=32, member_scales=[[2.7], [1.5, 2.7]])
    combined, _ = train_model(data, config, verbose=0)
    x = normalise(data.x[:4])
    first, second = combined.get_layer("member_0"), combined.get_layer("member_1")
    assert first.input_shape[-1] == 3 and second.input_shape[-1] == 6
    # the 2.7x member sees channels 3-5 only; the graph's output is the plain mean of both members
    expected = (first.predict(x[..., 3:6], verbose=0) + second.predict(x, verbose=0)) / 2
    np.testing.assert_allclose(combined.predict(x, verbose=0), expected, atol=1e-5)
    # through the command line: the export passes its parity check and the metadata records the groups
    model_path = tmp_path / "tiles.onnx"
    tiny_training_run(gathered, model_path, "--member-scales", "2.7", "1.5,2.7")
    assert LivenessModel(model_path).metadata.training["config"]["member_scales"] == [[2.7], [1.5, 2.7]]
    with pytest.raises(SystemExit) as refused:
        tiny_training_run(gathered, model_path, "--member-scales", "1.0")
    assert refused.value.code == 2 and "member scales [1.0] must be a non-empty subset of the crop scales [1.5, 2.7]" in capsys.readouterr().err


def test_compare_runs_prints_a_sources_auc_and_live_shares(capsys: pytest.CaptureFixture) -> None:
    from training.compare_runs import print_luminance, print_origins, print_source
    from training.examples import Examples

    def column(*values: object) -> np.ndarray:
        return np.array(values)

    test = Examples(x=np.zeros((5, 2, 2, 3), np.uint8), y=column(1, 1, 0, 0, 1), source=column("s", "s", "s", "s", "t"),
                    group=column("s", "s", "s", "s", "t"), attack=column("none", "none", "replay", "replay", "none"),
                    kind=column("video", "video", "video", "crop", "video"), origin=column("a", "b", "c", "d", "e"),
                    variant=np.zeros(5, np.int64), size=2, scales=[1.5])
    print_source(test, np.array([0.9, 0.3, 0.6, 0.1, 0.9]), 0.5, "s")
    print_source(test, np.zeros(5), 0.5, "u")
    # by hand: pairs (real, fake) ranked right 3 of 4 -> AUC 0.75; video real 1 of 2 live, video fake 1 of 1, crop fake 0 of 1
    assert capsys.readouterr().out.splitlines() == [
        "  s: AUC 0.750; called live: crop fake 0.0% of 1, video real 50.0% of 2, video fake 100.0% of 1",
        "  u: not among the compared folds",
    ]
    test.origin = column("x/adverse_1/f.jpg", "x/controlled/f.jpg", "x/adverse/f.jpg", "x/adverse/g.jpg", "x/adverse_2/f.jpg")
    print_origins(test, np.array([0.9, 0.3, 0.6, 0.1, 0.4]), 0.5, "adverse")
    print_origins(test, np.zeros(5), 0.5, "sunny")
    # by hand, faces 0, 2, 3, 4: real 0.9, 0.4 against fake 0.6, 0.1 -> 3 of 4 pairs right; real 1 of 2 live, fake 1 of 2
    assert capsys.readouterr().out.splitlines() == [
        "  origin *adverse*: AUC 0.750; called live: real 50.0% of 2 (mean score 0.650), fake 50.0% of 2 (mean score 0.350)",
        "  origin *sunny*: no face among the compared folds",
    ]
    test.x = np.stack([np.full((2, 2, 3), level, np.uint8) for level in (10, 30, 0, 0, 200)])
    test.source = column("s", "s", "s", "t", "u")
    print_luminance(test, np.array([0.2, 0.4, 0.9, 0.5, 0.8]), ["s", "t", "u"])
    # by hand: real faces s (10, 30) -> luminance 20, score 0.3; t has none; u 200, 0.8; two sources: no correlation
    assert capsys.readouterr().out.splitlines() == [
        "  s: real faces' luminance 20, mean score 0.300",
        "  u: real faces' luminance 200, mean score 0.800",
    ]


@needs_data
@needs_weights
def test_a_wider_crop_stacks_tiles_equal_the_narrower_stacks(gathered: Path, tmp_path: Path) -> None:
    # Why a --member-scales ensemble's LOSO equals separate runs on narrower crop stacks averaged.
    from training.examples import load_gathered
    from training.gather_examples import main as gather_main

    assert gather_main(["--input", str(DATA / "faces" / "trickyf0x"), "--crops", "--output", str(tmp_path),
                        "--size", "32", "--scales", "1", "1.5", "2.7"]) == 0
    wide, narrow = load_gathered(tmp_path), load_gathered(gathered)
    np.testing.assert_array_equal(wide.tiles([1.5, 2.7]).x, narrow.x)
    assert not np.array_equal(wide.tiles([1.0]).x, narrow.tiles([1.5]).x)


def _texture_examples(sharp: list[bool], labels: list[int], groups: list[str]):
    """Examples of 32 px two-tile stacks: a sharp checkerboard or the same board blurred."""
    from training.examples import Examples

    board = ((np.indices((32, 32)) // 4).sum(axis=0) % 2 * 200 + 20).astype(np.uint8)
    flat = cv2.GaussianBlur(board, (0, 0), 2.0)
    x = np.stack([np.repeat((board if s else flat)[..., None], 6, axis=-1) for s in sharp])
    g = np.array(groups)
    return Examples(x, np.array(labels), g, g, g, g, g, np.zeros(len(labels), int), 32, [1.5, 2.7])


def test_sharpness_ignores_the_edge_of_black_padding() -> None:
    from training.sharpness import sharpness, tile_sharpness

    data = _texture_examples([True, False], [1, 0], ["a", "a"])
    values = sharpness(data)
    assert values[0] > 10 * values[1] > 0
    flat = np.full((32, 32, 3), 120, np.uint8)
    padded = flat.copy()
    padded[:, :10] = 0  # a hard edge where the crop reaches past the frame: not picture detail
    assert tile_sharpness(flat) == tile_sharpness(padded) == 0.0
    assert tile_sharpness(np.zeros((32, 32, 3), np.uint8)) == 0.0


def test_damage_rates_damage_the_sharper_label_of_each_source_more() -> None:
    from training.train import damage_rates

    # Source a: real faces sharp, attacks blurred; source b the other way round; c has attacks only.
    data = _texture_examples([True, True, False, False, True, False, False],
                             [1, 1, 0, 1, 0, 0, 0], ["a", "a", "a", "b", "b", "b", "c"])
    rates = damage_rates(data, (0.35, 0.6))
    assert rates.tolist() == [0.6, 0.6, 0.35, 0.35, 0.6, 0.6, 0.475]


def test_sampling_weights_balance_classes_and_weigh_sources_by_a_power_of_their_size() -> None:
    from dataclasses import replace

    from training.train import TrainConfig, add_recipe_arguments, recipe_from_args, sampling_weights

    # Real faces: 16 from source a, 4 from b; attacks: 4 from a, 16 from b.
    labels = [1] * 16 + [0] * 4 + [1] * 4 + [0] * 16
    data = _texture_examples([True] * 40, labels, ["a"] * 20 + ["b"] * 20)
    data = replace(data, kind=np.array(["frame"] * 20 + ["crop"] * 20))
    y, a = data.y == 1, data.group == "a"

    def shares(power: float, crop_weight: float = 1.0) -> list[float]:
        w = sampling_weights(data, TrainConfig(source_power=power, crop_weight=crop_weight))
        assert w.sum() == pytest.approx(1.0)
        return [float(w[m].sum()) for m in (y & a, y & ~a, ~y & a, ~y & ~a)]

    assert shares(0.5) == pytest.approx([2 / 6, 1 / 6, 1 / 6, 2 / 6])  # sqrt(16) : sqrt(4) within each class
    assert shares(0.0) == pytest.approx([0.25] * 4)  # every source alike
    assert shares(1.0) == pytest.approx([0.4, 0.1, 0.1, 0.4])  # every face alike within its class
    assert shares(0.0, crop_weight=0.5) == pytest.approx([1 / 3, 1 / 6, 1 / 3, 1 / 6])  # source b is tight crops
    parser = argparse.ArgumentParser()
    add_recipe_arguments(parser)
    config = recipe_from_args(parser.parse_args(["--source-power", "0.25", "--crop-weight", "1"]))
    assert (config.source_power, config.crop_weight) == (0.25, 1.0)
    assert recipe_from_args(parser.parse_args([])) == TrainConfig()
    assert recipe_from_args(parser.parse_args(["--weight-decay", "0.001"])).weight_decay == 0.001


def test_per_sample_damage_rates_decide_the_damage() -> None:
    from training.augment import damage_by_label
    from training.train import augmented_epoch

    data = _texture_examples([True, False, True, False], [1, 0, 1, 0], ["a"] * 4)
    uniform = np.full(4, 0.25)
    assert damage_by_label(data.y, (0.35, 0.6)).tolist() == [0.6, 0.35, 0.6, 0.35]
    never = augmented_epoch(data, uniform, 16, np.random.default_rng(0), np.zeros(4))
    by_label = augmented_epoch(data, uniform, 16, np.random.default_rng(0), damage_by_label(data.y, (0.0, 0.0)))
    always = augmented_epoch(data, uniform, 16, np.random.default_rng(0), np.ones(4))
    assert np.array_equal(never[0], by_label[0])
    assert not np.array_equal(always[0], never[0])


def test_standardised_input_ignores_a_cameras_gain_and_offset() -> None:
    from training.livenessnet import build

    model = build("mobile", 32, 6, standardise=True)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (2, 32, 32, 6)).astype(np.float32)
    # Another exposure and white balance: a gain and an offset per channel.
    gain = rng.uniform(0.5, 2.0, (1, 1, 1, 6)).astype(np.float32)
    offset = rng.uniform(-0.5, 0.5, (1, 1, 1, 6)).astype(np.float32)
    standardise = model.get_layer("standardise")
    assert model.layers.index(standardise) == 1  # right after the input: the network sees only its output
    same = np.asarray(standardise(x))
    assert np.allclose(same.mean(axis=(1, 2)), 0, atol=1e-5)
    assert np.allclose(same.std(axis=(1, 2)), 1, atol=0.1)
    # Equal up to the 0.05 guard on the spread.
    assert np.allclose(np.asarray(standardise(x * gain + offset)), same, rtol=0.1, atol=0.01)
    assert not np.allclose(x * gain + offset, x, atol=0.15)
    with pytest.raises(ValueError, match="mobile"):
        build("livenessnet", 32, 3, standardise=True)
    from training.train import TrainConfig

    with pytest.raises(ValueError, match="--input-standardise"):  # refused before any data is gathered
        TrainConfig(architecture="livenessnet", input_standardise=True)


@needs_weights
@pytest.mark.parametrize("depth, shape", [(1, (16, 16, 32)), (2, (8, 8, 128))])
def test_res10_stem_reproduces_the_detectors_first_layers(depth: int, shape: tuple[int, int, int]) -> None:
    from skimage import data

    from training.pretrained import res10_stem, res10_stem_reference
    from training.train import normalise

    tile = cv2.resize(data.astronaut()[30:230, 130:330], (64, 64), interpolation=cv2.INTER_AREA)  # a face, RGB
    reference = res10_stem_reference(tile, depth)
    ours = res10_stem(64, depth=depth).predict(normalise(tile[None]), verbose=0)[0]
    assert reference.shape == ours.shape == shape
    assert np.abs(reference).mean() > 0.05  # the detector's features are not all zero on a face
    np.testing.assert_allclose(ours, reference, atol=1e-3 * np.abs(reference).max())


@needs_data
@needs_weights
def test_res10_architecture_exports_with_its_pretrained_stem(gathered: Path, tmp_path: Path) -> None:
    model_path = tmp_path / "res10.onnx"
    tiny_training_run(gathered, model_path, "--architecture", "res10")  # export's parity check passes or it raises
    model = LivenessModel(model_path)
    assert model.metadata.training["config"]["architecture"] == "res10"
    frame = np.random.default_rng(5).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert 0.0 <= float(model.score(frame, [(100, 60, 180, 160)])[0]) <= 1.0


@needs_weights
def test_deep_res10_architecture_reads_each_tile_through_two_pretrained_stages() -> None:
    from training.livenessnet import STEM_FEATURES, build
    from training.pretrained import res10_stem
    from training.train import TrainConfig

    model = build("res10_deep", 64, 6)
    assert tuple(model.get_layer(STEM_FEATURES).output.shape[1:]) == (8, 8, 256)  # two tiles of 128 channels
    assert tuple(model.output.shape[1:]) == (2,)
    pretrained = res10_stem(64, depth=2).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(pretrained, model.get_layer("res10_stem").get_weights()))
    # The cheaper variant: only the last (widest) tile goes through the second stage, the first tile
    # through the first stage alone (same weights) and a stride-2 separable block of 64 channels.
    context = build("res10_deep_context", 64, 6)
    assert tuple(context.get_layer(STEM_FEATURES).output.shape[1:]) == (8, 8, 64 + 128)
    assert context.count_params() < model.count_params()
    # Refused before any data is gathered: the context variant's first-tile block is outside the stem
    # (so members could not share it), and it has no block 8 wide for the spectrum head.
    with pytest.raises(ValueError, match="--share-tuned-stem"):
        TrainConfig(architecture="res10_deep_context", ensemble=2, share_tuned_stem=True)
    for architecture, size in (("res10_deep_context", 64), ("res10_deep", 56)):  # no block 8 wide at these sizes
        with pytest.raises(ValueError, match="--spectrum-weight"):
            TrainConfig(architecture=architecture, size=size, spectrum_weight=1.0)
    assert TrainConfig(architecture="res10_deep", spectrum_weight=1.0).spectrum_weight == 1.0  # 64 px has one


@needs_weights
def test_frozen_res10_stem_stays_the_detectors_while_the_blocks_learn() -> None:
    import keras

    from training.livenessnet import build
    from training.train import TrainConfig

    model = build("res10", 64, 6, freeze_stem=True)
    stem = model.get_layer("res10_stem")
    before = [w.copy() for w in stem.get_weights()]  # batch-norm statistics included
    head_before = model.trainable_weights[0].numpy().copy()  # the first separable block's depthwise kernel
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (16, 64, 64, 6)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 16)]
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, stem.get_weights()))
    assert not np.array_equal(head_before, model.trainable_weights[0].numpy())
    with pytest.raises(ValueError, match="--freeze-stem"):  # refused before any data is gathered
        TrainConfig(architecture="mobile", freeze_stem=True)


@needs_weights
def test_frozen_stem_members_share_one_stem_in_the_exported_graph(tmp_path: Path) -> None:
    import keras

    from training.livenessnet import build
    from training.train import combine, normalise

    rng = np.random.default_rng(4)
    example = rng.integers(0, 256, (4, 64, 64, 6)).astype(np.uint8)
    members = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        member = build("res10", 64, 6, freeze_stem=True)
        dense = member.get_layer("probabilities")  # untrained members all say ~0.5: give each its own opinion
        dense.set_weights([rng.normal(0, 3, w.shape).astype(np.float32) for w in dense.get_weights()])
        members.append(member)
    each = [member.predict(normalise(example), verbose=0) for member in members]
    assert np.abs(each[0] - each[1]).max() > 0.05
    separate = combine(members, False, example).predict(normalise(example), verbose=0)
    np.testing.assert_allclose(separate, (each[0] + each[1]) / 2, atol=1e-5)
    shared = combine(members, False, example, shared_stem=True)
    np.testing.assert_allclose(shared.predict(normalise(example), verbose=0), separate, atol=1e-5)
    shared.export(str(tmp_path / "shared.onnx"), format="onnx", verbose=False)
    assert conv_kernel_sizes(tmp_path / "shared.onnx").count([7, 7]) == 2  # res10's 7x7 convolution once per crop tile, not once per member


@needs_weights
def test_a_deep_context_partner_shares_the_first_stage_of_a_res10_member(tmp_path: Path) -> None:
    import keras

    from training.livenessnet import build
    from training.pretrained import FIRST_STAGE_NAME, STEM_NAME
    from training.train import TrainConfig, combine, normalise

    rng = np.random.default_rng(6)
    example = rng.integers(0, 256, (4, 56, 56, 6)).astype(np.uint8)
    keras.utils.set_random_seed(1)
    first = build("res10", 56, 6)
    tuned = [w * rng.uniform(0.9, 1.1, w.shape).astype(np.float32) for w in first.get_layer(STEM_NAME).get_weights()]
    first.get_layer(STEM_NAME).set_weights(tuned)  # as if member 1 had fine-tuned it
    keras.utils.set_random_seed(2)
    partner = build("res10_deep_context", 56, 6)
    partner.get_layer(FIRST_STAGE_NAME).set_weights(tuned)
    members = [first, partner]
    for member in members:  # untrained members all say ~0.5: give each its own opinion
        dense = member.get_layer("probabilities")
        dense.set_weights([rng.normal(0, 3, w.shape).astype(np.float32) for w in dense.get_weights()])
    each = [member.predict(normalise(example), verbose=0) for member in members]
    assert np.abs(each[0] - each[1]).max() > 0.05
    shared = combine(members, True, example, shared_first_stage=True)  # with the mirrored view too
    mirrored = example[:, :, ::-1]
    expected = (each[0] + each[1] + sum(m.predict(normalise(mirrored), verbose=0) for m in members)) / 4
    np.testing.assert_allclose(shared.predict(normalise(example), verbose=0), expected, atol=1e-5)
    shared.export(str(tmp_path / "pair.onnx"), format="onnx", verbose=False)
    assert conv_kernel_sizes(tmp_path / "pair.onnx").count([7, 7]) == 4  # res10's 7x7 convolution once per tile of each view, not once per member
    assert TrainConfig(architecture="res10", ensemble=2, share_tuned_stem=True,
                       partner_architecture="res10_deep_context").partner_architecture == "res10_deep_context"
    pair = {"architecture": "res10", "ensemble": 2, "share_tuned_stem": True, "partner_architecture": "res10_deep_context"}
    for refused in ({"share_tuned_stem": False}, {"architecture": "res10_deep"}):
        with pytest.raises(ValueError, match="--partner-architecture"):
            TrainConfig(**{**pair, **refused})
    with pytest.raises(ValueError, match="--spectrum-weight"):  # res10 at 64 px has a block 8 wide, the partner none
        TrainConfig(**pair, size=64, spectrum_weight=1.0)


@needs_data
@needs_weights
def test_members_after_the_first_train_on_its_tuned_stem(gathered: Path, tmp_path: Path, combined: list[list]) -> None:
    import training.train
    from training.pretrained import STEM_NAME, res10_stem

    model_path = tmp_path / "tuned_stem.onnx"
    tiny_training_run(gathered, model_path, *TUNED_STEM_PAIR)
    first, second = (member.get_layer(STEM_NAME).get_weights() for member in combined[0])
    original = res10_stem(32).get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(first, original))  # member 1 fine-tuned res10's stem
    assert all(np.array_equal(a, b) for a, b in zip(first, second))  # member 2 kept that tuned stem, frozen
    assert LivenessModel(model_path).metadata.training["config"]["share_tuned_stem"]
    assert conv_kernel_sizes(model_path).count([7, 7]) == 2  # one per tile
    with pytest.raises(ValueError, match="--share-tuned-stem"):
        training.train.TrainConfig(architecture="mobile", ensemble=2, share_tuned_stem=True)


@needs_data
@needs_weights
def test_a_deep_context_partner_trains_on_the_first_members_tuned_first_stage(gathered: Path, tmp_path: Path,
                                                                               combined: list[list]) -> None:
    from training.pretrained import FIRST_STAGE_NAME, SECOND_STAGE_NAME, STEM_NAME, res10_stem

    model_path = tmp_path / "pair.onnx"
    tiny_training_run(gathered, model_path, *PAIR)
    first, partner = combined[0]
    assert all(np.array_equal(a, b) for a, b in zip(first.get_layer(STEM_NAME).get_weights(),
                                                    partner.get_layer(FIRST_STAGE_NAME).get_weights()))  # kept, frozen
    original_second = res10_stem(32, depth=2).get_layer(SECOND_STAGE_NAME).get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(partner.get_layer(SECOND_STAGE_NAME).get_weights(), original_second))
    assert LivenessModel(model_path).metadata.training["config"]["partner_architecture"] == "res10_deep_context"
    assert conv_kernel_sizes(model_path).count([7, 7]) == 2  # one per tile


@needs_blaze_weights
@pytest.mark.parametrize("size, depth, channels", [(64, 1, 42), (56, 1, 42), (56, 2, 88)])
def test_blaze_stem_reproduces_blazefaces_first_layers(size: int, depth: int, channels: int) -> None:
    from skimage import data

    from training.pretrained import blaze_stem, blaze_stem_reference
    from training.train import normalise

    tile = cv2.resize(data.astronaut()[30:230, 130:330], (size, size), interpolation=cv2.INTER_AREA)  # a face, RGB
    reference = blaze_stem_reference(tile, depth)
    ours = blaze_stem(size, depth=depth).predict(normalise(tile[None]), verbose=0)[0]
    side = -(-size // (4 * depth))  # "same" padding rounds up
    assert reference.shape == ours.shape == (side, side, channels)
    assert np.abs(reference).mean() > 0.05
    np.testing.assert_allclose(ours, reference, atol=1e-4 * np.abs(reference).max())


@needs_data
@needs_weights
@needs_blaze_weights
def test_a_blaze_partner_trains_whole_beside_the_res10_member(gathered: Path, tmp_path: Path, combined: list[list]) -> None:
    from training.pretrained import BLAZE_STEM_NAME, STEM_NAME, blaze_stem

    model_path = tmp_path / "blaze_pair.onnx"
    tiny_training_run(gathered, model_path, *TUNED_STEM_PAIR, "--partner-architecture", "blaze")
    first, partner = combined[0]
    assert STEM_NAME in {layer.name for layer in first.layers} and STEM_NAME not in {layer.name for layer in partner.layers}
    tuned = partner.get_layer(BLAZE_STEM_NAME).get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(tuned, blaze_stem(32).get_weights()))  # fine-tuned, not frozen
    assert LivenessModel(model_path).metadata.training["config"]["partner_architecture"] == "blaze"
    convs = conv_kernel_sizes(model_path)
    assert convs.count([7, 7]) == 2 and convs.count([5, 5]) == 2  # res10's first conv and BlazeFace's, once per tile


@needs_data
@needs_weights
@needs_mesh_weights
def test_a_mesh_partner_trains_only_its_blocks_on_the_frozen_face_mesh(gathered: Path, tmp_path: Path,
                                                                      combined: list[list]) -> None:
    from training.pretrained import MESH_STEM_NAME, STEM_NAME, mesh_stem

    model_path = tmp_path / "mesh_pair.onnx"
    tiny_training_run(gathered, model_path, *TUNED_STEM_PAIR, "--partner-architecture", "mesh")
    first, partner = combined[0]
    assert STEM_NAME in {layer.name for layer in first.layers} and STEM_NAME not in {layer.name for layer in partner.layers}
    stem = partner.get_layer(MESH_STEM_NAME)
    for kept, original in zip(stem.get_weights(), mesh_stem(32).get_weights()):
        np.testing.assert_array_equal(kept, original)  # frozen: the landmark network's own weights
    assert not stem.trainable_weights and partner.trainable_weights  # only the blocks after it learn
    assert LivenessModel(model_path).metadata.training["config"]["partner_architecture"] == "mesh"


@needs_data
@needs_weights
@needs_blaze_weights
def test_an_extra_blaze_member_joins_the_pair_on_its_own(gathered: Path, tmp_path: Path, combined: list[list]) -> None:
    from training.pretrained import BLAZE_STEM_NAME, FIRST_STAGE_NAME
    from training.train import TrainConfig

    model_path = tmp_path / "three.onnx"
    tiny_training_run(gathered, model_path, *PAIR, "--extra-architecture", "blaze_deep")
    members = combined[0]
    assert [m.name for m in members] == ["member_0", "member_1", "member_2"]
    assert FIRST_STAGE_NAME in {layer.name for layer in members[1].layers}
    assert members[2].get_layer(BLAZE_STEM_NAME).output.shape[1:] == (4, 4, 88)  # 32 px tile at 1/8
    convs = conv_kernel_sizes(model_path)
    assert convs.count([7, 7]) == 2 and convs.count([5, 5]) == 2  # the pair's shared first stage, and the extra member
    with pytest.raises(ValueError, match="--extra-architecture"):
        TrainConfig(architecture="res10", extra_architecture="res10")
    for option in ({"cdc_theta": 0.7}, {"mixstyle_p": 0.5}):  # refused, not dropped for the extra member
        with pytest.raises(ValueError, match="every member's architecture"):
            TrainConfig(architecture="res10", extra_architecture="blaze", **option)


@needs_mesh_weights
@pytest.mark.parametrize("depth, shape", [(1, (48, 48, 32)), (2, (24, 24, 64)), (3, (12, 12, 128))])
def test_mesh_stem_reproduces_the_face_meshs_first_stage(depth: int, shape: tuple[int, int, int]) -> None:
    from skimage import data

    from training.pretrained import mesh_stem, mesh_stem_reference
    from training.train import normalise

    tile = cv2.resize(data.astronaut()[30:230, 130:330], (192, 192), interpolation=cv2.INTER_AREA)  # the mesh's own size
    reference = mesh_stem_reference(tile, depth)
    stem = mesh_stem(192, depth=depth)
    ours = stem.predict(normalise(tile[None]), verbose=0)[0]
    assert reference.shape == ours.shape == shape and np.abs(reference).mean() > 0.05
    np.testing.assert_allclose(ours, reference, atol=1e-4 * np.abs(reference).max())
    assert not stem.trainable_weights  # frozen: the probe never changes it


def test_the_probes_logistic_regression_is_the_penalised_optimum() -> None:
    from training.probe import fit_logistic

    rng = np.random.default_rng(5)
    labels = (rng.random(300) < 0.3).astype(int)  # unbalanced on purpose
    features = rng.normal(0, 1, (300, 4)) * [1, 10, 0.1, 3] + labels[:, None] * [1.0, 5.0, 0.0, -2.0] + [0, 100, 0, 0]
    w, b = fit_logistic(features, labels, l2=0.1)
    # The optimum in the standardised features: zero gradient of the class-balanced loss plus 0.1 |w|^2 / 2.
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6
    w_std = w * std
    p = 1 / (1 + np.exp(-(features @ w + b)))
    balance = np.where(labels == 1, 0.5 / labels.mean(), 0.5 / (1 - labels.mean())) / len(labels)
    standardised = (features - mean) / std
    np.testing.assert_allclose(standardised.T @ (balance * (p - labels)) + 0.1 * w_std, 0, atol=1e-9)
    assert abs(np.sum(balance * (p - labels))) < 1e-9  # the intercept is not penalised
    assert w[0] > 0 and w[3] < 0 and abs(w_std[2]) < abs(w_std[0])  # the informative directions, the noise one small
    with pytest.raises(ValueError, match="real and fake"):
        fit_logistic(features, np.ones(300, dtype=int))


def test_the_probes_gate_opens_beyond_the_training_faces_own_spread() -> None:
    from training.probe import fit_gate

    rng = np.random.default_rng(3)
    mixing = np.array([[2.0, 0.0, 0.0], [1.5, 0.5, 0.0], [0.0, 0.0, 0.1]])  # correlated, and one narrow direction
    train = rng.normal(0, 1, (2000, 3)) @ mixing + [5.0, -1.0, 0.0]
    gate = fit_gate(train, quantile=0.99, shrinkage=0.1)
    covariance = np.cov(train, rowvar=False)
    shrunk = 0.9 * covariance + 0.1 * np.diag(np.diag(covariance))
    probe_rows = train[:5] + [0.0, 0.0, 0.3]
    centred = probe_rows - train.mean(axis=0)
    np.testing.assert_allclose(gate.distance(probe_rows), np.sqrt(np.einsum("ij,jk,ik->i", centred, np.linalg.inv(shrunk), centred)))
    assert np.mean(gate.opens(train)) == pytest.approx(0.01, abs=0.001)  # the limit is the training rows' 99th percentile
    # A step of 1 along the narrow direction (10 of its deviations) is far; half a deviation along a wide one is not.
    centre = train.mean(axis=0)
    assert gate.opens(np.array([centre + [0.0, 0.0, 1.0]]))[0]
    assert not gate.opens(np.array([centre + 0.5 * mixing[0]]))[0]


def test_every_capture_setup_can_weigh_the_same_in_the_probes_fit() -> None:
    from training.probe import capture_setup, row_weights

    assert [capture_setup(g) for g in ("replay_attack_devel", "replay_attack_train", "nuaa", "webcam_spp77")] == [
        "replay_attack", "replay_attack", "nuaa", "webcam_spp77"]
    labels = np.array([1, 1, 1, 0, 0])
    # By hand: setup a's rows weigh 1/2 each, b's 1/3; then each class is scaled to a total of 1/2.
    np.testing.assert_allclose(row_weights(labels, np.array(["a", "a", "b", "b", "b"])), [3 / 16, 3 / 16, 1 / 8, 1 / 4, 1 / 4])
    np.testing.assert_allclose(row_weights(labels), [1 / 6, 1 / 6, 1 / 6, 1 / 4, 1 / 4])  # classes only, as before


def test_setups_weighing_the_same_keep_one_big_setups_cue_from_deciding() -> None:
    from training.metrics import roc_auc
    from training.probe import fit_logistic

    rng = np.random.default_rng(11)

    def setup(rows: int, shortcut: float) -> tuple[np.ndarray, np.ndarray]:
        """Feature 0 tells the label the same way everywhere; feature 1 is this setup's own shortcut."""
        labels = rng.integers(0, 2, rows)
        return np.c_[labels + rng.normal(0, 1, rows), shortcut * labels + rng.normal(0, 1, rows)], labels

    parts = [setup(2000, 3.0)] + [setup(40, -1.0) for _ in range(10)]  # one big setup, ten small ones
    features, labels = np.concatenate([f for f, _ in parts]), np.concatenate([y for _, y in parts])
    setups = np.repeat(np.arange(11), [len(y) for _, y in parts])
    unseen_features, unseen_labels = setup(400, -1.0)
    plain = fit_logistic(features, labels)
    balanced = fit_logistic(features, labels, setups=setups)
    auc = {name: roc_auc(unseen_labels, unseen_features @ w + b) for name, (w, b) in (("plain", plain), ("balanced", balanced))}
    assert auc["plain"] < 0.5 < 0.7 < auc["balanced"]  # the big setup's shortcut inverts the plain fit on a new setup
    assert balanced[0][0] > 0 > balanced[0][1]


def test_the_setup_curve_draws_units_with_both_labels_and_spreads_a_budget() -> None:
    from training.setup_curve import curve, draw_units, spread_budget

    rng = np.random.default_rng(2)
    labels_of = {"reals": {1}, "fakes": {0}, "both": {0, 1}}
    for _ in range(20):
        units = draw_units(["reals", "fakes", "both"], 2, labels_of, rng)
        assert len(set(units)) == 2 and set().union(*(labels_of[u] for u in units)) == {0, 1}
    with pytest.raises(ValueError, match="both labels"):
        draw_units(["reals", "reals2"], 2, {"reals": {1}, "reals2": {1}}, rng)
    rows = spread_budget({"a": np.arange(0, 100), "b": np.arange(100, 105)}, ["a", "b"], 40, rng)
    assert np.sum(rows < 100) == 20 and np.sum(rows >= 100) == 5  # an equal share each, all of a small unit

    # Eight webcam-like units and NUAA sharing one cue: the curve ranks NUAA well once enough units train.
    units = np.repeat([f"webcam_{i}" for i in range(8)] + ["nuaa"], 60)
    labels = np.tile(np.r_[np.zeros(30, int), np.ones(30, int)], 9)
    features = np.c_[labels + rng.normal(0, 0.7, len(labels)), rng.normal(0, 1, len(labels))]
    points = curve(features, labels, units, units == "nuaa", "nuaa", ks=[1, 4, 50], draws=5, budget=100, seed=0)
    assert [p.k for p in points] == [1, 4, 8]  # capped at the eight units that may train
    assert [len(p.auc_all) for p in points] == [5, 5, 1]  # every unit: one draw is all there is
    assert all(len(p.auc_balanced) == len(p.auc_all) and len(p.auc_budget) == len(p.auc_all) for p in points)
    assert points[-1].auc_all[0] > 0.8 and points[-1].auc_budget[0] > 0.8


def test_lbp_codes_and_uniform_bins_by_hand() -> None:
    from training.cues import UNIFORM_BINS, lbp_codes, lbp_histograms

    assert len(set(UNIFORM_BINS.tolist())) == 59 and np.sum(UNIFORM_BINS == 58) == 256 - 58  # 58 uniform codes + the rest
    assert UNIFORM_BINS[0] != 58 and UNIFORM_BINS[255] != 58 and UNIFORM_BINS[0b00011100] != 58
    patch = np.array([[[9, 1, 5], [4, 5, 2], [6, 3, 7]]], np.uint8)
    # Clockwise from the top left, neighbour >= centre (5): 9 1 5 2 7 3 6 4 -> bits 1 0 1 0 1 0 1 0.
    assert lbp_codes(patch)[0, 0, 0] == 0b01010101 and UNIFORM_BINS[0b01010101] == 58  # eight transitions
    flat = np.full((1, 6, 6), 80, np.uint8)
    histogram = lbp_histograms(flat)[0]
    assert histogram[UNIFORM_BINS[255]] == 1.0 and histogram.sum() == pytest.approx(1.0)  # every neighbour ties


def test_the_probe_command_names_a_missing_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.probe import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "out"), "--by-setup"])
    assert exit_info.value.code == 2
    assert f"--data {tmp_path / 'absent'}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written for a run that could not start


@needs_data
@needs_weights
@needs_mesh_weights
def test_a_frozen_mesh_probe_weighs_as_one_more_member(gathered: Path, tmp_path: Path, probe_mixes: list[tuple]) -> None:
    from training.examples import load_gathered
    from training.probe import PROBE_STEM_NAME, statistics_model
    from training.train import TrainConfig, normalise

    model_path = tmp_path / "probe.onnx"
    tiny_training_run(gathered, model_path, *PAIR, "--frozen-probe", "mesh")
    (networks, probe, options), = probe_mixes
    assert options["weight"] == pytest.approx(1 / 3)  # the pair's two members and the probe
    assert not probe.trainable_weights
    crops = load_gathered(gathered, include_jitter=False).x[:16]
    expected = (2 * networks.predict(normalise(crops), verbose=0) + probe.predict(normalise(crops), verbose=0)) / 3
    exported = LivenessModel(model_path)  # the export's parity check passed too
    assert exported.metadata.training["config"]["frozen_probe"] == "mesh"
    np.testing.assert_allclose(exported.predict_crops(crops), expected[:, 1], atol=1e-4)
    # The probe's features are the frozen stem's mean and standard deviation per channel and tile.
    statistics = statistics_model(32, 6)
    stem = statistics.get_layer(PROBE_STEM_NAME)
    maps = [stem.predict(normalise(crops[..., 3 * t:3 * t + 3]), verbose=0) for t in range(2)]
    np.testing.assert_allclose(statistics.predict(normalise(crops), verbose=0),
                               np.concatenate([np.concatenate([m.mean(axis=(1, 2)), m.std(axis=(1, 2))], axis=1) for m in maps], axis=1),
                               rtol=1e-4, atol=1e-5)
    for option in ({"three_way": True}, {"input_standardise": True, "architecture": "mobile"}):
        with pytest.raises(ValueError, match="--frozen-probe"):
            TrainConfig(frozen_probe="mesh", **option)


@needs_data
@needs_weights
@needs_mesh_weights
def test_a_gated_probe_counts_only_for_faces_far_from_the_training_crops(gathered: Path, tmp_path: Path,
                                                                          probe_mixes: list[tuple]) -> None:
    from training.examples import load_gathered
    from training.train import TrainConfig, normalise

    model_path = tmp_path / "gated.onnx"
    tiny_training_run(gathered, model_path, *PAIR, "--frozen-probe", "mesh", "--probe-gate", "--probe-weight", "0.5",
                      "--probe-balance-setups", "--threshold", "0.42", "--threshold-policy", "kept from the previous model")
    (networks, probe, options), = probe_mixes
    assert options["weight"] == 0.5  # --probe-weight replaces the one-more-member share (1/3 beside a pair)
    faces = load_gathered(gathered, include_jitter=False).x[:12]
    noise = np.random.default_rng(2).integers(0, 256, (4, *faces.shape[1:]), dtype=np.uint8)  # no face, no camera
    crops = np.concatenate([faces, noise])
    pair = networks.predict(normalise(crops), verbose=0)
    probe_probabilities, opens = probe.predict(normalise(crops), verbose=0)
    assert opens[-4:].all() and opens[:12].mean() < 0.5  # open for the noise, shut for most training faces
    expected = np.where(opens > 0, (pair + probe_probabilities) / 2, pair)
    exported = LivenessModel(model_path)
    assert exported.metadata.training["config"]["probe_gate"] is True
    assert exported.metadata.training["config"]["probe_balance_setups"] is True
    assert exported.threshold == pytest.approx(0.42) and exported.metadata.threshold_policy == "kept from the previous model"
    np.testing.assert_allclose(exported.predict_crops(crops), expected[:, 1], atol=1e-4)
    with pytest.raises(ValueError, match="--probe-gate"):
        TrainConfig(probe_gate=True)
    with pytest.raises(ValueError, match="--probe-balance-setups"):
        TrainConfig(probe_balance_setups=True)
    for refused in ({"probe_weight": 0.5}, {"frozen_probe": "mesh", "probe_weight": 1.0}):
        with pytest.raises(ValueError, match="--probe-weight"):
            TrainConfig(**refused)


def test_a_threshold_policy_without_a_threshold_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.train import main as train_main

    with pytest.raises(SystemExit) as refused:  # before any data is read: the folder need not exist
        train_main(["--dataset", str(tmp_path / "none"), "--model", str(tmp_path / "m.onnx"), "--threshold-policy", "kept"])
    assert refused.value.code == 2 and "--threshold-policy describes a given --threshold" in capsys.readouterr().err


def test_central_difference_convolution_subtracts_theta_times_the_kernel_sum_at_the_centre() -> None:
    import keras

    from training.livenessnet import CentralDifferenceDepthwiseConv2D

    x = np.random.default_rng(4).normal(0, 1, (2, 9, 9, 5)).astype(np.float32)
    for stride in (1, 2):
        for theta in (0.0, 0.7, 1.0):
            cdc = CentralDifferenceDepthwiseConv2D(3, theta=theta, strides=stride, padding="same", use_bias=False)
            out = keras.ops.convert_to_numpy(cdc(x))
            kernel = keras.ops.convert_to_numpy(cdc.kernel)  # (3, 3, channels, 1)
            padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            expected = np.zeros_like(out)
            for row in range(out.shape[1]):  # the definition, tap by tap
                for col in range(out.shape[2]):
                    r, c = row * stride, col * stride  # the centre pixel (TF's "same" pads 1 before at both strides)
                    window = padded[:, r:r + 3, c:c + 3, :]
                    expected[:, row, col] = ((window * kernel[..., 0]).sum(axis=(1, 2))
                                             - theta * x[:, r, c] * kernel[..., 0].sum(axis=(0, 1)))
            np.testing.assert_allclose(out, expected, atol=1e-5)
    flat = np.ones((1, 5, 5, 2), np.float32) * 3.0  # theta 1: blind to a level (away from the zero padding)
    centre = keras.ops.convert_to_numpy(CentralDifferenceDepthwiseConv2D(3, theta=1.0, padding="same", use_bias=False)(flat))
    np.testing.assert_allclose(centre[0, 1:-1, 1:-1], 0.0, atol=1e-5)
    with pytest.raises(ValueError, match="without bias"):
        CentralDifferenceDepthwiseConv2D(3, theta=0.5)
    restored = CentralDifferenceDepthwiseConv2D.from_config(cdc.get_config())  # a saved layer loads again
    assert restored.theta == 1.0 and restored.strides == (2, 2)


@needs_data
@needs_weights
def test_cdc_trains_the_pair_at_the_plain_graphs_cost(gathered: Path, tmp_path: Path, combined: list[list]) -> None:
    import onnx

    from training.livenessnet import CentralDifferenceDepthwiseConv2D, build
    from training.train import TrainConfig

    plain_path, cdc_path = tmp_path / "plain.onnx", tmp_path / "cdc.onnx"
    tiny_training_run(gathered, plain_path, *PAIR)
    tiny_training_run(gathered, cdc_path, *PAIR, "--cdc-theta", "0.7")
    res10, partner = combined[1]
    # every depthwise convolution after the stem: res10's four blocks; the partner's first-tile block and its one block
    assert len([layer for layer in res10.layers if isinstance(layer, CentralDifferenceDepthwiseConv2D)]) == 4
    assert len([layer for layer in partner.layers if isinstance(layer, CentralDifferenceDepthwiseConv2D)]) == 2
    assert LivenessModel(cdc_path).metadata.training["config"]["cdc_theta"] == 0.7  # export passed parity

    def operators(path: Path) -> list[str]:
        return sorted(node.op_type for node in onnx.load(str(path)).graph.node)

    assert operators(cdc_path) == operators(plain_path)  # the difference is folded into the kernels
    partner_path = tmp_path / "partner_cdc.onnx"
    tiny_training_run(gathered, partner_path, *PAIR, "--partner-cdc-theta", "0.7")
    plain_member, cdc_partner = combined[2]  # --partner-cdc-theta: member 1 stays plain
    assert not [layer for layer in plain_member.layers if isinstance(layer, CentralDifferenceDepthwiseConv2D)]
    assert len([layer for layer in cdc_partner.layers if isinstance(layer, CentralDifferenceDepthwiseConv2D)]) == 2
    assert operators(partner_path) == operators(plain_path)
    with pytest.raises(ValueError, match="--partner-cdc-theta"):
        TrainConfig(architecture="res10", partner_cdc_theta=0.7)  # a single network has no partner
    with pytest.raises(ValueError, match="--cdc-theta"):
        TrainConfig(architecture="livenessnet", cdc_theta=0.7)
    with pytest.raises(ValueError, match="central-difference"):
        build("livenessnet", 32, 3, cdc_theta=0.7)


def test_mixstyle_mixes_feature_statistics_in_training_only() -> None:
    import keras

    from training.livenessnet import MixStyle

    rng = np.random.default_rng(8)
    pattern = rng.normal(0, 1, (4, 6, 6, 3)).astype(np.float32)
    means = rng.uniform(-3, 3, (4, 1, 1, 3)).astype(np.float32)
    spreads = rng.uniform(0.5, 4, (4, 1, 1, 3)).astype(np.float32)
    pattern = (pattern - pattern.mean(axis=(1, 2), keepdims=True)) / pattern.std(axis=(1, 2), keepdims=True)
    x = pattern * spreads + means  # each sample's channels have exactly these means and spreads
    keras.utils.set_random_seed(3)
    layer = MixStyle(p=1.0, alpha=0.1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(MixStyle(p=0.0)(x, training=True)), x)
    mixed = keras.ops.convert_to_numpy(layer(x, training=True))
    assert not np.allclose(mixed, x, atol=1e-3)
    # The spatial pattern of every channel is kept; only its mean and spread move...
    out_mean, out_spread = mixed.mean(axis=(1, 2), keepdims=True), mixed.std(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose((mixed - out_mean) / out_spread, pattern, atol=1e-3)
    # ... to one mix w * own + (1 - w) * another sample's, with the same w for the mean and the spread of a sample.
    def is_mix(i: int, j: int) -> bool:
        if j == i:  # mixed with itself (or w = 1): unchanged
            return np.allclose(out_mean[i], means[i], atol=1e-3) and np.allclose(out_spread[i], spreads[i], atol=1e-3)
        w = float(np.median((out_mean[i] - means[j]) / (means[i] - means[j])))
        return (-1e-3 <= w <= 1 + 1e-3 and np.allclose(out_mean[i], w * means[i] + (1 - w) * means[j], atol=1e-3)
                and np.allclose(out_spread[i], w * spreads[i] + (1 - w) * spreads[j], atol=1e-3))

    for i in range(4):
        assert any(is_mix(i, j) for j in range(4)), f"sample {i}'s statistics are no mix of two samples'"
    keras.utils.set_random_seed(3)
    again = keras.ops.convert_to_numpy(MixStyle(p=1.0, alpha=0.1)(x, training=True))
    np.testing.assert_array_equal(again, mixed)  # the global seed decides the draws


@needs_data
@needs_weights
def test_mixstyle_trains_the_pair_and_leaves_the_export_unchanged(gathered: Path, tmp_path: Path, combined: list[list]) -> None:
    import onnx

    from training.livenessnet import MixStyle, build
    from training.train import TrainConfig

    model_path = tmp_path / "mixstyle.onnx"
    tiny_training_run(gathered, model_path, *PAIR, "--mixstyle-p", "1.0")
    for member in combined[0]:  # one MixStyle per tile after res10's first stage, in both members
        assert len([layer for layer in member.layers if isinstance(layer, MixStyle)]) == 2
    assert LivenessModel(model_path).metadata.training["config"]["mixstyle_p"] == 1.0  # export passed parity
    graph = onnx.load(str(model_path)).graph
    assert not [n.op_type for n in graph.node if "Random" in n.op_type]  # the identity at inference
    kernels = {init.name: list(init.dims) for init in graph.initializer}
    assert len([n for n in graph.node if n.op_type == "Conv" and kernels.get(n.input[1], [])[2:] == [7, 7]]) == 2
    with pytest.raises(ValueError, match="--mixstyle-p"):
        TrainConfig(architecture="mobile", mixstyle_p=0.5)
    with pytest.raises(ValueError, match="MixStyle"):
        build("res10_deep", 32, 6, mixstyle_p=0.5)


def _examples(y: list[int], source: list[str], origin: list[str]):
    from training.examples import Examples

    n = len(y)
    return Examples(x=np.zeros((n, 2, 2, 3), np.uint8), y=np.array(y), source=np.array(source), group=np.array(source),
                    attack=np.array(["none" if label else "replay" for label in y]), kind=np.array(["frame"] * n),
                    origin=np.array(origin), variant=np.zeros(n, np.int64), size=2, scales=[1.5])


def test_reports_give_intervals_over_people_and_paired_differences(capsys: pytest.CaptureFixture) -> None:
    from training.compare_runs import print_differences
    from training.evaluate import markdown_table, people_of, report

    # Four webcam sets (four people), each with two real faces and two attacks.
    sets = [f"webcam_{k}" for k in "abcd" for _ in range(4)]
    data = _examples([1, 1, 0, 0] * 4, sets, [f"{s}/{i}.jpg" for i, s in enumerate(sets)])
    scores = np.array([0.9, 0.8, 0.2, 0.1, 0.9, 0.4, 0.2, 0.1, 0.9, 0.8, 0.6, 0.1, 0.7, 0.8, 0.2, 0.3])
    text, figures = report(data, scores, 0.5, "test")
    assert figures["all"]["people"] == 4
    low, high = figures["all"]["acer_ci95"]
    assert 0.0 <= low <= figures["all"]["acer"] <= high <= 0.25  # no draw of these sets is worse than 25%
    assert "95% interval over 4 people or capture setups" in text.splitlines()[-1]
    assert "95% interval over 4 people" in markdown_table(figures, 0.5).splitlines()[0]
    one = _examples([1, 0], ["webcam_a"] * 2, ["a/0.jpg", "a/1.jpg"])
    assert "interval" not in report(one, np.array([0.9, 0.1]), 0.5, "one person")[0]  # no interval from one person
    # A run against itself differs by exactly 0; a run that fixes one set's error gains within its interval.
    better = scores.copy()
    better[5] = 0.9  # set b's rejected real face now passes
    print_differences(data, people_of(data), {"A": (scores, 0.5), "B": (scores, 0.5), "C": (better, 0.5)}, "A")
    lines = capsys.readouterr().out.splitlines()
    row_b = next(line for line in lines[lines.index(next(x for x in lines if x.startswith("B minus A"))):] if line.strip().startswith("all"))
    assert row_b.split()[1:] == ["4", "+0.000", "[+0.000,", "+0.000]", "+0.0", "[+0.0,", "+0.0]"]
    row_c = next(line for line in lines[lines.index(next(x for x in lines if x.startswith("C minus A"))):] if line.strip().startswith("all"))
    gain = row_c.split()
    assert gain[5] == "-6.2"  # BPCER 1/8 -> 0 at APCER 1/8: ACER 12.5% -> 6.25%
    assert float(gain[6].strip("[,")) <= -6.2 <= float(gain[7].strip("]")) <= 0.0


def _blacking_recorder(drawn: list[int]):
    """A stand-in for an in-place augmentation: notes the samples it is asked for in `drawn` and blacks them out."""
    def record(x: np.ndarray, samples: np.ndarray, scales, rng) -> None:
        drawn.extend(samples.tolist())
        x[samples] = 0

    return record


def test_real_edge_p_draws_frame_edges_on_real_faces_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """--real-edge-p: simulated frame edges for real faces alone; attacks keep their context."""
    from training import augment
    from training.train import TrainConfig, augmented_epoch

    data = _texture_examples([True] * 8, [1, 0] * 4, ["a"] * 8)
    drawn: list[int] = []
    record = _blacking_recorder(drawn)
    monkeypatch.setitem(augment.DRAWINGS, "edge_p", record)
    config = TrainConfig(real_edge_p=1.0)
    assert config.drawing_p(data)["edge_p"].tolist() == [1.0, 0.0] * 4
    assert TrainConfig(edge_p=0.25, real_edge_p=0.5).drawing_p(data)["edge_p"].tolist() == [0.75, 0.25] * 4
    assert TrainConfig().drawing_p(data)["edge_p"] == 0.0  # off: a plain number, as before the option
    # 1,100 draws make more than one batch of 512, so the per-example rates must follow each batch
    x, y = augmented_epoch(data, np.full(8, 1 / 8), 1100, np.random.default_rng(0), np.zeros(8),
                           drawing_p=config.drawing_p(data))
    assert len(drawn) == int(y[:, 1].sum()) > 400  # every real sample of every batch, no attack
    blacked = x.mean(axis=(1, 2, 3)) < -0.5  # blacked out by the recorder (brightness jitter moves it off -1)
    assert np.array_equal(blacked, y[:, 1] == 1)


def test_recapture_p_turns_drawn_real_faces_into_replays_of_themselves(monkeypatch: pytest.MonkeyPatch) -> None:
    """--recapture-p: a drawn real face becomes a recapture of itself and its target a replay; attacks untouched."""
    import training.train
    from training.train import augmented_epoch

    data = _texture_examples([True] * 8, [1, 0] * 4, ["a"] * 8)
    drawn: list[int] = []
    record = _blacking_recorder(drawn)
    monkeypatch.setattr(training.train, "screen_recaptures", record)
    targets = np.eye(2, dtype=np.float32)[data.y]
    x, y = augmented_epoch(data, np.full(8, 1 / 8), 1100, np.random.default_rng(0), np.zeros(8), targets,
                           recapture_p=0.5)
    recaptured = x.mean(axis=(1, 2, 3)) < -0.5  # blacked out by the recorder
    assert len(drawn) == int(recaptured.sum())
    assert 0.4 < recaptured.sum() / (1100 / 2) < 0.6  # about half of the real draws, over three batches
    assert np.all(y[recaptured] == [1.0, 0.0])  # now attacks
    assert y[~recaptured, 1].sum() > 200  # the other half of the real faces stay real
    three_way = augmented_epoch(data, np.full(8, 1 / 8), 64, np.random.default_rng(1), np.zeros(8),
                                np.eye(3, dtype=np.float32)[2 * data.y], recapture_p=1.0,
                                recaptured_target=np.array([0, 1, 0], np.float32))[1]
    assert not three_way[:, 2].any() and three_way[:, 1].sum() > 20  # every real face became a replay
    plain = augmented_epoch(data, np.full(8, 1 / 8), 64, np.random.default_rng(1), np.zeros(8))
    off = augmented_epoch(data, np.full(8, 1 / 8), 64, np.random.default_rng(1), np.zeros(8), recapture_p=0.0)
    assert np.array_equal(plain[0], off[0])  # off draws nothing: the recipes without it are unchanged


def test_real_edge_rates_match_each_sources_padding_where_it_points_to_attacks() -> None:
    """--real-edge-by-source: real faces get edges only where a source's attacks are the padded ones."""
    from training.augment import frame_edges
    from training.examples import Examples
    from training.padding import padding_shares
    from training.train import TrainConfig, real_edge_rates

    size, x = 32, np.full((8, 32, 32, 6), 128, np.uint8)
    x[[1, 3], :, :8] = 0  # source a: its two attacks padded on one side, its real faces not
    x[[4, 6], :, -8:] = 0  # source b: its real faces padded, its attacks not
    y, group = np.array([1, 0] * 4), np.array(["a"] * 4 + ["b"] * 4)
    data = Examples(x, y, group, group, group, group, group, np.zeros(8, int), size, [1.5, 2.7])
    rates = real_edge_rates(data)
    assert rates[[1, 3, 5, 7]].tolist() == [0.0] * 4  # never an attack
    assert rates[[4, 6]].tolist() == [0.0, 0.0]  # padding points to real faces in b: nothing to take away
    gap = padding_shares(data)[[1, 3], 1].mean()  # source a's real faces carry none
    assert 0.0 < rates[0] == rates[2] <= 1.0
    edged = x[[0, 2]].copy()
    frame_edges(edged, np.arange(2), [1.5, 2.7], np.random.default_rng(0))
    assert rates[0] == pytest.approx(min(1.0, gap / padding_shares(edged)[:, 1].mean()))
    assert TrainConfig(real_edge_by_source=True).drawing_p(data)["edge_p"].tolist() == rates.tolist()
    with pytest.raises(ValueError, match="leave out --real-edge-p"):
        TrainConfig(real_edge_by_source=True, real_edge_p=0.5)


def test_a_sharpness_aware_step_applies_the_gradient_of_the_climbed_point() -> None:
    import keras

    from training.sam import SharpnessAwareModel

    inputs = keras.Input((2,))
    inner = keras.Model(inputs, keras.layers.Dense(1, use_bias=False)(inputs))
    inner.layers[-1].set_weights([np.array([[0.5], [-0.5]], np.float32)])
    model = SharpnessAwareModel(inner, rho=0.1)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    fit = model.fit(np.array([[1.0, 2.0]], np.float32), np.array([[1.0]], np.float32), batch_size=1, epochs=1, verbose=0)
    # by hand: x (1, 2), y 1, w (0.5, -0.5): prediction -0.5, loss 2.25, gradient 2 (p - y) x = (-3, -6), |g| = sqrt(45);
    # climbed w + 0.1 g / |g| = (0.45528, -0.58944): prediction -0.72361, gradient (-3.44721, -6.89443);
    # w - 0.1 x that = (0.84472, 0.18944). A plain step would give (0.8, 0.1).
    np.testing.assert_allclose(inner.layers[-1].get_weights()[0].ravel(), [0.844721, 0.189443], atol=1e-5)
    assert fit.history["loss"] == [pytest.approx(2.25)]  # the loss at w, as a plain step reports it
    with pytest.raises(ValueError, match="rho"):
        SharpnessAwareModel(inner, rho=0.0)


@needs_data
@needs_weights
def test_sharpness_aware_training_exports_the_plain_graph(gathered: Path, tmp_path: Path) -> None:
    from training.train import TrainConfig

    model_path = tmp_path / "sam.onnx"
    tiny_training_run(gathered, model_path, *PAIR, "--sam-rho", "0.05")
    assert LivenessModel(model_path).metadata.training["config"]["sam_rho"] == 0.05  # export passed parity
    with pytest.raises(ValueError, match="--sam-rho"):
        TrainConfig(sam_rho=0.05, spectrum_weight=0.5)
