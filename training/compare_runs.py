"""Compare leave-one-source-out runs fold by fold (same data, same folds).

    python -m training.compare_runs runs/loso runs/loso_seed8 runs/loso+runs/loso_seed8 runs/loso_seed8@flip

A run is an `evaluate --loso --out` folder. RUN+RUN averages the runs' scores fold by fold (what
`--ensemble` computes when the runs differ only in their seed); RUN@flip averages a run's scores
with its scores of the mirrored crops (what `--flip-average` computes); PROBE@gate (a `training.probe
--gate` folder) counts the probe only where its gate opened, elsewhere the other runs decide. Only folds that every run
has are compared. Prints the ROC AUC per fold, then per run the pooled AUC and EER, the threshold
with the lowest (APCER + BPCER) / 2 (`training.calibrate --min-acer`) and, at that threshold,
APCER / BPCER / ACER per group of sources (APCER over all attacks, as calibrate counts it);
`--threshold T` reports every run at T instead (a shipped model's threshold). Every run after the
first also gets, per group, its difference in AUC and ACER to the first run with a paired 95%
interval that resamples whole people or capture setups (metrics.cluster_bootstrap): a difference
whose interval holds 0 is one these folds cannot tell from a different draw of people.
`--sources S...` and `--origin-contains WORD...` add the figures of single sources and of the faces
whose file path holds a word (Replay-Attack's lightings: adverse, controlled); `--luminance` with
`--sources` each source's real faces' mean luminance against their mean score.
`--write-scores FILE` saves the last run's pooled out-of-fold scores in `evaluate`'s oof_scores.csv
form, so `training.calibrate --scores FILE` can set an ensemble's threshold from its members' runs.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from training import metrics
from training.calibrate import min_acer_threshold
from training.data import data_dir
from training.evaluate import SETUP_FOLDS, people_of, sample_folds, write_scores
from training.examples import Examples, load_dataset

# Groups of sources the figures are pooled over (the first is everything compared).
GROUPS: dict[str, Callable[[Examples], np.ndarray]] = {
    "all": lambda d: np.ones(len(d), dtype=bool),
    "full frames and videos": lambda d: np.isin(d.kind, ["frame", "video"]),
    "tight-crop sources": lambda d: d.kind == "crop",
    "NUAA": lambda d: d.source == "nuaa",
    "Replay-Attack devel": lambda d: d.group == "replay_attack_devel",
    "Replay-Attack train": lambda d: d.group == "replay_attack_train",
    "webcam sets": lambda d: np.char.startswith(d.source.astype(str), "webcam_"),
}


def fold_scores(spec: str, fold: str) -> np.ndarray | None:
    """Scores of one fold for a run spec (RUN, RUN+RUN..., RUN@flip, RUN+PROBE@gate); None when a run lacks the fold.

    The runs' scores are averaged face by face; a PROBE@gate part counts only for the faces its gate opened.
    """
    parts, weights = [], []
    for run in spec.split("+"):
        folder, _, option = run.partition("@")
        if option not in ("", "flip", "gate"):
            raise ValueError(f"{run}: unknown option @{option} (@flip or @gate)")
        names = [f"{fold}.csv"] + ([f"{fold}.flipped.csv"] if option == "flip" else [])
        paths = [Path(folder) / "folds" / name for name in names]
        gate_path = Path(folder) / "folds" / f"{fold}.gate.csv"
        if not all(path.is_file() for path in paths) or (option == "gate" and not gate_path.is_file()):
            return None
        scores = np.mean([np.loadtxt(path, delimiter=",", ndmin=1) for path in paths], axis=0)
        parts.append(scores)
        weights.append(np.loadtxt(gate_path, delimiter=",", ndmin=1) if option == "gate" else np.ones_like(scores))
    if not np.all(np.sum(weights, axis=0) > 0):
        raise ValueError(f"{spec}: a gated probe needs an ungated run beside it")
    return np.sum(np.multiply(weights, parts), axis=0) / np.sum(weights, axis=0)


def print_source(test: Examples, scores: np.ndarray, threshold: float, source: str) -> None:
    """One source's AUC and, per kind (crop / frame / video) and label, the share of its faces at or above `threshold`."""
    mask = test.source == source
    if not mask.any():
        print(f"  {source}: not among the compared folds")
        return
    y, s, kind = test.y[mask], scores[mask], test.kind[mask]
    auc = f"AUC {metrics.roc_auc(y, s):.3f}" if len(set(y.tolist())) == 2 else "one label only"
    shares = [f"{k} {'real' if label else 'fake'} {100 * np.mean(s[sel] >= threshold):.1f}% of {int(sel.sum())}"
              for k in sorted(set(kind.tolist())) for label in (1, 0) if (sel := (kind == k) & (y == label)).any()]
    print(f"  {source}: {auc}; called live: " + ", ".join(shares))


def print_origins(test: Examples, scores: np.ndarray, threshold: float, word: str) -> None:
    """AUC and share called live per label of the faces whose origin path contains `word` (e.g. a lighting in Replay-Attack's folder names)."""
    mask = np.char.find(test.origin.astype(str), word) >= 0
    if not mask.any():
        print(f"  origin *{word}*: no face among the compared folds")
        return
    y, s = test.y[mask], scores[mask]
    auc = f"AUC {metrics.roc_auc(y, s):.3f}" if len(set(y.tolist())) == 2 else "one label only"
    shares = [f"{'real' if label else 'fake'} {100 * np.mean(s[y == label] >= threshold):.1f}% of {int(np.sum(y == label))} "
              f"(mean score {s[y == label].mean():.3f})" for label in (1, 0) if np.any(y == label)]
    print(f"  origin *{word}*: {auc}; called live: " + ", ".join(shares))


def print_luminance(test: Examples, scores: np.ndarray, sources: Sequence[str]) -> None:
    """Per source, its real faces' mean luminance (first tile, 0-255, padding included) and mean score; their correlation over the sources."""
    levels = []
    for source in sources:
        real = (test.source == source) & (test.y == 1)
        if real.any():
            levels.append((test.x[real][..., :3].astype(np.float32).mean(), scores[real].mean()))
            print(f"  {source}: real faces' luminance {levels[-1][0]:.0f}, mean score {levels[-1][1]:.3f}")
    if len(levels) > 2:
        light, score = np.array(levels).T
        print(f"  correlation of real faces' luminance and mean score over {len(levels)} sources: {np.corrcoef(light, score)[0, 1]:.2f}")


def print_differences(test: Examples, people: np.ndarray, pooled: dict[str, tuple[np.ndarray, float]], base: str) -> None:
    """Per group, each run's AUC and ACER minus `base`'s, with paired 95% intervals over `people` (cluster bootstrap)."""
    base_scores, base_threshold = pooled[base]

    def acer(y: np.ndarray, s: np.ndarray, t: float) -> float:
        return 50 * (metrics.apcer(y, s, t) + metrics.bpcer(y, s, t))

    for spec, (scores, threshold) in pooled.items():
        if spec == base:
            continue
        print(f"\n{spec} minus {base}: paired 95% intervals over people or capture setups ({metrics.BOOTSTRAP_DRAWS} draws)")
        print(f"  {'group':24s} {'people':>6s} {'AUC':>24s} {'ACER (points)':>24s}")
        for group, select in GROUPS.items():
            mask = np.nonzero(select(test))[0]
            y = test.y[mask]
            if len(set(y.tolist())) < 2:
                continue
            new, old = scores[mask], base_scores[mask]

            def auc_gain(i: np.ndarray) -> float:
                return metrics.roc_auc(y[i], new[i]) - metrics.roc_auc(y[i], old[i])

            def acer_change(i: np.ndarray) -> float:
                return acer(y[i], new[i], threshold) - acer(y[i], old[i], base_threshold)

            whole = np.arange(len(mask))
            cells = []
            for statistic, digits in ((auc_gain, 3), (acer_change, 1)):
                low, high = metrics.cluster_bootstrap(people[mask], statistic)
                cells.append(f"{statistic(whole):+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]")
            print(f"  {group:24s} {len(set(people[mask].tolist())):6d} {cells[0]:>24s} {cells[1]:>24s}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="LOSO output folders; RUN+RUN averages, RUN@flip adds mirrored crops, "
                        "PROBE@gate counts a gated probe where its gate opened")
    parser.add_argument("-d", "--data", type=Path, default=data_dir(), help="the data set the runs used (default: %(default)s)")
    parser.add_argument("--write-scores", type=Path, default=None, metavar="FILE",
                        help="save the last run's pooled out-of-fold scores (oof_scores.csv form) to FILE")
    parser.add_argument("--threshold", type=float, default=None,
                        help="report every run at this threshold (e.g. a shipped model's) instead of its own lowest-ACER one")
    parser.add_argument("--sources", nargs="+", default=[], metavar="SOURCE",
                        help="also print these sources' AUC and share of faces called live, per kind and label, at each run's threshold")
    parser.add_argument("--luminance", action="store_true",
                        help="with --sources: each source's real faces' mean luminance and mean score, and their correlation")
    parser.add_argument("--origin-contains", nargs="+", default=[], metavar="WORD",
                        help="also print, per word, the AUC and share called live per label of the faces whose file path "
                             "contains it (e.g. adverse controlled: Replay-Attack's lightings)")
    parser.add_argument("--decimals", type=int, default=1, choices=range(1, 5), metavar="N",
                        help="digits after the point of the groups' APCER, BPCER and ACER (default 1; a rule's bar "
                             "of a tenth of a point needs more)")
    parser.add_argument("--folds", nargs="+", default=[], metavar="FOLD",
                        help="compare only these folds (default: every fold all runs have finished)")
    args = parser.parse_args(argv)

    first = Path(args.runs[0].split("+")[0].partition("@")[0])
    try:
        recipe = json.loads((first / "config.json").read_text())
    except (OSError, ValueError) as error:
        print(f"compare_runs: {first}/config.json: cannot read the run's recipe ({error})", file=sys.stderr)
        return 2
    data = load_dataset(args.data, recipe["size"], recipe["scales"], crop_resize=recipe.get("crop_resize", "area"),
                        crop_border=recipe.get("crop_border", "black"))
    fold_files = [f.name.split(".")[0] for f in (first / "folds").glob("*.csv")]
    nuaa_split = any(name.startswith("nuaa_subjects") for name in fold_files)
    by_setup = any(name in SETUP_FOLDS.values() for name in fold_files)  # an `evaluate --by-setup` run
    folds = sample_folds(data, nuaa_by_subject=nuaa_split, by_setup=by_setup)
    scored = data.variant == 0  # LOSO scores detector boxes only, in data order within each fold

    names = sorted(set(fold_files))
    if args.folds:  # e.g. one stage's folds of runs that have since gone on to others
        missing = sorted(set(args.folds) - set(names))
        if missing:
            print(f"compare_runs: {first}/folds: no fold {', '.join(missing)} (it has {', '.join(names) or 'none'})",
                  file=sys.stderr)
            return 2
        names = sorted(set(args.folds))
    per_run: dict[str, dict[str, np.ndarray]] = {spec: {} for spec in args.runs}
    for fold in names:
        try:
            found = {spec: fold_scores(spec, fold) for spec in args.runs}
        except ValueError as error:
            print(f"compare_runs: {error}", file=sys.stderr)
            return 2
        if args.folds and any(scores is None for scores in found.values()):  # asked for by name: never dropped quietly
            unfinished = ", ".join(spec for spec, scores in found.items() if scores is None)
            print(f"compare_runs: fold {fold} is not finished in {unfinished}", file=sys.stderr)
            return 2
        if all(scores is not None for scores in found.values()):
            faces = int(np.sum((folds == fold) & scored))
            for spec, scores in found.items():
                if len(scores) != faces:  # a run made on other data, or another fold split
                    print(f"compare_runs: {spec}: fold {fold} has {len(scores)} scores for the {faces} faces of "
                          f"{args.data} in that fold", file=sys.stderr)
                    return 2
                per_run[spec][fold] = scores
    common = sorted(next(iter(per_run.values())))
    if not common:
        print("compare_runs: the runs share no finished fold", file=sys.stderr)
        return 2

    print("ROC AUC per fold")
    print(f"{'fold':24s}" + "".join(f"  {spec}" for spec in args.runs))
    for fold in common:
        labels = data.y[(folds == fold) & scored]
        print(f"{fold:24s}" + "".join(f"  {metrics.roc_auc(labels, per_run[spec][fold]):{len(spec)}.3f}" for spec in args.runs))

    held = np.isin(folds, common) & scored
    test = data.subset(held)
    pooled: dict[str, tuple[np.ndarray, float]] = {}  # per run: its pooled scores and the threshold it is reported at
    people = people_of(test)
    for spec in args.runs:
        scores = np.full(len(data), np.nan)
        for fold in common:
            scores[(folds == fold) & scored] = per_run[spec][fold]
        scores = scores[held]
        own = min_acer_threshold(test.y, scores)
        threshold = own if args.threshold is None else args.threshold
        print(f"\n{spec}: pooled AUC {metrics.roc_auc(test.y, scores):.3f}, EER {100 * metrics.eer(test.y, scores)[0]:.1f}%, "
              f"lowest (APCER + BPCER) / 2 at threshold {own:.4f}" + ("" if args.threshold is None else f"; reported at {threshold:.4f}"))
        print(f"  {'group':24s} {'real':>5s} {'attack':>6s} {'APCER':>6s} {'BPCER':>6s} {'ACER':>6s} {'AUC':>6s}"
              f"  {'ACER 95% over people':>20s}")
        for group, select in GROUPS.items():
            mask = select(test)
            y, s = test.y[mask], scores[mask]
            if len(set(y.tolist())) < 2:
                continue
            apcer, bpcer = metrics.apcer(y, s, threshold), metrics.bpcer(y, s, threshold)
            low, high = metrics.cluster_bootstrap(
                people[mask], lambda i: 50 * (metrics.apcer(y[i], s[i], threshold) + metrics.bpcer(y[i], s[i], threshold)))
            d = args.decimals
            print(f"  {group:24s} {int(y.sum()):5d} {int((1 - y).sum()):6d} {100 * apcer:6.{d}f} {100 * bpcer:6.{d}f} "
                  f"{50 * (apcer + bpcer):6.{d}f} {metrics.roc_auc(y, s):6.3f}  {f'{low:.1f}-{high:.1f}':>20s}")
        for source in args.sources:
            print_source(test, scores, threshold, source)
        if args.luminance:
            print_luminance(test, scores, args.sources)
        for word in args.origin_contains:
            print_origins(test, scores, threshold, word)
        pooled[spec] = scores, threshold
    if len(args.runs) > 1:
        print_differences(test, people, pooled, args.runs[0])
    if args.write_scores is not None:
        write_scores(args.write_scores, test, scores, folds[held])
        print(f"\n{args.runs[-1]}: pooled out-of-fold scores of {len(scores)} faces -> {args.write_scores}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
