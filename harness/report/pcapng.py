"""Minimal pcap/pcapng packet reader and pcapng writer (with per-packet comments).

Enough to copy any capture tshark reads from a file into a pcapng whose packets carry
`opt_comment` options, which Wireshark shows (`frame.comment`). Timestamps are kept to the
nanosecond; each link type gets its own interface block.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

SHB, IDB, EPB, SPB, OLD_PB = 0x0A0D0D0A, 1, 6, 3, 2
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_END, OPT_COMMENT, IF_TSRESOL = 0, 1, 9


@dataclass
class Packet:
    data: bytes
    linktype: int
    ts_ns: int
    wirelen: int
    comments: list[str] = field(default_factory=list)


class CaptureFormatError(ValueError):
    """Not a pcap or pcapng file, or a truncated one."""


def read_packets(path: str | Path) -> Iterator[Packet]:
    """Every packet of a pcap or pcapng file, in file order (the order tshark numbers frames)."""
    with open(path, "rb") as f:
        magic = f.read(4)
        if len(magic) < 4:
            raise CaptureFormatError(f"{path}: too short for a capture file")
        if struct.unpack("<I", magic)[0] == SHB:
            yield from _read_pcapng(f, magic)
        else:
            yield from _read_pcap(f, magic, path)


def _read_pcap(f: BinaryIO, magic: bytes, path: str | Path) -> Iterator[Packet]:
    formats = {b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),
               b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1)}
    if magic not in formats:
        raise CaptureFormatError(f"{path}: not a pcap or pcapng file")
    order, scale = formats[magic]
    head = f.read(20)
    if len(head) < 20:
        raise CaptureFormatError(f"{path}: truncated pcap header")
    linktype = struct.unpack(order + "HHiIII", head)[5] & 0x0FFFFFFF
    while True:
        rec = f.read(16)
        if len(rec) < 16:
            return
        sec, frac, caplen, wirelen = struct.unpack(order + "IIII", rec)
        data = f.read(caplen)
        if len(data) < caplen:
            return
        yield Packet(data, linktype, sec * 1_000_000_000 + frac * scale, wirelen)


def _read_pcapng(f: BinaryIO, first: bytes) -> Iterator[Packet]:
    order = "<"
    interfaces: list[tuple[int, int]] = []   # (linktype, units per second)
    pending = first
    while True:
        head = pending + f.read(8 - len(pending))
        pending = b""
        if len(head) < 8:
            return
        btype = struct.unpack(order + "I", head[:4])[0]
        if btype == SHB:
            magic = f.read(4)
            order = "<" if struct.unpack("<I", magic)[0] == BYTE_ORDER_MAGIC else ">"
            length = struct.unpack(order + "I", head[4:8])[0]
            f.read(length - 12)
            interfaces = []
            continue
        length = struct.unpack(order + "I", head[4:8])[0]
        body = f.read(length - 8)
        if len(body) < length - 8:
            return
        if btype == IDB:
            linktype = struct.unpack(order + "H", body[:2])[0]
            interfaces.append((linktype, _tsresol(body[8:-4], order)))
        elif btype in (EPB, OLD_PB):
            if btype == EPB:
                iface, high, low, caplen, wirelen = struct.unpack(order + "IIIII", body[:20])
            else:
                iface, _drops, high, low, caplen, wirelen = struct.unpack(order + "HHIIII", body[:20])
            linktype, units = interfaces[iface] if iface < len(interfaces) else (1, 1_000_000)
            ts = (high << 32) | low
            yield Packet(body[20:20 + caplen], linktype, ts * 1_000_000_000 // units, wirelen,
                         _comments(body[20 + _pad(caplen):-4], order))
        elif btype == SPB:
            wirelen = struct.unpack(order + "I", body[:4])[0]
            linktype = interfaces[0][0] if interfaces else 1
            yield Packet(body[4:4 + wirelen], linktype, 0, wirelen)


def _pad(n: int) -> int:
    return (n + 3) & ~3


def _options(raw: bytes, order: str) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while pos + 4 <= len(raw):
        code, length = struct.unpack(order + "HH", raw[pos:pos + 4])
        if code == OPT_END:
            return
        yield code, raw[pos + 4:pos + 4 + length]
        pos += 4 + _pad(length)


def _tsresol(raw: bytes, order: str) -> int:
    for code, value in _options(raw, order):
        if code == IF_TSRESOL and value:
            v = value[0]
            return 2 ** (v & 0x7F) if v & 0x80 else 10 ** v
    return 1_000_000


def _comments(raw: bytes, order: str) -> list[str]:
    return [value.decode("utf-8", "replace") for code, value in _options(raw, order) if code == OPT_COMMENT]


def _block(btype: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", btype, length) + body + struct.pack("<I", length)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (_pad(len(value)) - len(value))


def write_pcapng(path: str | Path, packets: Iterator[Packet] | list[Packet]) -> int:
    """Write `packets` (nanosecond timestamps, their comments as opt_comment); returns the count."""
    count = 0
    ifaces: dict[int, int] = {}
    with open(path, "wb") as out:
        out.write(_block(SHB, struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1)))
        for p in packets:
            if p.linktype not in ifaces:
                ifaces[p.linktype] = len(ifaces)
                opts = _option(IF_TSRESOL, b"\x09") + _option(OPT_END, b"")
                out.write(_block(IDB, struct.pack("<HHI", p.linktype, 0, 262144) + opts))
            opts = b"".join(_option(OPT_COMMENT, c.encode("utf-8")) for c in p.comments)
            if opts:
                opts += _option(OPT_END, b"")
            data = p.data + b"\0" * (_pad(len(p.data)) - len(p.data))
            body = struct.pack("<IIIII", ifaces[p.linktype], p.ts_ns >> 32, p.ts_ns & 0xFFFFFFFF, len(p.data),
                               p.wirelen) + data + opts
            out.write(_block(EPB, body))
            count += 1
    return count
