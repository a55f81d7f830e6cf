"""Where a running pipeline can be reached: free ports for `auto` endpoints and the run-info file.

`endpoints.results: auto` (or any `tcp://HOST:0` endpoint) gets a free port when a run starts,
so two runs of one config never collide. The run announces its result endpoint on stdout and
writes a small JSON file in the temp folder (`liveness-runs/CONFIG-PID.json`) while it runs;
`pipeline.client.subscribe()` and `examples/consumer.py` find the newest running pipeline there.

    {"config": "/abs/configs/file.yaml", "name": "file", "pid": 4242, "results": "tcp://127.0.0.1:40113",
     "source": "runs/demo.avi", "policy": "lossless", "jsonl": "runs/demo.jsonl", "started": 1764820000.0}
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.config import EndpointsConfig, PipelineConfig
from pipeline.transport import free_tcp_port

_ANY_PORT = re.compile(r"^tcp://(?P<host>.+):0$")


def runs_dir() -> Path:
    """The folder of run-info files (`$LIVENESS_RUNS_DIR`, else `liveness-runs` in the temp folder)."""
    return Path(os.environ.get("LIVENESS_RUNS_DIR") or Path(tempfile.gettempdir()) / "liveness-runs")


def resolve_ports(config: PipelineConfig) -> PipelineConfig:
    """The config with `endpoints.results: auto` and every `tcp://HOST:0` endpoint given a free port."""
    endpoints = config.endpoints.model_dump()
    changed = False
    for name, value in endpoints.items():
        host = "127.0.0.1" if name == "results" and value == "auto" else None
        match = _ANY_PORT.match(value)
        if match:
            host = match.group("host")
        if host is not None:
            endpoints[name] = f"tcp://{host}:{free_tcp_port()}"
            changed = True
    if not changed:
        return config
    return config.model_copy(update={"endpoints": EndpointsConfig.model_validate(endpoints)})


def connectable(endpoint: str) -> str:
    """An endpoint a local consumer can connect to (a bind on every address is reached on loopback)."""
    return re.sub(r"^tcp://(\*|0\.0\.0\.0):", "tcp://127.0.0.1:", endpoint)


def write_run_info(config: PipelineConfig, config_path: str | Path) -> Path:
    """Write this process's run-info file and return its path (remove it with `remove_run_info`)."""
    folder = runs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = Path(config_path).stem
    info = {"config": str(Path(config_path).resolve()), "name": name, "pid": os.getpid(),
            "pid_started": process_started(os.getpid()),
            "results": connectable(config.endpoints.results), "source": config.source.uri, "source_id": config.source.id,
            "policy": config.policy(), "jsonl": config.record.jsonl,
            "video": config.display.video if config.display.enabled else None,
            "web": f"http://{config.display.web_host}:{config.display.web_port}/" if config.display.web_port else None,
            "prometheus": (f"http://{config.metrics.prometheus_host}:{config.metrics.prometheus_port}/metrics"
                           if config.metrics.prometheus_port else None),
            "started": time.time()}
    path = folder / f"{name}-{os.getpid()}.json"
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(info, indent=1))
    partial.replace(path)  # a reader never sees half a file
    return path


def remove_run_info(path: Path) -> None:
    """Remove a run-info file written by `write_run_info` (missing is fine)."""
    path.unlink(missing_ok=True)


def process_started(pid: int) -> int | None:
    """When a process started (clock ticks after boot, Linux), to tell it from a later one given
    the same pid; None where /proc cannot say."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, started: Any = None) -> bool:
    """Whether the run's supervisor still runs (and is the same process, when its start is known)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not isinstance(started, int) or process_started(pid) in (started, None)


def read_run_info(path: str | Path) -> dict[str, Any]:
    """One run-info file as a mapping; ValueError (one line) when it is missing or not a run-info file."""
    try:
        info = json.loads(Path(path).read_text())
    except OSError as error:
        raise ValueError(f"{path}: cannot read run info ({error.strerror})") from None
    except json.JSONDecodeError:
        raise ValueError(f"{path}: not a run-info file (invalid JSON)") from None
    if not isinstance(info, dict) or not isinstance(info.get("results"), str):
        raise ValueError(f"{path}: not a run-info file (no results endpoint)")
    return info


def running(name: str | None = None) -> list[dict[str, Any]]:
    """Run infos of the pipelines running on this machine, newest first (only config `name` when given)."""
    found = []
    for path in runs_dir().glob("*.json"):
        try:
            info = read_run_info(path)
        except ValueError:
            continue
        if not isinstance(info.get("pid"), int) or not _alive(info["pid"], info.get("pid_started")):
            path.unlink(missing_ok=True)  # a run that was killed before it could remove its file
            continue
        if name is None or info.get("name") == Path(name).stem:
            found.append({**info, "path": str(path)})
    return sorted(found, key=lambda info: info.get("started", 0), reverse=True)


def find_run(name: str | None = None, wait_s: float = 0.0) -> dict[str, Any]:
    """The newest running pipeline's run info, waiting up to `wait_s` for one to start.

    ValueError (one line) when none is running."""
    deadline = time.monotonic() + wait_s
    while True:
        found = running(name)
        if found:
            return found[0]
        if time.monotonic() >= deadline:
            what = f"of config {Path(name).stem!r} " if name else ""
            raise ValueError(f"no pipeline {what}is running on this machine (no run info in {runs_dir()}); "
                             "start one, or pass its endpoint")
        time.sleep(0.1)
