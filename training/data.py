"""Where training images come from: the shared data set's manifest, image folders and videos.

Every input yields `Item`s (one image or one video frame with its label and source); the
gather step runs the pipeline's detector on each and cuts the pipeline's crops.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
# A manifest's video is sampled so that each gives about this many frames (near-duplicates
# beyond that add little and would outweigh the still-image sources).
FRAMES_PER_VIDEO = 120


def data_dir() -> Path:
    """The shared data folder: $LIVENESS_DATA, else <repo root>/../shared/data."""
    return Path(os.environ.get("LIVENESS_DATA", REPO_ROOT.parent / "shared" / "data"))


@dataclass(frozen=True)
class Item:
    """One picture to gather a face from (a still image, or one frame of a video)."""

    path: Path
    label: str  # "real" | "fake" | "" (unknown)
    source: str  # person / capture setup; splits are made on this
    kind: str  # "crop" (already a tight face crop) | "frame" | "video"
    attack: str  # "none" | "print" | "replay" | "mask" | "mixed" | "unknown"
    frame_index: int = 0  # for videos


def attack_type(relative_path: str, label: str, source: str) -> str:
    """Presentation-attack instrument of one manifest entry, as far as the data set says."""
    if label == "real":
        return "none"
    if source == "replay_attack":
        return "print" if "attack_print" in relative_path else "replay"
    if source == "nuaa":
        return "print"
    if source == "roboflow_fas_raulsilva":  # file names start with the instrument
        prefix = Path(relative_path).name.split("__")[0]
        return {"device": "replay", "photo": "print", "mask": "mask"}.get(prefix, "mixed")
    if source in ("minivision_samples", "trueface_sample_apps", "roboflow_fas_raulsilva"):
        return "mixed"
    return "replay"  # every other source is phone / screen / TV replay (see the data README)


def read_manifest(manifest: Path) -> list[Item]:
    """Items of a shared-data style manifest (path,label,source,kind[,...]); paths relative to it."""
    root = manifest.parent
    items = []
    with open(manifest, newline="") as handle:
        for row in csv.DictReader(handle):
            label, source = row["label"], row["source"]
            items.append(Item(root / row["path"], label, source, row.get("kind", "frame"), attack_type(row["path"], label, source)))
    return items


def folder_items(folder: Path, source: str | None = None, kind: str = "frame") -> list[Item]:
    """Images and videos under `folder`; a `real`/`fake` path component gives the label, and a first
    folder that is neither (folder/alice/real/1.png) the source, else the folder's own name."""
    items = []
    for path in sorted(folder.rglob("*")):
        suffix = path.suffix.lower()
        if suffix not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
            continue
        folders = path.relative_to(folder).parts[:-1]
        parts = {p.lower() for p in folders}
        label = "real" if "real" in parts else "fake" if "fake" in parts else ""
        item_kind = "video" if suffix in VIDEO_SUFFIXES else kind
        # folder/alice/real/1.png: the person's folder is the source (what splits go by)
        found = folders[0] if folders and folders[0].lower() not in ("real", "fake") else folder.name
        items.append(Item(path, label, source or found, item_kind, "none" if label == "real" else "unknown"))
    return items


def items_for(input_path: Path, source: str | None = None, label: str = "", kind: str = "frame") -> list[Item]:
    """Items of any input: a manifest CSV, a folder holding manifest.csv, a folder, an image or a video."""
    if input_path.is_dir() and (input_path / "manifest.csv").is_file() and _is_data_manifest(input_path / "manifest.csv"):
        return read_manifest(input_path / "manifest.csv")
    if input_path.suffix.lower() == ".csv":
        return read_manifest(input_path)
    if input_path.is_dir():
        items = folder_items(input_path, source, kind)
    else:
        suffix = input_path.suffix.lower()
        item_kind = "video" if suffix in VIDEO_SUFFIXES else kind
        items = [Item(input_path, "", source or input_path.stem, item_kind, "unknown")]
    if label:
        items = [Item(i.path, label, i.source, i.kind, "none" if label == "real" else i.attack) for i in items]
    return items


def _is_data_manifest(path: Path) -> bool:
    with open(path, newline="") as handle:
        header = handle.readline().strip().split(",")
    return {"path", "label", "source"} <= set(header)


def video_frames(path: Path, skip: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, BGR frame) of every `skip`-th frame; skip None spreads FRAMES_PER_VIDEO over the video."""
    capture = cv2.VideoCapture(str(path))
    try:
        if skip is None:
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            # Some containers report nonsense counts; fall back to every 2nd frame.
            skip = max(1, count // FRAMES_PER_VIDEO) if 0 < count < 100_000 else 2
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % skip == 0:
                yield index, frame
            index += 1
    finally:
        capture.release()


# Capture setups left out whole (training.evaluate --loso): each fold is a database or a family of
# setups the model then meets as it will meet a camera it has never seen. The first four are the
# targets the model card reports; every source not named here is in "crop_sets".
SETUP_FOLDS: dict[str, tuple[str, ...]] = {
    "nuaa": ("nuaa",),
    "replay_attack": ("replay_attack",),
    "webcam": ("webcam_afzal91004", "webcam_ahmedooode", "webcam_chamindu77", "webcam_dangthanhliem", "webcam_dracarys261",
               "webcam_pagolu_raghavendra", "webcam_ramkumarkh", "webcam_raulsilva_tech_own", "webcam_shravanshriram2007",
               "webcam_spp77", "webcam_srimuthukumar786", "webcam_sumanadhikari0625", "webcam_vicky2003rit"),
    # The thirteen sources added last (../shared/data/README.md): new people, phones and webcams.
    "new_sources": ("balveersingh", "shivamyadav09", "willy_dev_ava", "nurcanyardimci", "diogoshiroma", "draashishjani",
                    "huynhnguyen2017", "ydf1014", "sivakumar1982", "webcam_codewithprabhu", "webcam_eyashita",
                    "webcam_haonguyen1", "webcam_sankalitagiri"),
    "samples": ("roboflow_fas_raulsilva", "minivision_samples", "trueface_sample_apps"),
}
TARGET_FOLDS = ("nuaa", "replay_attack", "webcam", "new_sources")
OTHER_FOLD = "crop_sets"


def setup_fold(source: str) -> str:
    """The setup fold (SETUP_FOLDS) a source belongs to."""
    for fold, sources in SETUP_FOLDS.items():
        if source in sources:
            return fold
    return OTHER_FOLD


def capture_setup(group: str) -> str:
    """The capture setup of a split group: Replay-Attack's train and devel people share one, every
    other source (one person's or one room's recordings) is its own."""
    return "replay_attack" if group.startswith("replay_attack") else group
