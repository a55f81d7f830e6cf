"""Collect: with `classify.workers` > 1, put the classifiers' frames back in capture order and publish them.

A framework step: the runner reorders (the spec is `ordered`), then publishes the results and
feeds the display exactly as a single classifier does; end of stream goes out once every frame
up to the last one has been released.

    python -m pipeline.collect --config my.yaml
"""
from __future__ import annotations

from pipeline.runner import main
from pipeline.stage import Stage


class Collect(Stage):
    """Passes classified frames on, in order, to the result stream and the display."""

    name = "collect"


if __name__ == "__main__":
    raise SystemExit(main(Collect))
