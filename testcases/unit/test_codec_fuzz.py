"""One rule for every parser: it parses, or raises SipParseError, never anything else.

Plus: generated valid messages round-trip byte-exact; every truncation of a message with
Content-Length fails cleanly; a stream parser fed byte by byte yields the message exactly once.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.sip import (
    COMPACT_FORMS,
    EventHeader,
    NameAddr,
    Sdp,
    SipMessage,
    SipParseError,
    SipUri,
    SubscriptionState,
    Via,
    parse_cseq,
    parse_params,
    parse_sipfrag,
    parse_status_line,
    parse_uri,
    split_commas,
)
from harness.sip.layer import SIP

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLES = [p.read_bytes() for p in sorted(DATA.glob("*.sip"))]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parses_or_parse_error(parse: Callable[[Any], object], data: Any) -> object | None:
    try:
        return parse(data)
    except SipParseError:
        return None


def exercise(msg: SipMessage) -> None:
    """Every convenience on a parsed message also fails only with SipParseError."""
    for name in ("Via", "Route", "Contact", "From", "To", "Authorization", "x"):
        msg.get_all(name)
    for attr in ("cseq", "from_tag", "to_tag", "top_via", "branch", "content_type", "call_id"):
        parses_or_parse_error(lambda m, a=attr: getattr(m, a), msg)
    for name, parser in (("Contact", NameAddr.parse), ("o", EventHeader.parse), ("Subscription-State", SubscriptionState.parse)):
        for value in msg.get_all(name):
            parses_or_parse_error(parser, value)


@st.composite
def mutated_sample(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        chunk = draw(st.binary(min_size=1, max_size=4) | st.sampled_from([b"\r\n", b"\n", b":", b" ", b";", b"<", b'"', b"\xff"]))
        if op == "insert":
            data[pos:pos] = chunk
        elif op == "delete":
            del data[pos : pos + len(chunk)]
        else:
            data[pos : pos + len(chunk)] = chunk
    return bytes(data)


@FAST
@given(st.binary(max_size=300) | mutated_sample())
def test_message_parse_only_raises_parse_error(data: bytes) -> None:
    msg = parses_or_parse_error(SipMessage.parse, data)
    if isinstance(msg, SipMessage):
        assert bytes(msg) == data
        exercise(msg)
        assert bytes(SIP(data)) == data
    parses_or_parse_error(SipMessage.parse_stream, data)


TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=60) | st.text(
    alphabet='sip:@;=<>"\\,?&[]/. tagbranch12345-', max_size=60
)


@FAST
@given(TEXT)
def test_value_parsers_only_raise_parse_error(text: str) -> None:
    for parser in (SipUri.parse, parse_uri, NameAddr.parse, Via.parse, parse_cseq, parse_params,
                   EventHeader.parse, SubscriptionState.parse, parse_status_line):
        value = parses_or_parse_error(parser, text)
        if value is not None and hasattr(value, "_text"):
            assert str(value) == text.strip(" \t\r\n")
    split_commas(text)  # never raises


@FAST
@given(st.binary(max_size=200) | st.sampled_from(SAMPLES).map(lambda raw: SipMessage.parse(raw).body))
def test_sdp_and_sipfrag_only_raise_parse_error(data: bytes) -> None:
    sdp = parses_or_parse_error(Sdp.parse, data)
    if isinstance(sdp, Sdp):
        assert bytes(sdp) == data
        for i in range(len(sdp.media)):
            parses_or_parse_error(sdp.media_address, i)
            sdp.direction(i)
            sdp.rtpmap(i)
    parses_or_parse_error(parse_sipfrag, data)


# --- generated valid messages ----------------------------------------------------------------

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~", min_size=1, max_size=12)
NAME = TOKEN | st.sampled_from(sorted(COMPACT_FORMS) + ["Via", "CALL-ID", "cseq", "Route"])
SEP = st.sampled_from([":", ": ", " : ", "\t:\t", ":   "])
VALUE_TEXT = st.text(alphabet=st.characters(codec="utf-8", blacklist_categories=("Cc", "Cs")), max_size=30)


@st.composite
def header_value(draw: st.DrawFn, eol: str) -> str:
    value = draw(VALUE_TEXT).lstrip(" \t")
    for part in draw(st.lists(VALUE_TEXT.filter(lambda t: t.strip(" \t")), max_size=2)):
        value += eol + draw(st.sampled_from([" ", "\t", "   "])) + part.lstrip(" \t")
    return value


@st.composite
def valid_message(draw: st.DrawFn) -> tuple[bytes, SipMessage]:
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    if draw(st.booleans()):
        start = f"{draw(TOKEN)} sip:{draw(TOKEN)}@example.com SIP/2.0"
    else:
        start = f"SIP/2.0 {draw(st.integers(100, 699))} {draw(VALUE_TEXT)}"
    names = draw(st.lists(NAME.filter(lambda n: n.lower() not in ("l", "content-length")), max_size=8))
    lines = [f"{name}{draw(SEP)}{draw(header_value(eol))}" for name in names]
    body = draw(st.binary(max_size=40))
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), f"{draw(st.sampled_from(['l', 'Content-Length']))}: {len(body)}")
    raw = (start + eol + "".join(line + eol for line in lines) + eol).encode() + body
    return raw, SipMessage.parse(raw)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_message())
def test_generated_messages_round_trip(case: tuple[bytes, SipMessage]) -> None:
    raw, msg = case
    assert bytes(msg) == raw
    assert SipMessage.parse(bytes(msg.copy())) == msg
    assert bytes(SIP(raw)) == raw and bytes(SIP.from_message(msg)) == raw
    exercise(msg)


# --- truncation, byte by byte, trailing bytes ------------------------------------------------


@pytest.mark.parametrize("raw", SAMPLES, ids=range(len(SAMPLES)))
def test_every_truncation_fails_cleanly(raw: bytes) -> None:
    assert SipMessage.parse(raw).get("Content-Length") is not None
    for cut in range(len(raw)):
        with pytest.raises(SipParseError):
            SipMessage.parse(raw[:cut])


def test_truncation_without_content_length_is_shorter_body_or_error() -> None:
    raw = SAMPLES[0].replace(b"Content-Length: ", b"X-Length: ")
    full = SipMessage.parse(raw)
    for cut in range(len(raw)):
        msg = parses_or_parse_error(SipMessage.parse, raw[:cut])
        if isinstance(msg, SipMessage):
            assert msg.headers == full.headers and full.body.startswith(msg.body)


@pytest.mark.parametrize("raw", SAMPLES, ids=range(len(SAMPLES)))
def test_stream_fed_byte_by_byte(raw: bytes) -> None:
    buffer = b""
    found = []
    for byte in raw + raw:
        buffer += bytes([byte])
        msg, used = SipMessage.parse_stream(buffer)
        if msg is not None:
            found.append(msg)
            buffer = buffer[used:]
    assert found == [SipMessage.parse(raw)] * 2 and buffer == b""


@pytest.mark.parametrize("extra", [b"x", b"\r\n", SAMPLES[0]])
def test_trailing_bytes_rejected_by_parse_but_framed_by_stream(extra: bytes) -> None:
    raw = SAMPLES[0]
    with pytest.raises(SipParseError, match="follow"):
        SipMessage.parse(raw + extra)
    assert SipMessage.parse_stream(raw + extra) == (SipMessage.parse(raw), len(raw))
