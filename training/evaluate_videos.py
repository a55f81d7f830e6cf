"""Judge a model as the held-out sets are judged: through the whole pipeline, frame by frame.

    python -m training.evaluate_videos real:VIDEO fake:VIDEO ... [--model M] [--smoothing 0 0.5 1]
    python -m training.evaluate_videos real:VIDEO:MODEL ... --threshold-of models/liveness.onnx
        # a model per video: each trained without the video's LOSO fold (`training.train --leave-out FOLD`),
        # all judged at the shipped model's threshold

Runs `run_pipeline.py` once per video (the config's detector, every frame, lossless), takes the
largest face of each frame and reports, per video, the share of frames labelled live and the
range of its scores, and
pooled APCER / BPCER / ACER over the frames at the model's threshold (frames without a face are
counted apart). Scores are averaged over time as the config says (`classify.smoothing_s`);
`--smoothing` recomputes the figures for other time constants from each face's frame score
and box, which is exact: the average depends on nothing else.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from liveness.tracking import ScoreSmoother

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Video:
    label: str  # real | fake
    path: Path
    model: Path


def parse_video(spec: str, default_model: Path) -> Video:
    """LABEL:VIDEO or LABEL:VIDEO:MODEL."""
    label, _, rest = spec.partition(":")
    path, _, model = rest.partition(":")
    if label not in ("real", "fake") or not path:
        raise ValueError(f"{spec!r}: expected real:VIDEO or fake:VIDEO (optionally :MODEL)")
    video = Video(label, Path(path), Path(model) if model else default_model)
    for what, file in (("video", video.path), ("model", video.model)):
        if not file.is_file():
            raise ValueError(f"{spec!r}: {what} file not found: {file}")
    return video


def run_video(video: Video, config: Path, jsonl: Path, threshold: float | None = None) -> list[dict]:
    """The pipeline's JSON lines for one video, written to `jsonl` (at `threshold`, else the model's own)."""
    command = [sys.executable, str(REPO / "run_pipeline.py"), "--config", str(config), "--source", str(video.path),
               "--jsonl", str(jsonl), "--set", f"classify.model={video.model}", "--set", "display.enabled=false"]
    if threshold is not None:
        command += ["--set", f"classify.threshold={threshold}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{video.path}: pipeline failed ({last})")
    return [json.loads(line) for line in jsonl.read_text().splitlines()]


def largest_face_scores(records: Sequence[dict], smoothing_s: float) -> tuple[list[float], list[float], int]:
    """(largest face's score per frame with a face, its threshold per frame, frames without a face),
    the scores averaged over time with `smoothing_s` (0: each frame's own score)."""
    smoother = ScoreSmoother(smoothing_s) if smoothing_s > 0 else None
    scores, thresholds, empty = [], [], 0
    for record in records:
        faces = record["faces"]
        if not faces:
            empty += 1
            continue
        own = [face.get("frame_score", face["score"]) for face in faces]
        fps = record.get("fps") or 30.0
        averaged = [s for _, s in smoother.update(record["seq"] / fps, [f["box"] for f in faces], own)] if smoother else own
        largest = max(range(len(faces)), key=lambda i: (faces[i]["box"][2] - faces[i]["box"][0]) * (faces[i]["box"][3] - faces[i]["box"][1]))
        scores.append(averaged[largest])
        thresholds.append(faces[largest]["threshold"])
    return scores, thresholds, empty


def report(videos: Sequence[Video], runs: Sequence[list[dict]], smoothing_s: float) -> tuple[str, dict[str, float]]:
    """Per-video lines and pooled figures (percent) for one time constant."""
    lines, wrong = [], {"real": [], "fake": []}
    for video, records in zip(videos, runs):
        scores, thresholds, empty = largest_face_scores(records, smoothing_s)
        errors = [(s >= t) != (video.label == "real") for s, t in zip(scores, thresholds)]
        wrong[video.label] += errors
        live = sum(s >= t for s, t in zip(scores, thresholds)) / max(len(scores), 1)
        spread = f"; scores {min(scores):.2f} / {statistics.median(scores):.2f} / {max(scores):.2f} (min / median / max)" if scores else ""
        lines.append(f"  {video.label} {video.path}: live in {100 * live:.1f}% of {len(scores)} frames with a face "
                     f"({empty} without){spread}")
    apcer = 100 * sum(wrong["fake"]) / len(wrong["fake"]) if wrong["fake"] else float("nan")
    bpcer = 100 * sum(wrong["real"]) / len(wrong["real"]) if wrong["real"] else float("nan")
    figures = {"apcer": apcer, "bpcer": bpcer, "acer": (apcer + bpcer) / 2}
    head = f"smoothing {smoothing_s:g} s: APCER {apcer:.1f}%  BPCER {bpcer:.1f}%  ACER {figures['acer']:.1f}%"
    return "\n".join([head, *lines]), figures


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="+", help="real:VIDEO or fake:VIDEO, optionally :MODEL")
    parser.add_argument("--model", type=Path, default=REPO / "models" / "liveness.onnx", help="default model")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "file.yaml", help="pipeline config")
    parser.add_argument("--smoothing", type=float, nargs="*", default=[],
                        help="also report these time constants (s), recomputed from the frame scores")
    parser.add_argument("--threshold-of", type=Path, default=None, metavar="MODEL",
                        help="judge every video at this model's threshold (default: each video's model's own)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the JSON lines in this folder")
    args = parser.parse_args(argv)
    try:
        videos = [parse_video(spec, args.model) for spec in args.videos]
    except ValueError as error:
        print(f"evaluate_videos: {error}", file=sys.stderr)
        return 2
    from liveness import LivenessModel, ModelError
    from pipeline.config_file import ConfigError, load_config

    threshold = None
    if args.threshold_of is not None:
        try:
            threshold = LivenessModel(args.threshold_of).threshold
        except ModelError as error:
            print(f"evaluate_videos: --threshold-of: {error}", file=sys.stderr)
            return 2

    try:
        configured = load_config(args.config, check_files=False).classify.smoothing_s
    except ConfigError as error:
        print(f"evaluate_videos: {error}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            runs = [run_video(video, args.config, folder / f"{i}.jsonl", threshold) for i, video in enumerate(videos)]
        except RuntimeError as error:
            print(f"evaluate_videos: {error}", file=sys.stderr)
            return 1
    for smoothing_s in dict.fromkeys([configured, *args.smoothing]):
        print(report(videos, runs, smoothing_s)[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
