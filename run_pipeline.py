#!/usr/bin/env python3
"""Run the liveness pipeline: every stage in its own process, wired with ZeroMQ, from a YAML config.

    python run_pipeline.py --config configs/file.yaml --source video.mp4 --jsonl results.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from pipeline.config_file import ConfigError, load_config
from pipeline.graph import derive_in_child
from pipeline.supervisor import Supervisor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/default.yaml", help="pipeline config (default: %(default)s)")
    parser.add_argument("--source", help="camera index, video file, rtsp:// or http:// URL, or image folder (source.uri)")
    parser.add_argument("--jsonl", help="write every result to this JSON-lines file (record.jsonl)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set detect.workers=2 (repeatable)")
    args = parser.parse_args(argv)
    overrides = list(args.set)
    if args.source is not None:
        overrides.append(f"source.uri={json.dumps(args.source)}")  # quoted: never re-typed by YAML
    if args.jsonl is not None:
        overrides.append(f"record.jsonl={json.dumps(args.jsonl)}")
    try:
        config = load_config(args.config, overrides)
        with tempfile.TemporaryDirectory(prefix="liveness-graph-") as folder:  # a stage that cannot be placed is a config error too
            supervisor = Supervisor(config, derive_in_child(args.config, overrides, Path(folder) / "graph.json"))
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    return supervisor.run()


if __name__ == "__main__":
    raise SystemExit(main())
