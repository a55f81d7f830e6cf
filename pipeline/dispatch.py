"""Dispatch: spread frames over the workers of a stage that runs several processes (PUSH/PULL).

A framework step, not a stage anyone writes: the graph (pipeline/graph.py) puts one between two
stages that both run several processes. It passes every message on untouched; it binds the
upstream stage's output endpoint, which the upstream workers push to, and `NAME_in`, which every
downstream worker connects to, so workers on both sides only connect and can start on any host.

    python -m pipeline.runner --stage dispatch --config my.yaml
"""
from __future__ import annotations

from pipeline.stage import Stage


class Dispatch(Stage):
    """Passes frames from the upstream workers on to whichever downstream worker is free."""

    name = "dispatch"
