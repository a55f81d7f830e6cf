"""Cut face crops for training exactly as the pipeline will: res10 box of the largest face -> liveness.crop.

    python -m training.gather_examples --input videos/real.mov --output dataset/real --detector face_detector --skip 1
    python -m training.gather_examples --input ../shared/data --output runs/gathered

The tutorial's flags work as it types them: `--detector` also takes a folder holding res10's
deploy.prototxt and .caffemodel, and an output folder named `real` or `fake` gives the label, so
`python -m training.train --dataset dataset` then trains on dataset/real and dataset/fake.
Crop size, scales and border default to the shipped recipe's (configs/recipes/2.0.yaml).

Each sample is one PNG holding its crops side by side (one `size` x `size` tile per scale, BGR
as OpenCV writes it); `manifest.csv` beside them says source, label, attack type, origin file,
frame index, box and how the box was found. Detections are cached in `detections.csv` of the
output folder, so gathering again at another size or scale costs only the cropping.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from face_detector import create_detector
from liveness.crop import CROP_BORDERS, CROP_RESIZES, crop_faces
from training.data import Item, items_for, video_frames

MANIFEST_FIELDS = [
    "file", "label", "source", "attack", "kind", "origin", "frame",
    "x1", "y1", "x2", "y2", "confidence", "box_from", "variant",
]
# Box jitter of the extra variants: the detector's box moves this much from frame to frame
# (fractions of the box side), so the model should not depend on its exact placement.
JITTER_SHIFT = 0.06
JITTER_SCALE = 0.08


@dataclass(frozen=True)
class Found:
    """The largest face of one picture: box (may reach outside a padded crop), confidence, how found."""

    box: tuple[float, float, float, float]
    confidence: float
    box_from: str  # "detector" | "whole" (crop the detector does not fire on: use all of it)


def largest_face(detector, image: np.ndarray, kind: str) -> Found | None:
    """The pipeline's choice of face: the largest res10 detection.

    A tight face crop ("crop" kind) fills the picture, where res10 often misses it, so it is
    padded with black first (the black matches what crop_face puts outside a frame) and, if
    the detector still finds nothing, the whole crop is taken as the box.
    """
    pad = 0
    if kind == "crop":
        pad = max(image.shape[:2]) // 2
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    faces = detector.detect(image)
    if faces:
        face = max(faces, key=lambda f: f.area)
        x1, y1, x2, y2 = face.box
        return Found((x1 - pad, y1 - pad, x2 - pad, y2 - pad), face.confidence, "detector")
    if kind == "crop":
        height, width = image.shape[0] - 2 * pad, image.shape[1] - 2 * pad
        return Found((0.0, 0.0, float(width), float(height)), 0.0, "whole")
    return None


def jittered(box: Sequence[float], key: str) -> tuple[float, float, float, float]:
    """A box moved and rescaled a little, reproducibly from `key` (independent of processing order)."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1)
    dx, dy = rng.normal(0.0, JITTER_SHIFT * side, 2)
    factor = float(np.exp(rng.normal(0.0, JITTER_SCALE)))
    cx, cy = (x1 + x2) / 2 + dx, (y1 + y2) / 2 + dy
    half_w, half_h = (x2 - x1) * factor / 2, (y2 - y1) * factor / 2
    return (cx - half_w, cy - half_h, cx + half_w, cy + half_h)


def tile(crops: np.ndarray) -> np.ndarray:
    """(S, S, 3k) crop stack -> (S, k*S, 3) image, scales left to right."""
    size, k = crops.shape[0], crops.shape[2] // 3
    return np.concatenate([crops[:, :, 3 * j : 3 * j + 3] for j in range(k)], axis=1)


def untile(image: np.ndarray, size: int) -> np.ndarray:
    """Inverse of `tile`: (S, k*S, 3) -> (S, S, 3k)."""
    k = image.shape[1] // size
    return np.concatenate([image[:, j * size : (j + 1) * size] for j in range(k)], axis=2)


def _load_detections(path: Path) -> dict[tuple[str, int], Found | None]:
    cache: dict[tuple[str, int], Found | None] = {}
    if not path.is_file():
        return cache
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            key = (row["origin"], int(row["frame"]))
            if row["box_from"]:
                box = (float(row["x1"]), float(row["y1"]), float(row["x2"]), float(row["y2"]))
                cache[key] = Found(box, float(row["confidence"]), row["box_from"])
            else:
                cache[key] = None
    return cache


def _save_detections(path: Path, cache: dict[tuple[str, int], Found | None]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["origin", "frame", "x1", "y1", "x2", "y2", "confidence", "box_from"])
        for (origin, frame), found in sorted(cache.items()):
            if found is None:
                writer.writerow([origin, frame, "", "", "", "", "", ""])
            else:
                writer.writerow([origin, frame, *(f"{v:.1f}" for v in found.box), f"{found.confidence:.4f}", found.box_from])


def _pictures(item: Item, skip: int | None) -> list[tuple[int, np.ndarray]]:
    if item.kind == "video":
        return list(video_frames(item.path, skip))
    image = cv2.imread(str(item.path), cv2.IMREAD_COLOR)
    return [] if image is None else [(0, image)]


def gather(
    items: Sequence[Item],
    output: Path,
    size: int = 64,
    scales: Sequence[float] = (1.5, 2.7),
    detector_name: str = "res10",
    confidence: float = 0.5,
    min_size: int = 20,
    skip: int | None = None,
    jitter: int = 0,
    origin_root: Path | None = None,
    progress: bool = True,
    crop_resize: str = "area",
    crop_border: str = "black",
) -> Path:
    """Detect, crop and write every item's largest face; returns the manifest path.

    `jitter` extra crops per face use a slightly moved box (variant 1..jitter); variant 0 is
    the detector's own box, the only one evaluation should use.
    """
    output.mkdir(parents=True, exist_ok=True)
    detection_path = output / "detections.csv"
    settings = {"detector": detector_name, "confidence": confidence, "min_size": min_size, "skip": skip}
    settings_path = output / "detections.json"
    cache = _load_detections(detection_path)
    if settings_path.is_file() and json.loads(settings_path.read_text()) != settings:
        cache = {}  # detections made with other settings do not count
    detector = create_detector(detector_name, confidence=confidence, min_size=min_size)
    rows: list[dict[str, object]] = []
    counter = 0
    for item in tqdm(items, desc="gather", unit="file", disable=not progress, file=sys.stderr):
        origin = _relative(item.path, origin_root)
        for frame_index, image in _pictures(item, skip):
            key = (origin, frame_index)
            if key not in cache:
                cache[key] = largest_face(detector, image, item.kind)
            found = cache[key]
            if found is None:
                continue  # the pipeline would not classify anything in this picture either
            for variant in range(jitter + 1):
                box = found.box if variant == 0 else jittered(found.box, f"{origin}:{frame_index}:{variant}")
                crops = crop_faces(image, [box], scales, size, crop_resize, crop_border)[0]
                name = f"crops/{item.source}/{item.label or 'unlabelled'}/{counter:06d}_{variant}.png"
                (output / name).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(output / name), tile(crops))
                rows.append({
                    "file": name, "label": item.label, "source": item.source, "attack": item.attack,
                    "kind": item.kind, "origin": origin, "frame": frame_index,
                    "x1": f"{box[0]:.1f}", "y1": f"{box[1]:.1f}", "x2": f"{box[2]:.1f}", "y2": f"{box[3]:.1f}",
                    "confidence": f"{found.confidence:.4f}", "box_from": found.box_from, "variant": variant,
                })
            counter += 1
    _save_detections(detection_path, cache)
    settings_path.write_text(json.dumps(settings))
    (output / "gather.json").write_text(json.dumps({"size": size, "scales": list(scales), "crop_resize": crop_resize,
                                                      "crop_border": crop_border,
                                                      **settings, "jitter": jitter}))
    manifest = output / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            pass
    return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    from training.recipe import DEFAULT_RECIPE, load_recipe

    shipped = load_recipe(DEFAULT_RECIPE)
    parser = argparse.ArgumentParser(prog="python -m training.gather_examples", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--input", required=True, type=Path, nargs="+",
                        help="video, image, image folder (real/ fake/ sub-folders give labels), or data set folder / manifest.csv")
    parser.add_argument("-o", "--output", required=True, type=Path, help="folder for crops and manifest.csv")
    parser.add_argument("-d", "--detector", default="res10",
                        help="res10 (default, as the pipeline), blazeface, or a folder with res10's deploy.prototxt and .caffemodel")
    parser.add_argument("-c", "--confidence", type=float, default=0.5, help="minimum detector confidence")
    parser.add_argument("-s", "--skip", type=int, default=None,
                        help="keep every N-th video frame (default: about 120 frames per video)")
    parser.add_argument("--label", choices=("real", "fake"), default="",
                        help="label for inputs without real/fake folders (default: the output folder's name when it is real or fake)")
    parser.add_argument("--source", default=None, help="source name for folder/video inputs (default: its name)")
    parser.add_argument("--crops", action="store_true",
                        help="image inputs are tight face crops (padded before detection; whole image if no face)")
    parser.add_argument("--size", type=int, default=shipped.size, help="crop side in pixels, the model's input (default %(default)s)")
    parser.add_argument("--scales", type=float, nargs="+", default=shipped.scales,
                        help="crop scales (x face box; 0 = a size x size patch of native pixels; default %(default)s)")
    parser.add_argument("--crop-resize", choices=CROP_RESIZES, default=shipped.crop_resize,
                        help="how crops are shrunk (liveness.crop; the model must be trained the same way)")
    parser.add_argument("--crop-border", choices=CROP_BORDERS, default=shipped.crop_border,
                        help="black outside the frame, or crops fitted inside it (default %(default)s)")
    parser.add_argument("--min-size", type=int, default=20, help="smallest face side in pixels")
    parser.add_argument("--jitter", type=int, default=0, help="extra crops per face with a slightly moved box")
    args = parser.parse_args(argv)
    label = args.label or (args.output.name.lower() if args.output.name.lower() in ("real", "fake") else "")
    items: list[Item] = []
    for path in args.input:
        if not path.exists():
            parser.error(f"--input {path}: not found")
        items.extend(items_for(path, args.source, label, "crop" if args.crops else "frame"))
    if not items:
        parser.error(f"--input {' '.join(map(str, args.input))}: no image or video found")
    first = args.input[0]
    root = first if first.is_dir() else first.parent if first.suffix.lower() == ".csv" else None
    try:
        manifest = gather(items, args.output, args.size, args.scales, args.detector, args.confidence,
                          args.min_size, args.skip, args.jitter, origin_root=root, crop_resize=args.crop_resize,
                          crop_border=args.crop_border)
    except (FileNotFoundError, ValueError) as error:
        print(f"gather_examples: {error}", file=sys.stderr)
        return 2
    with open(manifest, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["variant"] == "0"]
    unlabelled = sum(1 for row in rows if row["label"] not in ("real", "fake"))
    print(f"{len(rows)} faces from {len(items)} inputs -> {manifest}")
    if unlabelled:
        print(f"gather_examples: {unlabelled} faces have no label (give --label, or an output folder named real or fake)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
