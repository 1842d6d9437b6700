"""Scapy layers: byte-exact dissection, ordered headers, payload dispatch, port bindings."""

from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Padding, Raw

from harness.sip import Header, SipMessage, make_sipfrag, offer_audio
from harness.sip.layer import SDP, SIP, SIPFrag

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLES = sorted(DATA.glob("*.sip"))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_round_trip(path: Path) -> None:
    raw = path.read_bytes()
    msg = SipMessage.parse(raw)
    pkt = SIP(raw)
    assert bytes(pkt) == raw
    assert bytes(SIP.from_message(msg)) == raw
    assert pkt.to_message() == msg
    assert pkt.headers == msg.headers


def invite() -> SipMessage:
    body = bytes(offer_audio("127.1.0.1", 20000, 1, 1))
    return SipMessage.request(
        "INVITE", "sip:ue2@127.1.0.2",
        [("Via", "SIP/2.0/UDP 127.1.0.1;branch=z9hG4bK1"), ("Via", "SIP/2.0/UDP 127.1.0.11;branch=z9hG4bK2"),
         ("Record-Route", "<sip:b;lr>"), ("Record-Route", "<sip:a;lr>"), ("Call-ID", "c@x"),
         ("CSeq", "1 INVITE"), ("Content-Type", "application/sdp")],
        body, content_length=True,
    )


def test_stack_dissects_to_sip_with_sdp() -> None:
    msg = invite()
    frame = Ether(bytes(Ether() / IP() / UDP(sport=5060, dport=5060) / SIP.from_message(msg)))
    assert frame.haslayer(SIP) and frame.haslayer(SDP)
    assert [h.value for h in frame[SIP].headers if h.canonical == "Via"] == [
        "SIP/2.0/UDP 127.1.0.1;branch=z9hG4bK1", "SIP/2.0/UDP 127.1.0.11;branch=z9hG4bK2",
    ]
    assert frame[SDP].to_sdp() == offer_audio("127.1.0.1", 20000, 1, 1)
    assert frame[SIP].to_message() == msg


@pytest.mark.parametrize("ports", [{"sport": 5060, "dport": 40000}, {"sport": 40000, "dport": 5060}])
def test_bindings(ports: dict[str, int]) -> None:
    raw = bytes(invite())
    assert IP(bytes(IP() / UDP(**ports) / raw)).haslayer(SIP)
    assert IP(bytes(IP() / TCP(**ports) / raw)).haslayer(SIP)
    assert not IP(bytes(IP() / UDP(sport=1, dport=2) / raw)).haslayer(SIP)


def test_sipfrag_and_raw_payloads() -> None:
    notify = SipMessage.request(
        "NOTIFY", "sip:a", [("Content-Type", "message/sipfrag;version=2.0")], make_sipfrag(100, "Trying"),
        content_length=True,
    )
    pkt = SIP(bytes(notify))
    assert isinstance(pkt.payload, SIPFrag) and pkt[SIPFrag].status == (100, "Trying")
    other = SipMessage.request("MESSAGE", "sip:a", [("c", "text/plain")], b"hi", content_length=True)
    assert isinstance(SIP(bytes(other)).payload, Raw)


def test_bytes_after_content_length_are_padding() -> None:
    raw = bytes(invite())
    pkt = SIP(raw + b"\x00\x00junk")
    assert bytes(pkt) == raw + b"\x00\x00junk"
    assert pkt.haslayer(Padding) and pkt.to_message() == invite()


def test_not_sip_stays_raw_under_udp() -> None:
    frame = IP(bytes(IP() / UDP(sport=5060, dport=5060) / b"\r\n\r\n"))
    assert not frame.haslayer(SIP) and frame.haslayer(Raw)


def test_edits_and_answers() -> None:
    request = SIP.from_message(invite())
    response = SipMessage.response(
        200, "OK", [("Via", "SIP/2.0/UDP 127.1.0.1;branch=z9hG4bK1"), ("Call-ID", "c@x"), ("CSeq", "1 INVITE")],
    )
    reply = SIP.from_message(response)
    assert reply.answers(request) and not request.answers(reply)
    assert reply.hashret() == request.hashret()
    built = SIP(method="OPTIONS", uri="sip:a", headers=[("Via", "x"), ("v", "y")])
    assert bytes(built) == b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\nv: y\r\n\r\n"
    assert len(list(built)) == 1  # the header list is one value, not one packet per header
    built.headers = [*built.headers, Header("Max-Forwards", "70", ":")]
    assert bytes(built).endswith(b"v: y\r\nMax-Forwards:70\r\n\r\n")
    assert built.summary().endswith("OPTIONS sip:a SIP/2.0")
