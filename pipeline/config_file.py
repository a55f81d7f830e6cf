"""Reading a config: YAML in, `--set` overrides applied, the schema (pipeline/config.py) checked,
or one line that names where the value came from (the file, or the `--set` that gave it), the field
path and what is wrong. Nothing is started before this has passed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipeline.config import REPO_ROOT, ConfigError, PipelineConfig, SourceConfig, StageEntry, source_is_live


_PROBLEMS = {"extra_forbidden": "unknown field", "int_type": "expected an integer", "float_type": "expected a number",
             "bool_type": "expected true or false", "string_type": "expected a string", "model_type": "expected a mapping",
             "dict_type": "expected a mapping", "list_type": "expected a list", "literal_error": "must be one of {expected}",
             "greater_than_equal": "must be at least {ge}", "greater_than": "must be greater than {gt}",
             "less_than_equal": "must be at most {le}", "less_than": "must be less than {lt}",
             "string_too_short": "must not be empty", "string_pattern_mismatch": "must match {pattern}"}


def describe_error(error: dict[str, Any]) -> tuple[str, str]:
    """(field path, problem) of pydantic's first error, in this project's words."""
    path = ".".join(str(part) for part in error["loc"])
    template = _PROBLEMS.get(error["type"])
    if error["type"] == "extra_forbidden":
        model: Any = PipelineConfig
        for part in error["loc"][:-1]:
            model = model if isinstance(part, int) else model.model_fields[part].annotation
            model = StageEntry if model == list[StageEntry] else SourceConfig if model == list[SourceConfig] else model
        return path, f"unknown field (known: {', '.join(model.model_fields)})"
    if template is None:
        return path, error["msg"].removeprefix("Value error, ")
    problem = template.format(**{k: str(v).replace("'", "") for k, v in (error.get("ctx") or {}).items()})
    return path, f"{problem}, got {error['input']!r}"


def _check(config: PipelineConfig, check_files: bool) -> None:
    """Checks across fields, and (with `check_files`) that the model, source and key files exist."""
    def need(ok: bool, path: str, problem: str) -> None:
        if not ok:
            raise ConfigError(f"{path}: {problem}")

    need(config.detect.runtime != "onnxruntime" or config.detect.backend != "res10", "detect.runtime",
         "onnxruntime runs the BlazeFace backends only; res10 runs on cv2.dnn")
    curve = config.curve
    need((curve.server_secret_key is None) == (curve.allowed_clients is None), "curve.allowed_clients",
         "curve.server_secret_key and curve.allowed_clients go together")
    need((curve.client_secret_key is None) == (curve.server_public_key is None), "curve.server_public_key",
         "curve.client_secret_key and curve.server_public_key go together")
    ids = [source.id for source in config.sources]
    need(len(set(ids)) == len(ids), "sources", f"every source needs its own id (given: {', '.join(ids)})")
    for index, source in enumerate(config.sources):
        need(not check_files or source_is_live(source.uri) or resolve_path(source.uri).exists(), f"sources.{index}.uri",
             f"no such file or folder: {source.uri}")
    if not check_files:
        return
    for name in ("server_secret_key", "client_secret_key", "server_public_key"):
        key = getattr(curve, name)
        need(key is None or resolve_path(key).is_file(), f"curve.{name}", f"key file not found: {key}")
    need(curve.allowed_clients is None or resolve_path(curve.allowed_clients).is_dir(), "curve.allowed_clients",
         f"folder not found: {curve.allowed_clients}")
    need(resolve_path(config.classify.model).is_file(), "classify.model", f"model file not found: {config.classify.model}")
    uri = config.source.uri
    need(source_is_live(uri) or resolve_path(uri).exists(), "source.uri", f"no such file or folder: {uri}")


def resolve_path(path: str) -> Path:
    """Relative paths are relative to the working directory, falling back to the repository root."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    in_repo = REPO_ROOT / candidate
    return in_repo if in_repo.exists() else candidate


def find_config(path: str | Path) -> Path:
    """A config path as given, else under the package (`configs/file.yaml` from any folder), else a
    shipped config by name (`file` is configs/file.yaml); the path as given when none exists."""
    given = Path(path).expanduser()
    for candidate in (given, REPO_ROOT / given, REPO_ROOT / "configs" / given.with_suffix(".yaml").name):
        if candidate.is_file():
            return candidate
    return given


def _apply_override(raw: dict[str, Any], text: str) -> list[str]:
    """Apply `a.b=value` (the value read as a YAML scalar) to the raw mapping; return the key path."""
    key, equals, value = text.partition("=")
    keys = key.strip().split(".")
    if not equals or not all(keys):
        raise ConfigError(f"--set {text!r}: expected dotted.key=value")
    node = raw
    for part in keys[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {text}: {part} is not a mapping")
    try:
        node[keys[-1]] = yaml.safe_load(value) if value != "" else None
    except yaml.YAMLError:
        node[keys[-1]] = value
    return keys


def load_config(path: str | Path, overrides: list[str] | None = None, check_files: bool = True) -> PipelineConfig:
    """Load, override (`dotted.key=value`), validate. Raises ConfigError with a one-line message."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config ({error.strerror})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(error, 'problem', error)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    given = {override: _apply_override(raw, override) for override in overrides or []}

    def blame(field: str) -> str:  # the last --set that wrote this field (or a mapping above it), else the file
        hits = [text for text, keys in given.items() if field == ".".join(keys) or field.startswith(".".join(keys) + ".")]
        return f"--set {hits[-1]}" if hits else str(path)

    try:
        config = PipelineConfig.model_validate(raw)
        _check(config, check_files)
    except ValidationError as error:
        field, problem = describe_error(error.errors()[0])
        raise ConfigError(f"{blame(field)}: {field}: {problem}") from None
    except ConfigError as error:
        raise ConfigError(f"{blame(str(error).split(':')[0])}: {error}") from None
    return config


def dump_config(config: PipelineConfig, path: Path) -> None:
    """Write a resolved config (used to hand the exact same settings to every stage process)."""
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
