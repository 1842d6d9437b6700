"""Where each frame of a pcap/pcapng file is, so a large capture can be dissected in parts.

Why: tshark dissects on one core. A load capture is mostly UDP (SIP and RTP) where every frame
dissects on its own, so two tshark processes, each fed half of the frames as a complete capture
through a pipe, read it in a little over half the time. That is only safe when no frame needs
another frame's bytes: TCP (stream reassembly) and IP fragments make a capture unsplittable, and
so does anything this walker does not understand (another link type, several pcapng sections, a
damaged or cut record); those captures are read in one pass, as before.

The index also hands out a frame's bytes (`rtp_payload`): the verifier asks tshark which frames
are RTP and for their header fields, and takes the few payloads the mixing check decodes from the
file itself, instead of having tshark print every payload of the capture as hex.

Formats: pcap (both byte orders, micro- and nanosecond), pcapng (Section Header, Interface
Description, Enhanced and Simple Packet blocks; other blocks are carried along). Compressed files
(tshark reads gzip) are not walked: `build` returns None.
"""

from __future__ import annotations

import mmap
import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D
IDB, SPB, EPB, OBSOLETE_PB = 1, 3, 6, 2

# Link types (https://www.tcpdump.org/linktypes.html) -> how to find the network-layer header.
LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP = 0, 1, 101, 108
LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2 = 113, 228, 229, 276
KNOWN_LINKTYPES = frozenset({LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP, LINKTYPE_LINUX_SLL,
                             LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2})
ETH_IPV4, ETH_IPV6, ETH_VLANS = 0x0800, 0x86DD, (0x8100, 0x88A8, 0x9100)
IPPROTO_TCP, IPPROTO_UDP, IPV6_FRAGMENT = 6, 17, 44
# IPv6 extension headers a UDP datagram may sit behind (hop-by-hop, routing, destination options).
IPV6_EXTENSIONS = frozenset({0, 43, 60})
# IP inside IP: IPIP, IPv6-in-IPv4, GRE, ESP, AH, L2TPv3, MPLS-in-IP, ...; and UDP tunnels: L2TP,
# NAT-T (ESP in UDP), GTP-U (S1-U/N3: a UE's own IMS traffic), VXLAN, VXLAN-GPE, Geneve.
TUNNEL_PROTOCOLS = frozenset({4, 41, 47, 50, 51, 97, 115, 137})
TUNNEL_PORTS = frozenset({1701, 2152, 4500, 4789, 4790, 6081})
# EtherTypes that carry IP below another header this walker does not read (MPLS unicast and
# multicast, PPPoE session, transparent Ethernet bridging, 802.1ah, NSH).
IP_CARRIERS = frozenset({0x8847, 0x8848, 0x8864, 0x6558, 0x88E7, 0x894F})


@dataclass
class CaptureIndex:
    """Offsets of every frame of one capture file (see the module docstring)."""

    path: str
    format: str                              # "pcap" or "pcapng"
    offsets: array = field(repr=False)       # file offset of each frame's captured bytes
    lengths: array = field(repr=False)       # captured length of each frame
    records: array = field(repr=False)       # file offset of each frame's record (pcap) / block (pcapng)
    linktypes: list[int]                     # per interface (pcap: one)
    interfaces: array = field(repr=False)    # interface of each frame (pcap: all 0)
    head: bytes = b""                        # what precedes the first frame: file header / SHB + IDBs
    end: int = 0                             # offset where the last record ends
    order: str = "<"                         # byte order of the record headers
    digits: list[int] = field(default_factory=lambda: [6])   # per interface: timestamp units are 10^-digits s
    why_not: str | None = None               # why the capture cannot be split (None: it can)
    _map: mmap.mmap | None = field(default=None, repr=False)

    @property
    def frames(self) -> int:
        return len(self.offsets)

    @property
    def splittable(self) -> bool:
        return self.why_not is None

    @classmethod
    def build(cls, path: str | Path) -> CaptureIndex | None:
        """Walk the file; None when it is not an uncompressed pcap/pcapng this walker reads."""
        path = str(path)
        try:
            with open(path, "rb") as f:
                if Path(path).stat().st_size < 24:
                    return None
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None
        try:
            magic = mm[:4]
            if magic in PCAP_MAGICS:
                index = _walk_pcap(path, mm, PCAP_MAGICS[magic])
            elif struct.unpack_from("<I", mm, 0)[0] == PCAPNG_SHB:
                index = _walk_pcapng(path, mm)
            else:
                index = None
        except (struct.error, ValueError, IndexError):
            index = None
        if index is None:
            mm.close()
            return None
        index._map = mm
        if index.why_not is None:
            index.why_not = _needs_other_frames(index)
        return index

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None

    def frame_bytes(self, number: int) -> bytes:
        """The captured bytes of frame `number` (1-based, tshark's frame.number)."""
        assert self._map is not None, "index closed"
        if not 1 <= number <= self.frames:
            raise IndexError(f"frame {number} is not in 1..{self.frames}")
        i = number - 1
        start = self.offsets[i]
        return self._map[start:start + self.lengths[i]]

    def part(self, start: int, stop: int) -> Iterator[bytes]:
        """Frames [start, stop) (0-based) as a complete capture file, in pieces to write to a pipe."""
        assert self._map is not None, "index closed"
        yield self.head
        first = self.records[start] if start < self.frames else self.end
        last = self.records[stop] if stop < self.frames else self.end
        step = 1 << 20
        for pos in range(first, last, step):
            yield self._map[pos:min(pos + step, last)]

    def records_of(self, frames: array) -> Iterator[bytes]:
        """The frames at 0-based positions `frames` (ascending) as a complete capture file of
        their own, in pieces to write to a pipe (tshark numbers them 1..len(frames))."""
        mm = self._map
        assert mm is not None, "index closed"
        yield self.head
        size = struct.Struct(self.order + "I").unpack_from
        records, lengths, pcap = self.records, self.lengths, self.format == "pcap"
        pieces: list[bytes] = []
        held = 0
        for i in frames:
            at = records[i]
            piece = mm[at:at + (16 + lengths[i] if pcap else size(mm, at + 4)[0])]
            pieces.append(piece)
            held += len(piece)
            if held >= 1 << 20:
                yield b"".join(pieces)
                pieces, held = [], 0
        if pieces:
            yield b"".join(pieces)

    def network_header(self, number: int) -> tuple[bytes, int] | None:
        """(frame bytes, offset of the IPv4/IPv6 header) of frame `number`, None when not IP."""
        data = self.frame_bytes(number)
        at = _ip_offset(data, self.linktypes[self.interfaces[number - 1]])
        return None if at is None else (data, at)

    def udp_payload(self, number: int) -> bytes | None:
        """The UDP payload of frame `number` as captured, None when it is no unfragmented UDP."""
        found = self.network_header(number)
        if found is None:
            return None
        data, ip = found
        where = _transport(data, ip)
        if where is None or where[0] != IPPROTO_UDP:
            return None
        udp, end = where[1], where[2]
        if udp + 8 > len(data):
            return None
        length = struct.unpack_from("!H", data, udp + 4)[0]
        return data[udp + 8:min(end, udp + length, len(data))]

    def rtp_payload(self, number: int) -> bytes:
        """The RTP payload of frame `number` (after header, CSRCs and extension, without padding);
        b"" when the frame holds no readable RTP."""
        udp = self.udp_payload(number)
        if udp is None or len(udp) < 12:
            return b""
        first = udp[0]
        if first >> 6 != 2:
            return b""   # not RTP version 2
        at = 12 + 4 * (first & 0x0F)
        if first & 0x10:   # header extension: 4 bytes, then `length` 32-bit words
            if at + 4 > len(udp):
                return b""
            at += 4 + 4 * struct.unpack_from("!H", udp, at + 2)[0]
        end = len(udp)
        if first & 0x20 and end > at:
            end -= udp[-1]
        return udp[at:end] if end > at else b""


def _walk_pcap(path: str, mm: mmap.mmap, order: str) -> CaptureIndex:
    linktype = struct.unpack_from(order + "I", mm, 20)[0] & 0x0FFFFFFF
    offsets, lengths, records = array("Q"), array("I"), array("Q")
    size = len(mm)
    pos = 24
    why_not = None if linktype in KNOWN_LINKTYPES else f"link type {linktype}"
    unpack = struct.Struct(order + "II").unpack_from
    while pos + 16 <= size:
        caplen, _wire = unpack(mm, pos + 8)
        if pos + 16 + caplen > size:
            why_not = why_not or f"record at offset {pos} cut short"
            break
        records.append(pos)
        offsets.append(pos + 16)
        lengths.append(caplen)
        pos += 16 + caplen
    if pos != size and why_not is None:
        why_not = f"{size - pos} stray bytes at the end"
    nano = mm[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    return CaptureIndex(path, "pcap", offsets, lengths, records, [linktype], array("I", bytes(4 * len(offsets))),
                        head=bytes(mm[:24]), end=pos, why_not=why_not, order=order, digits=[9 if nano else 6])


def _walk_pcapng(path: str, mm: mmap.mmap) -> CaptureIndex | None:
    size = len(mm)
    if size < 28:
        return None
    bom = struct.unpack_from("<I", mm, 8)[0]
    order = "<" if bom == PCAPNG_BOM else ">" if bom == 0x4D3C2B1A else None
    if order is None:
        return None
    block = struct.Struct(order + "II").unpack_from
    u32 = struct.Struct(order + "I").unpack_from
    offsets, lengths, records, interfaces = array("Q"), array("I"), array("Q"), array("I")
    linktypes: list[int] = []
    digits: list[int] = []
    why_not: str | None = None
    head_end: int | None = None
    pos = 0
    while pos + 12 <= size:
        kind, total = block(mm, pos)
        if total < 12 or total % 4 or pos + total > size:
            why_not = f"block at offset {pos} damaged or cut short"
            break
        if kind == EPB:
            iface, caplen = u32(mm, pos + 8)[0], u32(mm, pos + 20)[0]
            if caplen > total - 32:
                why_not = why_not or f"block at offset {pos} damaged (packet longer than its block)"
                caplen = max(0, total - 32)
            if head_end is None:
                head_end = pos
            records.append(pos)
            offsets.append(pos + 28)
            lengths.append(caplen)
            if iface >= len(linktypes):
                why_not = why_not or f"packet on undeclared interface {iface}"
                iface = 0
            interfaces.append(iface)
        elif kind == SPB:
            caplen = min(u32(mm, pos + 8)[0], total - 16)
            if head_end is None:
                head_end = pos
            records.append(pos)
            offsets.append(pos + 12)
            lengths.append(caplen)
            interfaces.append(0)
        elif kind == PCAPNG_SHB:
            if pos:
                why_not = why_not or "several pcapng sections"
        elif kind == IDB:
            linktypes.append(struct.unpack_from(order + "H", mm, pos + 8)[0])
            resolution = _idb_digits(mm, pos, total, order)
            if resolution is None:
                why_not = why_not or f"interface {len(linktypes) - 1}: a timestamp resolution or offset this walker does not read"
            digits.append(resolution or 6)
            if head_end is not None:
                why_not = why_not or "an interface declared after the first packet"
        elif kind == OBSOLETE_PB:
            why_not = why_not or "obsolete pcapng Packet Blocks"
        elif head_end is not None and kind != 5:   # statistics blocks may follow; others (names, secrets) not
            why_not = why_not or f"pcapng block type {kind:#x} between packets"
        pos += total
    if pos != size and why_not is None:
        why_not = f"{size - pos} stray bytes at the end"
    if any(lt not in KNOWN_LINKTYPES for lt in linktypes):
        why_not = why_not or f"link types {sorted(set(linktypes) - KNOWN_LINKTYPES)}"
    head = bytes(mm[:head_end if head_end is not None else pos])
    return CaptureIndex(path, "pcapng", offsets, lengths, records, linktypes or [LINKTYPE_ETHERNET], interfaces,
                        head=head, end=pos, why_not=why_not, order=order, digits=digits or [6])


def _idb_digits(mm: mmap.mmap, pos: int, total: int, order: str) -> int | None:
    """Decimal digits of an Interface Description Block's timestamps (if_tsresol, default 6), None
    when they are not a power of ten up to nanoseconds or the interface has an if_tsoffset."""
    at, end, digits = pos + 16, pos + total - 4, 6
    while at + 4 <= end:
        code, length = struct.unpack_from(order + "HH", mm, at)
        if code == 0:
            break
        if code == 9 and length >= 1:        # if_tsresol
            value = mm[at + 4]
            if value & 0x80 or value > 9:
                return None
            digits = value
        elif code == 14:                     # if_tsoffset
            return None
        at += 4 + (length + 3) // 4 * 4
    return digits


def _network(data: bytes, linktype: int) -> tuple[int, int] | None:
    """(offset, EtherType) of the network-layer header of a frame of `linktype`; None for link
    types this walker does not read. An 802.3 frame (length instead of EtherType) gives its length."""
    if linktype == LINKTYPE_ETHERNET:
        at, ethertype = 12, int.from_bytes(data[12:14], "big")
        while ethertype in ETH_VLANS:
            at += 4
            ethertype = int.from_bytes(data[at:at + 2], "big")
        return at + 2, ethertype
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return 0, ETH_IPV4 if data[:1] and data[0] >> 4 == 4 else ETH_IPV6
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        return 4, ETH_IPV4 if data[4:5] and data[4] >> 4 == 4 else ETH_IPV6
    if linktype == LINKTYPE_LINUX_SLL:
        return 16, int.from_bytes(data[14:16], "big")
    if linktype == LINKTYPE_LINUX_SLL2:
        return 20, int.from_bytes(data[0:2], "big")
    return None


def _ip_offset(data: bytes, linktype: int) -> int | None:
    """Offset of the IP header in a frame of `linktype`, None when the frame carries no IP."""
    found = _network(data, linktype)
    if found is None:
        return None
    at, ethertype = found
    if ethertype not in (ETH_IPV4, ETH_IPV6) or at >= len(data):
        return None
    version = data[at] >> 4
    return at if version in (4, 6) else None


def _transport(data: bytes, ip: int) -> tuple[int, int, int] | None:
    """(protocol, offset of the transport header, end of the IP payload); protocol -1 for a fragment."""
    if data[ip] >> 4 == 4:
        if ip + 20 > len(data):
            return None
        ihl = (data[ip] & 0x0F) * 4
        total = struct.unpack_from("!H", data, ip + 2)[0]
        if struct.unpack_from("!H", data, ip + 6)[0] & 0x3FFF:   # MF set or an offset: a fragment
            return -1, ip + ihl, ip + total
        return data[ip + 9], ip + ihl, ip + total
    if ip + 40 > len(data):
        return None
    nh, at = data[ip + 6], ip + 40
    end = at + struct.unpack_from("!H", data, ip + 4)[0]
    while nh in IPV6_EXTENSIONS and at + 8 <= len(data):
        nh, at = data[at], at + 8 + 8 * data[at + 1]
    if nh == IPV6_FRAGMENT:
        return -1, at, end
    return nh, at, end


def _needs_other_frames(index: CaptureIndex) -> str | None:
    """Why some frame may need another frame's bytes, or holds IP this walker cannot reach (TCP,
    IP fragments, tunnels, MPLS/PPPoE, ...), else None. The split read takes RTP and RTCP from the
    frames itself (harness/verify/mediascan.py), so it must see every UDP datagram tshark would."""
    mm = index._map
    assert mm is not None
    ethernet_only = all(lt == LINKTYPE_ETHERNET for lt in index.linktypes)
    for i, (start, length) in enumerate(zip(index.offsets, index.lengths, strict=True)):
        if ethernet_only and length >= 42 and mm[start + 12:start + 14] == b"\x08\x00" and mm[start + 14] == 0x45:
            # The common case, read in place: untagged Ethernet + IPv4 without options.
            proto = mm[start + 23]
            if mm[start + 20] & 0x3F or mm[start + 21]:
                return f"IP fragments (frame {i + 1})"
            if proto == IPPROTO_UDP:
                sport, dport = struct.unpack_from("!HH", mm, start + 34)
                if sport in TUNNEL_PORTS or dport in TUNNEL_PORTS:
                    return f"tunnelled traffic (UDP port {sport if sport in TUNNEL_PORTS else dport}, frame {i + 1})"
                continue
            why = _transport_why(proto, i)
            if why:
                return why
            continue
        data = mm[start:start + length]
        found = _network(data, index.linktypes[index.interfaces[i]])
        if found is None:
            continue
        ethertype = found[1]
        ip = _ip_offset(data, index.linktypes[index.interfaces[i]])
        if ip is None:
            if ethertype in IP_CARRIERS:
                return f"frames of EtherType {ethertype:#06x} (frame {i + 1})"
            continue
        where = _transport(data, ip)
        if where is None:
            continue
        if where[0] == -1:
            return f"IP fragments (frame {i + 1})"
        if where[0] == IPPROTO_UDP and where[1] + 4 <= len(data):
            sport, dport = struct.unpack_from("!HH", data, where[1])
            if sport in TUNNEL_PORTS or dport in TUNNEL_PORTS:
                return f"tunnelled traffic (UDP port {sport if sport in TUNNEL_PORTS else dport}, frame {i + 1})"
            continue
        why = _transport_why(where[0], i)
        if why:
            return why
    return None


def _transport_why(proto: int, i: int) -> str | None:
    if proto == IPPROTO_TCP:
        return f"TCP (frame {i + 1})"
    if proto in TUNNEL_PROTOCOLS:
        return f"tunnelled traffic (IP protocol {proto}, frame {i + 1})"
    return None
