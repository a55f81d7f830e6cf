r"""The stage graph: which stages run, and how each one's sockets attach, derived from declarations.

The shipped chain (`SHIPPED`) plus the config's `stages` entries (each inserted `after` or `before`
a named stage) form a line: one source, filters, the one filter that publishes, then sinks. Every
stage class declares its role (pipeline/stage.py); from those declarations alone this module
derives the processes, each socket's endpoint and bind/connect side, the dispatch steps, who
acknowledges, who publishes and how many frames may be in flight:

 capture --frames--> detect (xN) --detections--> classify --classify_out--> smooth --results (PUB)--> record ...
  source, binds      its output name             binds its input            reorders, publishes  \--annotated--> display

Between two stages the endpoint is named after the upstream stage's output. A source binds its
output; otherwise a single downstream process binds its input; when both sides run several
processes a dispatch step (pipeline/dispatch.py) binds both (`NAME_in` towards the workers), so
workers only connect and can run on any host. The publisher binds `results` (consumers),
`sink_results` (the pipeline's own result sinks and live flow limiter: private, so no consumer can
delay or load them) and, when a sink takes frames, `annotated`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.config import REPO_ROOT, PipelineConfig
from pipeline.config_file import ConfigError, describe_error, load_config
from pipeline.stage import Feed, Role, Stage
from pipeline.transport import Role as Side

# the shipped graph, upstream first: (name, module)
SHIPPED = (("capture", "stages.capture"), ("detect", "stages.detect"), ("classify", "stages.classify"),
           ("smooth", "stages.smooth"), ("display", "stages.display"), ("record", "stages.record"))
DISPATCH_MODULE = "pipeline.dispatch"
CONTROL = "control"  # the supervisor's endpoint
RESULTS, ANNOTATED = "results", "annotated"  # the publisher's endpoints
SINK_RESULTS = "sink_results"  # the result stream for the pipeline's own sinks (private: consumers use `results`)


class Format(Enum):
    """What goes out on a port."""

    FRAME = "frame"  # [header, pixels]
    RESULT = "result"  # [topic, result record]: no pixels, for consumers


@dataclass(frozen=True)
class Port:
    endpoint: str  # endpoint name (config `endpoints.NAME`)
    socket: str  # push | pull | pub | sub
    side: Side
    format: Format = Format.FRAME
    live_drops: bool = False  # in live mode, drop (and count) instead of waiting for a slow peer


@dataclass(frozen=True)
class Node:
    """One stage of the graph with its wiring; `workers` processes run it."""

    name: str
    module: str
    class_name: str
    role: Role
    workers: int = 1
    reorders: bool = False
    publishes: bool = False
    acknowledges: bool = False
    input: Port | None = None
    outputs: tuple[Port, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)

    def key(self, worker: int) -> str:
        """The name a process reports under (control, metrics, stamps): NAME.K when several run, else NAME."""
        return f"{self.name}.{worker}" if self.workers > 1 else self.name


@dataclass(frozen=True)
class StageInstance:
    node: Node
    worker: int

    @property
    def key(self) -> str:
        return self.node.key(self.worker)


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]

    @property
    def source(self) -> Node:
        return self.nodes[0]

    @property
    def publisher(self) -> Node:
        return next(node for node in self.nodes if node.publishes)

    def node(self, name: str) -> Node:
        """The node called `name`; ConfigError when the graph has none."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise ConfigError(f"no stage named {name!r} in this graph ({', '.join(n.name for n in self.nodes)})")

    def instances(self) -> list[StageInstance]:
        """Every stage process, upstream first."""
        return [StageInstance(node, worker) for node in self.nodes for worker in range(node.workers)]

    def acknowledging(self) -> list[Node]:
        """Lossless: the stages whose acknowledgements set capture's floor (the publisher when no sink writes)."""
        return [node for node in self.nodes if node.acknowledges] or [self.publisher]

    def endpoints(self) -> set[str]:
        """Every endpoint name the graph uses, and the supervisor's."""
        ports = [port for node in self.nodes for port in (node.input, *node.outputs) if port is not None]
        return {port.endpoint for port in ports} | {CONTROL}

    def result_subscribers(self, config: PipelineConfig) -> int:
        """Subscribers the publisher waits for before it is ready: sinks on the result stream, and capture's flow limiter when live."""
        taking = sum(node.input is not None and node.input.format is Format.RESULT for node in self.nodes)
        return taking + int(config.policy() == "live")

    def max_in_flight(self, config: PipelineConfig) -> int:
        """Live: frames let in between capture and result (`source.max_in_flight`, else one per worker of the largest pool)."""
        return config.source.max_in_flight or max(node.workers for node in self.nodes)

    def save(self, path: Path) -> None:
        """Write the graph as JSON (the supervisor hands it to every stage process)."""
        path.write_text(json.dumps([asdict(node) for node in self.nodes], default=lambda v: v.value))

    @classmethod
    def load(cls, path: Path) -> "Graph":
        """Read a graph written by `save`."""
        def port(raw: dict[str, Any] | None) -> Port | None:
            return None if raw is None else Port(raw["endpoint"], raw["socket"], Side(raw["side"]), Format(raw["format"]), raw["live_drops"])

        nodes = [Node(**{**raw, "role": Role(raw["role"]), "input": port(raw["input"]), "outputs": tuple(port(p) for p in raw["outputs"])})
                 for raw in json.loads(path.read_text())]
        return cls(tuple(nodes))


def stage_class(module: str, class_name: str = "") -> type[Stage]:
    """The Stage class a module defines (the one named `class_name`, or its only one)."""
    loaded = importlib.import_module(module)
    found = [obj for obj in vars(loaded).values() if isinstance(obj, type) and issubclass(obj, Stage)
             and obj.__module__ == loaded.__name__ and (not class_name or obj.__qualname__ == class_name)]
    if len(found) != 1:
        raise ImportError(f"{module} defines {len(found)} Stage classes{' named ' + class_name if class_name else ''}, not one")
    return found[0]


def _field(config: PipelineConfig, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


@dataclass(frozen=True)
class _Entry:
    """One stage as the config asks for it, before its class is read."""

    name: str
    module: str
    workers: int | None = None  # an added stage's `workers`; shipped stages name a config field instead
    settings: dict[str, Any] = field(default_factory=dict)
    where: str = ""  # its config path, for errors ("stages.0"); "" for a shipped stage


def _entries(config: PipelineConfig) -> list[_Entry]:
    """Every stage, upstream first: the shipped ones, the config's inserted where they ask."""
    entries = [_Entry(name, module) for name, module in SHIPPED]
    for index, entry in enumerate(config.stages):
        where = f"stages.{index}"
        names = [e.name for e in entries]
        if entry.name in names:
            raise ConfigError(f"{where}.name: a stage named {entry.name!r} already exists")
        anchor = entry.after or entry.before
        if not anchor or (entry.after and entry.before):
            raise ConfigError(f"{where}: give exactly one of after or before")
        if anchor not in names:
            raise ConfigError(f"{where}.{'after' if entry.after else 'before'}: no stage named {anchor!r} ({', '.join(names)})")
        entries.insert(names.index(anchor) + bool(entry.after), _Entry(entry.name, entry.module, entry.workers, entry.settings, where))
    return entries


def _node(entry: _Entry, cls: type[Stage], config: PipelineConfig) -> Node:
    """The node of one entry, its settings checked against the class's `Settings`."""
    where = entry.where or entry.name
    settings = entry.settings
    if cls.Settings is not None:
        try:
            settings = cls.Settings.model_validate(settings).model_dump(mode="json")
        except ValidationError as error:
            path, problem = describe_error(error.errors()[0])
            raise ConfigError(f"{where}.settings.{path}: {problem}") from None
    workers = _field(config, cls.workers_field) if cls.workers_field else entry.workers or 1
    if workers > 1 and (cls.reorders or cls.publishes or cls.role is not Role.FILTER):
        raise ConfigError(f"{where}: {entry.name} runs as one process (it is a {cls.role.value} or keeps frame order), not {workers}")
    return Node(entry.name, entry.module, cls.__qualname__, cls.role, workers, cls.reorders, cls.publishes, cls.acknowledges,
                settings=settings)


def build_graph(config: PipelineConfig) -> Graph:
    """The graph this config runs; ConfigError (one line) for a graph that cannot be wired."""
    chain: list[tuple[Node, type[Stage]]] = []  # the source, the filters, the publisher
    sinks: list[tuple[Node, type[Stage]]] = []
    entries = _entries(config)
    for entry in entries:
        try:
            cls = stage_class(entry.module)
        except Exception as error:  # an added stage's module: any import failure is the user's to fix
            raise ConfigError(f"{entry.where or entry.name}.module: cannot load {entry.module!r} ({type(error).__name__}: {error})") from None
        if cls.enabled_field and not _field(config, cls.enabled_field):
            continue
        node, where = _node(entry, cls, config), entry.where or entry.name
        if cls.role is Role.SINK:
            sinks.append((node, cls))
        elif (cls.role is Role.SOURCE) != (not chain):
            raise ConfigError(f"{where}: the graph starts with its one source; {entry.name} is a {cls.role.value}")
        elif chain and chain[-1][0].publishes:
            raise ConfigError(f"{where}: {entry.name} comes after {chain[-1][0].name}, which publishes; only sinks may")
        else:
            chain.append((node, cls))
    if not chain or not chain[-1][0].publishes:
        raise ConfigError("stages: the chain does not end in a stage that publishes results")
    nodes = _wire(chain, sinks)
    known = {f"{node.name}_in" for node in nodes} | {CONTROL, RESULTS, ANNOTATED}
    known |= {port.endpoint for node in nodes for port in (node.input, *node.outputs) if port is not None}
    for name in config.endpoints.model_extra or {}:
        if name not in known:
            raise ConfigError(f"endpoints.{name}: no such edge in this graph (known: {', '.join(sorted(known))})")
    names = {entry.name for entry in entries} | {node.name for node in nodes}  # a disabled stage may keep its section
    for name in config.restart.model_extra or {}:
        if name not in names:
            raise ConfigError(f"restart.{name}: unknown field (a stage name: {', '.join(sorted(names))})")
    return Graph(tuple(nodes))


def _wire(chain: list[tuple[Node, type[Stage]]], sinks: list[tuple[Node, type[Stage]]]) -> list[Node]:
    """Give every node its ports: the chain's edges, dispatch steps where needed, the publisher's outputs."""
    inputs: dict[str, Port] = {}
    outputs: dict[str, list[Port]] = {node.name: [] for node, _ in chain}
    dispatch_before: dict[str, Node] = {}  # downstream stage name -> the dispatch step in front of it
    for (upstream, upstream_class), (downstream, _) in zip(chain, chain[1:]):
        endpoint = upstream_class.output or f"{upstream.name}_out"
        if upstream.role is Role.SOURCE:
            outputs[upstream.name].append(Port(endpoint, "push", Side.BIND))
            inputs[downstream.name] = Port(endpoint, "pull", Side.CONNECT)
        elif downstream.workers == 1:
            outputs[upstream.name].append(Port(endpoint, "push", Side.CONNECT))
            inputs[downstream.name] = Port(endpoint, "pull", Side.BIND)
        else:  # several on both sides: a dispatch step binds both, the workers connect
            outputs[upstream.name].append(Port(endpoint, "push", Side.CONNECT))
            spread = f"{downstream.name}_in"
            name = "dispatch" if not dispatch_before else f"dispatch_{downstream.name}"
            dispatch_before[downstream.name] = Node(name, DISPATCH_MODULE, "Dispatch", Role.FILTER,
                                                    input=Port(endpoint, "pull", Side.BIND), outputs=(Port(spread, "push", Side.BIND),))
            inputs[downstream.name] = Port(spread, "pull", Side.CONNECT)
    frame_sinks = [node.name for node, cls in sinks if cls.feed is Feed.FRAMES]
    if len(frame_sinks) > 1:
        raise ConfigError(f"stages: one sink at most takes frames ({', '.join(frame_sinks)} do)")
    publisher = chain[-1][0]
    outputs[publisher.name].append(Port(SINK_RESULTS, "pub", Side.BIND, Format.RESULT))
    outputs[publisher.name].append(Port(RESULTS, "pub", Side.BIND, Format.RESULT))
    if frame_sinks:
        outputs[publisher.name].append(Port(ANNOTATED, "push", Side.BIND, live_drops=True))
    wired: list[Node] = []
    for node, _ in chain:
        if node.name in dispatch_before:
            wired.append(dispatch_before[node.name])
        wired.append(_with_ports(node, inputs.get(node.name), tuple(outputs[node.name])))
    for node, cls in sinks:
        port = Port(ANNOTATED, "pull", Side.CONNECT) if cls.feed is Feed.FRAMES else Port(SINK_RESULTS, "sub", Side.CONNECT, Format.RESULT)
        wired.append(_with_ports(node, port, ()))
    return wired


def _with_ports(node: Node, input: Port | None, outputs: tuple[Port, ...]) -> Node:
    return Node(**{**node.__dict__, "input": input, "outputs": outputs})


def plan(config: PipelineConfig) -> list[StageInstance]:
    """Every stage process this config runs, upstream first."""
    return build_graph(config).instances()


def derive_in_child(config_path: str, overrides: list[str], out: Path) -> Graph:
    """The graph of this config, derived by a short-lived `python -m pipeline.graph` and read back.

    Reading the declarations imports every stage module (OpenCV, onnxruntime: ~80 MB); the
    supervisor asks a child for the graph so that it keeps none of them. ConfigError carries the
    child's one line."""
    command = [sys.executable, "-m", "pipeline.graph", "--config", config_path, "--out", str(out)]
    command += [arg for override in overrides for arg in ("--set", override)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"deriving the stage graph failed (exit status {result.returncode})"]
        raise ConfigError(lines[-1].removeprefix("config error: "))
    return Graph.load(out)


def main(argv: list[str] | None = None) -> int:
    """`python -m pipeline.graph --config my.yaml [--out graph.json]`: check and write (or print) the graph."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.graph", description=main.__doc__)
    parser.add_argument("--config", required=True, help="pipeline YAML config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    parser.add_argument("--out", default=None, help="write the graph here as JSON (default: print its processes)")
    args = parser.parse_args(argv)
    try:
        graph = build_graph(load_config(args.config, args.set))
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    if args.out:
        graph.save(Path(args.out))
    else:
        print(" ".join(instance.key for instance in graph.instances()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
