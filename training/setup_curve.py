"""How well a model ranks a capture setup it never saw, against the number of setups it was trained on.

Every lever screened on these data moves a never-seen setup by a few hundredths of AUC, and the
shipped model ranks them near 0.75 (docs/training.md, "Every lever screened with setups left out").
This asks the question behind that: does the ranking grow with more *setups* (cameras, screens,
printers, rooms), and how fast? It uses the frozen face-mesh probe (training.probe: fixed features,
a logistic regression fitted exactly), so a point costs milliseconds and no training draw adds noise.

    python -m training.setup_curve --data ../shared/data [--draws 40] [--budget 600] [--seed 0]

Units are capture setups as far as the data tell them apart: each tutorial crop set, each webcam
set, each vendor sample set, NUAA, and Replay-Attack (its train and devel people together). For each
target (NUAA, Replay-Attack, all webcam sets: left out whole, as in `evaluate --by-setup`) and each k,
`--draws` random sets of k units from the other units; the probe is fitted on them and scored on the
target. Three columns: "all crops" (every crop of the k units: more setups also means more crops),
"setups balanced" (the same crops, every unit weighing the same in the fit: probe --balance-setups) and
"budget" (at most `--budget` crops spread evenly over the k units: more setups, the same amount of data).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.evaluate import SETUP_TARGETS, sample_folds
from training.metrics import roc_auc
from training.probe import PROBE_L2, _sigmoid, capture_setup, fit_logistic

MAX_TRIES = 1000  # redraws allowed for a set of units that lacks one label


def draw_units(pool: Sequence[str], k: int, labels_of: dict[str, set[int]], rng: np.random.Generator) -> list[str]:
    """k distinct units of `pool` whose crops hold both labels together (ValueError if no draw does)."""
    for _ in range(MAX_TRIES):
        units = [pool[i] for i in rng.choice(len(pool), size=k, replace=False)]
        if set().union(*(labels_of[u] for u in units)) == {0, 1}:
            return units
    raise ValueError(f"no {k} units of {len(pool)} hold both labels")


def spread_budget(rows_of: dict[str, np.ndarray], units: Sequence[str], budget: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices: at most `budget` crops over `units`, an equal share each (all of a unit's crops if it has fewer)."""
    share = max(1, budget // len(units))
    picked = [rng.choice(rows_of[u], size=min(share, len(rows_of[u])), replace=False) for u in units]
    return np.sort(np.concatenate(picked))


@dataclass(frozen=True)
class CurvePoint:
    """The target's AUC over the draws of k training units (all crops / setups balanced / the fixed budget)."""

    target: str
    k: int
    auc_all: np.ndarray
    auc_balanced: np.ndarray
    auc_budget: np.ndarray


def curve(features: np.ndarray, labels: np.ndarray, units: np.ndarray, held: np.ndarray, target: str,
          ks: Sequence[int], draws: int, budget: int, seed: int, l2: float = PROBE_L2) -> list[CurvePoint]:
    """AUC on the `held` rows (the target left out whole) for each k in `ks` (capped at the number of
    units outside it), `draws` random sets of k of those units each."""
    rng = np.random.default_rng(seed)
    pool = sorted(set(units[~held].tolist()))
    rows_of = {u: np.nonzero(units == u)[0] for u in pool}
    labels_of = {u: set(labels[rows].tolist()) for u, rows in rows_of.items()}
    points = []
    for k in sorted({min(k, len(pool)) for k in ks}):
        auc_all, auc_balanced, auc_budget = [], [], []
        for _ in range(draws if k < len(pool) else 1):  # every unit: one draw is all there is
            chosen = draw_units(pool, k, labels_of, rng)
            every = np.concatenate([rows_of[u] for u in chosen])
            for rows, balanced, out in ((every, False, auc_all), (every, True, auc_balanced),
                                        (spread_budget(rows_of, chosen, budget, rng), False, auc_budget)):
                if len(set(labels[rows].tolist())) < 2:  # the budget left one label out: this draw says nothing
                    continue
                w, b = fit_logistic(features[rows], labels[rows], l2, units[rows] if balanced else None)
                out.append(roc_auc(labels[held], _sigmoid(features[held] @ w + b)))
        points.append(CurvePoint(target, k, *(np.array(a) for a in (auc_all, auc_balanced, auc_budget))))
    return points


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _summary(values: np.ndarray) -> str:
    if not len(values):
        return f"{'-':>21s}"
    low, high = np.percentile(values, [10, 90])
    return f"{values.mean():.3f} [{low:.3f}, {high:.3f}]"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: the table of AUC against the number of training setups (see the module docstring)."""
    from training.examples import examples_parser, parsed_examples
    from training.probe import stem_statistics

    parser = examples_parser(__doc__, size=56)
    parser.add_argument("--draws", type=_positive, default=40, help="random unit sets per k")
    parser.add_argument("--budget", type=_positive, default=600, help="crops of the fixed-budget column")
    parser.add_argument("--ks", type=_positive, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--seed", type=int, default=0)
    args, plain = parsed_examples(parser, argv)
    _, features = stem_statistics(plain.x, "mesh")
    units = np.array([capture_setup(g) for g in plain.group])
    folds = sample_folds(plain, by_setup=True)
    print(f"frozen face-mesh probe, AUC on the setup left out: mean [10th, 90th percentile] over {args.draws} draws")
    print(f"{'target':14s} {'k units':>7s} {'all crops':>21s} {'setups balanced':>21s} {f'at most {args.budget} crops':>21s}")
    for target in SETUP_TARGETS:
        for point in curve(features, plain.y, units, folds == target, target, args.ks, args.draws, args.budget, args.seed):
            print(f"{target:14s} {point.k:7d} {_summary(point.auc_all)} {_summary(point.auc_balanced)} "
                  f"{_summary(point.auc_budget)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
