"""training.evaluate_videos: per-frame figures through the real pipeline, and other time constants replayed."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import MODEL, needs_model
from training.evaluate_videos import largest_face_scores, main

pytestmark = needs_model


def test_figures_through_the_pipeline_match_its_json_lines(tmp_path: Path, face_video: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    keep = tmp_path / "jsonl"
    assert main([f"real:{face_video}", f"fake:{face_video}", "--model", str(MODEL), "--smoothing", "0", "--keep", str(keep)]) == 0
    out = capsys.readouterr().out
    records = [json.loads(line) for line in (keep / "0.jsonl").read_text().splitlines()]
    assert len(records) == 24 and all(record["fps"] == 30.0 for record in records)
    for smoothing_s in (0.5, 0.0):
        published = [face["score"] for r in records for face in r["faces"]] if smoothing_s else \
            [face["frame_score"] for r in records for face in r["faces"]]
        scores, thresholds, empty = largest_face_scores(records, smoothing_s)
        assert scores == pytest.approx(published, abs=1e-4) and empty == 0  # one face a frame: it is the largest
        live = sum(s >= t for s, t in zip(scores, thresholds)) / len(scores)
        block = out.split(f"smoothing {smoothing_s:g} s:")[1]
        bpcer = float(re.match(r" APCER ([\d.]+)%  BPCER ([\d.]+)%", block).group(2))
        assert bpcer == pytest.approx(100 * (1 - live), abs=0.05)  # the same video as real and as fake
        assert f"live in {100 * live:.1f}% of 24 frames with a face (0 without); scores {min(scores):.2f} / " in block


def test_every_video_can_be_judged_at_another_models_threshold(tmp_path: Path, face_video: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from training.calibrate import write_threshold

    other = tmp_path / "other.onnx"
    shutil.copy(MODEL, other)
    write_threshold(other, 0.123456, "test")
    keep = tmp_path / "jsonl"
    assert main([f"real:{face_video}", "--model", str(MODEL), "--threshold-of", str(other), "--keep", str(keep)]) == 0
    records = [json.loads(line) for line in (keep / "0.jsonl").read_text().splitlines()]
    assert {face["threshold"] for r in records for face in r["faces"]} == {0.123456}


def test_a_bad_video_spec_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["live:nothing.mp4"]) == 2
    assert main([f"real:{tmp_path / 'missing.mp4'}"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[0].startswith("evaluate_videos: 'live:nothing.mp4': expected real:VIDEO")
    assert errors[1].endswith(f"video file not found: {tmp_path / 'missing.mp4'}")


def test_padding_share_counts_pixels_black_in_all_three_channels() -> None:
    import numpy as np

    from training.examples import Examples
    from training.padding import padding_shares

    x = np.full((2, 4, 4, 6), 50, dtype=np.uint8)
    x[0, :, :2, 3:6] = 0  # half of sample 0's second tile is padding
    x[1, 0, :, 0] = 0  # one channel at 0 is a dark pixel, not padding
    n = np.array(["a", "b"])
    data = Examples(x, np.array([1, 0]), n, n, n, n, n, np.zeros(2, int), 4, [1.5, 2.7])
    assert padding_shares(data).tolist() == [[0.0, 0.5], [0.0, 0.0]]


def test_padding_alone_as_a_cue_and_the_report_rows() -> None:
    import numpy as np

    from training.examples import Examples
    from training.padding import padding_cue_auc, report_rows

    # attacks padded more than real faces: "less padding = real" ranks them perfectly; the other way round, inverted
    assert padding_cue_auc(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.7, 0.9])) == 1.0
    assert padding_cue_auc(np.array([1, 1, 0, 0]), np.array([0.7, 0.9, 0.1, 0.2])) == 0.0
    groups = np.array(["replay_attack_devel", "replay_attack_train", "webcam_spp77", "nuaa"])
    kinds = np.array(["frame", "frame", "frame", "crop"])
    data = Examples(np.zeros((4, 4, 4, 6), np.uint8), np.array([1, 0, 1, 0]), groups, groups, groups, kinds, groups,
                    np.zeros(4, int), 4, [1.5, 2.7])
    rows = report_rows(data)
    assert rows["setup replay_attack"].tolist() == [True, True, False, False]
    assert rows["setup webcam"].tolist() == [False, False, True, False]
    assert rows["kind crop"].tolist() == [False, False, False, True] and rows["all"].all()


@pytest.mark.parametrize("tool", ["padding", "sharpness"])
def test_data_reports_name_a_missing_data_folder_and_exit_2(tool: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    with pytest.raises(SystemExit) as stopped:
        importlib.import_module(f"training.{tool}").main(["--data", str(tmp_path / "missing")])
    assert stopped.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--data {tmp_path / 'missing'}: " in last and "manifest.csv" in last
