"""The trainer end to end on small real subsets: gather, train, export with parity, evaluate, calibrate, adapt."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DATA, REPO, astronaut_bgr, needs_data, needs_model, needs_weights

BACKBONE = REPO / "face_detector" / "weights" / "efficientnet-lite0-57934424.pth"
needs_backbone = pytest.mark.skipif(not BACKBONE.is_file(), reason="backbone weights absent: run python -m face_detector.fetch_weights")
VIDEOS = DATA / "videos" / "tranvanluyt2203"
TINY_RECIPE = """
version: "test"
size: 32
scales: [1.5, 2.7]
crop_border: fit
levels: [3]
jitter: 1
tune_blocks: 1
epochs: 1
samples_per_epoch: 32
batch_size: 16
"""


def one_line_error(capsys: pytest.CaptureFixture[str], prefix: str) -> str:
    """The error line a refused command ended with (after any progress lines; no traceback)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("gather")]
    assert len(lines) == 1 and lines[0].startswith(prefix) and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def picture_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pictures in PERSON/real and PERSON/fake folders, linked from two shared sources, 12 a label each."""
    folder = tmp_path_factory.mktemp("dataset")
    for source in ("ydf1014", "huynhnguyen2017"):
        for label in ("real", "fake"):
            (folder / source / label).mkdir(parents=True)
            for picture in sorted((DATA / "faces" / source / label).glob("*.jpg"))[:12]:
                (folder / source / label / picture.name).symlink_to(picture.resolve())
    return folder


@pytest.fixture(scope="module")
def tutorial_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dataset/real and dataset/fake gathered from the shared videos with the tutorial's flags."""
    from training.gather_examples import main as gather_main

    dataset = tmp_path_factory.mktemp("tutorial") / "dataset"
    for label in ("real", "fake"):
        assert gather_main(["--input", str(VIDEOS / f"{label}.mp4"), "--output", str(dataset / label),
                            "--detector", str(REPO / "face_detector"), "--confidence", "0.5", "--skip", "12"]) == 0
    return dataset


@pytest.fixture(scope="module")
def tutorial_model(tutorial_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped recipe (frozen backbone) trained on the tutorial's gathered folders, as the tutorial types it."""
    from training.train import main as train_main

    out = tmp_path_factory.mktemp("model")
    assert train_main(["--dataset", str(tutorial_dataset), "--model", str(out / "liveness.model"),
                       "--le", str(out / "le.pickle"), "--plot", str(out / "plot.png")]) == 0
    return out / "liveness.model"


@needs_data
@needs_weights
@needs_backbone
def test_the_tutorials_commands_gather_and_train_a_loadable_model(tutorial_model: Path) -> None:
    from liveness.model import LivenessModel

    model = LivenessModel(tutorial_model)
    meta = model.metadata
    assert (meta.model_version, meta.input_size, meta.crop_scales, meta.crop_border) == ("2.0", 96, [1.5, 2.7], "fit")
    assert meta.training["recipe"]["levels"] == [9, 12] and meta.labels == ["fake", "real"]
    assert set(meta.training["faces_per_source"]) == {"real", "fake"}  # the gathered folders' names
    labels = json.loads((tutorial_model.parent / "le.pickle").read_text())  # JSON, whatever the name says
    assert labels["classes"] == ["fake", "real"]
    assert (tutorial_model.parent / "plot.png").stat().st_size > 1000
    score = model.score(astronaut_bgr(), [(180.0, 60.0, 320.0, 230.0)])
    assert score.shape == (1,) and 0.0 <= float(score[0]) <= 1.0


@needs_data
@needs_weights
@needs_backbone
def test_a_tiny_fine_tune_exports_with_parity_and_records_its_recipe(picture_folder: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from liveness.model import LivenessModel
    from training.train import main as train_main

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    out = tmp_path / "tiny.onnx"
    assert train_main(["--dataset", str(picture_folder), "--model", str(out), "--recipe", str(recipe), "--threshold", "0.4"]) == 0
    printed = capsys.readouterr()
    assert "parity max abs diff" in printed.out and "epoch 1/1" in printed.err
    assert "no validation split" in printed.err
    meta = LivenessModel(out).metadata
    assert meta.model_version == "test" and meta.training["recipe"]["tune_blocks"] == 1 and meta.threshold == 0.4
    assert meta.threshold_policy == "given on the command line"
    assert meta.mean == [pytest.approx(127 / 255)] * 3 and meta.std == [pytest.approx(128 / 255)] * 3


@needs_data
@needs_weights
@needs_backbone
def test_fine_tuning_moves_only_the_tuned_blocks_and_the_head() -> None:
    from training.livenessnet import build
    from training.train import load_backbone

    weights = load_backbone()
    model = build(32, 2, [3], weights, tune_blocks=1)
    trainable = {w.path.split("/")[0] for w in model.trainable_weights} | {w.path for w in model.trainable_weights}
    assert any("_blocks_2_" in name for name in trainable) and any("liveness" in name for name in trainable)
    assert not any("_blocks_1_" in name or "_conv_stem" in name or "_bn" in name for name in trainable)


@needs_data
@needs_weights
@needs_backbone
def test_leaving_sources_out_scores_every_face_once_and_writes_scores(picture_folder: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from training.evaluate import main as evaluate_main

    recipe = tmp_path / "frozen.yaml"
    recipe.write_text(TINY_RECIPE.replace("tune_blocks: 1", "tune_blocks: 0").replace("epochs: 1", "epochs: 0"))
    assert evaluate_main(["--loso", "--by", "source", "--data", str(picture_folder), "--recipe", str(recipe), "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "leave-one-source-out" in text and "thresholds the folds would choose alone" in text
    rows = (tmp_path / "oof_scores.csv").read_text().splitlines()
    assert len(rows) == 1 + 48  # every face of the folder, once (no jitter copies)
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert set(figures["folds"]) == {"ydf1014", "huynhnguyen2017", "all"}  # the person folders are the sources


@needs_data
@needs_weights
@needs_backbone
def test_evaluate_and_calibrate_a_model(tutorial_model: Path, tutorial_dataset: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from liveness.model import LivenessModel
    from training.calibrate import main as calibrate_main
    from training.evaluate import main as evaluate_main

    assert evaluate_main(["--model", str(tutorial_model), "--data", str(tutorial_dataset), "--out", str(tmp_path), "--stress"]) == 0
    text = capsys.readouterr().out
    assert "face mask" in text and (tmp_path / "roc.png").is_file() and (tmp_path / "table.md").is_file()
    model = tmp_path / "calibrated.onnx"
    model.write_bytes(tutorial_model.read_bytes())
    assert calibrate_main(["--model", str(model), "--scores", str(tmp_path / "scores.csv"), "--min-acer"]) == 0
    assert LivenessModel(model).metadata.threshold_policy.startswith("lowest ACER on pooled out-of-fold scores")


@needs_data
@needs_weights
@needs_backbone
def test_adapt_on_the_shared_videos_writes_a_site_model(tutorial_model: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from liveness.model import LivenessModel
    from training.adapt import main as adapt_main

    out = tmp_path / "site.onnx"
    assert adapt_main(["--model", str(tutorial_model), "--real", str(VIDEOS / "real.mp4"), "--fake", str(VIDEOS / "fake.mp4"),
                       "--out", str(out), "--skip", "8"]) == 0
    text = capsys.readouterr().out
    assert "held back, before" in text and "held back, after" in text
    meta = LivenessModel(out).metadata
    record = meta.training["site_adaptation"]
    assert meta.model_version == "2.0+site" and record["base_model"] == "liveness.model"
    assert record["faces_adapted_on"]["real"] >= 20 and record["faces_held_back"]["fake"] > 0
    # too little data: one line, exit 2, nothing written
    assert adapt_main(["--model", str(tutorial_model), "--real", str(VIDEOS / "real.mp4"), "--fake", str(VIDEOS / "fake.mp4"),
                       "--out", str(tmp_path / "small.onnx"), "--skip", "60"]) == 2
    assert "too little site data" in one_line_error(capsys, "adapt: ")
    assert not (tmp_path / "small.onnx").exists()


@needs_data
@needs_weights
def test_bad_training_inputs_are_one_line_errors(picture_folder: Path, tutorial_dataset: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from training.train import main as train_main

    model = str(tmp_path / "m.onnx")
    assert train_main(["--dataset", str(tmp_path / "nowhere"), "--model", model]) == 2
    assert "nowhere: not found" in one_line_error(capsys, "train: ")
    (tmp_path / "empty").mkdir()
    assert train_main(["--dataset", str(tmp_path / "empty"), "--model", model]) == 2
    assert "no labelled pictures" in one_line_error(capsys, "train: ")
    (tmp_path / "one" / "real").mkdir(parents=True)
    for picture in sorted((picture_folder / "ydf1014" / "real").iterdir())[:3]:
        (tmp_path / "one" / "real" / picture.name).symlink_to(picture.resolve())
    assert train_main(["--dataset", str(tmp_path / "one"), "--model", model]) == 2
    assert "only real faces" in one_line_error(capsys, "train: ")
    small = tmp_path / "small.yaml"
    small.write_text("size: 48\n")
    assert train_main(["--dataset", str(tutorial_dataset / "real"), "--model", model, "--recipe", str(small)]) == 2
    assert "gather again with training.gather_examples --size 48" in one_line_error(capsys, "train: ")
    small.write_text("size: 48\nlearning_rat: 1\n")
    assert train_main(["--dataset", str(picture_folder), "--model", model, "--recipe", str(small)]) == 2
    assert "learning_rat: unknown field" in one_line_error(capsys, "train: ")
    assert not Path(model).exists()


@needs_model
def test_the_shipped_model_scores_a_face() -> None:
    from liveness.model import LivenessModel

    model = LivenessModel(REPO / "models" / "liveness.onnx")
    scores = model.score(astronaut_bgr(), [(180.0, 60.0, 320.0, 230.0), (0.0, 0.0, 40.0, 40.0)])
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))


def test_the_lowest_acer_threshold_and_its_record(tmp_path: Path) -> None:
    from training.calibrate import min_acer_threshold

    labels = np.array([0, 0, 0, 1, 1, 1])
    assert min_acer_threshold(labels, np.array([0.1, 0.2, 0.6, 0.5, 0.7, 0.9])) == pytest.approx(0.7)
