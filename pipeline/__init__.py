"""The liveness pipeline's framework (config schema, stage graph, wire format, transport, supervisor, client),
and its Python API:

    import pipeline

    with pipeline.run("configs/file.yaml", source="video.mp4") as results:
        for result in results:
            print(result.seq, [(face.label, round(face.score, 2)) for face in result.faces])
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from pipeline.api import PipelineRun

__version__ = "0.2.0"


def run(config: str | Path | Mapping[str, Any], source: str | int | list[str] | None = None, jsonl: str | Path | None = None,
        overrides: list[str] | None = None, verbose: bool = False) -> "PipelineRun":
    """A pipeline run from a config path, a shipped config's name or a mapping: use it in `with`
    and iterate it for every frame's `pipeline.client.Result`; leaving the block stops every stage.

    `source` sets source.uri (a list of files or folders: several sources, tagged source0,
    source1, ...), `jsonl` also keeps the results in that file, `overrides` are `dotted.key=value`
    strings (as --set). A bad config raises ConfigError at once; a run that
    fails raises pipeline.api.PipelineError. Details: pipeline/api.py."""
    from pipeline.api import PipelineRun  # imported here: every stage process imports this package

    return PipelineRun(config, source, jsonl, overrides, verbose)
