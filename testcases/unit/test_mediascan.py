"""mediascan: RTP and RTCP read from the file for the split read, checked against what tshark's
RTP/RTCP heuristics find in the same captures (the single-pass reader), on every link type and
file flavour the index walks; and the cases where the RFC rules differ from tshark on purpose.
"""

from __future__ import annotations

import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, Dot1Q, Ether
from scapy.layers.rtp import RTP
from scapy.packet import Packet, Raw
from scapy.utils import PcapWriter, wrpcap, wrpcapng

from harness.verify import reader
from harness.verify.mediascan import scan
from harness.verify.pcapindex import CaptureIndex

A4, B4, A6, B6 = "10.0.0.1", "10.0.0.2", "2001:db8::1", "2001:db8::2"


def _rtp(seq: int, pt: int = 8, marker: int = 0, size: int = 160) -> Packet:
    return RTP(sequence=seq, timestamp=160 * seq, sourcesync=0x1000 + seq, payload_type=pt, marker=marker) \
        / Raw(b"\xd5" * size)


def _rtcp(kind: int, words: int = 6) -> bytes:
    """An RTCP packet of type `kind` with `words` 32-bit words after its 4-byte header."""
    return struct.pack("!BBH", 0x81, kind, words) + bytes(4 * words)


def _udp(payload: bytes | Packet, sport: int = 40000, dport: int = 40002, v6: bool = False) -> Packet:
    ip = IPv6(src=A6, dst=B6) if v6 else IP(src=A4, dst=B4)
    return ip / UDP(sport=sport, dport=dport) / payload


def _mix(v6: bool = False) -> list[Packet]:
    """Media the two readers must agree on, between things neither calls media."""
    return [
        _udp(_rtp(1), v6=v6),
        _udp(b"INVITE sip:bob@example.com SIP/2.0\r\nContent-Length: 0\r\n\r\n", 5060, 5060, v6=v6),
        _udp(_rtp(2, pt=0, marker=1), 40004, 40006, v6=v6),
        _udp(_rtcp(200), 40001, 40003, v6=v6),        # SR
        _udp(_rtcp(201, 1), 40003, 40001, v6=v6),     # RR, no report blocks
        _udp(_rtcp(203, 1), 40001, 40003, v6=v6),     # BYE
        _udp(b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12), 40000, 40002, v6=v6),   # STUN binding request
        _udp(b"\x16\xfe\xfd" + bytes(20), 40000, 40002, v6=v6),                         # DTLS
        _udp(_rtp(3, pt=96, size=20), 40000, 40002, v6=v6),
    ]


def _tshark_read(path: Path, monkeypatch: pytest.MonkeyPatch):
    """What the single pass (tshark's heuristics, payloads printed) finds."""
    monkeypatch.setattr(reader, "INDEX_MIN_BYTES", 1 << 62)
    return reader.read_capture(path)


def _scan(path: Path):
    index = CaptureIndex.build(path)
    assert index is not None and index.splittable, index and index.why_not
    try:
        rtp, rtcp, others = scan(index)
        media = {p.frame - 1 for p in rtp} | {q.frame - 1 for q in rtcp}
        assert sorted(media | set(others)) == list(range(index.frames)) and not media & set(others)
        return rtp, rtcp, [p.payload for p in rtp]
    finally:
        index.close()


def _rtp_shape(packets) -> list[tuple]:  # noqa: ANN001
    return [(p.frame, p.time, p.src, p.sport, p.dst, p.dport, p.ssrc, p.pt, p.seq, p.timestamp, p.marker)
            for p in packets]


def _rtcp_shape(packets) -> list[tuple]:  # noqa: ANN001
    return [(q.frame, q.time, q.src, q.sport, q.dst, q.dport, q.pt) for q in packets]


def _agree(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = _tshark_read(path, monkeypatch)
    rtp, rtcp, payloads = _scan(path)
    assert whole.rtp and whole.rtcp
    assert _rtp_shape(rtp) == _rtp_shape(whole.rtp)
    assert payloads == [p.payload for p in whole.rtp]
    assert _rtcp_shape(rtcp) == _rtcp_shape(whole.rtcp)


def _timed(pkts: list[Packet], start: float = 1700000000.0) -> list[Packet]:
    for k, p in enumerate(pkts):
        p.time = start + k * 0.020001 + 0.0000007 * k
    return pkts


LINKS = {
    "ethernet": (1, lambda p: Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p),
    "vlan": (1, lambda p: Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / Dot1Q(vlan=9) / p),
    "sll": (113, lambda p: CookedLinux() / p),
    "raw": (101, lambda p: p),
}


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("link", sorted(LINKS))
def test_scan_finds_what_tshark_heuristics_find(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: str,
                                                v6: bool) -> None:
    linktype, wrap = LINKS[link]
    path = tmp_path / f"{link}.pcap"
    wrpcap(str(path), _timed([wrap(p) for p in _mix(v6)]), linktype=linktype)
    _agree(path, monkeypatch)


@pytest.mark.parametrize("nano", [False, True], ids=["usec", "nsec"])
@pytest.mark.parametrize("endianness", ["<", ">"])
def test_scan_times_equal_tshark_on_every_pcap_flavour(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       endianness: str, nano: bool) -> None:
    path = tmp_path / "c.pcap"
    with PcapWriter(str(path), linktype=1, endianness=endianness, nano=nano, sync=True) as w:
        for p in _timed([Ether() / p for p in _mix()], 1763990000.123456789):
            w.write(p)
    _agree(path, monkeypatch)


def test_scan_on_pcapng(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.pcapng"
    wrpcapng(str(path), _timed([Ether() / p for p in _mix()]))
    _agree(path, monkeypatch)


def _block(kind: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return struct.pack("<II", kind, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def test_scan_reads_pcapng_nanosecond_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An interface with if_tsresol 9: timestamps count nanoseconds."""
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = _block(1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0))
    blocks = [shb, idb]
    for k, p in enumerate(_mix()):
        data = bytes(Ether() / p)
        ticks = 1763990000_123456789 + k * 20_000_001
        blocks.append(_block(6, struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)) + data))
    path = tmp_path / "ns.pcapng"
    path.write_bytes(b"".join(blocks))
    _agree(path, monkeypatch)
    rtp, _, _ = _scan(path)
    assert rtp[0].time == 1763990000.123456789


def test_rfc_rules_where_they_differ_from_tshark(tmp_path: Path) -> None:
    """Neither a datagram on a well-known port (a DNS id can start with 0x8x) nor an RTCP type that
    cannot start a compound packet (SDES first), nor RTCP of a length that is no multiple of four,
    nor a header shorter than RTP's twelve bytes is media; the RTP and RTCP around them are."""
    pkts = [
        Ether() / _udp(b"\x81\x23\x01\x00" + bytes(20), 33000, 53),   # DNS query, id 0x8123
        Ether() / _udp(_rtcp(202), 40001, 40003),                     # SDES first
        Ether() / _udp(_rtcp(200) + b"\x00", 40001, 40003),           # SR, 1 stray byte
        Ether() / _udp(b"\x80\x08\x00\x01" + bytes(4), 40000, 40002),  # 8 bytes
        Ether() / _udp(_rtp(7), 40000, 40002),
        Ether() / _udp(_rtcp(206, 2), 40001, 40003),                  # PSFB
    ]
    path = tmp_path / "odd.pcap"
    wrpcap(str(path), pkts)
    rtp, rtcp, _ = _scan(path)
    assert [p.frame for p in rtp] == [5]
    assert [(q.frame, q.pt) for q in rtcp] == [(6, 206)]


@pytest.mark.parametrize(("what", "wrap"), [
    ("GTP-U", lambda p: IP(src=A4, dst=B4) / UDP(sport=2152, dport=2152) / Raw(b"\x30\xff\x00\x00" + bytes(4))
     / p),
    ("IP in IP", lambda p: IP(src="192.0.2.1", dst="192.0.2.2", proto=4) / p),
    ("VXLAN", lambda p: IP(src=A4, dst=B4) / UDP(sport=40000, dport=4789) / Raw(bytes(8)) / Ether() / p),
])
def test_tunnels_keep_the_capture_whole(tmp_path: Path, what: str, wrap) -> None:  # noqa: ANN001
    """Media inside a tunnel is found by tshark, not by the scan: such a capture is not split."""
    path = tmp_path / "tunnel.pcap"
    wrpcap(str(path), [Ether() / wrap(p) for p in _mix()])
    index = CaptureIndex.build(path)
    assert index is not None
    try:
        assert not index.splittable and "tunnelled" in (index.why_not or ""), (what, index.why_not)
    finally:
        index.close()


def test_mpls_keeps_the_capture_whole(tmp_path: Path) -> None:
    path = tmp_path / "mpls.pcap"
    wrpcap(str(path), [Ether(type=0x8847) / Raw(b"\x00\x01\x01\x40") / p for p in _mix()])
    index = CaptureIndex.build(path)
    assert index is not None
    try:
        assert index.why_not == "frames of EtherType 0x8847 (frame 1)"
    finally:
        index.close()


def test_sdp_low_endpoints_reads_session_and_media_connections() -> None:
    """m= ports below 1024 (and their RTCP port) at the media-level c=, else the session-level one;
    ports >= 1024, port 0 (a refused stream) and bodies without SDP name nothing."""
    def message(body: str) -> SimpleNamespace:
        head = "INVITE sip:b@example.com SIP/2.0\r\nContent-Type: application/sdp\r\n\r\n"
        return SimpleNamespace(raw=(head + body).encode())

    sdp = ("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
           "m=audio 900 RTP/AVP 0\r\n"
           "m=audio 902 RTP/AVP 0\r\nc=IN IP6 2001:db8:0:0::7\r\n"
           "m=video 0 RTP/AVP 96\r\nm=audio 40000 RTP/AVP 0\r\n")
    named = reader.sdp_low_endpoints([message(sdp), message("SIP/2.0 100 Trying\r\n"), message("")])
    assert named == {("10.0.0.1", 900), ("10.0.0.1", 901), ("2001:db8::7", 902), ("2001:db8::7", 903)}
