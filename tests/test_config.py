"""Every kind of bad config stops the program before any process starts: one line naming where the
value came from (the file or the --set), the field and the problem; exit code 2 through the CLI."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import REPO, make_config, run_pipeline
from pipeline.config import PipelineConfig, StageRestartConfig
from pipeline.config_file import ConfigError, load_config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def _error(path: Path, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    assert "\n" not in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("detect:\n  wokers: 2\n", "detect.wokers", "unknown field (known: backend, workers"),
        ("detect:\n  workers: two\n", "detect.workers", "expected an integer, got 'two'"),
        ("detect:\n  confidence: 3\n", "detect.confidence", "must be at most 1"),
        ("detect:\n  runtime: tflite\n", "detect.runtime", "must be one of auto, onnxruntime or opencv"),
        ("detect:\n  backend: res10\n  runtime: onnxruntime\n", "detect.runtime", "BlazeFace backends only"),
        ("endpoints:\n  results: tcp://127.0.0.1\n", "endpoints.results", "malformed endpoint"),
        ("endpoints:\n  frames: udp://x:1\n", "endpoints.frames", "malformed endpoint"),
        ("endpoints:\n  results: tcp://127.0.0.1:70000\n", "endpoints.results", "port out of range"),
        ("classify:\n  model: nowhere/model.onnx\n", "classify.model", "not found"),
        ("source:\n  uri: /no/such/video.mp4\nclassify:\n  model: configs/file.yaml\n", "source.uri", "no such file"),
        ("source:\n  policy: fast\n", "source.policy", "must be one of"),
        ("classify:\n  smoothing_s: -1\n", "classify.smoothing_s", "must be at least 0"),
        ("classify:\n  smoothing_s: 11\n", "classify.smoothing_s", "must be at most 10"),
        ("detect: [1, 2]\n", "detect", "expected a mapping"),
        ("source:\n  uri: 0\n  pace: maybe\n", "source.pace", "expected true or false"),
        ("transport:\n  live_hwm: 0\n", "transport.live_hwm", "must be at least 1"),
        ("restart:\n  policy: sometimes\n", "restart.policy", "must be one of never or on-failure"),
        ("restart:\n  detect: {max_restarts: -1}\n", "restart.detect.max_restarts", "must be at least 0"),
        ("restart:\n  window: 0\n", "restart.window", "must be at least 1"),
        ("curve:\n  server_secret_key: keys/x.key_secret\n", "curve.allowed_clients", "go together"),
        ("curve:\n  client_secret_key: x.key_secret\n", "curve.server_public_key", "go together"),
        ("metrics:\n  prometheus_port: 70000\n", "metrics.prometheus_port", "must be at most 65535"),
        ("metrics:\n  prometheus_host: a b\n", "metrics.prometheus_host", "must be a host name or address"),
        ("display:\n  web_port: web\n", "display.web_port", "expected an integer"),
        ("classify:\n  workers: 0\n", "classify.workers", "must be at least 1"),
        ("stages:\n  - {name: Bad-Name, module: x}\n", "stages.0.name", "must match"),
    ],
)
def test_bad_config_is_one_line_naming_file_and_field(tmp_path: Path, text: str, field: str, words: str) -> None:
    path = _write(tmp_path, text)
    message = _error(path)
    assert message.startswith(f"{path}: {field}: ") and words in message, message


def test_cli_exit_2_one_line_no_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, "detect:\n  wokers: 2\n")
    result = run_pipeline("--config", str(path), timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"config error: {path}: detect.wokers: unknown field "
                                                  "(known: backend, workers, confidence, min_size, runtime)"]


def test_a_stage_that_cannot_be_placed_exits_2_through_the_cli(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    result = run_pipeline("--config", str(config), "--set", "stages=[{name: x, module: examples.absent, after: classify}]", timeout=30)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "stages.0.module: cannot load 'examples.absent'" in result.stderr


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    assert "not valid YAML at line 3" in _error(_write(tmp_path, "source:\n  uri: [unclosed\n"))


def test_missing_config_file(tmp_path: Path) -> None:
    assert f"{tmp_path / 'absent.yaml'}: cannot read config" in _error(tmp_path / "absent.yaml")


def test_errors_from_set_are_blamed_on_the_set(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert _error(config, ["detect.workers=lots"]) == "--set detect.workers=lots: detect.workers: expected an integer, got 'lots'"
    assert _error(config, ["detect=3"]).startswith("--set detect=3: detect: expected a mapping")
    assert _error(config, ["nonsense"]).startswith("--set 'nonsense': expected dotted.key=value")
    bad_file = _write(tmp_path, "detect:\n  workers: two\n")
    assert _error(bad_file, ["classify.workers=2"]).startswith(f"{bad_file}: detect.workers")  # the file's own error


def test_overrides_and_defaults(tmp_path: Path) -> None:
    config = load_config(make_config(tmp_path), ["detect.workers=3", "source.uri=0", "classify.threshold=0.7",
                                                  "classify.smoothing_s=1"], check_files=False)
    assert config.detect.workers == 3 and config.source.uri == "0" and config.classify.threshold == 0.7
    assert config.classify.smoothing_s == 1.0
    assert config.policy() == "lossless"  # file.yaml says lossless explicitly
    assert load_config(make_config(tmp_path), ["source.policy=auto", "source.uri=0"], check_files=False).policy() == "live"
    restart = load_config(make_config(tmp_path), ["restart.record.policy=on-failure"], check_files=False).restart
    assert restart.for_stage("record") == ("on-failure", 5, 0.5) and restart.for_stage("detect") == ("on-failure", 5, 0.5)
    assert isinstance(restart.model_extra["record"], StageRestartConfig)


def test_shipped_configs_validate_and_wire() -> None:
    from pipeline.graph import build_graph

    for path in sorted((REPO / "configs").glob("*.yaml")):
        assert isinstance(yaml.safe_load(path.read_text()), dict)
        assert build_graph(load_config(path, check_files=False)).publisher.name == "smooth"


def test_unquoted_on_off_window(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert load_config(config, ["display.window=on"], check_files=False).display.window == "on"
    assert load_config(config, ["display.window=off"], check_files=False).display.window == "off"


def test_a_resolved_config_round_trips(tmp_path: Path) -> None:
    config = load_config(make_config(tmp_path), ["restart.record.policy=never", "endpoints.frames=ipc:///tmp/x"], check_files=False)
    again = PipelineConfig.model_validate(config.model_dump())
    assert again.model_dump() == config.model_dump() and again.restart.for_stage("record")[0] == "never"


def config_table() -> str:
    """The README's config reference, generated from the schema's declarations."""
    from pydantic import BaseModel

    from pipeline.config import RestartConfig

    rows = ["| field | default | meaning |", "| --- | --- | --- |"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            kind = info.annotation
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                walk(kind, f"{prefix}{name}.")
                if kind is RestartConfig:
                    walk(StageRestartConfig, f"{prefix}{name}.STAGE.")
                continue
            default = "null" if info.default is None else f"`{yaml.safe_dump(info.default, default_flow_style=True).strip().removesuffix('...').strip()}`"
            rows.append(f"| `{prefix}{name}` | {default} | {info.description} |")

    walk(PipelineConfig, "")
    return "\n".join(rows) + "\n"


def test_readme_config_table_is_the_schema() -> None:
    """Regenerate with: python -c 'import sys; sys.path[:0] = [".", "tests"]; from test_config import config_table; print(config_table(), end="")'"""
    reference = (REPO / "docs" / "configuration.md").read_text()  # the README links it
    assert config_table() in reference, "docs/configuration.md's table differs from pipeline/config.py: regenerate it (see this test's docstring)"
