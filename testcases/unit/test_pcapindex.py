"""pcapindex: the frame walker that lets the verifier split a capture between tshark processes.

Captures are built here with Scapy (or block by block for pcapng layouts Scapy does not write)
and every claim is checked against what was written and against what real tshark reads.
"""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether, Loopback, LoopbackOpenBSD
from scapy.layers.rtp import RTP, RTPExtension
from scapy.packet import Packet, Padding, Raw
from scapy.utils import PcapWriter, wrpcap, wrpcapng

from harness.verify.pcapindex import CaptureIndex

TSHARK = "/usr/bin/tshark"
MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"
V4_A, V4_B = "10.0.0.1", "10.0.0.2"
V6_A, V6_B = "2001:db8::1", "2001:db8::2"
RTP_PORT = 40002


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def _udp4(payload: bytes | Packet, sport: int = 40000, dport: int = RTP_PORT) -> Packet:
    return IP(src=V4_A, dst=V4_B) / UDP(sport=sport, dport=dport) / payload


def _udp6(payload: bytes | Packet, sport: int = 40000, dport: int = RTP_PORT) -> Packet:
    return IPv6(src=V6_A, dst=V6_B) / UDP(sport=sport, dport=dport) / payload


def _eth(l3: Packet) -> Packet:
    return Ether(src=MAC_A, dst=MAC_B) / l3


def _rtp(seq: int, payload: bytes, **fields: object) -> Packet:
    return RTP(sequence=seq, timestamp=160 * seq, sourcesync=0x11223344, payload_type=8, **fields) / Raw(payload)


def _rtp_frames(count: int) -> list[Packet]:
    """Ethernet/IPv4/UDP/RTP frames, each with a payload that names its position."""
    return [_eth(_udp4(_rtp(i, b"payload-%04d" % i + bytes(i % 7)))) for i in range(count)]


def _index(path: Path) -> CaptureIndex:
    index = CaptureIndex.build(path)
    assert index is not None, f"{path} not indexed"
    return index


def _tshark(path: Path, *extra: str, fields: tuple[str, ...] = ("udp.payload",)) -> list[list[str]]:
    """Rows of `tshark -T fields -e frame.number -e ...`; fails the test when tshark cannot read it."""
    args = [TSHARK, "-n", "-r", str(path), *extra, "-T", "fields", "-e", "frame.number"]
    for f in fields:
        args += ["-e", f]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"tshark failed on {path}: {done.stderr}"
    return [line.split("\t") for line in done.stdout.splitlines()]


def _tshark_payloads(path: Path) -> list[bytes]:
    """UDP payloads of every frame, as tshark reads them, checking frames are numbered 1..n."""
    rows = _tshark(path)
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    return [bytes.fromhex(r[1].replace(":", "")) for r in rows]


def _write_part(index: CaptureIndex, start: int, stop: int, path: Path) -> Path:
    with open(path, "wb") as out:
        for piece in index.part(start, stop):
            out.write(piece)
    return path


def _udp_payload_of(pkt: Packet) -> bytes:
    return bytes(pkt[UDP].payload)


# Hand-built pcapng blocks (Scapy writes only little-endian pcapng and declares an interface
# lazily, in front of the first packet that uses it).

def _block(kind: int, body: bytes, order: str) -> bytes:
    body += bytes(-len(body) % 4)
    total = 12 + len(body)
    return struct.pack(order + "II", kind, total) + body + struct.pack(order + "I", total)


def _shb(order: str) -> bytes:
    return _block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)


def _idb(linktype: int, order: str) -> bytes:
    return _block(1, struct.pack(order + "HHI", linktype, 0, 262144), order)


def _epb(iface: int, data: bytes, order: str, ts: int = 0) -> bytes:
    return _block(6, struct.pack(order + "IIIII", iface, 0, ts, len(data), len(data)) + data, order)


def _spb(data: bytes, order: str) -> bytes:
    return _block(3, struct.pack(order + "I", len(data)) + data, order)


def _isb(iface: int, order: str) -> bytes:
    return _block(5, struct.pack(order + "III", iface, 0, 0), order)


def _nrb(order: str) -> bytes:
    """An empty Name Resolution Block (just its end-of-records record)."""
    return _block(4, struct.pack(order + "HH", 0, 0), order)


def test_tshark_is_installed() -> None:
    """The part() checks below rely on real tshark; a missing one must fail the suite, not skip it."""
    assert shutil.which("tshark") is not None and Path(TSHARK).exists()


# ---------------------------------------------------------------------------------------------
# 1. Frames and their bytes, per file format
# ---------------------------------------------------------------------------------------------

PCAP_VARIANTS = [
    ("<", False, b"\xd4\xc3\xb2\xa1"),
    (">", False, b"\xa1\xb2\xc3\xd4"),
    ("<", True, b"\x4d\x3c\xb2\xa1"),
    (">", True, b"\xa1\xb2\x3c\x4d"),
]


@pytest.mark.parametrize(("endianness", "nano", "magic"), PCAP_VARIANTS,
                         ids=["le-usec", "be-usec", "le-nsec", "be-nsec"])
def test_pcap_frames_and_bytes_match_what_was_written(tmp_path: Path, endianness: str, nano: bool,
                                                      magic: bytes) -> None:
    """Every pcap flavour (byte order x timestamp resolution) is walked to the same frames."""
    pkts = _rtp_frames(25) + [_eth(ICMP()), Ether(src=MAC_A, dst=MAC_B) / ARP()]
    path = tmp_path / "c.pcap"
    with PcapWriter(str(path), linktype=1, endianness=endianness, nano=nano, sync=True) as w:
        for p in pkts:
            w.write(p)
    assert path.read_bytes()[:4] == magic   # the writer really produced this flavour
    index = _index(path)
    try:
        assert index.format == "pcap"
        assert index.frames == len(pkts)
        assert index.linktypes == [1]
        assert index.splittable and index.why_not is None
        for n, p in enumerate(pkts, 1):
            assert index.frame_bytes(n) == bytes(p)
        assert index.head == path.read_bytes()[:24]
        assert index.end == path.stat().st_size
    finally:
        index.close()


def test_pcapng_frames_and_bytes_match_what_was_written(tmp_path: Path) -> None:
    """Scapy's pcapng (SHB, IDB, EPBs) is walked frame by frame."""
    pkts = _rtp_frames(30)
    path = tmp_path / "c.pcapng"
    wrpcapng(str(path), pkts)
    index = _index(path)
    try:
        assert index.format == "pcapng"
        assert index.frames == len(pkts)
        assert index.linktypes == [1]
        assert index.splittable, index.why_not
        assert [index.frame_bytes(n) for n in range(1, len(pkts) + 1)] == [bytes(p) for p in pkts]
        assert index.end == path.stat().st_size
    finally:
        index.close()


@pytest.mark.parametrize("order", ["<", ">"], ids=["little", "big"])
def test_pcapng_both_byte_orders_with_simple_and_statistics_blocks(tmp_path: Path, order: str) -> None:
    """Big-endian sections, Simple Packet Blocks and a trailing statistics block are read too."""
    pkts = [bytes(p) for p in _rtp_frames(6)]
    blocks = [_shb(order), _idb(1, order), _nrb(order)]
    for i, data in enumerate(pkts):
        blocks.append(_spb(data, order) if i % 2 else _epb(0, data, order, ts=i))
    blocks.append(_isb(0, order))
    path = tmp_path / "c.pcapng"
    path.write_bytes(b"".join(blocks))
    assert _tshark_payloads(path) == [_udp_payload_of(Ether(d)) for d in pkts]   # a valid file
    index = _index(path)
    try:
        assert index.frames == len(pkts)
        assert index.splittable, index.why_not
        assert [index.frame_bytes(n) for n in range(1, len(pkts) + 1)] == pkts
        assert [index.udp_payload(n) for n in range(1, len(pkts) + 1)] == [_udp_payload_of(Ether(d)) for d in pkts]
    finally:
        index.close()


def test_empty_pcap_has_no_frames(tmp_path: Path) -> None:
    """A header-only pcap (a capture that saw nothing) is an index of zero frames, not None."""
    path = tmp_path / "empty.pcap"
    wrpcap(str(path), [_rtp_frames(1)[0]])
    path.write_bytes(path.read_bytes()[:24])
    index = _index(path)
    try:
        assert index.frames == 0 and index.splittable
        assert b"".join(index.part(0, 0)) == path.read_bytes()
    finally:
        index.close()


def test_close_releases_the_map(tmp_path: Path) -> None:
    """After close() the index refuses to read (instead of touching a closed map); closing twice is fine."""
    path = tmp_path / "c.pcap"
    wrpcap(str(path), _rtp_frames(2))
    index = _index(path)
    assert index.frame_bytes(2)
    index.close()
    index.close()
    with pytest.raises(AssertionError):
        index.frame_bytes(1)
    with pytest.raises(AssertionError):
        list(index.part(0, 1))


# ---------------------------------------------------------------------------------------------
# 2. UDP and RTP payloads on every link layer
# ---------------------------------------------------------------------------------------------

# name -> (link type, how to wrap an IP packet, IP versions it carries)
LINKS: dict[str, tuple[int, Callable[[Packet], Packet], tuple[int, ...]]] = {
    "ethernet": (1, _eth, (4, 6)),
    "vlan": (1, lambda ip: Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=42) / ip, (4, 6)),
    "qinq": (1, lambda ip: Ether(src=MAC_A, dst=MAC_B) / Dot1AD(vlan=7) / Dot1Q(vlan=42) / ip, (4, 6)),
    "sll": (113, lambda ip: CookedLinux() / ip, (4, 6)),
    "sll2": (276, lambda ip: CookedLinuxV2() / ip, (4, 6)),
    "raw": (101, lambda ip: ip, (4, 6)),
    "ipv4": (228, lambda ip: ip, (4,)),
    "ipv6": (229, lambda ip: ip, (6,)),
    # BSD's AF_INET6 (24): tshark does not take Scapy's default, Linux's 10, for IPv6
    "null": (0, lambda ip: Loopback(type=24 if ip.version == 6 else 2) / ip, (4, 6)),
    "loop": (108, lambda ip: LoopbackOpenBSD(type=24 if ip.version == 6 else 2) / ip, (4, 6)),
}
LINK_CASES = [(name, v) for name, (_lt, _wrap, versions) in LINKS.items() for v in versions]


@pytest.mark.parametrize(("link", "version"), LINK_CASES, ids=[f"{n}-ipv{v}" for n, v in LINK_CASES])
def test_udp_and_rtp_payload_on_each_link_type(tmp_path: Path, link: str, version: int) -> None:
    """The IP header is found behind every supported link header, for IPv4 and IPv6, and the
    payloads agree with what was written and with what tshark dissects."""
    linktype, wrap, _ = LINKS[link]
    udp = _udp4 if version == 4 else _udp6
    ip_cls = IP if version == 4 else IPv6
    media = b"\xd5" * 160
    non_udp = ip_cls(src=V4_A, dst=V4_B) / ICMP() if version == 4 else IPv6(src=V6_A, dst=V6_B, nh=58) / Raw(b"x" * 8)
    pkts = [
        wrap(udp(_rtp(1, media))),
        wrap(non_udp),
        wrap(ip_cls(src=V4_A if version == 4 else V6_A, dst=V4_B if version == 4 else V6_B) / TCP(sport=5060, dport=5060)),
        wrap(udp(b"INVITE sip:bob@example.com SIP/2.0\r\n\r\n", 5060, 5060)),
    ]
    path = tmp_path / f"{link}.pcap"
    wrpcap(str(path), pkts, linktype=linktype)
    tshark = _tshark(path)
    assert len(tshark) == len(pkts)
    index = _index(path)
    try:
        assert index.linktypes == [linktype]
        assert index.frames == len(pkts)
        # frame 1: RTP
        assert index.udp_payload(1) == bytes(_rtp(1, media))
        assert index.udp_payload(1).hex() == tshark[0][1]
        assert index.rtp_payload(1) == media
        # frame 2: no transport UDP; frame 3: TCP
        for n in (2, 3):
            assert index.udp_payload(n) is None
            assert index.rtp_payload(n) == b""
        # frame 4: UDP that is not RTP: the UDP payload is still handed out
        assert index.udp_payload(4) == b"INVITE sip:bob@example.com SIP/2.0\r\n\r\n"
        assert index.network_header(4) is not None
        assert index.network_header(2) is not None
    finally:
        index.close()


def test_non_ip_frames_have_no_payload(tmp_path: Path) -> None:
    """ARP, an unknown ethertype and a runt frame carry no IP: None / b"" and no exception."""
    pkts = [
        Ether(src=MAC_A, dst=MAC_B) / ARP(),
        Ether(src=MAC_A, dst=MAC_B, type=0x88B5) / Raw(b"\x45" * 40),   # IPv4-looking bytes, other ethertype
        Ether(src=MAC_A, dst=MAC_B, type=0x0800),                       # ethertype IPv4, no header at all
        Raw(b"\x00" * 10),                                               # shorter than an Ethernet header
        Ether(src=MAC_A, dst=MAC_B, type=0x0800) / Raw(b"\x45\x00\x00"),  # IPv4 header cut to 3 bytes
    ]
    path = tmp_path / "c.pcap"
    wrpcap(str(path), pkts, linktype=1)
    index = _index(path)
    try:
        assert index.frames == len(pkts)
        for n in range(1, len(pkts) + 1):
            assert index.udp_payload(n) is None, n
            assert index.rtp_payload(n) == b"", n
        assert index.network_header(1) is None
        assert index.splittable
    finally:
        index.close()


RTP_VARIANTS: dict[str, tuple[Packet, bytes]] = {
    "plain": (_rtp(1, b"plain-media"), b"plain-media"),
    "marker": (_rtp(2, b"m" * 33, marker=1), b"m" * 33),
    "csrc-1": (_rtp(3, b"one-csrc", sync=[0xAABBCCDD]), b"one-csrc"),
    "csrc-15": (_rtp(4, b"fifteen", sync=list(range(1, 16))), b"fifteen"),
    "extension": (RTP(sequence=5, extension=1) / RTPExtension(header_id=0xBEDE, header=[0x10203040, 0x50607080])
                  / Raw(b"after-extension"), b"after-extension"),
    "extension-empty": (RTP(sequence=6, extension=1) / RTPExtension(header_id=0x1000, header=[])
                        / Raw(b"empty-ext"), b"empty-ext"),
    "padding": (RTP(sequence=7, padding=1) / Raw(b"padded" + b"\x00\x00\x00\x04"), b"padded"),
    "padding-1": (RTP(sequence=8, padding=1) / Raw(b"pad-one" + b"\x01"), b"pad-one"),
    "csrc-ext-padding": (RTP(sequence=9, padding=1, extension=1, sync=[1, 2])
                         / RTPExtension(header_id=0xBEDE, header=[0xDEADBEEF]) / Raw(b"everything" + b"\x00\x02"),
                         b"everything"),
    "padding-only": (RTP(sequence=10, padding=1) / Raw(b"\x00\x00\x00\x04"), b""),
    "no-payload": (RTP(sequence=11), b""),
}


@pytest.mark.parametrize("variant", list(RTP_VARIANTS))
def test_rtp_payload_skips_csrcs_extension_and_padding(tmp_path: Path, variant: str) -> None:
    """rtp_payload is the media only: after the fixed header, the CSRC list and the header
    extension, without padding; checked against what was written and against tshark's rtp.payload."""
    rtp, media = RTP_VARIANTS[variant]
    pkt = _eth(_udp4(rtp))
    path = tmp_path / "rtp.pcap"
    wrpcap(str(path), [pkt])
    rows = _tshark(path, "-d", f"udp.port=={RTP_PORT},rtp", fields=("rtp.payload", "rtp.padding.count"))
    index = _index(path)
    try:
        assert index.udp_payload(1) == bytes(rtp)
        assert index.rtp_payload(1) == media
        assert bytes.fromhex(rows[0][1].replace(":", "")) == media
    finally:
        index.close()


def test_rtp_payload_of_short_or_bad_udp_is_empty(tmp_path: Path) -> None:
    """UDP payloads too short for an RTP header, or whose extension or padding run past the end,
    give b"" instead of raising or returning header bytes."""
    fixed = bytes(RTP(sequence=1))
    payloads = [
        b"",
        b"\x80\x08\x00\x01",                      # 4 bytes: no room for the fixed header
        fixed[:11],
        bytes([0x90]) + fixed[1:],                 # extension bit, but no extension header follows
        bytes([0x90]) + fixed[1:] + b"\xbe\xde\x00\x09" + b"\x00" * 8,   # extension claims 9 words, has 2
        bytes([0xA0]) + fixed[1:] + b"abc\xff",    # padding count larger than the payload
        bytes([0x8F]) + fixed[1:] + b"\x00" * 20,  # 15 CSRCs announced, 5 present
    ]
    path = tmp_path / "bad.pcap"
    wrpcap(str(path), [_eth(_udp4(Raw(p) if p else b"")) for p in payloads])
    index = _index(path)
    try:
        for n, p in enumerate(payloads, 1):
            assert index.udp_payload(n) == p, n
            assert index.rtp_payload(n) == b"", n
    finally:
        index.close()


def test_udp_payload_ignores_ethernet_trailer(tmp_path: Path) -> None:
    """A short datagram padded to Ethernet's 60-byte minimum: the trailer is not payload (the UDP
    length, not the frame length, ends it)."""
    pkt = _eth(_udp4(Raw(b"abc"))) / Padding(b"\x00" * 15)
    path = tmp_path / "trailer.pcap"
    wrpcap(str(path), [pkt])
    index = _index(path)
    try:
        assert len(index.frame_bytes(1)) == 60
        assert index.udp_payload(1) == b"abc"
        assert _tshark(path)[0][1] == b"abc".hex()
    finally:
        index.close()


def test_udp_payload_of_a_cut_frame_is_what_was_captured(tmp_path: Path) -> None:
    """A frame cut by the snap length gives the payload bytes that were captured, not more."""
    full = _eth(_udp4(_rtp(1, b"\x55" * 200)))
    raw = bytes(full)[:100]
    path = tmp_path / "snap.pcap"
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 100, 1)
    path.write_bytes(header + struct.pack("<IIII", 0, 0, len(raw), len(bytes(full))) + raw)
    assert _tshark(path)[0][0] == "1"   # tshark takes it as one cut frame
    index = _index(path)
    try:
        assert index.frame_bytes(1) == raw
        assert index.udp_payload(1) == raw[42:]
        assert index.rtp_payload(1) == raw[54:]
    finally:
        index.close()


def test_udp_payload_behind_ipv6_extension_headers(tmp_path: Path) -> None:
    """Hop-by-hop and destination options headers are stepped over to reach UDP."""
    pkts = [
        _eth(IPv6(src=V6_A, dst=V6_B) / IPv6ExtHdrHopByHop() / UDP(sport=1, dport=RTP_PORT) / _rtp(1, b"hbh")),
        _eth(IPv6(src=V6_A, dst=V6_B) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
             / UDP(sport=1, dport=RTP_PORT) / _rtp(2, b"hbh+dst")),
    ]
    path = tmp_path / "ext6.pcap"
    wrpcap(str(path), pkts)
    index = _index(path)
    try:
        assert index.rtp_payload(1) == b"hbh"
        assert index.rtp_payload(2) == b"hbh+dst"
        assert index.splittable, index.why_not
    finally:
        index.close()


def test_udp_payload_of_ipv4_with_options(tmp_path: Path) -> None:
    """The IPv4 header length is read from IHL, not assumed to be 20."""
    pkt = _eth(IP(src=V4_A, dst=V4_B, options=b"\x94\x04\x00\x00") / UDP(sport=1, dport=RTP_PORT) / _rtp(1, b"opt"))
    path = tmp_path / "opts.pcap"
    wrpcap(str(path), [pkt])
    index = _index(path)
    try:
        assert index.udp_payload(1) == bytes(_rtp(1, b"opt"))
        assert index.rtp_payload(1) == b"opt"
    finally:
        index.close()


# ---------------------------------------------------------------------------------------------
# 3. When a capture can be split, and when build() gives up
# ---------------------------------------------------------------------------------------------

def test_udp_only_capture_is_splittable(tmp_path: Path) -> None:
    """SIP and RTP over UDP, with ARP and ICMP in between: every frame dissects on its own."""
    pkts = [*_rtp_frames(10), _eth(_udp4(b"OPTIONS sip:a SIP/2.0\r\n\r\n", 5060, 5060)),
            Ether(src=MAC_A, dst=MAC_B) / ARP(), _eth(IP(src=V4_A, dst=V4_B) / ICMP()),
            _eth(_udp6(_rtp(1, b"v6")))]
    for name, writer in (("c.pcap", wrpcap), ("c.pcapng", wrpcapng)):
        path = tmp_path / name
        writer(str(path), pkts)
        index = _index(path)
        try:
            assert index.splittable and index.why_not is None, (name, index.why_not)
        finally:
            index.close()


def _tcp4(ip_wrap: Callable[[Packet], Packet] = _eth) -> Packet:
    return ip_wrap(IP(src=V4_A, dst=V4_B) / TCP(sport=5060, dport=5060, flags="PA") / Raw(b"SIP/2.0 200 OK\r\n"))


UNSPLITTABLE: dict[str, tuple[int, Callable[[], list[Packet]], str]] = {
    # name -> (link type, frames, word why_not must hold)
    "tcp-ethernet": (1, lambda: [*_rtp_frames(3), _tcp4()], "TCP"),
    "tcp-vlan": (1, lambda: [*_rtp_frames(3), _tcp4(lambda ip: Ether() / Dot1Q(vlan=3) / ip)], "TCP"),
    "tcp-ipv6": (1, lambda: [*_rtp_frames(3), _eth(IPv6(src=V6_A, dst=V6_B) / TCP())], "TCP"),
    "tcp-ipv6-behind-hop-by-hop": (1, lambda: [*_rtp_frames(2),
                                               _eth(IPv6(src=V6_A, dst=V6_B) / IPv6ExtHdrHopByHop() / TCP())], "TCP"),
    "tcp-sll": (113, lambda: [CookedLinux() / _udp4(b"x"), _tcp4(lambda ip: CookedLinux() / ip)], "TCP"),
    "tcp-raw": (101, lambda: [_udp4(b"x"), _tcp4(lambda ip: ip)], "TCP"),
    "tcp-first-frame": (1, lambda: [_tcp4(), *_rtp_frames(3)], "TCP"),
    "ipv4-fragments": (1, lambda: [*_rtp_frames(2),
                                   *(_eth(f) for f in fragment(_udp4(b"F" * 3000), fragsize=1000))], "fragment"),
    "ipv4-last-fragment-only": (1, lambda: [*_rtp_frames(2),
                                            _eth(fragment(_udp4(b"F" * 3000), fragsize=1000)[-1])], "fragment"),
    "ipv4-first-fragment-only": (1, lambda: [_eth(fragment(_udp4(b"F" * 3000), fragsize=1000)[0])], "fragment"),
    "ipv4-fragments-vlan": (1, lambda: [Ether() / Dot1Q(vlan=9) / f
                                        for f in fragment(_udp4(b"F" * 3000), fragsize=1000)], "fragment"),
    "ipv4-fragments-raw": (101, lambda: [*fragment(_udp4(b"F" * 3000), fragsize=1000)], "fragment"),
    "ipv6-fragment-header": (1, lambda: [*_rtp_frames(2),
                                         _eth(IPv6(src=V6_A, dst=V6_B) / IPv6ExtHdrFragment(m=1, id=7)
                                              / UDP(sport=1, dport=2) / Raw(b"F" * 64))], "fragment"),
    "ipv6-atomic-fragment": (1, lambda: [_eth(IPv6(src=V6_A, dst=V6_B) / IPv6ExtHdrFragment(m=0, offset=0, id=8)
                                              / UDP(sport=1, dport=2) / Raw(b"F" * 64))], "fragment"),
    "ipv6-fragment-behind-hop-by-hop": (1, lambda: [_eth(IPv6(src=V6_A, dst=V6_B) / IPv6ExtHdrHopByHop()
                                                         / IPv6ExtHdrFragment(m=1, id=9) / UDP() / Raw(b"F" * 64))],
                                        "fragment"),
    "ipv6-fragment-sll": (113, lambda: [CookedLinux() / IPv6(src=V6_A, dst=V6_B) / IPv6ExtHdrFragment(m=1)
                                        / UDP() / Raw(b"F" * 64)], "fragment"),
}


@pytest.mark.parametrize("case", list(UNSPLITTABLE))
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_tcp_or_fragments_make_a_capture_unsplittable(tmp_path: Path, case: str, fmt: str) -> None:
    """A TCP segment or any IP fragment anywhere means frames depend on each other: no split,
    and why_not says which."""
    linktype, make, word = UNSPLITTABLE[case]
    pkts = make()
    path = tmp_path / f"c.{fmt}"
    if fmt == "pcap":
        wrpcap(str(path), pkts, linktype=linktype)
    else:
        path.write_bytes(_shb("<") + _idb(linktype, "<") + b"".join(_epb(0, bytes(p), "<") for p in pkts))
    index = _index(path)
    try:
        assert index.frames == len(pkts)
        assert not index.splittable
        assert index.why_not is not None and word.lower() in index.why_not.lower(), index.why_not
    finally:
        index.close()


def test_why_not_names_the_first_offending_frame(tmp_path: Path) -> None:
    """The reason points at the frame (1-based) that needs others, so a log line can be acted on."""
    pkts = [*_rtp_frames(4), _tcp4(), *_rtp_frames(2)]
    path = tmp_path / "c.pcap"
    wrpcap(str(path), pkts)
    index = _index(path)
    try:
        assert index.why_not == "TCP (frame 5)"
    finally:
        index.close()


def test_fragments_have_no_udp_payload(tmp_path: Path) -> None:
    """The first fragment carries a UDP header, but not the whole datagram: udp_payload is None."""
    frags = fragment(_udp4(_rtp(1, b"F" * 3000)), fragsize=1000)
    pkts = [_eth(f) for f in frags] + [_eth(IPv6(src=V6_A, dst=V6_B) / IPv6ExtHdrFragment(m=1) / UDP() / Raw(b"x" * 16))]
    path = tmp_path / "frag.pcap"
    wrpcap(str(path), pkts)
    index = _index(path)
    try:
        for n in range(1, len(pkts) + 1):
            assert index.udp_payload(n) is None, n
            assert index.rtp_payload(n) == b"", n
    finally:
        index.close()


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_truncated_capture_is_indexed_but_not_splittable(tmp_path: Path, fmt: str) -> None:
    """A capture cut in the middle of its last record or block (a killed dumpcap) still gets an
    index of the complete frames; it is not split; the frames before the cut stay readable, and
    what part() hands out stops before the cut: a complete capture tshark reads."""
    pkts = _rtp_frames(8)
    path = tmp_path / f"cut.{fmt}"
    if fmt == "pcap":
        wrpcap(str(path), pkts)
        last = len(bytes(pkts[-1])) + 16
    else:
        wrpcapng(str(path), pkts)
        last = struct.unpack_from("<I", path.read_bytes(), path.stat().st_size - 4)[0]
    whole = path.read_bytes()
    path.write_bytes(whole[:len(whole) - last // 2])
    index = _index(path)
    try:
        assert index.frames == len(pkts) - 1
        assert not index.splittable
        assert "cut" in (index.why_not or "")
        assert [index.frame_bytes(n) for n in range(1, len(pkts))] == [bytes(p) for p in pkts[:-1]]
        out = _write_part(index, 0, index.frames, tmp_path / f"part.{fmt}")
        assert _tshark_payloads(out) == [_udp_payload_of(p) for p in pkts[:-1]]
    finally:
        index.close()


def test_truncated_pcap_inside_a_record_header(tmp_path: Path) -> None:
    """Cut inside the 16-byte record header: the complete frames are indexed, no split."""
    pkts = _rtp_frames(3)
    path = tmp_path / "cut.pcap"
    wrpcap(str(path), pkts)
    whole = path.read_bytes()
    path.write_bytes(whole[:len(whole) - len(bytes(pkts[-1])) - 8])
    index = _index(path)
    try:
        assert index.frames == 2 and not index.splittable
    finally:
        index.close()


def test_stray_bytes_after_last_record_prevent_split(tmp_path: Path) -> None:
    """Garbage after the last complete record is not a frame; the file is read in one pass."""
    path = tmp_path / "stray.pcap"
    wrpcap(str(path), _rtp_frames(3))
    path.write_bytes(path.read_bytes() + b"\x01\x02\x03")
    index = _index(path)
    try:
        assert index.frames == 3 and not index.splittable
    finally:
        index.close()


def _pcap_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "src.pcap"
    wrpcap(str(path), _rtp_frames(5))
    return path.read_bytes()


@pytest.mark.parametrize("kind", ["gzip-pcap", "gzip-pcapng", "text", "tiny", "empty", "header-cut",
                                  "pcapng-bad-bom", "missing", "directory"])
def test_build_returns_none_for_what_it_cannot_walk(tmp_path: Path, kind: str) -> None:
    """Compressed captures (tshark reads them, this walker does not), non-captures, tiny and
    missing files: None, never an exception, so the caller falls back to one tshark pass."""
    path = tmp_path / "input"
    if kind == "gzip-pcap":
        path.write_bytes(gzip.compress(_pcap_bytes(tmp_path)))
    elif kind == "gzip-pcapng":
        src = tmp_path / "src.pcapng"
        wrpcapng(str(src), _rtp_frames(5))
        path.write_bytes(gzip.compress(src.read_bytes()))
    elif kind == "text":
        path.write_text("INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1\r\n\r\n" * 4)
    elif kind == "tiny":
        path.write_bytes(_pcap_bytes(tmp_path)[:20])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "header-cut":
        src = tmp_path / "src.pcapng"
        wrpcapng(str(src), _rtp_frames(1))
        path.write_bytes(src.read_bytes()[:26])   # SHB cut: >= 24 bytes but no whole block
    elif kind == "pcapng-bad-bom":
        data = bytearray(_shb("<") + _idb(1, "<") + _epb(0, bytes(_rtp_frames(1)[0]), "<"))
        data[8:12] = b"\x00\x11\x22\x33"
        path.write_bytes(bytes(data))
    elif kind == "missing":
        path = tmp_path / "does-not-exist.pcap"
    elif kind == "directory":
        path = tmp_path
    assert CaptureIndex.build(path) is None


@pytest.mark.parametrize(("name", "blocks_after_first", "word"), [
    ("idb-after-packet", lambda o: _idb(1, o), "interface"),
    ("second-section", lambda o: _shb(o) + _idb(1, o), "section"),
    ("name-resolution-between-packets", lambda o: _nrb(o), "block type"),
    ("obsolete-packet-block", lambda o: _block(2, struct.pack(o + "HHIIII", 0, 0, 0, 0, 4, 4) + b"\0" * 4, o),
     "obsolete"),
    ("undeclared-interface", lambda o: _epb(3, bytes(_rtp_frames(1)[0]), o), "undeclared"),
])
def test_pcapng_layouts_that_cannot_be_split(tmp_path: Path, name: str, blocks_after_first: Callable[[str], bytes],
                                             word: str) -> None:
    """pcapng layouts where a part (head + a run of blocks) would not be the same capture."""
    order = "<"
    frame = bytes(_rtp_frames(1)[0])
    path = tmp_path / f"{name}.pcapng"
    path.write_bytes(_shb(order) + _idb(1, order) + _epb(0, frame, order) + blocks_after_first(order)
                     + _epb(0, frame, order))
    index = _index(path)
    try:
        assert not index.splittable
        assert word in (index.why_not or ""), index.why_not
    finally:
        index.close()


def test_unknown_link_type_is_not_split(tmp_path: Path) -> None:
    """A link type the walker cannot see through (here 802.11) may hide TCP: no split, no payloads."""
    path = tmp_path / "wifi.pcap"
    wrpcap(str(path), [Raw(b"\x08\x02" + b"\x00" * 40)], linktype=105)
    index = _index(path)
    try:
        assert index.frames == 1
        assert not index.splittable and "105" in (index.why_not or "")
        assert index.udp_payload(1) is None and index.rtp_payload(1) == b""
    finally:
        index.close()


def test_scapy_pcapng_with_two_interfaces_is_not_split(tmp_path: Path) -> None:
    """Scapy declares the second interface just before its first packet, after other packets:
    a part would lack that declaration, so such a capture is read in one pass."""
    a = _eth(_udp4(b"on-eth"))
    a.sniffed_on = "eth0"
    b = CookedLinux() / _udp4(b"on-any")
    b.sniffed_on = "any"
    path = tmp_path / "two.pcapng"
    wrpcapng(str(path), [a, b, a])
    index = _index(path)
    try:
        assert index.frames == 3
        assert not index.splittable and "interface" in (index.why_not or "")
        assert [index.udp_payload(n) for n in (1, 2, 3)] == [b"on-eth", b"on-any", b"on-eth"]
    finally:
        index.close()


def test_damaged_interface_id_does_not_raise(tmp_path: Path) -> None:
    """A damaged EPB (interface id 0x10000) must not make build() raise: the caller only expects None
    or an index, and any exception aborts verifying the capture."""
    frame = bytes(_rtp_frames(1)[0])
    path = tmp_path / "bad-iface.pcapng"
    path.write_bytes(_shb("<") + _idb(1, "<") + _epb(0, frame, "<") + _epb(0x10000, frame, "<"))
    index = CaptureIndex.build(path)
    if index is not None:
        assert not index.splittable
        index.close()


def test_epb_longer_than_its_block_is_damage(tmp_path: Path) -> None:
    """An EPB whose captured length runs past its own block is damage (tshark: 'appears to be
    damaged or corrupt'): not splittable, and its frame is not read out of the following block."""
    first, second = (bytes(p) for p in _rtp_frames(2))
    epb = bytearray(_epb(0, first, "<"))
    struct.pack_into("<I", epb, 20, len(first) + 40)
    path = tmp_path / "overrun.pcapng"
    path.write_bytes(_shb("<") + _idb(1, "<") + bytes(epb) + _epb(0, second, "<"))
    index = _index(path)
    try:
        assert not index.splittable
        assert len(index.frame_bytes(1)) <= len(first) + 3   # the block's data area, padded to 32 bits
    finally:
        index.close()


# ---------------------------------------------------------------------------------------------
# 4. part(): a run of frames as a complete capture tshark reads
# ---------------------------------------------------------------------------------------------

N_FRAMES = 40
RANGES = [(0, 13), (13, 27), (27, N_FRAMES), (0, N_FRAMES), (5, 6), (N_FRAMES - 1, N_FRAMES), (0, 1)]


def _check_parts(tmp_path: Path, index: CaptureIndex, expected: list[bytes], suffix: str) -> None:
    assert index.splittable, index.why_not
    for start, stop in RANGES:
        out = _write_part(index, start, stop, tmp_path / f"part-{start}-{stop}.{suffix}")
        assert _tshark_payloads(out) == expected[start:stop], (start, stop)
        part = _index(out)
        try:
            assert part.frames == stop - start
            assert [part.frame_bytes(n) for n in range(1, part.frames + 1)] == \
                   [index.frame_bytes(n) for n in range(start + 1, stop + 1)]
        finally:
            part.close()
    # the parts the reader would feed side by side, back to back, are the whole capture
    bounds = [N_FRAMES * k // 3 for k in range(4)]
    got: list[bytes] = []
    for k in range(3):
        out = _write_part(index, bounds[k], bounds[k + 1], tmp_path / f"third-{k}.{suffix}")
        got += _tshark_payloads(out)
    assert got == expected


@pytest.mark.parametrize(("endianness", "nano"), [("<", False), (">", True)], ids=["le-usec", "be-nsec"])
def test_part_of_pcap_is_a_readable_capture_of_those_frames(tmp_path: Path, endianness: str, nano: bool) -> None:
    """Head, middle and tail runs of a pcap come out as captures tshark reads, holding exactly
    those frames in order."""
    pkts = _rtp_frames(N_FRAMES)
    path = tmp_path / "c.pcap"
    with PcapWriter(str(path), linktype=1, endianness=endianness, nano=nano, sync=True) as w:
        for p in pkts:
            w.write(p)
    expected = [_udp_payload_of(p) for p in pkts]
    assert _tshark_payloads(path) == expected
    index = _index(path)
    try:
        _check_parts(tmp_path, index, expected, "pcap")
    finally:
        index.close()


def test_part_of_pcapng_is_a_readable_capture_of_those_frames(tmp_path: Path) -> None:
    """The same for Scapy's pcapng."""
    pkts = _rtp_frames(N_FRAMES)
    path = tmp_path / "c.pcapng"
    wrpcapng(str(path), pkts)
    expected = [_udp_payload_of(p) for p in pkts]
    index = _index(path)
    try:
        _check_parts(tmp_path, index, expected, "pcapng")
    finally:
        index.close()


@pytest.mark.parametrize("order", ["<", ">"], ids=["little", "big"])
@pytest.mark.parametrize(("second_linktype", "wrap"), [
    (113, lambda ip: CookedLinux() / ip),
    (101, lambda ip: ip),
    (0, lambda ip: Loopback() / ip),
], ids=["sll", "raw", "null"])
def test_part_of_pcapng_with_two_interfaces(tmp_path: Path, order: str, second_linktype: int,
                                            wrap: Callable[[Packet], Packet]) -> None:
    """Two interfaces of different link types declared up front, frames alternating between them
    (and a statistics block in the middle): each part keeps both declarations and each frame's
    interface, so tshark reads every frame with its own link type."""
    frames: list[tuple[int, bytes, bytes]] = []   # (interface, bytes, udp payload)
    for i in range(N_FRAMES):
        rtp = _rtp(i, b"two-if-%03d" % i)
        if i % 2:
            frames.append((1, bytes(wrap(_udp4(rtp))), bytes(rtp)))
        else:
            frames.append((0, bytes(_eth(_udp6(rtp))), bytes(rtp)))
    blocks = [_shb(order), _idb(1, order), _idb(second_linktype, order)]
    for i, (iface, data, _) in enumerate(frames):
        blocks.append(_epb(iface, data, order, ts=i))
        if i == N_FRAMES // 2:
            blocks.append(_isb(0, order))
    blocks.append(_isb(1, order))
    path = tmp_path / "two.pcapng"
    path.write_bytes(b"".join(blocks))
    expected = [p for _, _, p in frames]
    assert _tshark_payloads(path) == expected
    index = _index(path)
    try:
        assert index.linktypes == [1, second_linktype]
        assert list(index.interfaces) == [f[0] for f in frames]
        assert [index.udp_payload(n) for n in range(1, N_FRAMES + 1)] == expected
        assert [index.rtp_payload(n) for n in range(1, N_FRAMES + 1)] == [b"two-if-%03d" % i for i in range(N_FRAMES)]
        _check_parts(tmp_path, index, expected, "pcapng")
        rows = _tshark(_write_part(index, 11, 14, tmp_path / "encap.pcapng"), fields=("frame.interface_id",))
        assert [r[1] for r in rows] == ["1", "0", "1"]
    finally:
        index.close()


def test_empty_part_is_a_valid_empty_capture(tmp_path: Path) -> None:
    """part(k, k) is just the head: a capture of no frames that tshark accepts."""
    pkts = _rtp_frames(4)
    for name, writer in (("c.pcap", wrpcap), ("c.pcapng", wrpcapng)):
        path = tmp_path / name
        writer(str(path), pkts)
        index = _index(path)
        try:
            for k in (0, 2, 4):
                out = _write_part(index, k, k, tmp_path / f"empty-{k}-{name}")
                assert _tshark_payloads(out) == []
        finally:
            index.close()


def test_part_streams_large_runs_in_pieces(tmp_path: Path) -> None:
    """A run over 1 MiB is handed out in several pieces (a pipe writer never holds it whole),
    and the pieces join to the original records byte for byte."""
    pkts = [_eth(_udp4(_rtp(i, bytes([i % 251]) * 1400))) for i in range(1200)]
    path = tmp_path / "big.pcap"
    wrpcap(str(path), pkts)
    index = _index(path)
    try:
        pieces = list(index.part(0, index.frames))
        assert len(pieces) >= 3 and max(len(p) for p in pieces) <= 1 << 20
        assert b"".join(pieces) == path.read_bytes()
        tail = b"".join(index.part(1000, 1200))
        assert tail == path.read_bytes()[:24] + path.read_bytes()[index.records[1000]:]
        out = _write_part(index, 600, 1200, tmp_path / "tail.pcap")
        assert _tshark_payloads(out) == [_udp_payload_of(p) for p in pkts[600:]]
    finally:
        index.close()
