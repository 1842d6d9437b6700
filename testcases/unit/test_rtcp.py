"""RTCP (RFC 3550 §6): compound SR/RR + SDES (+ BYE) built by harness.rtp.rtcp, parsed back with
Scapy's RTCP layer; receiver statistics (A.1, A.3, A.8) on a simulated clock."""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Iterator

import pytest
from scapy.contrib.rtcp import RTCP

from harness.agents.rtcp import RtcpLeg
from harness.net.udp import UdpSocket, bind_rtp_pair
from harness.rtp import RtpStream, silence
from harness.rtp.rtcp import (
    BYE,
    RR,
    SDES,
    SR,
    ReportBlock,
    RtcpParseError,
    RtcpSession,
    build_rr,
    build_sdes,
    build_sr,
    ntp_middle,
    ntp_timestamp,
    parse_compound,
    report_interval,
    split_compound,
)


def test_sr_parses_back_with_scapy() -> None:
    block = ReportBlock(ssrc=0xAABBCCDD, fraction_lost=64, cumulative_lost=-3, highest_seq=70000, jitter=12,
                        lsr=0x12345678, dlsr=65536)
    data = build_sr(0x11223344, ntp_timestamp(1_700_000_000.5), 123456, 250, 40000, [block])
    sr = RTCP(data)
    assert (sr.version, sr.packet_type, sr.count, sr.length) == (2, SR, 1, len(data) // 4 - 1)
    assert sr.sourcesync == 0x11223344
    info = sr.sender_info
    assert info.ntp_timestamp >> 32 == 1_700_000_000 + 2208988800 and info.ntp_timestamp & 0xFFFFFFFF == 1 << 31
    assert (info.rtp_timestamp, info.sender_packet_count, info.sender_octet_count) == (123456, 250, 40000)
    rb = sr.report_blocks[0]
    assert (rb.sourcesync, rb.fraction_lost, rb.highest_seqnum_recv, rb.interarrival_jitter) == \
        (0xAABBCCDD, 64, 70000, 12)
    assert rb.cumulative_lost == 0xFFFFFD  # -3 as a signed 24-bit field
    assert (rb.last_SR_timestamp, rb.delay_since_last_SR) == (0x12345678, 65536)


def test_rr_without_blocks_is_eight_bytes() -> None:
    data = build_rr(7)
    assert data == bytes([0x80, RR, 0, 1]) + struct.pack("!I", 7)
    assert RTCP(data).count == 0


@pytest.mark.parametrize("cname", ["a@b", "ab@b", "abc@b", "abcd@b", "ue1@127.100.0.1", ""])
def test_sdes_is_padded_to_32_bits_whatever_the_cname_length(cname: str) -> None:
    data = build_sdes(0x01020304, cname)
    assert len(data) % 4 == 0 and struct.unpack("!H", data[2:4])[0] == len(data) // 4 - 1
    sdes = RTCP(data)
    assert (sdes.packet_type, sdes.count) == (SDES, 1)
    chunk = sdes.sdes_chunks[0]
    assert chunk.sourcesync == 0x01020304
    assert (chunk.items[0].chunk_type, chunk.items[0].value) == (1, cname.encode())
    assert data[8 + 2 + len(cname):] == b"\x00" * (len(data) - 10 - len(cname))  # END + null padding


def _session_with_traffic() -> RtcpSession:
    session = RtcpSession(ssrc=0x1234, cname="ue2@127.100.0.2")
    for i, seq in enumerate([65533, 65534, 65535, 0, 2]):  # wraps, and 1 is lost
        session.on_rtp(0x99, seq, 1000 + 160 * i, now=10.0 + 0.02 * i)
    return session


def test_compound_report_sr_sdes_bye() -> None:
    session = _session_with_traffic()
    data = session.report(now=11.0, wallclock=1.7e9, packets_sent=50, octets_sent=8000, rtp_timestamp=9,
                          bye=True)
    parts = parse_compound(data)
    assert [p.packet_type for p in parts] == [SR, SDES, BYE]
    block = parts[0].report_blocks[0]
    assert block.sourcesync == 0x99
    assert block.highest_seqnum_recv == 65536 + 2  # one wrap (cycles) + 2
    assert block.cumulative_lost == 1 and block.fraction_lost == 256 // 6
    assert struct.unpack("!I", bytes(parts[2])[4:8])[0] == 0x1234  # BYE names our SSRC
    assert parts[1].sdes_chunks[0].items[0].value == b"ue2@127.100.0.2"


def test_receiver_only_sends_rr_and_blocks_only_for_sources_heard() -> None:
    session = _session_with_traffic()
    first = parse_compound(session.report(11.0, 1.7e9, 0, 0, 0))
    assert first[0].packet_type == RR and first[0].count == 1
    second = parse_compound(session.report(16.0, 1.7e9, 0, 0, 0))
    assert second[0].packet_type == RR and second[0].count == 0  # nothing heard since


def test_sr_while_sending_recently_then_rr() -> None:
    """RFC 3550 §6.4: SR if we sent since the report before last."""
    session = RtcpSession(1, "x@y")
    kinds = [parse_compound(session.report(t, 0.0, sent, sent * 160, 0))[0].packet_type
             for t, sent in [(1, 10), (2, 10), (3, 10), (4, 11)]]
    assert kinds == [SR, SR, RR, SR]


def test_lsr_dlsr_from_the_peers_sender_report() -> None:
    session = _session_with_traffic()
    ntp = ntp_timestamp(1_700_000_123.25)
    peer_sr = build_sr(0x99, ntp, 0, 5, 800) + build_sdes(0x99, "peer@x")
    assert session.on_rtcp(peer_sr, now=20.0) == [SR, SDES]
    block = parse_compound(session.report(21.5, 0.0, 0, 0, 0))[0].report_blocks[0]
    assert block.last_SR_timestamp == ntp_middle(ntp)
    assert block.delay_since_last_SR == int(1.5 * 65536)


def test_jitter_follows_rfc3550_a8() -> None:
    session = RtcpSession(1, "x@y")
    arrivals = [0.0, 0.020, 0.045, 0.060, 0.080]  # the third packet 5 ms late (40 ts units)
    for i, t in enumerate(arrivals):
        session.on_rtp(5, i, 160 * i, now=100.0 + t)
    expected = 0.0
    for d in (0, 40, 40, 0):
        expected += (d - expected) / 16
    assert session.sources[5].jitter == pytest.approx(expected, abs=0.2)


@pytest.mark.parametrize("data", [b"", b"\x80\xc8", b"\x40\xc9\x00\x01" + b"\0" * 4,
                                  b"\x80\xc9\x00\x05" + b"\0" * 4, b"\x81\xca\x00\x01" + b"\0" * 4])
def test_split_compound_rejects_broken_packets(data: bytes) -> None:
    with pytest.raises(RtcpParseError):
        split_compound(data)


def test_report_interval_is_randomised_around_five_seconds() -> None:
    rng = random.Random(3)
    values = [report_interval(rng) for _ in range(200)]
    assert min(values) >= 2.5 and max(values) <= 7.5
    assert all(1.25 <= report_interval(rng, initial=True) <= 3.75 for _ in range(50))


@pytest.fixture
def subnet(subnets: Iterator[int]) -> int:
    return next(subnets)


def test_rtcp_leg_reports_on_the_wire_and_ends_with_bye(subnet: int) -> None:
    async def main() -> list[bytes]:
        got: list[bytes] = []
        rtp, rtcp = await bind_rtp_pair(f"127.{subnet}.0.1", 31000)
        peer = await UdpSocket.bind(f"127.{subnet}.0.2", 31001, lambda d, _: got.append(d))
        stream = RtpStream(rtp, silence)
        leg = RtcpLeg(rtcp, RtcpSession(stream.sender.ssrc, "t@x"), stream, interval=0.1)
        leg.target = peer.local
        try:
            leg.start()
            await asyncio.sleep(0.35)
            await leg.stop(bye=True)
            await asyncio.sleep(0.05)
        finally:
            rtp.close()
            peer.close()
        return got

    got = asyncio.run(main())
    assert len(got) >= 3
    assert all(parse_compound(d)[0].packet_type == RR for d in got)  # nothing sent: receiver reports
    assert [p.packet_type for p in parse_compound(got[-1])] == [RR, SDES, BYE]
