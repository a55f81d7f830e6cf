"""The liveness pipeline's framework (config schema, stage graph, wire format, transport, supervisor, client)."""
from __future__ import annotations

__version__ = "0.2.0"
