"""The reader: one pyshark pass, every hop copy, several messages per TCP segment, clean errors."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from harness.verify.errors import BadInput
from harness.verify.reader import read_capture, split_messages
from testcases.data.make_a21_pcap import frame, write

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
SHARED = Path("/work/shared/captures")


def _sip(method: str, cseq: int, body: bytes = b"") -> bytes:
    head = (f"{method} sip:b@10.9.0.2 SIP/2.0\r\nVia: SIP/2.0/TCP 10.9.0.1;branch=z9hG4bK{method}{cseq}\r\n"
            f"From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c1\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n")
    if body:
        head += "Content-Type: application/sdp\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _tcp_pcap(path: Path, payload: bytes) -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    wrpcap(str(path), [Ether() / IP(src="10.9.0.1", dst="10.9.0.2") / TCP(sport=40000, dport=5060, flags="PA")
                       / Raw(payload)])


def test_golden_capture_every_copy_and_rtp(tmp_path) -> None:
    data = read_capture(write(tmp_path / "g.pcap"))
    assert len(data.messages) == 96 and len(data.rtp) == 205
    first = data.messages[0]
    assert (first.src_ep, first.dst_ep, first.method, first.transport) == \
        ("10.21.0.10:5060", "10.21.0.20:5060", "INVITE", "UDP")
    assert first.sdp is not None and first.sdp.address() == ("10.21.0.10", 20000)
    assert [h.name for h in first.msg.headers][:3] == ["Via", "Max-Forwards", "Route"]
    notify = next(m for m in data.messages if m.method == "NOTIFY")
    assert notify.sipfrag_lines == ["SIP/2.0 100 Trying"]
    rtp = data.rtp[0]
    assert (rtp.pt, rtp.ssrc, rtp.seq) == (0, 0x1000, 0)


def test_two_messages_in_one_tcp_segment(tmp_path) -> None:
    sdp = b"v=0\r\no=a 1 1 IN IP4 10.9.0.1\r\ns=-\r\nc=IN IP4 10.9.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    path = tmp_path / "tcp.pcap"
    _tcp_pcap(path, _sip("OPTIONS", 2) + _sip("INVITE", 3, sdp))
    msgs = read_capture(path).messages
    assert [(m.method, m.index, m.transport) for m in msgs] == [("OPTIONS", 0, "TCP"), ("INVITE", 1, "TCP")]
    assert msgs[1].sdp is not None and msgs[1].sdp.address() == ("10.9.0.1", 4000)


def test_split_messages_finds_which_start_line_is_first() -> None:
    a, b = _sip("OPTIONS", 2), _sip("BYE", 3)
    text = (a + b).decode().split("\r\n", 1)[1]
    out = split_messages(["BYE sip:b@10.9.0.2 SIP/2.0", "OPTIONS sip:b@10.9.0.2 SIP/2.0"],
                         [text, b.decode().split("\r\n", 1)[1]], stream=True)
    assert out == [a, b]


def test_malformed_message_is_read_leniently(tmp_path) -> None:
    bad = _sip("INVITE", 1).replace(b"Content-Length: 0", b"Content-Length: 9")
    path = tmp_path / "bad.pcap"
    from scapy.utils import PcapWriter
    with PcapWriter(str(path), linktype=1) as out:
        out.write_header(None)
        out.write_packet(frame("10.9.0.1", 5060, "10.9.0.2", 5060, bad), sec=1, usec=0)
    (m,) = read_capture(path).messages
    assert m.method == "INVITE" and m.parse_error and "Content-Length" in m.parse_error


@pytest.mark.parametrize("name", ["linphonec-transferee.pcap", "baresip-transfer-target-unreachable.pcap"])
def test_shared_captures_read(name: str) -> None:
    if not (SHARED / name).exists():
        pytest.skip("shared captures not present")
    data = read_capture(SHARED / name)
    assert data.messages and all(m.call_id and m.cseq for m in data.messages)


def test_read_inside_a_running_event_loop(tmp_path) -> None:
    path = write(tmp_path / "g.pcap")

    async def main() -> int:
        return len(read_capture(path).messages)

    assert asyncio.run(main()) == 96


def test_truncated_capture_keeps_what_was_read(tmp_path) -> None:
    path = write(tmp_path / "g.pcap")
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(path.read_bytes()[:6000])
    data = read_capture(cut)
    assert data.messages and any("truncated" in n for n in data.notes)


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"this is not a capture file at all\n", "isn't a capture file"),
    (bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"), "no SIP, RTP or RTCP"),
])
def test_bad_input_is_one_line(tmp_path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with pytest.raises(BadInput, match=reason) as info:
        read_capture(path)
    assert "\n" not in str(info.value)


def test_missing_file_and_rtp_only(tmp_path) -> None:
    with pytest.raises(BadInput, match="no such file"):
        read_capture(tmp_path / "nope.pcap")
    from scapy.utils import PcapWriter
    path = tmp_path / "rtp.pcap"
    with PcapWriter(str(path), linktype=1) as out:
        out.write_header(None)
        rtp = bytes.fromhex("80000001000000a000001234") + b"\xd5" * 160
        out.write_packet(frame("10.9.0.1", 20000, "10.9.0.2", 30000, rtp), sec=1, usec=0)
    with pytest.raises(BadInput, match="no SIP messages"):
        read_capture(path)
