"""training.metrics on cases small enough to compute by hand."""
import math

import numpy as np
import pytest

from training import metrics

# 4 attacks, 4 real faces.  P(real):
LABELS = [0, 0, 0, 0, 1, 1, 1, 1]
SCORES = [0.1, 0.2, 0.6, 0.9, 0.3, 0.7, 0.8, 0.95]
ATTACKS = ["print", "print", "replay", "replay", "none", "none", "none", "none"]


def test_apcer_bpcer_acer_at_half() -> None:
    # attacks accepted (>= 0.5): 0.6, 0.9 -> 2/4; real rejected (< 0.5): 0.3 -> 1/4
    assert metrics.apcer(LABELS, SCORES, 0.5) == pytest.approx(0.5)
    assert metrics.bpcer(LABELS, SCORES, 0.5) == pytest.approx(0.25)
    assert metrics.acer(LABELS, SCORES, 0.5) == pytest.approx(0.375)


def test_per_attack_type_and_worst_case_acer() -> None:
    per_type = metrics.apcer_by_attack(LABELS, SCORES, ATTACKS, 0.5)
    assert per_type == {"print": 0.0, "replay": 1.0}
    # ISO 30107-3: ACER uses the worst attack type -> (1.0 + 0.25) / 2
    assert metrics.acer(LABELS, SCORES, 0.5, ATTACKS) == pytest.approx(0.625)


def test_threshold_is_inclusive() -> None:
    assert metrics.apcer([0], [0.5], 0.5) == 1.0
    assert metrics.bpcer([1], [0.5], 0.5) == 0.0


def test_auc_by_hand() -> None:
    # real-vs-attack pairs won: 0.3 beats 0.1,0.2 (2); 0.7 beats 3; 0.8 beats 3; 0.95 beats 4 -> 12/16
    assert metrics.roc_auc(LABELS, SCORES) == pytest.approx(12 / 16)
    assert metrics.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # ties count half
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert math.isnan(metrics.roc_auc([1, 1], [0.1, 0.2]))


def test_eer_and_bpcer_at_apcer() -> None:
    # threshold 0.7: APCER 1/4 (0.9), BPCER 1/4 (0.3) -> EER 0.25
    value, threshold = metrics.eer(LABELS, SCORES)
    assert value == pytest.approx(0.25)
    assert metrics.apcer(LABELS, SCORES, threshold) == pytest.approx(0.25)
    # APCER <= 5% needs every attack rejected: lowest such threshold is just above 0.9 -> 0.95,
    # which rejects 0.3, 0.7, 0.8 -> BPCER 3/4
    assert metrics.threshold_at_apcer(LABELS, SCORES, 0.05) == pytest.approx(0.95)
    assert metrics.bpcer_at_apcer(LABELS, SCORES, 0.05) == pytest.approx(0.75)
    # APCER <= 25% allows one attack through: threshold 0.7 -> BPCER 1/4
    assert metrics.threshold_at_apcer(LABELS, SCORES, 0.25) == pytest.approx(0.7)


def test_perfect_separation() -> None:
    labels, scores = [0, 0, 1, 1], [0.0, 0.1, 0.9, 1.0]
    summary = metrics.summary(labels, scores, 0.5)
    assert summary["acer"] == 0.0 and summary["eer"] == 0.0 and summary["auc"] == 1.0
    assert summary["bpcer_at_apcer5"] == 0.0


def test_missing_class_gives_nan_not_error() -> None:
    summary = metrics.summary([0, 0], [0.2, 0.7], 0.5, ["print", "replay"])
    assert summary["apcer"] == 0.5 and math.isnan(summary["bpcer"]) and math.isnan(summary["auc"])
    assert summary["apcer_print"] == 0.0 and summary["apcer_replay"] == 1.0


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        metrics.apcer([0, 1], np.array([0.1]), 0.5)
