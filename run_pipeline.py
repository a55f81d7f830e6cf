#!/usr/bin/env python3
"""Run the liveness pipeline: every stage in its own process, wired with ZeroMQ, from a YAML config.

    python run_pipeline.py --config configs/file.yaml --source video.mp4 --jsonl results.jsonl

The same as `liveness-pipeline run CONFIG ...` (pipeline/cli.py) once the package is installed.
"""
from __future__ import annotations

import argparse

from pipeline.cli import add_run_arguments, epilog, run


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and run the pipeline; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, epilog=epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, config_flag=True)
    args = parser.parse_args(argv)
    return run(args.config, args.source, args.jsonl, args.set, args.run_info)


if __name__ == "__main__":
    raise SystemExit(main())
