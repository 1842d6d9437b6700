"""Sockets that can only send inside the test network.

The corpus and the mutations are built to address only test addresses, but what an agent does with
a tortured message (forward to a Request-URI host, send RTP to an SDP address, answer a Via) is
exactly what is under test. So during a robustness run every socket the agents bind refuses, before
any name lookup, a destination that is not an IP address inside the allowed networks: a crafted
hostname can neither trigger DNS nor reach a real network.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

from harness.net.udp import Binder


class GuardedSocket(socket.socket):
    """A UDP socket whose sendto() refuses destinations outside `allowed` (EPERM, nothing sent)."""

    allowed: tuple[ipaddress.IPv4Network, ...] = ()
    refused: list[str]

    def sendto(self, data: Any, *args: Any) -> int:  # type: ignore[override]
        address = args[-1]
        host = address[0] if isinstance(address, tuple) else address
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is None or not any(ip in net for net in self.allowed):
            self.refused.append(str(host))
            raise OSError(errno.EPERM, f"robustness guard: {host!r} is outside the test network")
        return super().sendto(data, *args)


def guarded_socket(networks: Iterable[str]) -> GuardedSocket:
    sock = GuardedSocket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.allowed = tuple(ipaddress.IPv4Network(n) for n in networks)
    sock.refused = []
    return sock


def guarded_binder(networks: Iterable[str], made: list[GuardedSocket] | None = None) -> Binder:
    """A BINDER that gives every agent a guarded socket bound where it asked."""
    nets = list(networks)

    def bind(ip: str, port: int) -> socket.socket:
        sock = guarded_socket(nets)
        try:
            sock.bind((ip, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        if made is not None:
            made.append(sock)
        return sock

    return bind
