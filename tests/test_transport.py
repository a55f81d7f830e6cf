"""Loopback ports handed to configs: outside the range the kernel gives outgoing connections."""
from __future__ import annotations

import socket

from pipeline.transport import _ephemeral_range, free_tcp_port


def test_free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    low, high = _ephemeral_range()
    ports = [free_tcp_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert not [port for port in ports if low <= port <= high]  # an outgoing connection could take those
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", port))
