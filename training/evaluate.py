"""Evaluate a liveness model in the field's terms, or estimate it on unseen sources (LOSO).

    python -m training.evaluate --model models/liveness.onnx --data ../shared/data --out runs/eval
    python -m training.evaluate --loso --data ../shared/data --out runs/loso [--model models/liveness.onnx]

Plain mode scores every detector-box crop of the data with the ONNX model (through
LivenessModel, as the classify stage does) and reports APCER per attack type, BPCER and ACER
at the model's threshold, EER, ROC AUC and BPCER at APCER=5%, overall and per source, with
ROC and score-histogram PNGs.

`--loso` trains the recipe the options describe (the model's own training config when --model is given)
once per fold, leaving one source group out and scoring it, and reports per-source and
pooled out-of-fold figures; the pooled scores go to `oof_scores.csv` for training.calibrate.
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
from training.examples import Examples, load_dataset, person_of

# Leave-one-source-out folds. Training once per fold costs minutes on two shared CPU cores, so
# sources are left out in 10 groups rather than 30 one at a time (stricter, not easier: each
# model trains on less): the 13 webcam sets (one person each, ~65 faces) in three groups of 4-5
# people; the single-person screen/phone-replay crop sets in three groups; the tiny vendor demo
# sets with roboflow's fake-only frames. The two sources that share the tutorial's person are
# always in one group (otherwise that person leaks). Replay-Attack keeps its own protocol:
# devel people and train people are separate folds. Figures are still reported per source.
FOLDS: dict[str, list[str]] = {
    "nuaa": ["nuaa"],
    "replay_attack_devel": ["replay_attack_devel"],
    "replay_attack_train": ["replay_attack_train"],
    "roboflow_and_vendor_samples": ["roboflow_fas_raulsilva", "minivision_samples", "trueface_sample_apps"],
    "webcam_a": ["webcam_afzal91004", "webcam_ahmedooode", "webcam_chamindu77", "webcam_dangthanhliem", "webcam_dracarys261"],
    "webcam_b": ["webcam_pagolu_raghavendra", "webcam_ramkumarkh", "webcam_raulsilva_tech_own", "webcam_shravanshriram2007"],
    "webcam_c": ["webcam_spp77", "webcam_srimuthukumar786", "webcam_sumanadhikari0625", "webcam_vicky2003rit"],
    "crops_a": ["pyimagesearch_original", "jtboing", "tranvanluyt2203"],
    "crops_b": ["krzysiek354", "aksultanmukhanbet", "vishalkrishnablaze"],
    "crops_c": ["shubhamlala", "alexcamargoweb", "manikantha_m", "viguardieiro_own", "trickyf0x"],
}


def fold_of(group: str) -> str:
    """The LOSO fold a source group belongs to (unknown groups form their own fold)."""
    for fold, groups in FOLDS.items():
        if group in groups:
            return fold
    return group


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


def read_scores(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, scores, attacks) from a write_scores CSV."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    labels = np.array([1 if r["label"] == "real" else 0 for r in rows])
    return labels, np.array([float(r["score"]) for r in rows]), np.array([r["attack"] for r in rows])


def nuaa_subject_fold(origin: str) -> str:
    """NUAA split by person: subjects 0001-0004 and 0005-0009 (file names start with the subject id)."""
    subject = int(Path(origin).name.split("_")[0])
    return "nuaa_subjects_1-4" if subject <= 4 else "nuaa_subjects_5-9"


# Leave-one-setup-out (`--by-setup`): every capture setup with more than one person is one fold,
# so the model meets a database it has never seen, as it will meet MSU-MFSD or a new webcam.
SETUP_FOLDS: dict[str, str] = {"replay_attack_devel": "replay_attack", "replay_attack_train": "replay_attack",
                               **{source: "webcam" for source in FOLDS["webcam_a"] + FOLDS["webcam_b"] + FOLDS["webcam_c"]}}
# The folds `--by-setup` leaves out whole: databases and setups never seen, the stand-in for MSU-MFSD.
SETUP_TARGETS = ("nuaa", "replay_attack", "webcam")


def sample_folds(data: Examples, nuaa_by_subject: bool = False, by_setup: bool = False) -> np.ndarray:
    """The LOSO fold of every sample; with nuaa_by_subject, NUAA is split into two groups of people.

    The NUAA split answers a different question from leaving all of NUAA out: how well the
    recipe does on *new people of a capture setup it was trained on* (the held-out prints are
    other NUAA subjects). `by_setup` asks the other question for every setup: all of
    Replay-Attack, all webcam sets and all of NUAA are one fold each (SETUP_FOLDS).
    """
    if nuaa_by_subject and by_setup:
        raise ValueError("--nuaa-by-subject splits NUAA by person and --by-setup keeps it whole: choose one")
    folds = np.array([SETUP_FOLDS.get(g, fold_of(g)) if by_setup else fold_of(g) for g in data.group])
    if nuaa_by_subject:
        for i in np.nonzero(data.source == "nuaa")[0]:
            folds[i] = nuaa_subject_fold(data.origin[i])
    return folds


def claim_for_recipe(out: Path, config) -> None:
    """Record the recipe a LOSO folder's cached folds belong to; ValueError if it holds another recipe's.

    Fields the stored recipe lacks (written before they existed) count as their defaults.
    """
    from training.train import TrainConfig

    path = out / "config.json"
    current = json.loads(json.dumps(dataclasses.asdict(config)))
    if path.is_file():
        known = set(TrainConfig.__dataclass_fields__)
        stored = json.loads(json.dumps(dataclasses.asdict(
            TrainConfig(**{k: v for k, v in json.loads(path.read_text()).items() if k in known}))))
        differ = sorted(k for k in current if stored.get(k) != current[k])
        if differ:
            raise ValueError(f"{out} holds the folds of another recipe (it differs in {', '.join(differ)}): "
                             "choose another --out or remove that folder")
    path.write_text(json.dumps(current, indent=1))


def fold_teachers(train: Examples, config, folder: Path, fold: str, held_x: np.ndarray) -> list:
    """The distillation teachers of one LOSO fold, loaded from folder/FOLD.teacherSEED.keras or trained and kept there.

    Each teacher's scores of the held-out crops go to FOLD.teacherSEED.csv: the teachers are the plain recipe
    with their seeds, so these reproduce that recipe's own LOSO run (and their mean, the ensemble's).
    """
    import keras

    from training.train import predict, teacher_config, train_model

    teachers = []
    for seed in config.distill_seeds:
        path = folder / f"{fold}.teacher{seed}.keras"
        if path.is_file():
            teachers.append(keras.models.load_model(path))
            continue
        teacher, _ = train_model(train, teacher_config(config, seed), verbose=0)
        teacher.save(path)
        np.savetxt(path.with_suffix(".csv"), predict(teacher, held_x), delimiter=",", fmt="%.6f")
        teachers.append(teacher)
    return teachers


def loso(data: Examples, config, out: Path, only: Sequence[str] = (), nuaa_by_subject: bool = False,
         by_setup: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Train once per fold without it, score its detector-box crops; returns (fold per sample, scores).

    Scores of finished folds are kept in out/folds/*.csv so an interrupted run resumes.
    """
    from training.train import predict, train_model

    folds = sample_folds(data, nuaa_by_subject, by_setup)
    known = list(dict.fromkeys(folds.tolist()))
    unknown = [f for f in only if f not in known]
    if unknown:
        raise ValueError(f"--folds {' '.join(unknown)}: not a fold of this split (folds: {', '.join(known)})")
    scores = np.full(len(data), np.nan)
    test_mask = data.variant == 0
    names = [f for f in known if not only or f in only]
    (out / "folds").mkdir(parents=True, exist_ok=True)
    claim_for_recipe(out, config)
    for number, fold in enumerate(names, 1):
        held = folds == fold
        cached = out / "folds" / f"{fold}.csv"
        if cached.is_file():
            scores[held & test_mask] = np.loadtxt(cached, delimiter=",", ndmin=1)
            print(f"[{number}/{len(names)}] {fold}: cached", file=sys.stderr)
            continue
        train = data.subset(~held)
        print(f"[{number}/{len(names)}] {fold}: training on {len(train)} crops, testing {int((held & test_mask).sum())}",
              file=sys.stderr, flush=True)
        started = time.time()
        teachers = fold_teachers(train, config, out / "folds", fold, data.x[held & test_mask]) if config.distill_seeds else None
        model, _ = train_model(train, config, verbose=0, teachers=teachers)
        print(f"    trained in {time.time() - started:.0f} s", file=sys.stderr, flush=True)
        fold_scores = predict(model, data.x[held & test_mask])
        np.savetxt(cached, fold_scores, delimiter=",", fmt="%.6f")
        # the same crops mirrored: material for judging test-time flip averaging without retraining
        np.savetxt(cached.with_name(f"{fold}.flipped.csv"), predict(model, data.x[held & test_mask][:, :, ::-1]),
                   delimiter=",", fmt="%.6f")
        scores[held & test_mask] = fold_scores
        import keras

        keras.backend.clear_session()
    return folds, scores


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    from training.train import TrainConfig, add_recipe_arguments, recipe_from_args

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", type=Path, default=None, help="ONNX model (plain mode: required)")
    parser.add_argument("-d", "--data", required=True, type=Path, help="data set folder/manifest or gather_examples output")
    parser.add_argument("-o", "--out", type=Path, default=Path("runs/eval"), help="folder for plots, scores and figures")
    parser.add_argument("--loso", action="store_true", help="leave-one-source-out: train per fold, score the left-out source")
    parser.add_argument("--folds", nargs="*", default=[], help="LOSO: run only these folds")
    parser.add_argument("--nuaa-by-subject", action="store_true",
                        help="LOSO: split NUAA into two folds of people instead of one fold (use with --folds nuaa_subjects_1-4 nuaa_subjects_5-9)")
    parser.add_argument("--by-setup", action="store_true",
                        help="LOSO: leave out whole capture setups (all of Replay-Attack, all webcam sets, all of NUAA: "
                             "folds replay_attack, webcam, nuaa) to estimate a database never seen")
    parser.add_argument("--groups", nargs="*", default=[],
                        help="plain mode: score only these sources (e.g. replay_attack_devel)")
    parser.add_argument("--threshold", type=float, default=None, help="threshold to report at (default: the model's)")
    parser.add_argument("--stress", action="store_true", help="also score blurred / downscaled / JPEG-damaged / face-masked copies of every crop")
    add_recipe_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = recipe_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    threshold = 0.5
    if args.model is not None:
        from liveness.model import LivenessModel

        meta = LivenessModel(args.model).metadata
        threshold = meta.threshold
        known = set(TrainConfig.__dataclass_fields__)
        config = TrainConfig(**{k: v for k, v in meta.training.get("config", {}).items() if k in known})
        config.size, config.scales, config.crop_resize = meta.input_size, list(meta.crop_scales), meta.crop_resize
        config.crop_border = meta.crop_border
    elif not args.loso:
        parser.error("--model is required unless --loso")
    if args.threshold is not None:
        threshold = args.threshold

    try:  # a gathered folder of other crops, or a LOSO folder of another recipe: one line, exit 2
        data = load_dataset(args.data, config.size, config.scales, include_jitter=args.loso, crop_resize=config.crop_resize,
                            crop_border=config.crop_border)
        if args.loso:
            folds, scores = loso(data, config, args.out, args.folds, args.nuaa_by_subject, args.by_setup)
    except ValueError as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 2
    if args.loso:
        done = ~np.isnan(scores)
        test = data.subset(done)
        write_scores(args.out / "oof_scores.csv", test, scores[done], folds[done])
        scores = scores[done]
        title = "LOSO out-of-fold"
    else:
        test = data
        if args.groups:
            test = test.subset(np.isin(test.group, args.groups))
        scores = scores_from_model(args.model, test)
        write_scores(args.out / "scores.csv", test, scores)
        done = np.ones(len(test), dtype=bool)
        scores = scores[done]
        title = f"{args.model.name} on {args.data.name}"

    text, figures = report(test, scores, threshold, title)
    extra = ""
    if args.loso:
        # Threshold chosen on the pooled out-of-fold scores themselves: optimistic for the
        # threshold, honest for the ranking. Shown so the two can be compared.
        pooled = metrics.threshold_at_apcer(test.y, scores, 0.05)
        text2, figures2 = report(test, scores, pooled, "LOSO out-of-fold at the pooled APCER-5% threshold")
        extra = "\n\n" + text2
        figures = {"at_threshold": figures, "pooled_apcer5_threshold": pooled, "at_pooled_threshold": figures2}
    if args.stress and not args.loso:
        extra += "\n\n" + stress_report(args.model, test, threshold)
    print(text + extra)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.txt").write_text(text + extra + "\n")
    if args.loso:
        markdown = markdown_table(figures["at_threshold"], threshold) + "\n\n" + markdown_table(
            figures["at_pooled_threshold"], figures["pooled_apcer5_threshold"])
    else:
        markdown = markdown_table(figures, threshold)
    (args.out / "report.md").write_text(markdown + "\n")
    (args.out / "figures.json").write_text(json.dumps(figures, indent=1, default=float))
    save_plots(test.y, scores, threshold, args.out, title)
    print(f"plots, scores and figures in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
