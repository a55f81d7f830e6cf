"""Find a pipeline run's stage processes in /proc (benchmarks and soak share this)."""
from __future__ import annotations

from pathlib import Path


def stage_processes(root: int) -> dict[str, int]:
    """{stage key: pid} for the stage processes whose parent is `root` (the supervisor)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != root:
                continue
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, ValueError, IndexError):
            continue
        if "--stage" in args and "--worker" in args:
            name, worker = args[args.index("--stage") + 1], args[args.index("--worker") + 1]
            found[f"{name}.{worker}"] = int(entry.name)
    several = {key.rsplit(".", 1)[0] for key in found if not key.endswith(".0")}
    # the keys the stages report under: NAME.K where several processes of NAME run, else NAME
    return {key if key.rsplit(".", 1)[0] in several else key.rsplit(".", 1)[0]: pid for key, pid in found.items()}
