r"""The stage graph: which stages run, and how each one's sockets attach.

 capture --frames--> detect (xN) --detections--> classify --results--> record, any consumer
  PUSH bind          PULL / PUSH                 PULL bind  PUB bind
                                                        \--annotated--> display
                                                         PUSH bind       PULL

With classify.workers > 1, ordering and publishing move behind the classifiers:

 detect (xN) --detections--> dispatch --classify_in--> classify (xN) --classify_out--> collect --results/annotated-->
             PUSH            PULL bind  PUSH bind      PULL / PUSH                     PULL bind, reorders, PUB / PUSH
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pipeline.config import PipelineConfig
from pipeline.transport import Role


class Format(Enum):
    """What goes out on a port."""

    FRAME = "frame"  # [header, pixels]
    RESULT = "result"  # [topic, result record]: no pixels, for consumers


@dataclass(frozen=True)
class Port:
    endpoint: str  # field name in EndpointsConfig
    socket: str  # push | pull | pub | sub
    role: Role
    format: Format = Format.FRAME
    live_drops: bool = False  # in live mode, drop (and count) instead of waiting for a slow peer


@dataclass(frozen=True)
class StageSpec:
    name: str
    module: str  # `python -m MODULE` runs it
    input: Port | None
    outputs: tuple[Port, ...] = ()
    ordered: bool = False  # put frames back in capture order before `process`
    sink: bool = False  # the run is over when every sink has seen end of stream


CAPTURE = StageSpec("capture", "stages.capture", None, (Port("frames", "push", Role.BIND),))
DETECT = StageSpec("detect", "stages.detect", Port("frames", "pull", Role.CONNECT), (Port("detections", "push", Role.CONNECT),))
CLASSIFY = StageSpec(
    "classify",
    "stages.classify",
    Port("detections", "pull", Role.BIND),
    (Port("results", "pub", Role.BIND, Format.RESULT), Port("annotated", "push", Role.BIND, live_drops=True)),
    ordered=True,
)
DISPLAY = StageSpec("display", "stages.display", Port("annotated", "pull", Role.CONNECT), sink=True)
RECORD = StageSpec("record", "stages.record", Port("results", "sub", Role.CONNECT, Format.RESULT), sink=True)
# classification scaled out: a pass-through dispatch spreads frames over the classifiers, which
# connect on both sides (so they can run anywhere); collect reorders and publishes like classify
DISPATCH = StageSpec("dispatch", "pipeline.dispatch", Port("detections", "pull", Role.BIND), (Port("classify_in", "push", Role.BIND),))
CLASSIFY_WORKER = StageSpec("classify", "stages.classify", Port("classify_in", "pull", Role.CONNECT),
                            (Port("classify_out", "push", Role.CONNECT),))
COLLECT = StageSpec(
    "collect",
    "pipeline.collect",
    Port("classify_out", "pull", Role.BIND),
    (Port("results", "pub", Role.BIND, Format.RESULT), Port("annotated", "push", Role.BIND, live_drops=True)),
    ordered=True,
)
SPECS = {spec.name: spec for spec in (CAPTURE, DETECT, CLASSIFY, DISPLAY, RECORD, DISPATCH, COLLECT)}


@dataclass(frozen=True)
class StageInstance:
    spec: StageSpec
    worker: int
    several: bool = False  # one of several workers of its kind: the key carries the worker index

    @property
    def key(self) -> str:
        return f"{self.spec.name}.{self.worker}" if self.spec.name == "detect" or self.several else self.spec.name


def spec_for(name: str, config: PipelineConfig) -> StageSpec:
    """The spec a stage process runs with: classifiers are wired differently when there are several."""
    if name == "classify" and config.classify.workers > 1:
        return CLASSIFY_WORKER
    return SPECS[name]


def stage_key(name: str, worker: int, config: PipelineConfig) -> str:
    """The name a stage process reports under (control channel, metrics, stamps): "detect.1", "classify"."""
    several = name == "classify" and config.classify.workers > 1
    return StageInstance(SPECS[name], worker, several).key


def plan(config: PipelineConfig) -> list[StageInstance]:
    """Every stage process this config runs, upstream first."""
    stages = [StageInstance(CAPTURE, 0)]
    stages += [StageInstance(DETECT, i) for i in range(config.detect.workers)]
    if config.classify.workers == 1:
        stages.append(StageInstance(CLASSIFY, 0))
    else:
        stages.append(StageInstance(DISPATCH, 0))
        stages += [StageInstance(CLASSIFY_WORKER, i, several=True) for i in range(config.classify.workers)]
        stages.append(StageInstance(COLLECT, 0))
    if config.display.enabled:
        stages.append(StageInstance(DISPLAY, 0))
    if config.record.jsonl:
        stages.append(StageInstance(RECORD, 0))
    return stages


def required_result_subscribers(config: PipelineConfig) -> int:
    """Subscribers the result publisher (classify, or collect) waits for before it is ready: the recorder, and capture's flow limiter in live mode."""
    return int(bool(config.record.jsonl)) + int(config.policy() == "live")


def outputs_for(spec: StageSpec, config: PipelineConfig) -> tuple[Port, ...]:
    """Ports actually used: the result publisher feeds the display only when there is one."""
    if not config.display.enabled:
        return tuple(p for p in spec.outputs if p.endpoint != "annotated")
    return spec.outputs
