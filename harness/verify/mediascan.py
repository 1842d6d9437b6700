"""RTP and RTCP packets read from the frames of an indexed capture, without tshark.

Why: on a load capture two thirds of the frames are RTP. Having tshark find them (its RTP/RTCP
heuristics, on every UDP datagram) and print their header fields costs it ~20 % more than
dissecting the SIP alone, and decoding those lines costs Python more than reading twelve bytes
per frame here. The split read (reader._split_pass) asks tshark for SIP only and takes the media
from this scan; it runs only on captures the index walks to UDP in every frame (no TCP, IP
fragments, tunnels, or link layers it cannot read: CaptureIndex.why_not).

What counts as media, by the RFCs rather than by tshark's heuristics (which they match on the
captures we test; see testcases/unit/test_mediascan.py):
- a UDP datagram whose first two bits are version 2 and whose ports are both >= 1024 (well-known
  ports belong to their own protocols: a DNS query id can look like an RTP version), or one end of
  which is an address and port below 1024 that an SDP of the capture names for RTP or its RTCP
  (`named`: the conversations tshark's SDP dissector sets up, matched at either end);
- RTCP (RFC 3550 §6.4, RFC 4585 §6.1, demultiplexed as RFC 5761 §4 says) when its second byte is a
  packet type that starts a compound packet (SR 200, RR 201, BYE 203, APP 204, PSFB 206) and its
  length is a multiple of four; another value in 192..223 is neither (an RTCP type in a position it
  cannot start at, or an RTP payload type RFC 5761 rules out);
- RTP (RFC 3550 §5.1) otherwise, when the datagram holds the 12-byte fixed header.
SIP text never has version 2 (its first byte is a letter), nor do STUN, DTLS or TURN channel data.
"""

from __future__ import annotations

import socket
import struct
from array import array

from harness.verify.pcapindex import IPPROTO_UDP, LINKTYPE_ETHERNET, SPB, CaptureIndex, _ip_offset, _transport
from harness.verify.wire import RtcpPacket, RtpPacket

RTCP_FIRST_TYPES = frozenset({200, 201, 203, 204, 206})
_RTP_FIELDS = struct.Struct("!BBHII")    # V/P/X/CC, M/PT, sequence number, timestamp, SSRC
_PORTS_LENGTH = struct.Struct("!HHH")    # UDP source port, destination port, length


class _Clock:
    """frame.time_epoch of a frame, equal to the float of the decimal tshark prints: an integer
    count of 10^-digits seconds divided by 10^digits (Python rounds int / int correctly)."""

    def __init__(self, index: CaptureIndex) -> None:
        self.index = index
        self.pcap = index.format == "pcap"
        self.pair = struct.Struct(index.order + "II").unpack_from
        self.kind = struct.Struct(index.order + "I").unpack_from
        self.scale = [10 ** d for d in index.digits]

    def time(self, i: int) -> float:
        mm, index = self.index._map, self.index
        record = index.records[i]
        scale = self.scale[index.interfaces[i]]
        if self.pcap:
            seconds, fraction = self.pair(mm, record)
            return (seconds * scale + fraction) / scale
        if self.kind(mm, record)[0] == SPB:
            return 0.0   # a Simple Packet Block has no timestamp (tshark shows the epoch)
        high, low = self.pair(mm, record + 12)
        return ((high << 32) | low) / scale


def scan(index: CaptureIndex, first: int = 0, stop: int | None = None,
         named: frozenset[tuple[str, int]] = frozenset()) -> tuple[list[RtpPacket], list[RtcpPacket], array]:
    """The RTP and RTCP packets among frames [first, stop) (0-based; frame numbers in the packets
    count from 1), in frame order, and the 0-based positions of the other frames (what tshark
    still has to dissect). `named`: (address, port) pairs below 1024 that an SDP named, taken as
    media too."""
    mm = index._map
    assert mm is not None, "index closed"
    clock = _Clock(index)
    names: dict[bytes, tuple[str, str]] = {}
    rtp: list[RtpPacket] = []
    rtcp: list[RtcpPacket] = []
    ethernet = [lt == LINKTYPE_ETHERNET for lt in index.linktypes]
    rtp_fields, ports_length = _RTP_FIELDS.unpack_from, _PORTS_LENGTH.unpack_from
    offsets, lengths, interfaces = index.offsets, index.lengths, index.interfaces
    others = array("I")
    keep = others.append
    for i in range(first, index.frames if stop is None else stop):
        start, length = offsets[i], lengths[i]
        if ethernet[interfaces[i]] and length >= 42 and mm[start + 12:start + 15] == b"\x08\x00\x45":
            # The common case, read in place: untagged Ethernet, IPv4 without options.
            if mm[start + 23] != IPPROTO_UDP:
                keep(i)
                continue
            data, ip, udp = mm, start + 14, start + 34
            end = start + length
            v6 = False
        else:
            data = mm[start:start + length]
            ip = _ip_offset(data, index.linktypes[interfaces[i]])
            if ip is None:
                keep(i)
                continue
            where = _transport(data, ip)
            if where is None or where[0] != IPPROTO_UDP or where[1] + 8 > len(data):
                keep(i)
                continue
            udp, end = where[1], len(data)
            v6 = data[ip] >> 4 != 4
        payload = udp + 8
        if payload + 8 > end or data[payload] >> 6 != 2:
            keep(i)
            continue
        sport, dport, udp_length = ports_length(data, udp)
        if (sport < 1024 or dport < 1024) and not (named and _named(data, ip, v6, names, sport, dport, named)):
            keep(i)
            continue
        size = udp_length - 8          # as sent; the frame may hold less (snap length)
        kind = data[payload + 1]
        if 192 <= kind <= 223:
            if kind not in RTCP_FIRST_TYPES or size % 4:
                keep(i)
                continue
            src, dst = _addresses(data, ip, v6, names)
            rtcp.append(RtcpPacket(i + 1, clock.time(i), src, sport, dst, dport, kind))
            continue
        if size < 12 or payload + 12 > end:
            keep(i)
            continue
        _, second, seq, timestamp, ssrc = rtp_fields(data, payload)
        src, dst = _addresses(data, ip, v6, names)
        rtp.append(RtpPacket(i + 1, clock.time(i), src, sport, dst, dport, ssrc, second & 0x7F, seq, timestamp,
                             bool(second & 0x80), "", index))
    return rtp, rtcp, others


def _named(data: bytes, ip: int, v6: bool, names: dict[bytes, tuple[str, str]], sport: int, dport: int,
           named: frozenset[tuple[str, int]]) -> bool:
    """Whether an end of the datagram is one an SDP named (tshark's SDP conversations match either
    end, the other one any port)."""
    src, dst = _addresses(data, ip, v6, names)
    return (src, sport) in named or (dst, dport) in named


def _addresses(data: bytes, ip: int, v6: bool, names: dict[bytes, tuple[str, str]]) -> tuple[str, str]:
    """(source, destination) as tshark -n prints them; each address pair formatted once."""
    key = data[ip + 8:ip + 40] if v6 else data[ip + 12:ip + 20]
    pair = names.get(key)
    if pair is None:
        family, size = (socket.AF_INET6, 16) if v6 else (socket.AF_INET, 4)
        pair = names[key] = (socket.inet_ntop(family, key[:size]), socket.inet_ntop(family, key[size:]))
    return pair


__all__ = ["scan"]
