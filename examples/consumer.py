#!/usr/bin/env python3
"""An example consumer: attach to a running pipeline and print one line per frame.

    python examples/consumer.py                       # the newest pipeline running on this machine
    python examples/consumer.py --config file         # the newest run of configs/file.yaml
    python examples/consumer.py --run-info FILE       # the run whose run-info file this is
    python examples/consumer.py --endpoint tcp://127.0.0.1:5556
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.client import find_endpoint, subscribe  # noqa: E402


def _attributes(attributes: dict) -> str:
    """Added stages' per-face attributes, e.g. " face_size.side_px=212" (empty without any)."""
    return "".join(f" {namespace}.{key}={value}" for namespace, values in attributes.items() for key, value in values.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", default=None, help="the pipeline's endpoints.results (default: found from its run info)")
    parser.add_argument("--run-info", default=None, help="the run-info file a run printed at its start")
    parser.add_argument("--config", default=None, help="the newest run of this config (a name or path)")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for a pipeline to start (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=None, help="give up after this many seconds of silence")
    parser.add_argument("--count", type=int, default=None, help="stop after this many results")
    args = parser.parse_args()
    seen = 0
    try:
        endpoint = args.endpoint or find_endpoint(args.run_info, args.config, args.wait)
    except ValueError as error:
        print(f"consumer: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(f"consumer: listening on {endpoint}", file=sys.stderr, flush=True)
    try:
        for result in subscribe(endpoint, timeout_s=args.timeout):
            name = f" {result.file}" if result.file else ""
            verdicts = ", ".join(f"{face.label} {face.score:.2f} at {list(face.box)}{_attributes(face.attributes)}"
                                 for face in result.faces) or "no face"
            print(f"#{result.seq}{name} {verdicts} ({result.latency_ms} ms)", flush=True)
            seen += 1
            if args.count is not None and seen >= args.count:
                break
    except KeyboardInterrupt:
        pass
    print(f"consumer: {seen} results", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
