"""A raw ZMTP 3.0 peer for the hostile-input tests: it speaks the wire protocol over a plain TCP
socket, so it can send what no well-behaved ZeroMQ socket would (huge or endless subscriptions)."""
from __future__ import annotations

import socket
import struct


def _frame(body: bytes, command: bool = False, more: bool = False) -> bytes:
    flags = (0x04 if command else 0) | (0x01 if more else 0)
    if len(body) < 256:
        return bytes([flags, len(body)]) + body
    return bytes([flags | 0x02]) + struct.pack(">Q", len(body)) + body


class RawPeer:
    """A TCP connection that has done the ZMTP NULL handshake as a socket of `socket_type` (b"SUB", b"PUSH")."""

    def __init__(self, port: int, socket_type: bytes = b"SUB", host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        greeting = b"\xff" + bytes(8) + b"\x7f" + bytes([3, 1]) + b"NULL".ljust(20, b"\0") + b"\0" + bytes(31)
        self.sock.sendall(greeting)
        ready = b"\x05READY" + bytes([11]) + b"Socket-Type" + struct.pack(">I", len(socket_type)) + socket_type
        self.sock.sendall(_frame(ready, command=True))
        self._read(64)  # the other side's greeting, then its READY: only then may messages follow
        _, size = self._read(2)  # a short command frame: READY with a property or two
        self._read(size)

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionResetError("the other side closed the connection during the handshake")
            data += chunk
        return data

    def subscribe(self, topic: bytes) -> None:
        """Send one subscription message (its first byte 1, then the topic)."""
        self.sock.sendall(_frame(b"\x01" + topic))

    def send(self, parts: list[bytes]) -> None:
        """Send one multipart message (PUSH to a PULL)."""
        self.sock.sendall(b"".join(_frame(part, more=i < len(parts) - 1) for i, part in enumerate(parts)))

    def alive(self) -> bool:
        """False once the other side has closed the connection."""
        self.sock.settimeout(0.2)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return False
        except socket.timeout:
            return True
        except OSError:
            return False

    def close(self) -> None:
        self.sock.close()
