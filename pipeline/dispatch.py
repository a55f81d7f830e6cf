"""Dispatch: with `classify.workers` > 1, spread detected frames over the classifiers (PUSH/PULL).

A framework step, not a stage anyone writes: it passes every message on untouched. It binds the
`detections` endpoint the detect workers already push to, and `classify_in`, which every
classifier connects to, so classifiers can start on any host.

    python -m pipeline.dispatch --config my.yaml
"""
from __future__ import annotations

from pipeline.runner import main
from pipeline.stage import Stage


class Dispatch(Stage):
    """Passes frames from the detect workers on to whichever classifier is free."""

    name = "dispatch"


if __name__ == "__main__":
    raise SystemExit(main(Dispatch))
