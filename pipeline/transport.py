"""ZeroMQ sockets: the only module that knows socket options. Stages never import zmq."""
from __future__ import annotations

import os
from enum import Enum
from pathlib import Path

import zmq
from zmq.utils.monitor import recv_monitor_message


class Role(Enum):
    """How a stage's socket attaches to its endpoint."""

    BIND = "bind"
    CONNECT = "connect"


def open_socket(
    context: zmq.Context,
    socket_type: int,
    endpoint: str,
    role: Role,
    hwm: int,
    subscribe: bytes | None = None,
) -> zmq.Socket:
    """A socket with small queues and a bounded linger, bound or connected to `endpoint`.

    A bind on an ipc path whose file is left over from a killed run removes the stale file first.
    Raises zmq.ZMQError with the endpoint in the message when the endpoint cannot be used.
    """
    sock = context.socket(socket_type)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.LINGER, 2000)  # end-of-stream must get out, but never hang a shutdown forever
    if subscribe is not None:
        sock.setsockopt(zmq.SUBSCRIBE, subscribe)
    try:
        if role is Role.BIND:
            if endpoint.startswith("ipc://"):
                path = Path(endpoint[len("ipc://"):])
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.exists() and not _ipc_in_use(context, endpoint):
                    os.unlink(path)
            sock.bind(endpoint)
        else:
            sock.connect(endpoint)
    except zmq.ZMQError as error:
        sock.close(0)
        raise zmq.ZMQError(error.errno, f"cannot {role.value} {endpoint}: {error.strerror}") from None
    return sock


def _ipc_in_use(context: zmq.Context, endpoint: str) -> bool:
    """True when another live process is bound to this ipc endpoint."""
    probe = context.socket(zmq.PUSH)
    probe.setsockopt(zmq.LINGER, 0)
    monitor = probe.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED)
    try:
        probe.connect(endpoint)
        if monitor.poll(200):
            event = recv_monitor_message(monitor)
            return event["event"] == zmq.EVENT_CONNECTED
        return False
    finally:
        probe.disable_monitor()
        monitor.close(0)
        probe.close(0)


def ipc_path(endpoint: str) -> Path | None:
    """The file behind an ipc:// endpoint, else None."""
    return Path(endpoint[len("ipc://"):]) if endpoint.startswith("ipc://") else None
