"""Every kind of bad config stops the program before any process starts: one line, exit code 2."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import REPO, make_config, run_pipeline
from pipeline.config import ConfigError, load_config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("detect:\n  wokers: 2\n", "detect.wokers", "unknown field"),
        ("detect:\n  workers: two\n", "detect.workers", "expected an integer"),
        ("detect:\n  confidence: 3\n", "detect.confidence", "must be in"),
        ("detect:\n  runtime: tflite\n", "detect.runtime", "must be one of"),
        ("detect:\n  backend: res10\n  runtime: onnxruntime\n", "detect.runtime", "BlazeFace backends only"),
        ("endpoints:\n  results: tcp://127.0.0.1\n", "endpoints.results", "malformed endpoint"),
        ("endpoints:\n  frames: udp://x:1\n", "endpoints.frames", "malformed endpoint"),
        ("classify:\n  model: nowhere/model.onnx\n", "classify.model", "not found"),
        ("source:\n  uri: /no/such/video.mp4\nclassify:\n  model: configs/file.yaml\n", "source.uri", "no such file"),
        ("source:\n  policy: fast\n", "source.policy", "must be one of"),
        ("classify:\n  smoothing_s: -1\n", "classify.smoothing_s", "must be between 0 and 10 seconds"),
        ("detect: [1, 2]\n", "detect", "expected a mapping"),
        ("source:\n  uri: 0\n  pace: maybe\n", "source.pace", "expected true or false"),
    ],
)
def test_bad_config_one_line_exit_2(tmp_path: Path, text: str, field: str, words: str) -> None:
    path = _write(tmp_path, text)
    result = run_pipeline("--config", str(path), timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and f"{field}:" in lines[0] and words in lines[0]


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "source:\n  uri: [unclosed\n")
    result = run_pipeline("--config", str(path), timeout=30)
    assert result.returncode == 2
    assert "not valid YAML at line" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_config_file(tmp_path: Path) -> None:
    result = run_pipeline("--config", str(tmp_path / "absent.yaml"), timeout=30)
    assert result.returncode == 2
    assert "absent.yaml: cannot read config" in result.stderr


def test_bad_override(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    result = run_pipeline("--config", str(config), "--set", "detect.workers=lots", timeout=30)
    assert result.returncode == 2 and "detect.workers: expected an integer" in result.stderr


def test_overrides_and_defaults(tmp_path: Path) -> None:
    config = load_config(make_config(tmp_path), ["detect.workers=3", "source.uri=0", "classify.threshold=0.7",
                                                  "classify.smoothing_s=1"], check_files=False)
    assert config.detect.workers == 3 and config.source.uri == "0" and config.classify.threshold == 0.7
    assert config.classify.smoothing_s == 1.0
    assert config.policy() == "lossless"  # file.yaml says lossless explicitly
    assert load_config(make_config(tmp_path), ["source.policy=auto", "source.uri=0"], check_files=False).policy() == "live"


def test_shipped_configs_validate() -> None:
    for path in sorted((REPO / "configs").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        assert isinstance(raw, dict)
        load_config(path, check_files=False)


def test_config_error_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, "transport:\n  live_hwm: 0\n"), check_files=False)
    assert "transport.live_hwm" in str(caught.value) and "\n" not in str(caught.value)


def test_unquoted_on_off_window(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert load_config(config, ["display.window=on"], check_files=False).display.window == "on"
    assert load_config(config, ["display.window=off"], check_files=False).display.window == "off"
