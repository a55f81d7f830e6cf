"""ZeroMQ sockets: the only module that knows socket options. Stages never import zmq."""
from __future__ import annotations

import os
import random
import socket
from enum import Enum
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from pipeline.config import CurveConfig
from pipeline.config_file import resolve_path

_AUTHENTICATORS: dict[zmq.Context, ThreadAuthenticator] = {}


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
    curve: CurveConfig | None = None,
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
        if curve is not None and endpoint.startswith("tcp://"):
            _secure(context, sock, role, curve)
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


def _secure(context: zmq.Context, sock: zmq.Socket, role: Role, curve: CurveConfig) -> None:
    """CurveZMQ on a tcp socket: a binding socket is a server that accepts only the listed client
    keys (checked by one ZAP authenticator thread per process); a connecting socket is a client."""
    try:
        if role is Role.BIND and curve.server_secret_key and curve.allowed_clients:
            sock.curve_publickey, sock.curve_secretkey = _load_key(curve.server_secret_key, "curve.server_secret_key", secret=True)
            sock.curve_server = True
            if context not in _AUTHENTICATORS:
                authenticator = ThreadAuthenticator(context)
                authenticator.start()
                authenticator.configure_curve(domain="*", location=str(resolve_path(curve.allowed_clients)))
                _AUTHENTICATORS[context] = authenticator
        elif role is Role.CONNECT and curve.client_secret_key and curve.server_public_key:
            sock.curve_publickey, sock.curve_secretkey = _load_key(curve.client_secret_key, "curve.client_secret_key", secret=True)
            sock.curve_serverkey = _load_key(curve.server_public_key, "curve.server_public_key", secret=False)[0]
    except zmq.ZMQError as error:
        raise zmq.ZMQError(error.errno, f"CurveZMQ: {error.strerror}") from None


def _load_key(path: str, field: str, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret_key = zmq.auth.load_certificate(str(resolve_path(path)))
    except (OSError, ValueError) as error:
        raise zmq.ZMQError(zmq.EINVAL, f"{field} {path}: not a key file ({error})") from None
    if secret and secret_key is None:
        raise zmq.ZMQError(zmq.EINVAL, f"{field} {path}: holds no secret key (use the NAME.key_secret file)")
    return public, secret_key


def stop_authenticator(context: zmq.Context) -> None:
    """Stop this context's ZAP thread, if any (before context.term(), which would wait for it)."""
    authenticator = _AUTHENTICATORS.pop(context, None)
    if authenticator is not None:
        authenticator.stop()


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


_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (Linux; a common default elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_tcp_port() -> int:
    """A loopback TCP port nobody listens on right now, outside the ephemeral range, never handed out twice.

    A port the kernel picks for bind(0) comes from the ephemeral range, and the pipeline's stages
    connect (taking ephemeral ports) before every endpoint is bound: such a port could be taken by
    one of those connections before its own stage binds it ("Address already in use", seen in CI).
    For tests and benchmarks that write tcp:// endpoints into a config.
    """
    low, high = _ephemeral_range()
    candidates = [port for port in range(10000, 65536) if not low <= port <= high and port not in _handed_out]
    for port in random.SystemRandom().sample(candidates, min(200, len(candidates))):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port outside the ephemeral range")
