"""SipMessage: parse, round-trip, header access, builders, framing."""

import pytest

from harness.sip import Header, SipMessage, SipParseError, canonical_name
from harness.sip.errors import SipBuildError

INVITE = (
    b"INVITE sip:bob@biloxi.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds, SIP/2.0/TCP x:5070;branch=z9hG4bKb\r\n"
    b"v : SIP/2.0/UDP [::1]:5062;rport;branch=z9hG4bKc\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.com>\r\n"
    b'f: "Alice, A" <sip:alice@atlanta.com>;tag=1928301774\r\n'
    b"CALL-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Subject: hello,\r\n  world\r\n"
    b"Contact: <sip:alice@pc33.atlanta.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"l:4\r\n"
    b"\r\n"
    b"abcd"
)


def test_parse_fields_and_round_trip() -> None:
    msg = SipMessage.parse(INVITE)
    assert bytes(msg) == INVITE
    assert msg.is_request and msg.method == "INVITE" and msg.uri == "sip:bob@biloxi.com"
    assert msg.start_line == "INVITE sip:bob@biloxi.com SIP/2.0"
    assert msg.body == b"abcd"
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.com"
    assert msg.cseq == (314159, "INVITE")
    assert msg.from_tag == "1928301774" and msg.to_tag is None
    assert msg.branch == msg.top_via_branch == "z9hG4bK776asdhds"
    assert msg.content_type == "application/sdp"
    assert msg.get("subject") == "hello, world"  # folding is one SP (RFC 3261 §7.3.1)
    assert msg.get("From") == '"Alice, A" <sip:alice@atlanta.com>;tag=1928301774'


def test_repeated_and_comma_separated_headers_keep_order() -> None:
    msg = SipMessage.parse(INVITE)
    vias = msg.get_all("Via")
    assert [v.split(";")[0] for v in vias] == [
        "SIP/2.0/UDP pc33.atlanta.com",
        "SIP/2.0/TCP x:5070",
        "SIP/2.0/UDP [::1]:5062",
    ]
    assert msg.get_all("From") == ['"Alice, A" <sip:alice@atlanta.com>;tag=1928301774']


def test_compact_and_canonical_names() -> None:
    msg = SipMessage.parse(INVITE)
    assert [h.name for h in msg.headers][:3] == ["Via", "v", "Max-Forwards"]
    assert [h.canonical for h in msg.headers] == [
        "Via", "Via", "Max-Forwards", "To", "From", "Call-ID", "CSeq", "Subject", "Contact",
        "Content-Type", "Content-Length",
    ]
    assert msg.headers[1].sep == " : " and msg.headers[-1].sep == ":"


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("CALL-ID", "Call-ID"), ("call-id", "Call-ID"), ("i", "Call-ID"), ("cseq", "CSeq"),
        ("www-authenticate", "WWW-Authenticate"), ("referred-by", "Referred-By"), ("b", "Referred-By"),
        ("REFER-TO", "Refer-To"), ("r", "Refer-To"), ("subscription-state", "Subscription-State"),
        ("allow-events", "Allow-Events"), ("u", "Allow-Events"), ("max-forwards", "Max-Forwards"),
        ("record-route", "Record-Route"), ("p-asserted-identity", "P-Asserted-Identity"),
        ("x-my-HEADER", "X-My-Header"), ("o", "Event"), ("e", "Content-Encoding"), ("x", "Session-Expires"),
        ("a", "Accept-Contact"), ("j", "Reject-Contact"), ("d", "Request-Disposition"), ("y", "Identity"),
        ("k", "Supported"), ("s", "Subject"), ("m", "Contact"), ("l", "Content-Length"), ("c", "Content-Type"),
        ("t", "To"), ("f", "From"), ("v", "Via"),
    ],
)
def test_canonical_name(raw: str, canonical: str) -> None:
    assert canonical_name(raw) == canonical
    assert Header(raw, "x").canonical == canonical


def test_no_split_for_credentials_and_dates() -> None:
    raw = (
        b"REGISTER sip:x SIP/2.0\r\n"
        b'Authorization: Digest username="a", realm="b", nonce="c"\r\n'
        b"Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n"
        b"Route: <sip:p1;lr>, <sip:p2;lr>\r\n"
        b"Route: <sip:p3;lr>\r\n"
        b"r: <sip:a>, <sip:b>\r\n\r\n"
    )
    msg = SipMessage.parse(raw)
    assert len(msg.get_all("Authorization")) == 1
    assert msg.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert msg.get_all("Route") == ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]
    assert msg.get_all("Refer-To") == ["<sip:a>", "<sip:b>"]  # RFC 3515: counted, so split


def test_response_reason_with_spaces_and_lf_only() -> None:
    raw = b"SIP/2.0 100 trying -- your call is important to us\nVia: a\nContent-Length: 0\n\n"
    msg = SipMessage.parse(raw)
    assert msg.status == 100 and msg.reason == "trying -- your call is important to us"
    assert not msg.is_request and bytes(msg) == raw


def test_mixed_line_ends_round_trip() -> None:
    raw = b"OPTIONS sip:x SIP/2.0\r\nVia: a\nTo: b\r\n\n"
    assert bytes(SipMessage.parse(raw)) == raw


def test_no_content_length_body_is_rest() -> None:
    raw = b"MESSAGE sip:x SIP/2.0\r\nTo: b\r\n\r\nhello\r\n"
    assert SipMessage.parse(raw).body == b"hello\r\n"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "no empty line"),
        (b"\r\n\r\n", "starts with an empty line"),
        (b"INVITE sip:x SIP/2.0\r\nTo b\r\n\r\n", "header line 2 has no colon"),
        (b"INVITE sip:x SIP/2.0\r\nTo x: b\r\n\r\n", "not a valid header name"),
        (b"INVITE sip:x SIP/2.0\r\n To: b\r\n\r\n", "line 2 is a continuation"),
        (b"INVITE sip:x SIP/2.0\r\nl: 5\r\n\r\nabc", "Content-Length says 5"),
        (b"INVITE sip:x SIP/2.0\r\nl: 1\r\n\r\nabc", "2 bytes follow"),
        (b"INVITE sip:x SIP/2.0\r\nl: x\r\n\r\n", "not a number"),
        (b"INVITE sip:x SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\nab", "conflicting"),
        (b"INVITE sip:x SIP/3.0\r\n\r\n", "not SIP/2.0"),
        (b"INVITE  sip:x SIP/2.0\r\n\r\n", "METHOD SP Request-URI"),
        (b"INVITE bob SIP/2.0\r\n\r\n", "not an absolute URI"),
        (b"SIP/2.0 200\r\n\r\n", "Status-Line"),
        (b"SIP/2.0 2000 OK\r\n\r\n", "Status-Line"),
        (b"SIP/2.0 700 OK\r\n\r\n", "Status-Line"),
        (b"INVITE sip:x SIP/2.0\r\nTo: \xff\r\n\r\n", "line 2 is not UTF-8"),
        (b"INVITE sip:x SIP/2.0\r\nTo: a\rb\r\n\r\n", "control character 0x0d"),
        (b"INVITE sip:x SIP/2.0\r\nTo: a\r\n", "no empty line"),
    ],
)
def test_parse_errors_name_the_problem(raw: bytes, fragment: str) -> None:
    with pytest.raises(SipParseError) as info:
        SipMessage.parse(raw)
    assert fragment in info.value.reason


def test_builders_add_nothing_implicitly() -> None:
    msg = SipMessage.request("OPTIONS", "sip:bob@b", [("Via", "SIP/2.0/UDP a;branch=z9hG4bK1"), ("To", "<sip:b>")])
    assert bytes(msg) == b"OPTIONS sip:bob@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nTo: <sip:b>\r\n\r\n"
    with_cl = SipMessage.request("MESSAGE", "sip:b", [("To", "<sip:b>")], body=b"hi", content_length=True)
    assert with_cl.get("Content-Length") == "2"
    assert SipMessage.parse(bytes(with_cl)) == with_cl
    resp = SipMessage.response(486, "Busy Here", [("To", "<sip:b>;tag=1")]).with_content_length()
    assert bytes(resp).startswith(b"SIP/2.0 486 Busy Here\r\n") and resp.get("l") == "0"


@pytest.mark.parametrize(
    "call",
    [
        lambda: SipMessage.request("BAD METHOD", "sip:x", []),
        lambda: SipMessage.request("INVITE", "not a uri", []),
        lambda: SipMessage.request("INVITE", "sip:x", [("To", "a\r\nInjected: 1")]),
        lambda: SipMessage.request("INVITE", "sip:x", [("Bad Name", "a")]),
        lambda: SipMessage.response(99, "x", []),
    ],
)
def test_builders_refuse_unsendable(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SipBuildError):
        call()


def test_set_add_remove_pop_first() -> None:
    msg = SipMessage.parse(INVITE)
    msg.add("Via", "SIP/2.0/UDP proxy;branch=z9hG4bKp", first=True)
    assert msg.get_all("v")[0] == "SIP/2.0/UDP proxy;branch=z9hG4bKp"
    assert msg.headers[0].name == "Via"
    msg.add("Record-Route", "<sip:p;lr>")
    assert msg.headers[-1].canonical == "Record-Route"
    msg.add("Via", "SIP/2.0/UDP last")
    assert msg.get_all("Via")[-1] == "SIP/2.0/UDP last"
    assert msg.pop_first("Via") == "SIP/2.0/UDP proxy;branch=z9hG4bKp"
    assert msg.pop_first("Via") == "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds"
    assert msg.get_all("Via")[0] == "SIP/2.0/TCP x:5070;branch=z9hG4bKb"
    msg.set("call-id", "new@x")
    assert msg.call_id == "new@x" and msg.headers[[h.canonical for h in msg.headers].index("Call-ID")].name == "CALL-ID"
    assert msg.remove("Via") == 3 and msg.get("Via") is None
    msg.set("Max-Forwards", "69")
    assert msg.get("Max-Forwards") == "69"


def test_copy_is_independent() -> None:
    msg = SipMessage.parse(INVITE)
    dup = msg.copy()
    dup.set("CSeq", "1 BYE")
    assert msg.cseq == (314159, "INVITE") and dup.cseq == (1, "BYE")
    assert msg.copy() == msg


def test_parse_stream_frames_and_waits() -> None:
    one = SipMessage.request("NOTIFY", "sip:a", [("To", "<sip:a>")], body=b"SIP/2.0 200 OK\r\n", content_length=True)
    stream = b"\r\n\r\n" + bytes(one) + bytes(one)
    msg, used = SipMessage.parse_stream(stream)
    assert msg == one and used == 4 + len(bytes(one))
    assert SipMessage.parse_stream(stream[used:]) == (one, len(bytes(one)))
    for cut in range(len(bytes(one))):
        assert SipMessage.parse_stream(bytes(one)[:cut]) == (None, 0)
    with pytest.raises(SipParseError, match="no Content-Length"):
        SipMessage.parse_stream(b"OPTIONS sip:a SIP/2.0\r\n\r\n")
