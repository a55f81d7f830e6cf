#!/usr/bin/env python3
"""An example consumer: attach to a running pipeline and print one line per frame.

    python examples/consumer.py --endpoint tcp://127.0.0.1:5556
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.client import subscribe  # noqa: E402


def _attributes(attributes: dict) -> str:
    """Added stages' per-face attributes, e.g. " face_size.side_px=212" (empty without any)."""
    return "".join(f" {namespace}.{key}={value}" for namespace, values in attributes.items() for key, value in values.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5556", help="the pipeline's endpoints.results")
    parser.add_argument("--timeout", type=float, default=None, help="give up after this many seconds of silence")
    parser.add_argument("--count", type=int, default=None, help="stop after this many results")
    args = parser.parse_args()
    seen = 0
    try:
        for result in subscribe(args.endpoint, timeout_s=args.timeout):
            verdicts = ", ".join(f"{face.label} {face.score:.2f} at {list(face.box)}{_attributes(face.attributes)}"
                                 for face in result.faces) or "no face"
            print(f"#{result.seq} {verdicts} ({result.latency_ms} ms)", flush=True)
            seen += 1
            if args.count is not None and seen >= args.count:
                break
    except KeyboardInterrupt:
        pass
    print(f"consumer: {seen} results", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
