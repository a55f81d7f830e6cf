"""The shipped model through the whole pipeline on the shared real and replayed videos.

The fraction of frames labelled live (largest face, at the model's own threshold) must agree
with what the model's own evaluation says: at least 1 - BPCER on the real video, at most
APCER on the replay, with a margin for the few hundred near-duplicate frames of one video.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import DATA, MODEL, assert_scores_are_time_averages, make_config, needs_data, needs_model, read_jsonl, run_pipeline
from liveness import LivenessModel

pytestmark = [needs_model, needs_data]
MARGIN = 0.10


def _expected_error_rates() -> tuple[float, float]:
    """(APCER, BPCER) the model's evaluation reports for this source, else its validation figures."""
    training = LivenessModel(MODEL).metadata.training
    per_source = training.get("loso", {}).get("tranvanluyt2203")
    figures = per_source or training["validation"]
    return float(figures["apcer"]), float(figures["bpcer"])


def _live_fraction(records: list[dict]) -> float:
    with_faces = [r for r in records if r["faces"]]
    largest = [max(r["faces"], key=lambda f: (f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1])) for r in with_faces]
    return sum(face["label"] == "real" for face in largest) / len(largest)


@pytest.mark.parametrize("label", ["real", "fake"])
def test_shipped_model_on_shared_videos(tmp_path: Path, label: str) -> None:
    video = DATA / "videos" / "tranvanluyt2203" / f"{label}.mp4"
    config = make_config(tmp_path, display={"enabled": False})
    result = run_pipeline("--config", str(config), "--source", str(video), timeout=600)
    assert result.returncode == 0, result.stderr
    records = read_jsonl(tmp_path / "results.jsonl")
    assert [r["seq"] for r in records] == list(range(len(records))) and len(records) > 600
    assert sum(bool(r["faces"]) for r in records) > 0.85 * len(records)  # res10 finds the face in most frames
    assert_scores_are_time_averages(records, smoothing_s=0.5)  # the default: a face's score is its last ~0.5 s
    tracks = {f["track"] for r in records for f in r["faces"]}
    assert len(tracks) < 0.05 * len(records)  # one person in front of the camera: a handful of tracks, not one per frame
    apcer, bpcer = _expected_error_rates()
    live = _live_fraction(records)
    if label == "real":
        assert live >= 1.0 - bpcer - MARGIN, f"live fraction {live:.3f} on the real video; evaluation BPCER {bpcer:.3f}"
    else:
        assert live <= apcer + MARGIN, f"live fraction {live:.3f} on the replay; evaluation APCER {apcer:.3f}"
