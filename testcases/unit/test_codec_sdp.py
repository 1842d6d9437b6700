"""SDP: round-trip, views, offer/answer helpers."""

from pathlib import Path

import pytest

from harness.sip import Sdp, SipMessage, SipParseError, answer_direction, offer_audio
from harness.sip.errors import SipBuildError

DATA = Path(__file__).resolve().parents[1] / "data"
SDP_SAMPLES = [
    SipMessage.parse(p.read_bytes()).body
    for p in sorted(DATA.glob("*.sip"))
    if SipMessage.parse(p.read_bytes()).content_type == "application/sdp"
]

HOLD = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844527 IN IP4 host.atlanta.example.com\r\n"
    b"s=\r\n"
    b"c=IN IP4 host.atlanta.example.com\r\n"
    b"t=0 0\r\n"
    b"a=recvonly\r\n"
    b"m=audio 49170 RTP/AVP 0 97\r\n"
    b"c=IN IP4 192.0.2.7/127\r\n"
    b"a=rtpmap:97 iLBC/8000\r\n"
    b"a=sendonly\r\n"
    b"m=video 51372 RTP/AVP 31\r\n"
)


def test_samples_round_trip() -> None:
    assert len(SDP_SAMPLES) >= 3
    for body in SDP_SAMPLES:
        assert bytes(Sdp.parse(body)) == body


def test_views() -> None:
    sdp = Sdp.parse(HOLD)
    assert bytes(sdp) == HOLD
    assert sdp.origin.sess_version == 2890844527 and sdp.origin.addr == "host.atlanta.example.com"
    assert sdp.connection is not None and sdp.connection.address == "host.atlanta.example.com"
    assert [(m.kind, m.port, m.proto, m.fmts) for m in sdp.media] == [
        ("audio", 49170, "RTP/AVP", ("0", "97")),
        ("video", 51372, "RTP/AVP", ("31",)),
    ]
    assert sdp.media[0].attrs == [("rtpmap", "97 iLBC/8000"), ("sendonly", None)]
    assert sdp.direction(0) == "sendonly"  # media-level beats session-level (RFC 4566 §6)
    assert sdp.direction(1) == "recvonly"  # session-level applies
    assert sdp.media_address(0) == ("192.0.2.7", 49170)  # media-level c=, ttl dropped
    assert sdp.media_address(1) == ("host.atlanta.example.com", 51372)
    assert sdp.rtpmap() == {97: "iLBC/8000", 0: "PCMU/8000"}


def test_default_direction_is_sendrecv() -> None:
    assert offer_audio("127.1.0.1", 20000, 1, 1).with_direction("sendrecv").direction() == "sendrecv"
    bare = Sdp.parse(b"v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP4 a\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n")
    assert bare.direction() == "sendrecv"


def test_with_direction_replaces_in_place_or_appends() -> None:
    sdp = Sdp.parse(HOLD)
    held = sdp.with_direction("inactive")
    assert [held.direction(i) for i in range(2)] == ["inactive", "inactive"]
    assert bytes(held) == HOLD.replace(b"a=sendonly", b"a=inactive") + b"a=inactive\r\n"
    only_video = sdp.with_direction("sendrecv", media_index=1)
    assert (only_video.direction(0), only_video.direction(1)) == ("sendonly", "sendrecv")
    lf = Sdp.parse(b"v=0\no=- 1 1 IN IP4 a\ns=-\nt=0 0\nm=audio 1 RTP/AVP 0")
    assert bytes(lf.with_direction("recvonly")).endswith(b"m=audio 1 RTP/AVP 0\na=recvonly\n")
    with pytest.raises(SipBuildError):
        sdp.with_direction("hold")


def test_bump_version() -> None:
    sdp = Sdp.parse(HOLD).bump_version()
    assert sdp.origin.sess_version == 2890844528
    assert bytes(sdp) == HOLD.replace(b"2890844527 IN", b"2890844528 IN")


def test_offer_audio() -> None:
    offer = offer_audio("127.1.0.1", 20000, 42, 1, direction="sendonly")
    assert bytes(offer) == (
        b"v=0\r\no=- 42 1 IN IP4 127.1.0.1\r\ns=-\r\nc=IN IP4 127.1.0.1\r\nt=0 0\r\n"
        b"m=audio 20000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendonly\r\n"
    )
    assert offer.media_address() == ("127.1.0.1", 20000) and offer.rtpmap() == {0: "PCMU/8000"}
    assert offer_audio("::1", 20002, 1, 1, pt=8).rtpmap() == {8: "PCMA/8000"}
    assert "IP6 ::1" in bytes(offer_audio("::1", 20002, 1, 1)).decode()
    with pytest.raises(SipBuildError):
        offer_audio("a", 1, 1, 1, pt=18)


@pytest.mark.parametrize(
    ("offer", "answer"),
    [("sendonly", "recvonly"), ("recvonly", "sendonly"), ("inactive", "inactive"), ("sendrecv", "sendrecv")],
)
def test_answer_direction(offer: str, answer: str) -> None:
    assert answer_direction(offer) == answer


def test_trailing_blank_lines_and_lf_round_trip() -> None:
    for raw in [HOLD + b"\r\n", HOLD.replace(b"\r\n", b"\n"), HOLD[:-2]]:
        assert bytes(Sdp.parse(raw)) == raw


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "v=0"),
        (b"o=- 1 1 IN IP4 a\r\n", "v=0"),
        (b"v=0\r\ns=-\r\n", "line 2 is not o="),
        (b"v=0\r\no=- 1 IN IP4 a\r\ns=-\r\nt=0 0\r\n", "6 space-separated"),
        (b"v=0\r\no=- x 1 IN IP4 a\r\ns=-\r\nt=0 0\r\n", "numeric"),
        (b"v=0\r\no=- 1 1 IN IP4 a\r\nt=0 0\r\n", "no s= line"),
        (b"v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\n", "no t= line"),
        (b"v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nt=0 0\r\n\r\nm=audio 1 RTP/AVP 0\r\n", "line 5"),
        (b"v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nt=0 0\r\nm=audio x RTP/AVP 0\r\n", "port"),
        (b"v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP\r\n", "<fmt>"),
        (b"v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP4\r\nt=0 0\r\n", "c="),
        (b"v=0\r\no=- 1 1 IN IP4 a\r\ns=\xff\r\nt=0 0\r\n", "UTF-8"),
        (b"v=0\r\no=- 1 1 IN IP4 a\r\ns=-\rt=0 0\r\n", "control"),
    ],
)
def test_errors(raw: bytes, fragment: str) -> None:
    with pytest.raises(SipParseError) as info:
        Sdp.parse(raw)
    assert fragment in info.value.reason


def test_media_address_without_connection() -> None:
    sdp = Sdp.parse(b"v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n")
    with pytest.raises(SipParseError, match="no c= line"):
        sdp.media_address()
