"""Presentation-attack detection metrics (ISO/IEC 30107-3 terms), pure numpy.

Scores are P(real); a face is accepted as real when score >= threshold. Labels: 1 = real
(bona fide), 0 = attack.

- APCER: share of attacks accepted as real (per attack type; the worst type is the one reported).
- BPCER: share of real faces rejected.
- ACER = (APCER + BPCER) / 2.
- EER: the error where APCER = BPCER as the threshold moves.
- BPCER@APCER=x: BPCER at the lowest threshold whose APCER <= x (BPCER20 for x = 5%).

Confidence intervals (`cluster_bootstrap`) resample whole people or capture setups, not faces:
the frames of one person are near-duplicates, and resampling them one by one would claim a
certainty that a few dozen people cannot give.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _arrays(labels: Sequence[int], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape} vs {s.shape}")
    return y, s


def apcer(labels: Sequence[int], scores: Sequence[float], threshold: float) -> float:
    """Share of attacks (label 0) with score >= threshold; nan when there are no attacks."""
    y, s = _arrays(labels, scores)
    attacks = s[y == 0]
    return float(np.mean(attacks >= threshold)) if attacks.size else float("nan")


def bpcer(labels: Sequence[int], scores: Sequence[float], threshold: float) -> float:
    """Share of real faces (label 1) with score < threshold; nan when there are none."""
    y, s = _arrays(labels, scores)
    real = s[y == 1]
    return float(np.mean(real < threshold)) if real.size else float("nan")


def apcer_by_attack(labels: Sequence[int], scores: Sequence[float], attacks: Sequence[str], threshold: float) -> dict[str, float]:
    """APCER of every attack type present (attack names of real samples are ignored)."""
    y, s = _arrays(labels, scores)
    kinds = np.asarray(attacks)
    return {str(k): apcer(y[kinds == k], s[kinds == k], threshold) for k in sorted(set(kinds[y == 0].tolist()))}


def acer(labels: Sequence[int], scores: Sequence[float], threshold: float, attacks: Sequence[str] | None = None) -> float:
    """(APCER + BPCER) / 2, with the worst attack type's APCER when `attacks` is given."""
    if attacks is None:
        worst = apcer(labels, scores, threshold)
    else:
        per_type = apcer_by_attack(labels, scores, attacks, threshold)
        worst = max(per_type.values()) if per_type else float("nan")
    return (worst + bpcer(labels, scores, threshold)) / 2.0


def error_curve(labels: Sequence[int], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, APCER, BPCER) at every distinct score plus one above the highest.

    Thresholds increase; APCER falls and BPCER rises along them.
    """
    y, s = _arrays(labels, scores)
    thresholds = np.unique(np.concatenate([s, [np.inf]]))
    attacks, real = np.sort(s[y == 0]), np.sort(s[y == 1])
    # accepted attacks: score >= t  -> count = n - (number < t)
    ap = (attacks.size - np.searchsorted(attacks, thresholds, side="left")) / max(attacks.size, 1)
    bp = np.searchsorted(real, thresholds, side="left") / max(real.size, 1)
    return thresholds, ap, bp


def eer(labels: Sequence[int], scores: Sequence[float]) -> tuple[float, float]:
    """(EER, threshold): where APCER and BPCER cross (mean of the two at the closest threshold)."""
    thresholds, ap, bp = error_curve(labels, scores)
    i = int(np.argmin(np.abs(ap - bp)))
    return float((ap[i] + bp[i]) / 2.0), float(thresholds[i])


def threshold_at_apcer(labels: Sequence[int], scores: Sequence[float], target: float) -> float:
    """The lowest threshold whose APCER <= target (so BPCER is as low as that allows)."""
    thresholds, ap, _ = error_curve(labels, scores)
    ok = np.nonzero(ap <= target + 1e-12)[0]
    return float(thresholds[ok[0]])


def bpcer_at_apcer(labels: Sequence[int], scores: Sequence[float], target: float = 0.05) -> float:
    """BPCER at the threshold from `threshold_at_apcer` (BPCER20 for target 0.05)."""
    return bpcer(labels, scores, threshold_at_apcer(labels, scores, target))


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Probability that a random real face scores above a random attack (ties count half)."""
    y, s = _arrays(labels, scores)
    real, attacks = s[y == 1], s[y == 0]
    if real.size == 0 or attacks.size == 0:
        return float("nan")
    order = np.argsort(np.concatenate([attacks, real]), kind="mergesort")
    ranks = np.empty(order.size, dtype=np.float64)
    values = np.concatenate([attacks, real])[order]
    # average ranks over ties
    _, first, counts = np.unique(values, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(average, counts)
    real_ranks = ranks[attacks.size :]
    return float((real_ranks.sum() - real.size * (real.size + 1) / 2.0) / (real.size * attacks.size))


def summary(labels: Sequence[int], scores: Sequence[float], threshold: float, attacks: Sequence[str] | None = None) -> dict[str, float]:
    """All headline figures at one threshold (nan where a class is missing)."""
    y, s = _arrays(labels, scores)
    both = bool((y == 0).any() and (y == 1).any())
    out = {
        "n_real": int((y == 1).sum()),
        "n_attack": int((y == 0).sum()),
        "apcer": apcer(y, s, threshold),
        "bpcer": bpcer(y, s, threshold),
        "acer": acer(y, s, threshold, attacks),
        "eer": eer(y, s)[0] if both else float("nan"),
        "auc": roc_auc(y, s),
        "bpcer_at_apcer5": bpcer_at_apcer(y, s, 0.05) if both else float("nan"),
    }
    if attacks is not None:
        for kind, value in apcer_by_attack(y, s, attacks, threshold).items():
            out[f"apcer_{kind}"] = value
    return out


BOOTSTRAP_DRAWS = 1000


def cluster_bootstrap(clusters: Sequence[str], statistic: Callable[[np.ndarray], float], draws: int = BOOTSTRAP_DRAWS,
                      seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of `statistic(indices)` over resamples that draw whole clusters with replacement.

    `clusters[i]` names sample i's cluster (a person, a capture setup); each draw picks as many
    clusters as there are, with replacement, and passes the indices of all their samples.
    `statistic` may compare two runs on the same samples (a paired difference). Draws where it
    is nan (a label missing) are left out; (nan, nan) with fewer than two clusters or no valid draw.
    """
    names, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    if names.size < 2:
        return float("nan"), float("nan")
    members = [np.nonzero(inverse == k)[0] for k in range(names.size)]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        picked = rng.integers(0, names.size, names.size)
        value = statistic(np.concatenate([members[k] for k in picked]))
        if value == value:
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
