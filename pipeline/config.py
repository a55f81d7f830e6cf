"""The one config schema: every field of the pipeline, declared once with its type, range,
default and description (pydantic models, unknown fields refused). The README's config table is
checked against it (tests/test_config.py); pipeline/config_file.py reads YAML into it.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
_ENDPOINT = re.compile(r"^(auto|tcp://(\*|[\w.\-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})|ipc://.+)$")


class ConfigError(ValueError):
    """A config problem; str() is one line naming the file (or --set) and the field path."""


def _endpoint(value: str) -> str:
    match = _ENDPOINT.match(value)
    if not match:
        raise ValueError(f"malformed endpoint {value!r} (expected auto, tcp://HOST:PORT or ipc:///path)")
    if match.group(3) and not 0 <= int(match.group(3)) < 65536:  # 0: a free port, chosen when the run starts
        raise ValueError(f"port out of range in {value!r}")
    return value


def _host(value: str) -> str:
    if not re.match(r"^[\w.\-:]+$", value):
        raise ValueError(f"must be a host name or address, got {value!r}")
    return value


Endpoint = Annotated[str, AfterValidator(_endpoint)]
Host = Annotated[str, AfterValidator(_host)]
Port = Annotated[int | None, Field(ge=0, le=65535)]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SourceConfig(Section):
    uri: Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v),
                   Field(min_length=1)] = Field("0", description="camera index, video file, `rtsp://`/`http(s)://` URL, or image folder")
    id: str = Field("source0", description="name carried in every result")
    policy: Literal["auto", "live", "lossless"] = Field("auto", description="`live`, `lossless`, or `auto` (cameras/streams live, files/folders lossless)")
    pace: bool = Field(False, description="play files at their native frame rate")
    loop: bool = Field(False, description="start a file again at its end")
    max_frames: int | None = Field(None, ge=1, description="stop after this many frames (a live source among several: after this many turns)")
    max_in_flight: int = Field(0, ge=0, description="live: frames allowed between capture and result (0 = one per worker of the largest pool)")
    width: int | None = Field(None, ge=1, description="camera capture width request")
    height: int | None = Field(None, ge=1, description="camera capture height request")

    def effective_policy(self) -> str:
        """`live` or `lossless`: `auto` makes cameras and streams live, files and folders lossless."""
        return self.policy if self.policy != "auto" else "live" if source_is_live(self.uri) else "lossless"


class DetectConfig(Section):
    backend: Literal["res10", "blazeface", "blazeface_short"] = Field("res10", description="`res10`, `blazeface` (full range) or `blazeface_short`")
    workers: int = Field(1, ge=1, le=32, description="detection processes sharing the frames")
    confidence: float = Field(0.5, gt=0, le=1, description="minimum detector confidence")
    min_size: int = Field(20, ge=1, description="minimum face box side in pixels")
    runtime: Literal["auto", "onnxruntime", "opencv"] = Field("auto", description="BlazeFace only: `onnxruntime` (the conversion `make setup` makes, ~2x faster), `opencv`, `auto` (onnxruntime where the conversion exists)")


class ClassifyConfig(Section):
    model: str = Field("models/liveness.onnx", description="ONNX liveness model with its metadata")
    threshold: float | None = Field(None, ge=0, le=1, description="override the model's calibrated threshold")
    debug_delay_ms: float = Field(0.0, ge=0, description="slow the classifier down (tests)")
    workers: int = Field(1, ge=1, le=32, description="classification processes; above 1 a dispatch step spreads frames over them")
    smoothing_s: float = Field(0.5, ge=0, le=10, description="videos and streams: time constant (s) of each face's score average over its frames (the smooth stage); 0 = every frame alone")


class DisplayConfig(Section):
    enabled: bool = Field(True, description="run the display stage")
    window: Annotated[Literal["auto", "on", "off"], BeforeValidator(lambda v: ("on" if v else "off") if isinstance(v, bool) else v)] = Field(
        "auto", description="`auto` (a window where a display exists), `on`, `off`")
    video: str | None = Field(None, description="write the annotated video here (`.mp4` mp4v, else MJPG)")
    headless_video: str | None = Field(None, description="written instead of the window where no display exists")
    title: str = Field("liveness", description="window and web page title")
    web_port: Port = Field(None, description="serve the live page and MJPEG stream on this port (null or 0 = off)")
    web_host: Host = Field("127.0.0.1", description="address the live page binds")
    attributes: list[str] = Field([], description="per-face attributes drawn under each box, as `namespace.key` (docs/result_schema.md)")


class RecordConfig(Section):
    jsonl: str | None = Field(None, description="one JSON line per source frame")


class EndpointsConfig(Section):
    """ZeroMQ endpoints: one per edge of the stage graph, named after its upstream stage's output."""

    model_config = ConfigDict(extra="allow", strict=True)
    __pydantic_extra__: dict[str, Endpoint]
    results: Endpoint = Field("tcp://127.0.0.1:5556", description="where consumers subscribe; `auto` (the shipped configs) or port 0: a free port, announced at start and in the run-info file")
    annotated: Endpoint = Field("auto", description="the publisher's frames to the display; every other edge (`frames`, `detections`, `classify_in`, `classify_out`, `control`, `NAME_out` of an added stage) is `auto` too: an ipc socket in the run's private temp folder")


class TransportConfig(Section):
    live_hwm: int = Field(2, ge=1, description="queue length (messages) on live paths")
    lossless_hwm: int = Field(8, ge=1, description="queue length on lossless paths")
    results_hwm: int = Field(100000, ge=1, description="queue length of the result stream")
    ready_timeout_s: float = Field(60.0, gt=0, description="how long to wait for every stage to be ready")


class StageRestartConfig(Section):
    policy: Literal["never", "on-failure"] | None = Field(None, description="per-stage override; null = the section's value")
    max_restarts: int | None = Field(None, ge=0, description="per-stage override")
    backoff_s: float | None = Field(None, ge=0, description="per-stage override")


class RestartConfig(Section):
    """What run_pipeline.py does when a stage process dies; `restart.STAGE` overrides it for one stage."""

    model_config = ConfigDict(extra="allow", strict=True)
    __pydantic_extra__: dict[str, StageRestartConfig]
    policy: Literal["never", "on-failure"] = Field("on-failure", description="`on-failure` (start a dead stage again) or `never` (a dead stage stops the run, exit 1)")
    max_restarts: int = Field(5, ge=0, description="restarts allowed per stage over the run; one more failure stops the run")
    backoff_s: float = Field(0.5, ge=0, description="wait before a restart; doubles with each restart of that stage")
    max_backoff_s: float = Field(30.0, ge=0, description="the longest wait before a restart")
    window: int = Field(32, ge=1, description="lossless: frames capture keeps until the sinks acknowledge them (resent after a restart)")

    def for_stage(self, name: str) -> tuple[str, int, float]:
        """(policy, max_restarts, backoff_s) for a stage name, per-stage fields first."""
        own = (self.model_extra or {}).get(name) or StageRestartConfig()
        return (own.policy or self.policy, self.max_restarts if own.max_restarts is None else own.max_restarts,
                self.backoff_s if own.backoff_s is None else own.backoff_s)


class CurveConfig(Section):
    server_secret_key: str | None = Field(None, description="CurveZMQ on binding `tcp://` sockets: this side's secret key file")
    allowed_clients: str | None = Field(None, description="CurveZMQ on binding sockets: the folder of accepted stage public keys (every endpoint)")
    allowed_consumers: str | None = Field(None, description="CurveZMQ: the folder of consumer public keys accepted on `endpoints.results` only (they can never send into a stage)")
    client_secret_key: str | None = Field(None, description="CurveZMQ on connecting `tcp://` sockets: this side's secret key file")
    server_public_key: str | None = Field(None, description="CurveZMQ on connecting sockets: the server's public key file")


class MetricsConfig(Section):
    prometheus_port: Port = Field(None, description="`run_pipeline.py` serves Prometheus metrics on `http://HOST:PORT/metrics` (null or 0 = off)")
    prometheus_host: Host = Field("127.0.0.1", description="address the Prometheus endpoint binds")


class StageEntry(Section):
    """A stage added to the shipped graph (pipeline/graph.py): its module holds one Stage class."""

    name: Name = Field(description="its name (metrics, restart section, attribute namespace)")
    module: str = Field(pattern=r"^[A-Za-z_][\w.]*$", description="importable module holding the Stage class")
    after: str | None = Field(None, description="the stage it follows")
    before: str | None = Field(None, description="the stage it precedes (instead of after)")
    workers: int = Field(1, ge=1, le=32, description="processes of it")
    settings: dict[str, Any] = Field({}, description="its own settings, checked against the class's `Settings` model")


class PipelineConfig(Section):
    source: SourceConfig = SourceConfig()
    sources: list[SourceConfig] = Field([], description="several sources through one pipeline (`--source` given several times): each a `source` section whose unset fields come from `source`, ids `source0`, `source1`, ...; files and folders lossless, cameras and streams (or `policy: live`) live; results carry `source` and `source_seq`")
    detect: DetectConfig = DetectConfig()
    classify: ClassifyConfig = ClassifyConfig()
    display: DisplayConfig = DisplayConfig()
    record: RecordConfig = RecordConfig()
    stages: list[StageEntry] = Field([], description="stages added to the shipped graph: `{name, module, after or before, workers, settings}`")
    endpoints: EndpointsConfig = EndpointsConfig()
    transport: TransportConfig = TransportConfig()
    restart: RestartConfig = RestartConfig()
    curve: CurveConfig = CurveConfig()
    metrics: MetricsConfig = MetricsConfig()
    metrics_interval_s: float = Field(5.0, gt=0, description="how often `run_pipeline.py` prints its one-line summary")

    @model_validator(mode="before")
    @classmethod
    def _sources_inherit(cls, raw: Any) -> Any:
        """Each `sources` entry takes the fields it does not set from `source`, and the id sourceK."""
        if isinstance(raw, dict) and isinstance(raw.get("sources"), list):
            base = raw.get("source") if isinstance(raw.get("source"), dict) else {}
            base = {key: value for key, value in base.items() if key != "id"}
            raw = {**raw, "sources": [{**base, "id": f"source{index}", **entry} if isinstance(entry, dict) else entry
                                      for index, entry in enumerate(raw["sources"])]}
        return raw

    def all_sources(self) -> list[SourceConfig]:
        """The run's sources: `sources` when given, else the one `source`."""
        return self.sources or [self.source]

    def policy(self) -> str:
        """The effective delivery policy: cameras and streams are live, files and folders lossless.
        Several sources run the pipeline lossless; a live one among them drops at capture (newest frame only)."""
        if self.sources:
            return "lossless"
        return self.source.effective_policy()

    def live_among_sources(self) -> bool:
        """Several sources, at least one of them live (a camera, a stream, or `policy: live`)."""
        return any(source.effective_policy() == "live" for source in self.sources)

    def lossless_window(self) -> int:
        """Lossless: frames capture keeps until the sinks acknowledge them. With a live source among
        several, about two a source, so that a live frame waits behind a short queue, not a long one."""
        if self.live_among_sources():
            return max(2, min(self.restart.window, 2 * len(self.sources)))
        return self.restart.window

    def seq_span(self) -> int:
        """How far apart the frame numbers of one lossless window can lie: the window, or with a live
        source among several (whose frame numbers follow turns and leave gaps) the window's rounds."""
        return self.lossless_window() * (len(self.sources) if self.live_among_sources() else 1)


def source_is_live(uri: str) -> bool:
    """Camera indices and network streams are live; files and folders are not."""
    return uri.isdigit() or re.match(r"^[a-z]+://", uri) is not None
