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
        if "-m" in args and "--worker" in args:
            name = args[args.index("-m") + 1].rsplit(".", 1)[-1]
            worker = args[args.index("--worker") + 1]
            found[f"{name}.{worker}" if name in ("detect", "classify") else name] = int(entry.name)
    return found
