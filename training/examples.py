"""Load gathered crops (see training.gather_examples) into arrays, gathering the shared data first if needed."""
from __future__ import annotations

import argparse
import csv
import fcntl
import hashlib
import json
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from training.data import REPO_ROOT, attack_type, items_for
from training.gather_examples import gather, untile

CACHE_DIR = REPO_ROOT / "runs" / "cache"


def tile_channels(all_scales: Sequence[float], scales: Sequence[float]) -> list[int]:
    """Channel indices of the tiles of `scales` in a crop stack cut at `all_scales` (ValueError if one is missing)."""
    have = [float(s) for s in all_scales]
    missing = [s for s in scales if float(s) not in have]
    if missing or not scales:
        raise ValueError(f"member scales {list(scales)} must be a non-empty subset of the crop scales {have}")
    return [3 * have.index(float(s)) + c for s in scales for c in range(3)]


@dataclass
class Examples:
    """Crop stacks and what is known about each (all arrays of length N).

    `x` is uint8 (N, S, S, 3k) with every 3-channel tile in RGB order. `group` is the unit of
    splitting: the source, except that Replay-Attack is split into its own train and devel
    people ("replay_attack_train" / "replay_attack_devel").
    """

    x: np.ndarray
    y: np.ndarray  # 1 = real, 0 = fake
    source: np.ndarray
    group: np.ndarray
    attack: np.ndarray
    kind: np.ndarray
    origin: np.ndarray
    variant: np.ndarray
    size: int
    scales: list[float]
    crop_resize: str = "area"  # liveness.crop.CROP_RESIZES
    crop_border: str = "black"  # liveness.crop.CROP_BORDERS

    def subset(self, mask: np.ndarray) -> "Examples":
        """The examples where `mask` is true."""
        pick = lambda a: a[mask]  # noqa: E731
        return Examples(pick(self.x), pick(self.y), pick(self.source), pick(self.group), pick(self.attack),
                        pick(self.kind), pick(self.origin), pick(self.variant), self.size, self.scales, self.crop_resize, self.crop_border)

    def tiles(self, scales: Sequence[float]) -> "Examples":
        """The same examples with only the crop tiles of `scales` (each one of self.scales), in that order."""
        channels = tile_channels(self.scales, scales)
        return replace(self, x=self.x[..., channels], scales=[float(s) for s in scales])

    def __len__(self) -> int:
        return len(self.y)


def split_group(source: str, origin: str) -> str:
    """The group a sample is split by (see Examples)."""
    if source == "replay_attack":
        name = Path(origin).parent.name
        return "replay_attack_devel" if name.startswith("devel") else "replay_attack_train"
    return source


def person_of(source: str, origin: str) -> str:
    """Who a sample shows, as far as the data says: the unit a confidence interval resamples.

    Replay-Attack names its client in the folder, NUAA its subject at the start of the file name;
    every other source is one person or one capture setup (a webcam set is one student's room,
    with other people only on the screens held up), so the source itself is the unit.
    """
    if source == "replay_attack":
        client = re.search(r"client(\d+)", origin)
        return f"replay_attack/client{client.group(1)}" if client else source
    if source == "nuaa":
        return f"nuaa/{Path(origin).name.split('_')[0]}"
    return source


def load_gathered(folder: Path, include_jitter: bool = True) -> Examples:
    """Read a gather_examples output folder (labelled samples only)."""
    settings = json.loads((folder / "gather.json").read_text())
    size, scales = int(settings["size"]), [float(s) for s in settings["scales"]]
    rows = []
    with open(folder / "manifest.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["label"] in ("real", "fake") and (include_jitter or row["variant"] == "0"):
                if row["attack"] == "mixed":  # gathered before the instrument was read from file names
                    row["attack"] = attack_type(row["origin"], row["label"], row["source"])
                rows.append(row)
    x = np.empty((len(rows), size, size, 3 * len(scales)), dtype=np.uint8)
    for i, row in enumerate(rows):
        image = cv2.imread(str(folder / row["file"]), cv2.IMREAD_COLOR)
        stack = untile(image, size)
        # Tiles are stored BGR (as OpenCV writes); the model is trained on RGB tiles.
        x[i] = stack.reshape(size, size, -1, 3)[..., ::-1].reshape(stack.shape)
    column = lambda name: np.array([r[name] for r in rows])  # noqa: E731
    return Examples(
        x=x,
        y=(column("label") == "real").astype(np.int64),
        source=column("source"),
        group=np.array([split_group(r["source"], r["origin"]) for r in rows]),
        attack=column("attack"),
        kind=column("kind"),
        origin=column("origin"),
        variant=column("variant").astype(np.int64),
        size=size,
        scales=scales,
        crop_resize=settings.get("crop_resize", "area"),  # folders gathered before the field: "area"
        crop_border=settings.get("crop_border", "black"),  # and "black"
    )


class DatasetError(ValueError):
    """A data set that cannot be trained or evaluated on; the message names it and the fix."""


def load_dataset(dataset: Path, size: int, scales: list[float], jitter: int = 2, include_jitter: bool = True,
                 crop_resize: str = "area", crop_border: str = "black") -> Examples:
    """Examples from a gathered folder, a data set folder / manifest, or a folder of real/ and fake/
    pictures (the tutorial's layout); the last two are gathered once into runs/cache.

    DatasetError when the path is missing, holds no labelled face, or is a gathered folder of
    other crops (size, scales, resize, border) than asked.
    """
    dataset = Path(dataset)
    if not dataset.exists():
        raise DatasetError(f"{dataset}: not found")
    children = sorted(child for child in dataset.iterdir() if (child / "gather.json").is_file()) if dataset.is_dir() else []
    if children and not (dataset / "gather.json").is_file():  # dataset/real, dataset/fake written by gather_examples
        parts = [load_dataset(child, size, scales, jitter, include_jitter, crop_resize, crop_border) for child in children]
        return _checked(concatenate(parts), dataset)
    if (dataset / "gather.json").is_file():
        data = load_gathered(dataset, include_jitter)
        held = (data.size, data.scales, data.crop_resize, data.crop_border)
        if held != (size, [float(s) for s in scales], crop_resize, crop_border):
            raise DatasetError(f"{dataset} holds crops of size {data.size}, scales {data.scales}, crop resize {data.crop_resize}, "
                               f"border {data.crop_border}; the recipe wants size {size}, scales {list(scales)}, crop resize "
                               f"{crop_resize}, border {crop_border}: gather again with training.gather_examples --size {size} "
                               f"--scales {' '.join(f'{s:g}' for s in scales)} --crop-border {crop_border}, or pass the "
                               "original pictures")
        return _checked(data, dataset)
    manifest = dataset if dataset.suffix == ".csv" else dataset / "manifest.csv"
    if manifest.is_file():
        items, origin_root, digest = items_for(manifest), manifest.parent, hashlib.sha256(manifest.read_bytes()).hexdigest()[:10]
    elif dataset.is_dir():
        # The tutorial's layout: dataset/real/*.png, dataset/fake/*.png, tight face crops.
        items = [item for item in items_for(dataset, kind="crop") if item.label]
        origin_root = dataset
        listing = "\n".join(f"{item.path}:{item.path.stat().st_mtime_ns}:{item.label}" for item in items)
        digest = hashlib.sha256(f"{dataset.resolve()}\n{listing}".encode()).hexdigest()[:10]
        if not items:
            raise DatasetError(f"{dataset}: no labelled pictures (put face pictures in {dataset}/real and {dataset}/fake)")
    else:
        raise DatasetError(f"{dataset}: not a data folder, manifest or gathered folder")
    scale_tag = "-".join(f"{s:g}" for s in scales)
    resize_tag = "" if crop_resize == "area" else f"_{crop_resize}"  # "area" caches predate the field
    resize_tag += "" if crop_border == "black" else f"_{crop_border}"  # and "black" ones
    cache = CACHE_DIR / f"gathered_{digest}_{size}_{scale_tag}_j{jitter}{resize_tag}"
    with cache_lock(cache):  # LOSO runs in parallel processes would otherwise gather into one folder at once
        if not (cache / "gather.json").is_file():
            print(f"gathering {dataset} into {cache} (once)", file=sys.stderr)
            gather(items, cache, size, scales, jitter=jitter, origin_root=origin_root,
                   crop_resize=crop_resize, crop_border=crop_border)
    return _checked(load_gathered(cache, include_jitter), dataset)


def concatenate(parts: Sequence[Examples]) -> Examples:
    """One Examples of several of the same crops (size, scales, resize, border)."""
    first = parts[0]
    join = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    return Examples(join("x"), join("y"), join("source"), join("group"), join("attack"), join("kind"), join("origin"),
                    join("variant"), first.size, first.scales, first.crop_resize, first.crop_border)


def _checked(data: Examples, dataset: Path) -> Examples:
    if len(data) == 0:
        raise DatasetError(f"{dataset}: the face detector found no face in any labelled picture")
    return data


@contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    """Hold an exclusive lock on `cache` (a file beside it) while the block runs; other processes wait."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache.parent / f"{cache.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def examples_parser(description: str, size: int = 64) -> argparse.ArgumentParser:
    """A data report's command line: --data, --size, --scales (add its own options, then parsed_examples)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--data", required=True, type=Path, help="data set folder/manifest or gather_examples output")
    parser.add_argument("--size", type=int, default=size)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.5, 2.7])
    return parser


def parsed_examples(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, Examples]:
    """(the parsed options, the examples they ask for, detector boxes only); a bad --data exits 2 with one line."""
    args = parser.parse_args(argv)
    try:
        data = load_dataset(args.data, args.size, args.scales)
    except (OSError, ValueError) as error:
        parser.error(f"--data {args.data}: {error}")  # exits 2
    return args, data.subset(data.variant == 0)  # no jitter copies


def detector_box_examples(description: str, argv: Sequence[str] | None = None) -> Examples:
    """The examples a data report asks for on its command line (--data, --size, --scales), detector boxes only."""
    return parsed_examples(examples_parser(description), argv)[1]
