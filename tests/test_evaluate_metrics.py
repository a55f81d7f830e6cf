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


def test_cluster_bootstrap_resamples_whole_clusters() -> None:
    values = np.repeat([0.0, 1.0], 100)  # two people, each with 100 identical faces
    people = np.repeat(["a", "b"], 100)
    mean = lambda i: float(values[i].mean())  # noqa: E731
    # Two people: a draw holds a twice, b twice or one of each, so the mean is 0, 0.5 or 1 ...
    assert metrics.cluster_bootstrap(people, mean) == (0.0, 1.0)
    # ... while the same faces taken one by one would claim the mean is known to a few points.
    low, high = metrics.cluster_bootstrap(np.arange(200).astype(str), mean)
    assert 0.4 < low < 0.5 < high < 0.6
    nan = metrics.cluster_bootstrap(["a"] * 5, mean)  # one person: no interval
    assert nan[0] != nan[0] and nan[1] != nan[1]
    # Draws where the statistic is nan (a label missing) are left out rather than poisoning the interval.
    labels, scores = np.array([1, 1, 0, 0]), np.array([0.9, 0.8, 0.2, 0.1])
    auc = metrics.cluster_bootstrap(["p", "p", "q", "q"], lambda i: metrics.roc_auc(labels[i], scores[i]))
    assert auc == (1.0, 1.0)
    never = metrics.cluster_bootstrap(["p", "q"], lambda i: float("nan"))  # no valid draw at all
    assert never[0] != never[0] and never[1] != never[1]
    # The same seed gives the same interval.
    assert metrics.cluster_bootstrap(np.arange(200).astype(str), mean) == (low, high)


def test_person_of_names_the_client_the_subject_or_the_source() -> None:
    from training.examples import person_of

    ra = "frames/replay_attack/fake/devel__attack__hand__attack_print_client012_session01_highdef_photo_adverse/frame_0.jpg"
    assert person_of("replay_attack", ra) == "replay_attack/client012"
    assert person_of("nuaa", "frames/nuaa/fake/0003__0003_00_00_01_10.jpg") == "nuaa/0003"
    assert person_of("webcam_spp77", "frames/webcam_spp77/real/1.jpg") == "webcam_spp77"
    assert person_of("tranvanluyt2203", "videos/tranvanluyt2203/real.mp4") == "tranvanluyt2203"
