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
STAGES, CONSUMERS = "stages", "consumers"  # who may connect to a binding socket (its CurveZMQ key list)
_CURVE_HANDSHAKE_BYTES = 1024  # CurveZMQ's INITIATE command with its metadata fits in this


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
    peers: str = STAGES,
    max_message: int = -1,
    linger: int = 2000,
) -> zmq.Socket:
    """A socket with small queues and a bounded linger, bound or connected to `endpoint`.

    `peers` names the CurveZMQ key list a binding tcp socket accepts: STAGES (`curve.allowed_clients`)
    or CONSUMERS (the result stream: `curve.allowed_consumers` and the stage keys). `max_message`
    bounds every frame a peer may send (ZMQ_MAXMSGSIZE: a larger one drops that peer, unread).
    A bind on an ipc path whose file is left over from a killed run removes the stale file first.
    Raises zmq.ZMQError with the endpoint in the message when the endpoint cannot be used.
    """
    sock = context.socket(socket_type)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.LINGER, linger)  # end-of-stream must get out, but never hang a shutdown forever
    if subscribe is not None:
        sock.setsockopt(zmq.SUBSCRIBE, subscribe)
    try:
        if curve is not None and endpoint.startswith("tcp://") and _secure(context, sock, role, curve, peers) and max_message >= 0:
            max_message = max(max_message, _CURVE_HANDSHAKE_BYTES)  # the limit covers handshake commands too
        sock.setsockopt(zmq.MAXMSGSIZE, max_message)
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


def _secure(context: zmq.Context, sock: zmq.Socket, role: Role, curve: CurveConfig, peers: str) -> bool:
    """CurveZMQ on a tcp socket: a binding socket is a server that accepts only the keys of its
    `peers` list (checked by one ZAP authenticator thread per process, one ZAP domain per list:
    stage keys everywhere, consumer keys on the result stream only); a connecting socket is a client.
    True when the socket was secured."""
    try:
        if role is Role.BIND and curve.server_secret_key and curve.allowed_clients:
            sock.curve_publickey, sock.curve_secretkey = _load_key(curve.server_secret_key, "curve.server_secret_key", secret=True)
            sock.curve_server = True
            sock.zap_domain = peers.encode()
            if context not in _AUTHENTICATORS:
                authenticator = ThreadAuthenticator(context)
                authenticator.start()
                authenticator.configure_curve(domain=STAGES, location=str(resolve_path(curve.allowed_clients)))
                if curve.allowed_consumers:
                    authenticator.configure_curve(domain=CONSUMERS, location=str(resolve_path(curve.allowed_consumers)))
                authenticator.certs[CONSUMERS] = {**authenticator.certs.get(STAGES, {}), **authenticator.certs.get(CONSUMERS, {})}
                _AUTHENTICATORS[context] = authenticator
            return True
        if role is Role.CONNECT and curve.client_secret_key and curve.server_public_key:
            sock.curve_publickey, sock.curve_secretkey = _load_key(curve.client_secret_key, "curve.client_secret_key", secret=True)
            sock.curve_serverkey = _load_key(curve.server_public_key, "curve.server_public_key", secret=False)[0]
            return True
        return False
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


# ---- the result stream towards consumers ---------------------------------------------------
MAX_SUBSCRIPTION_BYTES = 64  # a subscription frame longer than this drops its peer (ZMQ_MAXMSGSIZE)
MAX_SUBSCRIPTIONS = 256  # live (consumer, topic) subscriptions kept before the socket is rebuilt
MAX_CONSUMERS = 64  # connected consumers kept before the socket is rebuilt
CONSUMER_HWM = 1000  # results queued for one slow consumer before it loses them
_NOTICES_PER_SERVICE = 256  # subscription notices read per call: a flood cannot starve the stage


class ResultPublisher:
    """The result stream's public socket: consumers may read it, but cannot load it.

    An XPUB that never waits for a consumer (a slow or stalled one loses results beyond
    `CONSUMER_HWM`), refuses subscription frames over `MAX_SUBSCRIPTION_BYTES` (the peer is
    dropped), reads every subscription notice itself (verbose) and counts live subscriptions and
    connections; past `MAX_SUBSCRIPTIONS` or `MAX_CONSUMERS` it closes the socket, which frees what
    every peer left in it, and binds again (well-behaved consumers reconnect and subscribe again).
    The pipeline's own sinks subscribe elsewhere (a private endpoint), so none of this touches them.
    """

    def __init__(self, context: zmq.Context, endpoint: str, hwm: int, curve: CurveConfig | None = None) -> None:
        """Bind `endpoint` (zmq.ZMQError naming it when it cannot)."""
        self.context, self.endpoint, self.curve = context, endpoint, curve
        self.hwm = min(hwm, CONSUMER_HWM)
        self.rebuilds = 0
        self.socket: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._open()

    def _open(self) -> None:
        sock = open_socket(self.context, zmq.XPUB, self.endpoint, Role.BIND, self.hwm, curve=self.curve,
                           peers=CONSUMERS, max_message=MAX_SUBSCRIPTION_BYTES + 1, linger=0)
        sock.setsockopt(zmq.RCVHWM, 16)  # subscriptions queued inside libzmq before we have looked at them
        sock.setsockopt(zmq.XPUB_VERBOSER, 1)  # every (un)subscription reaches us, so we count them all
        self._monitor = sock.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self.socket, self.subscriptions, self.consumers = sock, 0, 0

    def _close(self) -> None:
        if self.socket is not None:
            self.socket.disable_monitor()
            self.socket.close(0)
        if self._monitor is not None:
            self._monitor.close(0)
        self.socket = self._monitor = None
        self.subscriptions = self.consumers = 0

    def send(self, parts: list) -> None:
        """Publish one message; never blocks (a consumer whose queue is full misses it)."""
        self.service()
        if self.socket is None:
            return
        try:
            self.socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            pass

    def service(self) -> None:
        """Read pending subscription notices and connection events (bounded); rebuild past the limits."""
        if self.socket is None:
            self._reopen()
            return
        for _ in range(_NOTICES_PER_SERVICE):
            try:
                notice = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            self.subscriptions += 1 if notice[:1] == b"\x01" else -1 if notice[:1] == b"\x00" else 0
        assert self._monitor is not None
        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)
            self.consumers += 1 if event["event"] == zmq.EVENT_ACCEPTED else -1
        if self.subscriptions > MAX_SUBSCRIPTIONS or self.consumers > MAX_CONSUMERS:
            self._close()
            self.rebuilds += 1
            self._reopen()

    def _reopen(self) -> None:
        try:
            self._open()
        except zmq.ZMQError:
            self.socket = None  # the port is not free yet: try again on the next call

    def close(self) -> None:
        """Close the socket (linger 0: nothing waits for consumers)."""
        self._close()
