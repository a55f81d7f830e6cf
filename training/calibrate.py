"""Pick the model's decision threshold on development data and write it into its metadata.

    python -m training.calibrate --model models/liveness.onnx --data DEV_DATA --target-apcer 0.05
    python -m training.calibrate --model models/liveness.onnx --scores runs/loso/oof_scores.csv --target-apcer 0.05
    python -m training.calibrate --model models/liveness.onnx --scores runs/loso_7/oof_scores.csv runs/loso_8/oof_scores.csv --min-acer

With `--data` the model scores the development faces itself; with `--scores` the threshold is
chosen on pooled out-of-fold scores of a leave-one-source-out run (training.evaluate --loso),
which estimate how the recipe scores people it has never seen; several runs' files (e.g. one
per seed) are pooled, which gives the threshold that suits a single network of the recipe
rather than one seed's draw. The threshold is the lowest
one whose APCER (worst attack type with --per-attack) is at most the target, so BPCER is as
low as that allows.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training import metrics


def choose_threshold(labels: np.ndarray, scores: np.ndarray, target_apcer: float, attacks: np.ndarray | None = None) -> float:
    """Lowest threshold with APCER <= target_apcer (for every attack type when `attacks` is given)."""
    if attacks is None:
        return metrics.threshold_at_apcer(labels, scores, target_apcer)
    per_type = [metrics.threshold_at_apcer(labels[(attacks == kind) | (labels == 1)], scores[(attacks == kind) | (labels == 1)], target_apcer)
                for kind in sorted(set(attacks[labels == 0].tolist()))]
    return float(max(per_type))


def min_acer_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold with the lowest (APCER + BPCER) / 2 (ties: the highest such threshold)."""
    thresholds, ap, bp = metrics.error_curve(labels, scores)
    total = ap + bp
    best = np.nonzero(total <= total.min() + 1e-12)[0]
    return float(thresholds[best[-1]])


def write_threshold(model_path: Path, threshold: float, policy: str, per_source: dict | None = None) -> None:
    """Store a new threshold (and how it was chosen) in the model's metadata; with `per_source`, also
    each source's out-of-fold figures at that threshold (metadata.training["loso"])."""
    from liveness.metadata import write_metadata
    from liveness.model import LivenessModel

    meta = LivenessModel(model_path).metadata
    training = {**meta.training, "loso": per_source} if per_source is not None else meta.training
    write_metadata(model_path, dataclasses.replace(meta, threshold=float(threshold), threshold_policy=policy, training=training))


def source_figures(path: Path, threshold: float) -> dict[str, dict[str, float]]:
    """APCER, BPCER and AUC per source of a scores CSV at `threshold` (nan where a label is missing)."""
    import csv

    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = {}
    for source in sorted({r["source"] for r in rows}):
        mine = [r for r in rows if r["source"] == source]
        labels = np.array([1 if r["label"] == "real" else 0 for r in mine])
        scores = np.array([float(r["score"]) for r in mine])
        both = len(set(labels.tolist())) == 2
        out[source] = {"apcer": round(metrics.apcer(labels, scores, threshold), 4) if (labels == 0).any() else None,
                       "bpcer": round(metrics.bpcer(labels, scores, threshold), 4) if (labels == 1).any() else None,
                       "auc": round(metrics.roc_auc(labels, scores), 4) if both else None, "faces": len(mine)}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", required=True, type=Path, help="ONNX model whose metadata gets the threshold")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-d", "--data", type=Path, help="development data (folder/manifest or gather_examples output)")
    source.add_argument("-s", "--scores", type=Path, nargs="+", help="scores CSV(s) (e.g. LOSO oof_scores.csv), pooled")
    parser.add_argument("--target-apcer", type=float, default=0.05)
    parser.add_argument("--per-attack", action="store_true", help="target holds for every attack type (print, replay, ...)")
    parser.add_argument("--min-acer", action="store_true", help="instead of a target APCER, minimise (APCER + BPCER) / 2")
    parser.add_argument("--dry-run", action="store_true", help="print the threshold, do not write it")
    args = parser.parse_args(argv)

    from training.evaluate import read_scores

    if args.scores is not None:
        runs = [read_scores(path) for path in args.scores]
        labels, scores, attacks = (np.concatenate(parts) for parts in zip(*runs))
        names = ", ".join(f"{path.parent.name}/{path.name}" for path in args.scores)
        where = f"pooled out-of-fold scores ({names}: each face scored by a model that never saw its fold)"
    else:
        from liveness.model import LivenessModel
        from training.evaluate import scores_from_model
        from training.examples import load_dataset

        meta = LivenessModel(args.model).metadata
        try:
            data = load_dataset(args.data, meta.input_size, list(meta.crop_scales), include_jitter=False, crop_resize=meta.crop_resize,
                                crop_border=meta.crop_border)
        except ValueError as error:  # a gathered folder of other crops
            print(f"calibrate: {error}", file=sys.stderr)
            return 2
        labels, scores, attacks = data.y, scores_from_model(args.model, data), data.attack
        where = f"development data {args.data.name}"
    if args.min_acer:
        threshold = min_acer_threshold(labels, scores)
        policy = f"lowest ACER on {where}"
    else:
        threshold = choose_threshold(labels, scores, args.target_apcer, attacks if args.per_attack else None)
        scope = "every attack type" if args.per_attack else "all attacks"
        policy = f"APCER <= {args.target_apcer:g} ({scope}) on {where}"
    threshold = float(min(max(threshold, 0.0), 1.0))
    figures = metrics.summary(labels, scores, threshold, attacks)
    # ACER counts the worst attack type's APCER (ISO/IEC 30107-3), so name it beside the pooled APCER
    per_type = metrics.apcer_by_attack(labels, scores, attacks, threshold)
    worst = max(per_type, key=per_type.__getitem__) if per_type else None
    worst_text = f" (worst attack type {worst}: {100 * per_type[worst]:.1f}%)" if worst is not None and len(per_type) > 1 else ""
    print(f"threshold {threshold:.4f}: APCER {100 * figures['apcer']:.1f}%{worst_text}  BPCER {100 * figures['bpcer']:.1f}%  "
          f"ACER {100 * figures['acer']:.1f}%  ({policy})")
    if not args.dry_run:
        per_source = None
        if args.scores is not None and len(args.scores) == 1:
            per_source = source_figures(args.scores[0], threshold)
        write_threshold(args.model, threshold, policy, per_source)
        print(f"wrote threshold into {args.model}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
