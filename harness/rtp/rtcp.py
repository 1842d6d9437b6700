"""RTCP (RFC 3550 §6): compound SR/RR + SDES CNAME (+ BYE) packets and the receiver statistics behind
their report blocks. Sans-IO: times are passed in, so tests need no clock.

Packets are built with `scapy.contrib.rtcp.RTCP`, which needs three workarounds in scapy 2.8:
- its `count` field defaults to 0 instead of counting `report_blocks`: pass `count=None`;
- an SDES chunk is not padded to a 32-bit boundary: the END item carries the null padding;
- `post_build` counts the payload into the length of the first packet, so a compound packet is the
  concatenation of separately built packets, never a Scapy stack.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

from scapy.contrib.rtcp import RTCP, ReceptionReport, SDESChunk, SDESItem, SenderInfo
from scapy.packet import Raw

SR, RR, SDES, BYE, APP = 200, 201, 202, 203, 204
CNAME = 1
RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000  # RFC 3550 A.1
MAX_MISORDER = 100
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
INTERVAL = 5.0  # RFC 3550 §6.2 minimum report interval


class RtcpParseError(ValueError):
    """A datagram that is not a valid RTCP compound packet."""


def ntp_timestamp(wallclock: float) -> int:
    """64-bit NTP timestamp (RFC 3550 §4) of a Unix time."""
    return int((wallclock + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR field of a report block."""
    return (ntp >> 16) & 0xFFFFFFFF


def report_interval(rng: random.Random, interval: float = INTERVAL, initial: bool = False) -> float:
    """RFC 3550 §6.2/§6.3.1: the interval times a random factor in [0.5, 1.5]; the first report waits
    half the minimum interval. (No reconsideration: two-party legs never approach the bandwidth share.)"""
    base = interval / 2 if initial else interval
    return base * rng.uniform(0.5, 1.5)


# --- building -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int  # 0..255, fixed point /256
    cumulative_lost: int  # signed 24 bit
    highest_seq: int  # extended highest sequence number received
    jitter: int  # RTP timestamp units
    lsr: int = 0
    dlsr: int = 0  # 1/65536 s

    def scapy(self) -> ReceptionReport:
        return ReceptionReport(sourcesync=self.ssrc, fraction_lost=self.fraction_lost,
                               cumulative_lost=self.cumulative_lost & 0xFFFFFF,
                               highest_seqnum_recv=self.highest_seq & 0xFFFFFFFF,
                               interarrival_jitter=self.jitter & 0xFFFFFFFF,
                               last_SR_timestamp=self.lsr, delay_since_last_SR=self.dlsr)


def build_sr(ssrc: int, ntp: int, rtp_timestamp: int, packets: int, octets: int,
             blocks: list[ReportBlock] | tuple[ReportBlock, ...] = ()) -> bytes:
    info = SenderInfo(ntp_timestamp=ntp, rtp_timestamp=rtp_timestamp & 0xFFFFFFFF,
                      sender_packet_count=packets & 0xFFFFFFFF, sender_octet_count=octets & 0xFFFFFFFF)
    return bytes(RTCP(packet_type=SR, count=None, sourcesync=ssrc, sender_info=info,
                      report_blocks=[b.scapy() for b in blocks[:31]]))


def build_rr(ssrc: int, blocks: list[ReportBlock] | tuple[ReportBlock, ...] = ()) -> bytes:
    return bytes(RTCP(packet_type=RR, count=None, sourcesync=ssrc, report_blocks=[b.scapy() for b in blocks[:31]]))


def build_sdes(ssrc: int, cname: str) -> bytes:
    """SDES with one chunk: CNAME, then END and null octets up to the next 32-bit boundary (§6.5)."""
    value = cname.encode()[:255]
    used = 4 + 2 + len(value)  # SSRC, CNAME type+length, text
    pad = 4 - used % 4  # END: at least one null octet
    end = SDESItem(chunk_type=0, length=0, value=b"\x00" * (pad - 2)) if pad >= 2 else None
    items = [SDESItem(chunk_type=CNAME, value=value)]
    if end is not None:
        items.append(end)
    data = bytes(RTCP(packet_type=SDES, count=1, sdes_chunks=[SDESChunk(sourcesync=ssrc, items=items)]))
    if pad < 2:  # a single null octet: SDESItem cannot express it, so append it and fix the length
        data += b"\x00"
        data = data[:2] + struct.pack("!H", len(data) // 4 - 1) + data[4:]
    return data


def build_bye(ssrc: int) -> bytes:
    return bytes(RTCP(packet_type=BYE, count=1) / Raw(struct.pack("!I", ssrc)))


# --- parsing --------------------------------------------------------------------------------------

def split_compound(data: bytes) -> list[bytes]:
    """The packets of a compound RTCP datagram, by their length fields (RFC 3550 §6.1, A.2 checks)."""
    parts: list[bytes] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 4:
            raise RtcpParseError(f"{len(data) - offset} trailing bytes after packet {len(parts)}")
        b0, pt, words = struct.unpack_from("!BBH", data, offset)
        if b0 >> 6 != 2:
            raise RtcpParseError(f"packet {len(parts)}: version {b0 >> 6}, expected 2")
        size = 4 * (words + 1)
        if offset + size > len(data):
            raise RtcpParseError(f"packet {len(parts)}: length {size} runs past the datagram")
        parts.append(data[offset:offset + size])
        offset += size
    if not parts or parts[0][1] not in (SR, RR):
        raise RtcpParseError("a compound packet starts with SR or RR")
    return parts


def parse_compound(data: bytes) -> list[RTCP]:
    """Each packet dissected by Scapy's RTCP layer."""
    return [RTCP(part) for part in split_compound(data)]


# --- receiver statistics --------------------------------------------------------------------------

@dataclass
class SourceStats:
    """RFC 3550 A.1 (sequence tracking, no probation), A.3 (loss), A.8 (jitter) for one SSRC."""

    ssrc: int
    base_seq: int
    max_seq: int
    cycles: int = 0
    bad_seq: int = RTP_SEQ_MOD + 1
    received: int = 0
    expected_prior: int = 0
    received_prior: int = 0
    transit: int | None = None
    jitter: float = 0.0
    lsr: int = 0  # middle 32 bits of the last SR's NTP timestamp
    lsr_at: float | None = None  # when that SR arrived
    heard: bool = True  # since the last report

    @classmethod
    def first(cls, ssrc: int, seq: int) -> SourceStats:
        return cls(ssrc, base_seq=seq, max_seq=seq)

    def update(self, seq: int, rtp_timestamp: int, arrival: int) -> None:
        """One RTP packet; `arrival` in RTP timestamp units of the same clock rate."""
        udelta = (seq - self.max_seq) % RTP_SEQ_MOD
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if seq == self.bad_seq:  # two sequential packets after a jump: the source restarted
                self.base_seq, self.max_seq, self.cycles = seq, seq, 0
                self.received = self.expected_prior = self.received_prior = 0
            else:
                self.bad_seq = (seq + 1) % RTP_SEQ_MOD
                return
        self.received += 1
        self.heard = True
        transit = (arrival - rtp_timestamp) & 0xFFFFFFFF
        if self.transit is not None:
            d = abs(((transit - self.transit + (1 << 31)) & 0xFFFFFFFF) - (1 << 31))
            self.jitter += (d - self.jitter) / 16.0
        self.transit = transit

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        return self.expected - self.received

    def block(self, now: float) -> ReportBlock:
        """The report block for now; starts a new interval for the fraction lost (A.3)."""
        expected_interval = self.expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior, self.received_prior = self.expected, self.received
        lost_interval = expected_interval - received_interval
        fraction = 0 if expected_interval <= 0 or lost_interval <= 0 else (lost_interval << 8) // expected_interval
        lost = max(-0x800000, min(0x7FFFFF, self.lost))
        dlsr = 0 if self.lsr_at is None else int((now - self.lsr_at) * 65536) & 0xFFFFFFFF
        self.heard = False
        return ReportBlock(self.ssrc, min(fraction, 255), lost, self.extended_max, int(self.jitter),
                           self.lsr, dlsr)


@dataclass
class RtcpSession:
    """One RTP session's RTCP: statistics in, compound reports out.

    `packets_sent`/`octets_sent` are read from the caller's sender when a report is due; a report is
    an SR when we sent RTP since the report before last (RFC 3550 §6.4), else an RR.
    """

    ssrc: int
    cname: str
    clock_rate: int = 8000
    sources: dict[int, SourceStats] = field(default_factory=dict)
    reports_sent: int = 0
    rtcp_received: int = 0
    _sent_at_reports: tuple[int, int] = (0, 0)  # packets_sent at the last two reports

    def on_rtp(self, ssrc: int, seq: int, rtp_timestamp: int, now: float) -> None:
        if ssrc == self.ssrc:
            return
        arrival = int(now * self.clock_rate) & 0xFFFFFFFF
        stats = self.sources.get(ssrc)
        if stats is None:
            stats = self.sources[ssrc] = SourceStats.first(ssrc, seq)
        stats.update(seq, rtp_timestamp, arrival)

    def on_rtcp(self, data: bytes, now: float) -> list[int]:
        """Note the SRs (for LSR/DLSR); returns the packet types seen. Raises RtcpParseError."""
        types: list[int] = []
        for part in split_compound(data):
            types.append(part[1])
            if part[1] == SR and len(part) >= 28:
                ssrc, ntp = struct.unpack_from("!IQ", part, 4)
                stats = self.sources.get(ssrc)
                if stats is not None:
                    stats.lsr, stats.lsr_at = ntp_middle(ntp), now
            elif part[1] == BYE:
                for (gone,) in struct.iter_unpack("!I", part[4:4 + 4 * (part[0] & 0x1F)]):
                    self.sources.pop(gone, None)
        self.rtcp_received += 1
        return types

    def report(self, now: float, wallclock: float, packets_sent: int, octets_sent: int,
               rtp_timestamp: int, bye: bool = False) -> bytes:
        """The compound packet due now: SR or RR with a block per source heard since the last report,
        SDES CNAME (every compound packet carries one, §6.1), and BYE when leaving (§6.3.7)."""
        blocks = [s.block(now) for s in self.sources.values() if s.heard]
        sent_recently = packets_sent > self._sent_at_reports[0]
        self._sent_at_reports = (self._sent_at_reports[1], packets_sent)
        if sent_recently:
            head = build_sr(self.ssrc, ntp_timestamp(wallclock), rtp_timestamp, packets_sent, octets_sent, blocks)
        else:
            head = build_rr(self.ssrc, blocks)
        self.reports_sent += 1
        return head + build_sdes(self.ssrc, self.cname) + (build_bye(self.ssrc) if bye else b"")
