"""The one config schema: YAML in, typed dataclasses out, or a one-line error.

Every field of the pipeline lives here with its default. `load_config` validates types, known
keys, endpoint syntax and file existence before any process starts; a problem raises
`ConfigError`, whose text is the single line a user sees (file, field path, what is wrong).
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
POLICIES = ("auto", "live", "lossless")
DETECTOR_BACKENDS = ("res10", "blazeface", "blazeface_short")
DETECTOR_RUNTIMES = ("auto", "onnxruntime", "opencv")  # BlazeFace only; res10 always runs on cv2.dnn
_ENDPOINT = re.compile(r"^(auto|tcp://(\*|[\w.\-]+|\[[0-9a-fA-F:]+\]):\d{1,5}|ipc://.+)$")


class ConfigError(ValueError):
    """A config problem; str() is one line naming the file and the field path."""


@dataclass
class SourceConfig:
    uri: str = "0"  # camera index, video file, rtsp:// or http(s):// URL, or image folder
    id: str = "source0"
    policy: str = "auto"  # live: drop the oldest frame when busy; lossless: every frame, with backpressure
    pace: bool = False  # play files at their native frame rate
    loop: bool = False  # restart a file at its end (soak runs)
    max_frames: int | None = None
    max_in_flight: int = 0  # live only: frames between capture and result; 0 = one per worker of the larger pool (a second frame per detector would only wait in its queue)
    width: int | None = None  # camera capture size request
    height: int | None = None


@dataclass
class DetectConfig:
    backend: str = "res10"
    workers: int = 1
    confidence: float = 0.5
    min_size: int = 20
    runtime: str = "auto"  # BlazeFace: onnxruntime (converted at setup, ~2x faster) where present, else opencv


@dataclass
class ClassifyConfig:
    model: str = "models/liveness.onnx"
    threshold: float | None = None  # None: the model's own calibrated threshold
    debug_delay_ms: float = 0.0  # test knob: slow the classifier down artificially
    workers: int = 1  # classification processes; above 1, a dispatch and a collect step order the results
    smoothing_s: float = 0.5  # videos and cameras: each face's score is averaged over about this many seconds (0: every frame alone)


@dataclass
class DisplayConfig:
    enabled: bool = True
    window: str = "auto"  # auto: a window where a display exists; on; off
    video: str | None = None  # annotated video file, always written when set
    headless_video: str | None = None  # written instead of the window where no display exists
    title: str = "liveness"
    web_port: int | None = None  # serve the annotated stream and a live page over HTTP; null or 0 = off
    web_host: str = "127.0.0.1"  # loopback unless told otherwise


@dataclass
class RecordConfig:
    jsonl: str | None = None  # one JSON line per source frame


@dataclass
class EndpointsConfig:
    """ZeroMQ endpoints; "auto" = an ipc socket in the run's private temp folder."""

    frames: str = "auto"  # capture (PUSH, bind) -> detect workers (PULL)
    detections: str = "auto"  # detect workers (PUSH) -> classify (PULL, bind)
    results: str = "tcp://127.0.0.1:5556"  # classify (PUB, bind) -> any consumer (SUB)
    annotated: str = "auto"  # classify (PUSH, bind) -> display (PULL)
    classify_in: str = "auto"  # classify.workers > 1: dispatch (PUSH, bind) -> classifiers (PULL)
    classify_out: str = "auto"  # classify.workers > 1: classifiers (PUSH) -> collect (PULL, bind)
    control: str = "auto"  # every stage (DEALER) -> run_pipeline.py (ROUTER, bind)


@dataclass
class TransportConfig:
    live_hwm: int = 2  # queue length on live paths: small, or latency grows
    lossless_hwm: int = 8
    results_hwm: int = 100000  # results are small; a lossless recorder must not lose any
    ready_timeout_s: float = 60.0


RESTART_POLICIES = ("never", "on-failure")
RESTARTABLE_STAGES = ("capture", "detect", "classify", "display", "record")


@dataclass
class StageRestartConfig:
    """One stage's restart policy; null fields take the value of the `restart` section."""

    policy: str | None = None
    max_restarts: int | None = None
    backoff_s: float | None = None


@dataclass
class RestartConfig:
    """What run_pipeline.py does when a stage process dies."""

    policy: str = "never"  # never: a dead stage stops the run (exit 1); on-failure: start it again
    max_restarts: int = 5  # per stage, over the whole run; one more failure stops the run
    backoff_s: float = 0.5  # wait before the first restart; doubles with each restart of that stage
    max_backoff_s: float = 30.0
    window: int = 32  # lossless: frames capture keeps (and resends after a restart) until the sinks acknowledge them
    capture: StageRestartConfig = field(default_factory=StageRestartConfig)
    detect: StageRestartConfig = field(default_factory=StageRestartConfig)
    classify: StageRestartConfig = field(default_factory=StageRestartConfig)
    display: StageRestartConfig = field(default_factory=StageRestartConfig)
    record: StageRestartConfig = field(default_factory=StageRestartConfig)

    def for_stage(self, name: str) -> tuple[str, int, float]:
        """(policy, max_restarts, backoff_s) for a stage name, per-stage fields first."""
        own = getattr(self, name, None) or StageRestartConfig()
        return (own.policy or self.policy,
                self.max_restarts if own.max_restarts is None else own.max_restarts,
                self.backoff_s if own.backoff_s is None else own.backoff_s)


@dataclass
class CurveConfig:
    """CurveZMQ on tcp:// endpoints (key files made by `python -m pipeline.keys DIR NAME`); all null = plain."""

    server_secret_key: str | None = None  # binding side: its secret key file (NAME.key_secret)
    allowed_clients: str | None = None  # binding side: folder of accepted client public keys (*.key)
    client_secret_key: str | None = None  # connecting side: its secret key file
    server_public_key: str | None = None  # connecting side: the server's public key file (NAME.key)


@dataclass
class MetricsConfig:
    prometheus_port: int | None = None  # the supervisor serves /metrics here; null or 0 = off
    prometheus_host: str = "127.0.0.1"


@dataclass
class PipelineConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    endpoints: EndpointsConfig = field(default_factory=EndpointsConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    restart: RestartConfig = field(default_factory=RestartConfig)
    curve: CurveConfig = field(default_factory=CurveConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    metrics_interval_s: float = 5.0
    config_path: str = ""  # where it was loaded from (set by the loader, not in YAML)

    def policy(self) -> str:
        """The effective delivery policy: cameras and streams are live, files and folders lossless."""
        if self.source.policy != "auto":
            return self.source.policy
        return "live" if source_is_live(self.source.uri) else "lossless"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("config_path")
        return data


def source_is_live(uri: str) -> bool:
    """Camera indices and network streams are live; files and folders are not."""
    return uri.isdigit() or re.match(r"^[a-z]+://", uri) is not None


def _type_name(hint: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if args:
        return " or ".join(_type_name(a) for a in args) + " (or null)"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _convert(value: Any, hint: Any, path: str) -> Any:
    """Check `value` against a type hint; dataclass hints recurse."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(value, inner[0], path)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return _build(hint, value, path + ".")
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and path.endswith("uri"):
            return str(value)  # `uri: 0` means camera 0
        if isinstance(value, bool) and path.endswith("display.window"):
            return "on" if value else "off"  # YAML 1.1 reads an unquoted on/off as true/false
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported type {hint}")


def _build(cls: type, raw: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name != "config_path"}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{prefix}{key}: unknown field (known: {', '.join(sorted(known))})")
    values = {key: _convert(value, hints[key], prefix + key) for key, value in raw.items()}
    return cls(**values)


def _check(config: PipelineConfig, check_files: bool = True) -> None:
    """Value checks beyond types; `check_files` also checks that the model and source exist."""
    def need(ok: bool, path: str, problem: str) -> None:
        if not ok:
            raise ConfigError(f"{path}: {problem}")

    need(config.source.policy in POLICIES, "source.policy", f"must be one of {', '.join(POLICIES)}, got {config.source.policy!r}")
    need(bool(config.source.uri), "source.uri", "must not be empty")
    need(config.source.max_frames is None or config.source.max_frames > 0, "source.max_frames", "must be positive")
    need(config.source.max_in_flight >= 0, "source.max_in_flight", "must be 0 (auto) or positive")
    need(config.detect.backend in DETECTOR_BACKENDS, "detect.backend", f"must be one of {', '.join(DETECTOR_BACKENDS)}, got {config.detect.backend!r}")
    need(1 <= config.detect.workers <= 32, "detect.workers", f"must be between 1 and 32, got {config.detect.workers}")
    need(0.0 < config.detect.confidence <= 1.0, "detect.confidence", f"must be in (0, 1], got {config.detect.confidence}")
    need(config.detect.min_size >= 1, "detect.min_size", "must be at least 1")
    need(config.detect.runtime in DETECTOR_RUNTIMES, "detect.runtime", f"must be one of {', '.join(DETECTOR_RUNTIMES)}, got {config.detect.runtime!r}")
    need(config.detect.runtime != "onnxruntime" or config.detect.backend != "res10", "detect.runtime",
         "onnxruntime runs the BlazeFace backends only; res10 runs on cv2.dnn")
    threshold = config.classify.threshold
    need(threshold is None or 0.0 <= threshold <= 1.0, "classify.threshold", f"must be in [0, 1], got {threshold}")
    need(config.classify.debug_delay_ms >= 0, "classify.debug_delay_ms", "must not be negative")
    need(1 <= config.classify.workers <= 32, "classify.workers", f"must be between 1 and 32, got {config.classify.workers}")
    need(0.0 <= config.classify.smoothing_s <= 10.0, "classify.smoothing_s", f"must be between 0 and 10 seconds, got {config.classify.smoothing_s}")
    for path, port in (("display.web_port", config.display.web_port), ("metrics.prometheus_port", config.metrics.prometheus_port)):
        need(port is None or 0 <= port < 65536, path, f"must be a TCP port (1-65535), or 0 or null for off, got {port}")
    for path, host in (("display.web_host", config.display.web_host), ("metrics.prometheus_host", config.metrics.prometheus_host)):
        need(bool(re.match(r"^[\w.\-:]+$", host)), path, f"must be a host name or address, got {host!r}")
    need(config.display.window in ("auto", "on", "off"), "display.window", f"must be auto, on or off, got {config.display.window!r}")
    for name in ("live_hwm", "lossless_hwm", "results_hwm"):
        need(getattr(config.transport, name) >= 1, f"transport.{name}", "must be at least 1")
    need(config.metrics_interval_s > 0, "metrics_interval_s", "must be positive")
    for name in ("", *RESTARTABLE_STAGES):
        section = getattr(config.restart, name) if name else config.restart
        where = f"restart.{name + '.' if name else ''}"
        need(section.policy is None or section.policy in RESTART_POLICIES, where + "policy",
             f"must be one of {', '.join(RESTART_POLICIES)}, got {section.policy!r}")
        need(section.max_restarts is None or section.max_restarts >= 0, where + "max_restarts", "must not be negative")
        need(section.backoff_s is None or section.backoff_s >= 0, where + "backoff_s", "must not be negative")
    need(config.restart.window >= 1, "restart.window", "must be at least 1")
    need(config.restart.max_backoff_s >= 0, "restart.max_backoff_s", "must not be negative")
    curve = config.curve
    need((curve.server_secret_key is None) == (curve.allowed_clients is None), "curve.allowed_clients",
         "curve.server_secret_key and curve.allowed_clients go together")
    need((curve.client_secret_key is None) == (curve.server_public_key is None), "curve.server_public_key",
         "curve.client_secret_key and curve.server_public_key go together")
    if check_files:
        for name in ("server_secret_key", "client_secret_key", "server_public_key"):
            key = getattr(curve, name)
            need(key is None or resolve_path(key).is_file(), f"curve.{name}", f"key file not found: {key}")
        need(curve.allowed_clients is None or resolve_path(curve.allowed_clients).is_dir(), "curve.allowed_clients",
             f"folder not found: {curve.allowed_clients}")
    for name, endpoint in dataclasses.asdict(config.endpoints).items():
        need(bool(_ENDPOINT.match(endpoint)), f"endpoints.{name}",
             f"malformed endpoint {endpoint!r} (expected auto, tcp://HOST:PORT or ipc:///path)")
        port = endpoint.rsplit(":", 1)[-1] if endpoint.startswith("tcp://") else ""
        need(not port or 0 < int(port) < 65536, f"endpoints.{name}", f"port out of range in {endpoint!r}")
    if check_files:
        need(resolve_path(config.classify.model).is_file(), "classify.model", f"model file not found: {config.classify.model}")
        uri = config.source.uri
        if not source_is_live(uri):
            need(resolve_path(uri).exists(), "source.uri", f"no such file or folder: {uri}")


def resolve_path(path: str) -> Path:
    """Relative paths are relative to the working directory, falling back to the repository root."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    in_repo = REPO_ROOT / candidate
    return in_repo if in_repo.exists() else candidate


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (["a", "b"], value parsed as a YAML scalar)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected dotted.key=value")
    key, _, raw = text.partition("=")
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_override(raw: dict[str, Any], keys: list[str], value: Any) -> None:
    """Set raw[k1][k2]... = value, creating mappings on the way."""
    node = raw
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {'.'.join(keys)}: {key} is not a mapping")
        node = child
    node[keys[-1]] = value


def load_config(path: str | Path, overrides: list[str] | None = None, check_files: bool = True) -> PipelineConfig:
    """Load, override (`dotted.key=value`), validate. Raises ConfigError with a one-line message."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config ({error.strerror})") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(error, 'problem', error)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    try:
        for override in overrides or []:
            apply_override(raw, *parse_override(override))
        config = _build(PipelineConfig, raw)
        _check(config, check_files)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    config.config_path = str(path)
    return config


def dump_config(config: PipelineConfig, path: Path) -> None:
    """Write a resolved config (used to hand the exact same settings to every stage process)."""
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
