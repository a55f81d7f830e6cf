"""training.calibrate: threshold choice on hand-computed cases, and writing it into a model."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from liveness import LivenessModel
from training.calibrate import choose_threshold, min_acer_threshold, write_threshold

LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1])
SCORES = np.array([0.1, 0.2, 0.6, 0.9, 0.3, 0.7, 0.8, 0.95])
ATTACKS = np.array(["print", "print", "replay", "replay", "none", "none", "none", "none"])


def test_threshold_at_target_apcer() -> None:
    assert choose_threshold(LABELS, SCORES, 0.05) == pytest.approx(0.95)  # every attack rejected
    assert choose_threshold(LABELS, SCORES, 0.25) == pytest.approx(0.7)  # one attack of four may pass
    # Per attack type: replay has two attacks (0.6, 0.9), so 25% per type still needs 0.95
    assert choose_threshold(LABELS, SCORES, 0.25, ATTACKS) == pytest.approx(0.95)
    assert choose_threshold(LABELS, SCORES, 0.5, ATTACKS) == pytest.approx(0.7)


def test_min_acer_threshold() -> None:
    # 0.3 and 0.7 both give ACER 0.25; the higher one is kept (fewer attacks pass)
    assert min_acer_threshold(LABELS, SCORES) == pytest.approx(0.7)


def test_threshold_is_written_into_the_model(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parent.parent / "models" / "liveness.onnx"
    model_path = tmp_path / "m.onnx"
    shutil.copy(shipped, model_path)
    write_threshold(model_path, 0.4242, "test policy")
    model = LivenessModel(model_path)
    assert model.threshold == pytest.approx(0.4242)
    assert model.metadata.threshold_policy == "test policy"
    assert model.metadata.training == LivenessModel(shipped).metadata.training


def test_calibrate_pools_the_scores_of_several_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from training.calibrate import main as calibrate_main

    # Split the hand-computed case over two runs' files: pooled, the threshold is the one above
    # (0.7); either file alone gives another (run a alone: 0.3, run b alone: 0.95).
    files = []
    for run, rows in (("a", [0, 1, 4, 5]), ("b", [2, 3, 6, 7])):
        path = tmp_path / run / "oof_scores.csv"
        path.parent.mkdir()
        lines = ["origin,source,group,label,attack,kind,score,fold"]
        lines += [f"x{i}.jpg,s,s,{'real' if LABELS[i] else 'fake'},{ATTACKS[i]},crop,{SCORES[i]},f" for i in rows]
        path.write_text("\n".join(lines) + "\n")
        files.append(str(path))
    shipped = Path(__file__).resolve().parent.parent / "models" / "liveness.onnx"
    model_path = tmp_path / "m.onnx"
    shutil.copy(shipped, model_path)
    assert calibrate_main(["--model", str(model_path), "--scores", files[0], "--min-acer"]) == 0
    assert LivenessModel(model_path).threshold == pytest.approx(0.3)
    capsys.readouterr()
    assert calibrate_main(["--model", str(model_path), "--scores", *files, "--min-acer"]) == 0
    # at 0.7 one replay of two passes: pooled APCER 25%, replay's 50%, which is the one ACER counts
    assert "APCER 25.0% (worst attack type replay: 50.0%)  BPCER 25.0%  ACER 37.5%" in capsys.readouterr().out
    model = LivenessModel(model_path)
    assert model.threshold == pytest.approx(0.7)
    assert "a/oof_scores.csv, b/oof_scores.csv" in model.metadata.threshold_policy


def test_compare_runs_averages_runs_and_mirrored_scores(tmp_path: Path) -> None:
    from training.compare_runs import fold_scores

    for run, plain, mirrored in (("a", [0.2, 0.8], [0.4, 0.6]), ("b", [0.6, 0.4], None)):
        (tmp_path / run / "folds").mkdir(parents=True)
        np.savetxt(tmp_path / run / "folds" / "webcam_a.csv", plain, delimiter=",")
        if mirrored is not None:
            np.savetxt(tmp_path / run / "folds" / "webcam_a.flipped.csv", mirrored, delimiter=",")
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    np.testing.assert_allclose(fold_scores(a, "webcam_a"), [0.2, 0.8])
    np.testing.assert_allclose(fold_scores(f"{a}+{b}", "webcam_a"), [0.4, 0.6])
    np.testing.assert_allclose(fold_scores(f"{a}@flip", "webcam_a"), [0.3, 0.7])
    np.testing.assert_allclose(fold_scores(f"{a}@flip+{b}", "webcam_a"), [0.45, 0.55])
    assert fold_scores(f"{b}@flip", "webcam_a") is None  # b has no mirrored scores
    assert fold_scores(a, "nuaa") is None  # nor any run this fold


def test_compare_runs_counts_a_gated_probe_only_where_its_gate_opened(tmp_path: Path) -> None:
    from training.compare_runs import fold_scores

    for run, scores in (("pair", [0.9, 0.2, 0.6]), ("probe", [0.3, 0.8, 0.0])):
        (tmp_path / run / "folds").mkdir(parents=True)
        np.savetxt(tmp_path / run / "folds" / "nuaa.csv", scores, delimiter=",")
    np.savetxt(tmp_path / "probe" / "folds" / "nuaa.gate.csv", [1, 0, 1], delimiter=",", fmt="%d")
    pair, probe = str(tmp_path / "pair"), str(tmp_path / "probe")
    # open: (2 x pair + probe) / 3; closed: the pair alone
    np.testing.assert_allclose(fold_scores(f"{pair}+{pair}+{probe}@gate", "nuaa"), [0.7, 0.2, 0.4])
    np.testing.assert_allclose(fold_scores(f"{pair}+{probe}@gate", "nuaa"), [0.6, 0.2, 0.3])  # 1.6: half where open
    np.testing.assert_allclose(fold_scores(f"{pair}+{probe}", "nuaa"), [0.6, 0.5, 0.3])  # ungated: the plain mean
    assert fold_scores(f"{pair}+{pair}@gate", "nuaa") is None  # the pair's folder has no gate
    with pytest.raises(ValueError, match="needs an ungated run"):
        fold_scores(f"{probe}@gate", "nuaa")
    with pytest.raises(ValueError, match="unknown option @gated"):
        fold_scores(f"{pair}+{probe}@gated", "nuaa")


def test_a_loso_folder_refuses_folds_of_another_recipe(tmp_path: Path) -> None:
    import json

    from training.evaluate import claim_for_recipe
    from training.train import TrainConfig

    claim_for_recipe(tmp_path, TrainConfig())
    claim_for_recipe(tmp_path, TrainConfig())  # the same recipe resumes
    with pytest.raises(ValueError, match="differs in ensemble, seed"):
        claim_for_recipe(tmp_path, TrainConfig(seed=8, ensemble=2))
    # a recipe stored before the newer fields existed counts them as defaults
    stored = json.loads((tmp_path / "config.json").read_text())
    legacy = {k: v for k, v in stored.items() if k not in ("ensemble", "flip_average", "degrade_p", "spectrum_weight")}
    (tmp_path / "config.json").write_text(json.dumps(legacy))
    claim_for_recipe(tmp_path, TrainConfig())


def _examples_of(groups: list[str], origins: list[str]):
    from training.examples import Examples

    n = len(groups)
    return Examples(np.zeros((n, 4, 4, 3), np.uint8), np.ones(n, int), np.array(groups), np.array(groups),
                    np.array(["none"] * n), np.array(["frame"] * n), np.array(origins), np.zeros(n, int), 4, [1.5])


def test_leaving_out_whole_setups_puts_each_database_in_one_fold(tmp_path: Path) -> None:
    from training.evaluate import loso, sample_folds
    from training.train import TrainConfig

    groups = ["replay_attack_devel", "replay_attack_train", "webcam_spp77", "webcam_afzal91004", "nuaa", "nuaa", "jtboing"]
    origins = ["a.jpg"] * 4 + ["frames/nuaa/real/0002_00_00_01_0.jpg", "frames/nuaa/real/0007_00_00_01_0.jpg", "b.jpg"]
    data = _examples_of(groups, origins)
    assert sample_folds(data).tolist() == ["replay_attack_devel", "replay_attack_train", "webcam_c", "webcam_a",
                                           "nuaa", "nuaa", "crops_a"]
    assert sample_folds(data, by_setup=True).tolist() == ["replay_attack", "replay_attack", "webcam", "webcam",
                                                          "nuaa", "nuaa", "crops_a"]
    assert sample_folds(data, nuaa_by_subject=True).tolist()[4:6] == ["nuaa_subjects_1-4", "nuaa_subjects_5-9"]
    with pytest.raises(ValueError, match="choose one"):
        sample_folds(data, nuaa_by_subject=True, by_setup=True)
    # a fold name of the other split is refused before any training, naming the folds there are
    with pytest.raises(ValueError, match="--folds webcam_a: not a fold of this split .*webcam, nuaa"):
        loso(data, TrainConfig(), tmp_path / "run", only=["webcam_a"], by_setup=True)
    assert not (tmp_path / "run").exists()


def test_a_second_process_waits_for_the_gather_cache_lock(tmp_path: Path) -> None:
    """Parallel LOSO runs must not gather into one cache folder at once: the second waits for the first."""
    import subprocess
    import sys
    import time

    from training.examples import cache_lock

    cache = tmp_path / "gathered_x"
    waiter = ("import sys, pathlib; from training.examples import cache_lock; d = pathlib.Path(sys.argv[1]); "
              "(d / 'ready').write_text(''); c = cache_lock(d / 'gathered_x'); c.__enter__(); (d / 'got').write_text('')")
    with cache_lock(cache):
        other = subprocess.Popen([sys.executable, "-c", waiter, str(tmp_path)], cwd=Path(__file__).resolve().parent.parent)
        deadline = time.monotonic() + 60
        while not (tmp_path / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "ready").exists()
        time.sleep(0.5)
        assert not (tmp_path / "got").exists()  # still waiting for the lock this process holds
    assert other.wait(timeout=60) == 0
    assert (tmp_path / "got").exists()
