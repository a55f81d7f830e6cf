"""Packaging: pyproject.toml's runtime is requirements.txt (no TensorFlow); an installed wheel runs a
shipped config from any folder with its configs, models and stage modules found as package data."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import REPO, needs_model, needs_weights, read_jsonl, write_face_video

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _pins(name: str) -> dict[str, str]:
    """name -> version of a requirements file's own pins (its -r includes left out)."""
    pins = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-r"):
            package, version = line.split("==")
            pins[package.lower()] = version
    return pins


def _requirement(text: str) -> tuple[str, str]:
    match = re.match(r"^([A-Za-z0-9_.\-\[\]]+?)(?:==|>=)([\w.]+)", text)
    assert match, text
    return match.group(1).lower(), match.group(2)


def test_runtime_dependencies_are_requirements_txt_without_tensorflow() -> None:
    runtime = dict(_requirement(text) for text in PROJECT["project"]["dependencies"])
    assert runtime == _pins("requirements.txt")
    assert not any("tensorflow" in name or "keras" in name for name in runtime)
    extras = PROJECT["project"]["optional-dependencies"]
    assert dict(_requirement(text) for text in extras["train"]) == _pins("requirements-train.txt")
    dev = [text for text in extras["dev"] if not text.startswith("liveness-pipeline[")]
    assert dict(_requirement(text) for text in dev) == _pins("requirements-dev.txt")
    assert "liveness-pipeline[train]" in extras["dev"]
    assert PROJECT["project"]["scripts"]["liveness-pipeline"] == "pipeline.cli:main"


def test_installed_packages_hold_the_runtime_and_never_import_training() -> None:
    packages = PROJECT["tool"]["setuptools"]["packages"]
    assert "training" not in packages and "bench" not in packages
    data = PROJECT["tool"]["setuptools"]["package-data"]
    assert "*.yaml" in data["configs"] and "*.onnx" in data["models"] and "*.jpg" in data["examples"]
    for package in packages:
        for path in (REPO / package).glob("*.py"):
            text = path.read_text()
            assert not re.search(r"^\s*(from|import) (training|tensorflow|skimage)\b", text, re.M), path


@pytest.mark.slow
@needs_model
@needs_weights
def test_an_installed_wheel_runs_a_shipped_config_from_any_folder(tmp_path: Path) -> None:
    wheels, target, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                            str(REPO)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    wheel = next(wheels.glob("liveness_pipeline-*.whl"))
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    assert (target / "configs" / "file.yaml").is_file() and (target / "models" / "liveness.onnx").is_file()
    assert not (target / "training").exists()
    work.mkdir()
    video = write_face_video(work / "face.avi", frames=12)
    env = {**os.environ, "PYTHONPATH": str(target), "LIVENESS_WEIGHTS_DIR": str(REPO / "face_detector" / "weights"),
           "LIVENESS_RUNS_DIR": str(tmp_path / "runs")}
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "configs/file.yaml", "--source", "face.avi", "--jsonl",
                           "out.jsonl"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [record["seq"] for record in read_jsonl(work / "out.jsonl")] == list(range(12))
    assert (work / "runs" / "annotated.mp4").is_file()  # file.yaml's video, relative to where it ran
