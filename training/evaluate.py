"""Evaluate a liveness model in the field's terms, or estimate a recipe on setups it never saw (LOSO).

    python -m training.evaluate --model models/liveness.onnx --data ../shared/data --out runs/eval [--stress]
    python -m training.evaluate --loso --data ../shared/data --out runs/loso [--recipe configs/recipes/2.0.yaml]

Plain mode scores every detector-box crop of the data with the ONNX model (through LivenessModel,
as the classify stage does) and reports APCER per attack type, BPCER and ACER at the model's
threshold, EER, ROC AUC and BPCER at APCER=5%, overall and per source, with 95% intervals over
people and ROC / histogram PNGs; `--stress` adds blurred, downscaled, JPEG-damaged and drawn
face-mask copies.

`--loso` trains the recipe once per fold and scores the fold it left out. `--by setup` (default)
leaves whole capture setups out (training.data.SETUP_FOLDS: all of NUAA, all of Replay-Attack,
the webcam sets, the newest sources, ...), the honest stand-in for a camera never seen; `--by
source` leaves one source group out at a time (new people, known setups). It prints each fold's
AUC and ACER, the threshold each fold alone would want (their spread is what a new site can
expect) and writes the out-of-fold scores to `oof_scores.csv` for training.calibrate. With a
frozen backbone (the recipe's epochs: 0) the features are computed once and only the head is
refitted per fold: minutes, not hours.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training import metrics
from training.augment import background_people, background_screens, surgical_masks
from training.data import OTHER_FOLD, TARGET_FOLDS, setup_fold
from training.examples import DatasetError, Examples, load_dataset, person_of


def scores_from_model(model_path: Path, data: Examples) -> np.ndarray:
    """P(real) of every crop stack through LivenessModel (onnxruntime, one thread)."""
    from liveness.model import LivenessModel

    model = LivenessModel(model_path, threads=1)
    x = data.x
    if model.metadata.channel_order == "BGR":  # Examples hold RGB tiles
        x = x.reshape(*x.shape[:3], -1, 3)[..., ::-1].reshape(x.shape)
    return np.concatenate([model.predict_crops(x[i : i + 256]) for i in range(0, len(x), 256)]) if len(x) else np.zeros(0)


def _fmt(value: float) -> str:
    return "  n/a" if value != value else f"{100 * value:5.1f}"


def people_of(data: Examples) -> np.ndarray:
    """Every sample's person or capture setup (examples.person_of): what confidence intervals resample."""
    return np.array([person_of(source, origin) for source, origin in zip(data.source, data.origin)], dtype=str)


def intervals(data: Examples, scores: np.ndarray, threshold: float) -> dict[str, object]:
    """95% intervals of ACER (worst attack type) and ROC AUC, resampling whole people (metrics.cluster_bootstrap)."""
    people = people_of(data)
    acer = metrics.cluster_bootstrap(people, lambda i: metrics.acer(data.y[i], scores[i], threshold, data.attack[i]))
    auc = metrics.cluster_bootstrap(people, lambda i: metrics.roc_auc(data.y[i], scores[i]))
    return {"people": len(set(people.tolist())), "acer_ci95": list(acer), "auc_ci95": list(auc)}


def interval_line(f: dict) -> str:
    """One sentence with the "all" row's intervals (empty when there are none)."""
    if "acer_ci95" not in f or f["acer_ci95"][0] != f["acer_ci95"][0]:
        return ""
    (a, b), (c, d) = f["acer_ci95"], f["auc_ci95"]
    return (f"All: 95% interval over {f['people']} people or capture setups drawn with replacement "
            f"({metrics.BOOTSTRAP_DRAWS} draws): ACER {100 * a:.1f}-{100 * b:.1f}%, AUC {c:.3f}-{d:.3f}.")


def report(data: Examples, scores: np.ndarray, threshold: float, title: str) -> tuple[str, dict]:
    """A text table (overall, per attack type, per source) and the same figures as a dict.

    The overall row also gets 95% intervals that resample whole people (`intervals`).
    """
    figures: dict[str, dict] = {"all": metrics.summary(data.y, scores, threshold, data.attack)}
    figures["all"].update(intervals(data, scores, threshold))
    lines = [f"{title}: threshold {threshold:.4f}  (figures in %, AUC as a fraction)"]
    head = f"{'source':<28}{'real':>6}{'fake':>6}{'APCER':>7}{'BPCER':>7}{'ACER':>7}{'EER':>7}{'AUC':>7}{'BPCER@5':>9}  APCER per attack"
    lines.append(head)
    keys = ["all"] + sorted(set(data.source.tolist()))
    for key in keys:
        if key != "all":
            mask = data.source == key
            figures[key] = metrics.summary(data.y[mask], scores[mask], threshold, data.attack[mask])
        f = figures[key]
        per_type = ", ".join(f"{k[6:]} {_fmt(v).strip()}" for k, v in f.items() if k.startswith("apcer_"))
        auc = "  n/a" if f["auc"] != f["auc"] else f"{f['auc']:.3f}"
        lines.append(f"{key:<28}{f['n_real']:>6}{f['n_attack']:>6}{_fmt(f['apcer']):>7}{_fmt(f['bpcer']):>7}{_fmt(f['acer']):>7}"
                     f"{_fmt(f['eer']):>7}{auc:>7}{_fmt(f['bpcer_at_apcer5']):>9}  {per_type}")
    if interval_line(figures["all"]):
        lines.append(interval_line(figures["all"]))
    return "\n".join(lines), figures


def markdown_table(figures: dict[str, dict], threshold: float) -> str:
    """The per-source figures as a Markdown table (for the model card)."""
    lines = [f"| source | real | attacks | APCER | BPCER | ACER | EER | AUC | BPCER@APCER5% |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, f in figures.items():
        auc = "n/a" if f["auc"] != f["auc"] else f"{f['auc']:.3f}"
        lines.append(f"| {key} | {f['n_real']} | {f['n_attack']} | {_fmt(f['apcer']).strip()} | {_fmt(f['bpcer']).strip()} | "
                     f"{_fmt(f['acer']).strip()} | {_fmt(f['eer']).strip()} | {auc} | {_fmt(f['bpcer_at_apcer5']).strip()} |")
    note = interval_line(figures.get("all", {}))
    return f"At threshold {threshold:.4f}; figures in %." + (f" {note}" if note else "") + "\n\n" + "\n".join(lines)


def save_plots(labels: np.ndarray, scores: np.ndarray, threshold: float, out: Path, title: str) -> None:
    """roc.png (BPCER against APCER, log-free) and histogram.png (P(real) per class, threshold marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    _, ap, bp = metrics.error_curve(labels, scores)
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot(ap, 1 - bp, label=f"AUC {metrics.roc_auc(labels, scores):.3f}")
    axis.plot([0, 1], [0, 1], ":", color="grey")
    axis.scatter([metrics.apcer(labels, scores, threshold)], [1 - metrics.bpcer(labels, scores, threshold)], color="red",
                 label=f"threshold {threshold:.3f}", zorder=3)
    axis.set_xlabel("APCER (attacks accepted)")
    axis.set_ylabel("1 - BPCER (real faces accepted)")
    axis.set_title(title)
    axis.legend(loc="lower right")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out / "roc.png", dpi=100)
    plt.close(figure)
    figure, axis = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 1, 41)
    axis.hist(scores[labels == 1], bins=bins, alpha=0.6, label="real")
    axis.hist(scores[labels == 0], bins=bins, alpha=0.6, label="attack")
    axis.axvline(threshold, color="red", linestyle="--", label=f"threshold {threshold:.3f}")
    axis.set_xlabel("P(real)")
    axis.set_ylabel("faces")
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    figure.savefig(out / "histogram.png", dpi=100)
    plt.close(figure)


def stress_report(model_path: Path, data: Examples, threshold: float) -> str:
    """BPCER of real faces and APCER of attacks after quality damage, or a drawing, on every crop.

    Many training attacks are smaller and blurrier than the real faces; a model that learned
    "blurry = fake" rejects real faces from a poor camera. This shows how far scores move. The
    drawn surgical mask (augment.surgical_masks) stands in for masked people, whom the data does
    not hold; the drawn switched-off screen beside the face (augment.background_screens) for a
    television or dark chair back behind a real person; another face of the set pasted beside each
    face (augment.background_people) for people standing behind. All use the same draws every run.
    """
    import cv2

    def damaged(x: np.ndarray, how: str) -> np.ndarray:
        out = x.copy()
        size = x.shape[1]
        for i in range(len(x)):
            for j in range(x.shape[3] // 3):
                tile = np.ascontiguousarray(x[i, :, :, 3 * j : 3 * j + 3])
                if how == "blur":
                    tile = cv2.GaussianBlur(tile, (0, 0), 1.0)
                elif how == "downscale":
                    tile = cv2.resize(cv2.resize(tile, (size // 2, size // 2), interpolation=cv2.INTER_AREA), (size, size))
                else:
                    ok, enc = cv2.imencode(".jpg", tile, [cv2.IMWRITE_JPEG_QUALITY, 30])
                    tile = cv2.imdecode(enc, cv2.IMREAD_COLOR)
                out[i, :, :, 3 * j : 3 * j + 3] = tile
        return out

    def drawn(x: np.ndarray, draw) -> np.ndarray:
        out = x.copy()
        draw(out, np.arange(len(out)), data.scales, np.random.default_rng(0))
        return out

    drawings = {"face mask": surgical_masks, "screen": background_screens, "bystander": background_people}

    lines = [f"quality stress at threshold {threshold:.4f}: {'damage':<12}{'BPCER':>7}{'APCER':>7}{'mean P(real) real':>19}{'attack':>8}"]
    for how in ("none", "blur", "downscale", "jpeg30", *drawings):
        x = data.x if how == "none" else drawn(data.x, drawings[how]) if how in drawings else damaged(data.x, how)
        copy = dataclasses.replace(data, x=x)
        s = scores_from_model(model_path, copy)
        lines.append(f"{'':<40}{how:<12}{_fmt(metrics.bpcer(data.y, s, threshold)):>7}{_fmt(metrics.apcer(data.y, s, threshold)):>7}"
                     f"{s[data.y == 1].mean():>19.3f}{s[data.y == 0].mean():>8.3f}")
    return "\n".join(lines)


def write_scores(path: Path, data: Examples, scores: np.ndarray, folds: Sequence[str] | None = None) -> None:
    """One row per face: origin, frame-free identity fields, label, attack, score (and LOSO fold)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["origin", "source", "group", "label", "attack", "kind", "score", "fold"])
        for i in range(len(data)):
            writer.writerow([data.origin[i], data.source[i], data.group[i], "real" if data.y[i] else "fake",
                             data.attack[i], data.kind[i], f"{scores[i]:.6f}", folds[i] if folds is not None else ""])


def read_scored(path: Path) -> tuple[Examples, np.ndarray, np.ndarray]:
    """(the faces, without pixels, their scores, their folds) of a write_scores CSV."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    column = lambda name: np.array([r[name] for r in rows])  # noqa: E731
    data = Examples(np.zeros((len(rows), 1, 1, 3), np.uint8), (column("label") == "real").astype(np.int64), column("source"),
                    column("group"), column("attack"), column("kind"), column("origin"), np.zeros(len(rows), np.int64), 1, [1.0])
    return data, column("score").astype(np.float64), column("fold")


def combine(folders: Sequence[Path]) -> tuple[Examples, np.ndarray, np.ndarray]:
    """The mean out-of-fold score of several LOSO runs over the same faces (what a model averaging
    their recipes scores out of fold); ValueError when the runs scored different faces."""
    runs = [read_scored(folder / "oof_scores.csv") for folder in folders]
    data, _, folds = runs[0]
    for other, _, other_folds in runs[1:]:
        if list(other.origin) != list(data.origin) or list(other_folds) != list(folds):
            raise ValueError(f"{folders[0]} and the others scored different faces or folds")
    return data, np.mean([scores for _, scores, _ in runs], axis=0), folds


def read_scores(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, scores, attacks) from a write_scores CSV."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    labels = np.array([1 if r["label"] == "real" else 0 for r in rows])
    return labels, np.array([float(r["score"]) for r in rows]), np.array([r["attack"] for r in rows])


def sample_folds(data: Examples, by: str = "setup") -> np.ndarray:
    """The LOSO fold of every sample: its setup fold (training.data.SETUP_FOLDS), or its source group
    with NUAA split by person (subjects 1-4 and 5-9: new people of a known print setup)."""
    if by == "setup":
        return np.array([setup_fold(source) for source in data.source])
    folds = np.array([str(group) for group in data.group], dtype=object)
    for i in np.nonzero(data.source == "nuaa")[0]:
        subject = Path(str(data.origin[i])).name.split("_")[0]
        folds[i] = "nuaa_subjects_1-4" if subject.isdigit() and int(subject) <= 4 else "nuaa_subjects_5-9"
    return folds.astype(str)


def site_decisions(features: np.ndarray, data: Examples, rows: np.ndarray, prior: tuple[np.ndarray, float]) -> np.ndarray:
    """Decisions (1 real, 0 fake) on a left-out fold's faces after training.adapt's step on its other people.

    The fold's people are split in two halves (alternately; by label where a half would lack one);
    the head is refitted on one half exactly as training.adapt does (pulled toward the fold's own
    head `prior`, threshold in the middle of the fewest errors) and decides the other half, then the
    other way round. nan where a half lacks a label.
    """
    from training.adapt import ADAPT_L2, middle_threshold
    from training.logistic import fit_logistic, sigmoid

    people, labels = people_of(data)[rows], data.y[rows]
    names = sorted(set(people.tolist()))
    half = np.array([names.index(p) % 2 for p in people])
    if any(len(set(labels[half == h].tolist())) < 2 for h in (0, 1)):
        for label in (1, 0):  # people with one label each (a webcam set's real and fake people differ)
            mine = sorted(set(people[labels == label].tolist()))
            for k, name in enumerate(mine):
                half[people == name] = k % 2
    out = np.full(len(rows), np.nan)
    for h in (0, 1):
        fit_on, decide = rows[half == h], half != h
        if len(set(data.y[fit_on].tolist())) < 2:
            continue
        w, b = fit_logistic(features[fit_on], data.y[fit_on], ADAPT_L2, prior=prior)
        threshold = middle_threshold(data.y[fit_on], sigmoid(features[fit_on] @ w + b))
        out[decide] = (sigmoid(features[rows[decide]] @ w + b) >= threshold).astype(float)
    return out


def loso(data: Examples, recipe, weights, by: str = "setup", folds: Sequence[str] | None = None,
         log=lambda line: print(line, file=sys.stderr)) -> tuple[Examples, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(the scored faces, their out-of-fold P(real), the same with a drawn face mask, their fold, and
    their decision after site adaptation on the fold's other people: site_decisions).

    Every fold named (default all) is left out in turn: the recipe is trained on the rest (all box
    jitter copies) and scores the fold's detector-box crops, bare and with a surgical mask drawn
    (augment.surgical_masks, fixed draws): the stand-in for masked people, whom the data lacks.
    """
    from training.logistic import sigmoid
    from training.train import embed, fit, fit_head, masked_copies, new_model, predict, quiet_tensorflow

    quiet_tensorflow()
    fold_of = sample_folds(data, by)
    chosen = list(folds) if folds else sorted(set(fold_of.tolist()))
    scored = np.isin(fold_of, chosen) & (data.variant == 0)
    scores, masked_scores, site = np.full(len(data), np.nan), np.full(len(data), np.nan), np.full(len(data), np.nan)
    masked_x = data.x.copy()
    surgical_masks(masked_x, np.nonzero(scored)[0], data.scales, np.random.default_rng(0))
    features = None
    if recipe.epochs == 0:  # frozen backbone: the same features in every fold
        started = time.time()
        model = new_model(recipe, weights)
        features = embed(model, masked_copies(data, recipe.mask_p, np.random.default_rng(recipe.seed)))
        masked_features = np.zeros_like(features)
        masked_features[scored] = embed(model, masked_x[scored])
        log(f"features of {len(data)} crops and {int(scored.sum())} masked copies ({time.time() - started:.0f} s)")
    for fold in chosen:
        train, test = fold_of != fold, scored & (fold_of == fold)
        if len(set(data.y[train].tolist())) < 2 or not test.any():
            log(f"fold {fold}: skipped (the rest lacks a label, or the fold has no face)")
            continue
        if features is not None:
            fit_head(model, features[train], data.subset(train), recipe)
            kernel, bias = model.get_layer("liveness").get_weights()
            scores[test] = sigmoid(features[test] @ kernel[:, 1].astype(np.float64) + float(bias[1]))
            masked_scores[test] = sigmoid(masked_features[test] @ kernel[:, 1].astype(np.float64) + float(bias[1]))
            site[test] = site_decisions(features, data, np.nonzero(test)[0], (kernel[:, 1].astype(np.float64), float(bias[1])))
        else:
            fold_model, _ = fit(data.subset(train), recipe, weights, log)
            scores[test] = predict(fold_model, data.x[test])
            masked_scores[test] = predict(fold_model, masked_x[test])
            fold_features = np.zeros((len(data), embed(fold_model, data.x[:1]).shape[1]))
            fold_features[test] = embed(fold_model, data.x[test])
            kernel, bias = fold_model.get_layer("liveness").get_weights()
            site[test] = site_decisions(fold_features, data, np.nonzero(test)[0], (kernel[:, 1].astype(np.float64), float(bias[1])))
        log(f"fold {fold}: {int(test.sum())} faces, AUC {metrics.roc_auc(data.y[test], scores[test]):.3f}")
    keep = scored & ~np.isnan(scores)
    return data.subset(keep), scores[keep], masked_scores[keep], fold_of[keep], site[keep]


def fold_table(data: Examples, scores: np.ndarray, folds: np.ndarray, threshold: float,
               masked: np.ndarray | None = None, site: np.ndarray | None = None) -> tuple[str, dict]:
    """Per fold: faces, AUC, APCER / BPCER / ACER at `threshold`, the fold's own lowest-ACER threshold,
    and with `masked` scores BPCER of the real faces with a drawn mask and the AUC of masked faces."""
    from training.calibrate import min_acer_threshold

    lines = [f"{'fold':<16}{'real':>6}{'fake':>6}{'AUC':>7}{'APCER':>7}{'BPCER':>7}{'ACER':>7}{'own thr':>9}"
             + (f"{'masked: BPCER':>15}{'AUC':>7}" if masked is not None else "")
             + (f"{'site: APCER':>13}{'BPCER':>7}{'ACER':>7}" if site is not None else "") + "  AUC 95% over people"]
    people = people_of(data)
    figures: dict[str, dict] = {}
    for fold in [*[f for f in TARGET_FOLDS if f in folds], *sorted(set(folds.tolist()) - set(TARGET_FOLDS)), "all"]:
        mask = np.ones(len(folds), bool) if fold == "all" else folds == fold
        y, s, a = data.y[mask], scores[mask], data.attack[mask]
        both = len(set(y.tolist())) == 2
        f = {"real": int(y.sum()), "fake": int((1 - y).sum()), "auc": metrics.roc_auc(y, s) if both else float("nan"),
             "apcer": max(metrics.apcer_by_attack(y, s, a, threshold).values()) if both else float("nan"),
             "bpcer": metrics.bpcer(y, s, threshold) if y.any() else float("nan"),
             "acer": metrics.acer(y, s, threshold, a) if both else float("nan"),
             "own_threshold": min_acer_threshold(y, s) if both else float("nan")}
        extra = ""
        if masked is not None:
            m = masked[mask]
            f["masked_bpcer"] = metrics.bpcer(y, m, threshold) if y.any() else float("nan")
            f["masked_auc"] = metrics.roc_auc(y, m) if both else float("nan")
            masked_auc = "  n/a" if f["masked_auc"] != f["masked_auc"] else f"{f['masked_auc']:.3f}"
            extra = f"{_fmt(f['masked_bpcer']):>15}{masked_auc:>7}"
        if site is not None:
            d, known = site[mask], ~np.isnan(site[mask])
            real, fake = known & (y == 1), known & (y == 0)
            f["site_apcer"] = float(np.mean(d[fake] == 1)) if fake.any() else float("nan")
            f["site_bpcer"] = float(np.mean(d[real] == 0)) if real.any() else float("nan")
            f["site_acer"] = (f["site_apcer"] + f["site_bpcer"]) / 2
            extra += f"{_fmt(f['site_apcer']):>13}{_fmt(f['site_bpcer']):>7}{_fmt(f['site_acer']):>7}"
        where = np.nonzero(mask)[0]
        f["auc_ci95"] = list(metrics.cluster_bootstrap(people[where], lambda i: metrics.roc_auc(y[i], s[i]))) if both else [float("nan")] * 2
        low, high = f["auc_ci95"]
        interval = f"  {low:.3f}-{high:.3f} ({len(set(people[where].tolist()))})" if low == low else "  n/a (one person or setup)"
        figures[fold] = f
        auc = "  n/a" if f["auc"] != f["auc"] else f"{f['auc']:.3f}"
        own = "     n/a" if f["own_threshold"] != f["own_threshold"] else f"{f['own_threshold']:.4f}"
        lines.append(f"{fold:<16}{f['real']:>6}{f['fake']:>6}{auc:>7}{_fmt(f['apcer']):>7}{_fmt(f['bpcer']):>7}{_fmt(f['acer']):>7}{own:>9}{extra}{interval}")
    owns = [figures[f]["own_threshold"] for f in figures if f != "all" and figures[f]["own_threshold"] == figures[f]["own_threshold"]]
    if owns:
        lines.append(f"thresholds the folds would choose alone: {min(owns):.4f} to {max(owns):.4f} "
                     f"(at {threshold:.4f}: APCER is the worst attack type's, figures in %)")
    if site is not None:
        lines.append("site: each fold's people in two halves; training.adapt's step on one half decides the other "
                     "(overall APCER, figures in %)")
    return "\n".join(lines), figures


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    from training.recipe import DEFAULT_RECIPE, RecipeError, load_recipe, recipe_from_dict

    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--data", type=Path, default=None, help="data folder / manifest, real/ + fake/ folders, or gathered folder")
    parser.add_argument("-m", "--model", type=Path, default=None, help="ONNX model to evaluate (plain mode)")
    parser.add_argument("-o", "--out", type=Path, default=Path("runs/eval"), help="folder for report.txt, figures.json, PNGs, scores")
    parser.add_argument("--groups", nargs="*", default=[], help="plain mode: only these source groups")
    parser.add_argument("--stress", action="store_true", help="plain mode: also score damaged and face-masked copies")
    parser.add_argument("--loso", action="store_true", help="leave folds out and train the recipe on the rest")
    parser.add_argument("--by", choices=("setup", "source"), default="setup", help="--loso: leave out whole setups or single sources")
    parser.add_argument("--recipe", type=Path, default=None, help="--loso: recipe YAML (default: the --model's own, else %s)" % DEFAULT_RECIPE.name)
    parser.add_argument("--folds", nargs="*", default=[], help="--loso: only these folds (default all)")
    parser.add_argument("--combine", type=Path, nargs="+", default=None, metavar="LOSO_DIR",
                        help="instead of training: the mean score of earlier --loso runs (their oof_scores.csv), per fold")
    parser.add_argument("--threshold", type=float, default=None, help="threshold for the figures (default: the model's, else the pooled lowest-ACER one)")
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"evaluate: {message}", file=sys.stderr)
        return 2

    if args.combine:
        from training.calibrate import min_acer_threshold

        try:
            test, scores, folds = combine(args.combine)
        except (OSError, ValueError) as error:
            return fail(f"--combine: {error}")
        threshold = args.threshold if args.threshold is not None else min_acer_threshold(test.y, scores)
        table, figures = fold_table(test, scores, folds, threshold)
        args.out.mkdir(parents=True, exist_ok=True)
        write_scores(args.out / "oof_scores.csv", test, scores, folds)
        (args.out / "figures.json").write_text(json.dumps({"threshold": threshold, "folds": figures,
                                                             "combined": [str(f) for f in args.combine]}, indent=1))
        text = f"mean of {', '.join(map(str, args.combine))}, threshold {threshold:.4f}\n{table}"
        (args.out / "report.txt").write_text(text + "\n")
        print(text)
        return 0
    if not args.loso and args.model is None:
        return fail("give --model (evaluate a model), --loso (estimate a recipe) or --combine")
    if args.data is None:
        return fail("--data is needed with --model and --loso")
    try:
        if args.model is not None:
            from liveness.model import LivenessModel, ModelError

            try:
                meta = LivenessModel(args.model).metadata
            except ModelError as error:
                return fail(str(error))
        if args.loso:
            if args.recipe is not None or args.model is None:
                recipe = load_recipe(args.recipe or DEFAULT_RECIPE)
            else:
                recipe = recipe_from_dict(meta.training.get("recipe", {}), f"{args.model} metadata")
            size, scales, resize, border = recipe.size, recipe.scales, recipe.crop_resize, recipe.crop_border
        else:
            size, scales, resize, border = meta.input_size, list(meta.crop_scales), meta.crop_resize, meta.crop_border
        data = load_dataset(args.data, size, scales, jitter=recipe.jitter if args.loso else 2, include_jitter=args.loso,
                            crop_resize=resize, crop_border=border)
    except (RecipeError, DatasetError) as error:
        return fail(str(error))
    args.out.mkdir(parents=True, exist_ok=True)
    if args.loso:
        from training.calibrate import min_acer_threshold
        from training.train import load_backbone

        known = sorted(set(sample_folds(data, args.by).tolist()))
        unknown = sorted(set(args.folds) - set(known))
        if unknown:
            return fail(f"--folds {unknown[0]}: not a fold of --by {args.by} (folds: {', '.join(known)})")
        try:
            weights = load_backbone()
        except FileNotFoundError as error:
            return fail(str(error))
        if len(known) < 2:
            return fail(f"{args.data}: one {args.by} only ({known[0]}); leaving it out leaves nothing to train on")
        started = time.time()
        test, scores, masked, folds, site = loso(data, recipe, weights, args.by, args.folds)
        if len(test) == 0 or len(set(test.y.tolist())) < 2:
            return fail(f"no fold could be scored with both labels (folds: {', '.join(known)})")
        threshold = args.threshold if args.threshold is not None else min_acer_threshold(test.y, scores)
        table, figures = fold_table(test, scores, folds, threshold, masked, site)
        write_scores(args.out / "oof_scores.csv", test, scores, folds)
        text = (f"leave-one-{args.by}-out, recipe {recipe.version} ({time.time() - started:.0f} s), threshold {threshold:.4f}"
                f"{' (given)' if args.threshold is not None else ' (pooled lowest ACER)'}\n{table}\n\n"
                + report(test, scores, threshold, "out-of-fold, per source")[0])
        (args.out / "figures.json").write_text(json.dumps({"threshold": threshold, "folds": figures, "recipe": recipe.to_dict()}, indent=1))
    else:
        test = data.subset(data.variant == 0)
        if args.groups:
            test = test.subset(np.isin(test.group, args.groups))
        if len(test) == 0:
            return fail(f"--groups {' '.join(args.groups)}: no faces")
        threshold = args.threshold if args.threshold is not None else meta.threshold
        scores = scores_from_model(args.model, test)
        text, figures = report(test, scores, threshold, f"{args.model.name} on {args.data.name}")
        if args.stress:
            text += "\n\n" + stress_report(args.model, test, threshold)
        write_scores(args.out / "scores.csv", test, scores)
        (args.out / "figures.json").write_text(json.dumps(figures, indent=1, default=str))
        if len(set(test.y.tolist())) == 2:
            save_plots(test.y, scores, threshold, args.out, f"{args.model.name} on {args.data.name}")
            (args.out / "table.md").write_text(markdown_table(figures, threshold) + "\n")
    (args.out / "report.txt").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
