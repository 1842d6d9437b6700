"""Ethernet frames for hand-made captures: IPv4/IPv6, UDP and TCP (with real streams), written fast.

Scapy builds one template; the bytes of every other frame are patched with `struct` (building each
packet with Scapy is ~50x slower, and a benchmark capture has hundreds of thousands of them).
`TcpWire` keeps one TCP connection per (client, server) pair with handshake, sequence and
acknowledgement numbers, and cuts what is written into segments at arbitrary points, so a segment
can end inside a message or hold the end of one message and the start of the next.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

_ETH4 = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.2", ttl=64)
              / UDP(sport=1, dport=2))[:14]
_ETH6 = _ETH4[:12] + b"\x86\xdd"
UDP_PROTO, TCP_PROTO = 17, 6


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip(src: str, dst: str, proto: int, l4: bytes) -> bytes:
    """Ethernet + IPv4/IPv6 header around a transport segment whose checksum field is zero."""
    csum_at = 6 if proto == UDP_PROTO else 16
    if ":" in src:
        s, d = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
        pseudo = s + d + struct.pack("!IxxxB", len(l4), proto)
        header = struct.pack("!IHBB", 6 << 28, len(l4), proto, 64) + s + d
        eth = _ETH6
    else:
        s, d = socket.inet_aton(src), socket.inet_aton(dst)
        pseudo = s + d + struct.pack("!BBH", 0, proto, len(l4))
        ip = bytearray(struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0) + s + d)
        ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
        header, eth = bytes(ip), _ETH4
    csum = checksum(pseudo + l4)
    if proto == UDP_PROTO:
        csum = csum or 0xFFFF
    return eth + header + l4[:csum_at] + struct.pack("!H", csum) + l4[csum_at + 2:]


def udp_frame(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    """Ethernet/IPv4-or-IPv6/UDP frame around `payload`, lengths and checksums filled in."""
    return _ip(src, dst, UDP_PROTO, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)


SYN, ACK, PSH = 0x02, 0x10, 0x08


def tcp_frame(src: str, sport: int, dst: str, dport: int, seq: int, ack: int, flags: int,
              payload: bytes = b"") -> bytes:
    head = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
    return _ip(src, dst, TCP_PROTO, head + payload)


@dataclass
class _Conn:
    client: tuple[str, int]
    server: tuple[str, int]
    seq: dict[bool, int] = field(default_factory=lambda: {True: 1000, False: 5000})   # True: client -> server
    pending: dict[bool, bytes] = field(default_factory=lambda: {True: b"", False: b""})


class TcpWire:
    """TCP connections between SIP elements, segmenting what each side writes.

    `cuts(n)` gives, for the n-th flush, the offsets at which the buffered bytes are split into
    segments (an empty list sends one segment). Consecutive writes in the same direction with no
    other traffic in between are buffered together, so one segment can carry the tail of one
    message and the head of the next.
    """

    def __init__(self, out: list[tuple[float, bytes]], cuts: Callable[[int, int], list[int]]) -> None:
        self.out = out
        self.cuts = cuts
        self.conns: dict[tuple[str, str], _Conn] = {}
        self.next_port = 40000
        self.flushes = 0
        self.last: tuple[_Conn, bool] | None = None
        self.t = 0.0

    def connect(self, client: str, server: tuple[str, int], t: float) -> _Conn:
        """The connection `client` (an IP address) opened to `server`, with a handshake just before
        `t` when it is new; the client side gets the next ephemeral port."""
        key = (client, f"{server[0]}:{server[1]}")
        conn = self.conns.get(key)
        if conn is None:
            conn = _Conn((client, self.next_port), server)
            self.next_port += 1
            c, s = conn.client, conn.server
            self.out.append((t - 3e-4, tcp_frame(*c, *s, conn.seq[True] - 1, 0, SYN)))
            self.out.append((t - 2e-4, tcp_frame(*s, *c, conn.seq[False] - 1, conn.seq[True], SYN | ACK)))
            self.out.append((t - 1e-4, tcp_frame(*c, *s, conn.seq[True], conn.seq[False], ACK)))
            self.conns[key] = conn
        return conn

    def write(self, conn: _Conn, from_client: bool, data: bytes, t: float) -> None:
        if self.last is not None and self.last != (conn, from_client):
            self.flush()
        conn.pending[from_client] += data
        self.last = (conn, from_client)
        self.t = t

    def flush(self) -> None:
        if self.last is None:
            return
        conn, up = self.last
        data = conn.pending[up]
        conn.pending[up] = b""
        self.last = None
        if not data:
            return
        src, dst = (conn.client, conn.server) if up else (conn.server, conn.client)
        points = [0, *sorted(p for p in self.cuts(self.flushes, len(data)) if 0 < p < len(data)), len(data)]
        self.flushes += 1
        for i, (a, b) in enumerate(zip(points, points[1:], strict=False)):
            self.out.append((self.t + i * 5e-5, tcp_frame(*src, *dst, conn.seq[up], conn.seq[not up], PSH | ACK,
                                                         data[a:b])))
            conn.seq[up] += b - a
