"""Scapy-built templates (agents/wire.py): a message rendered from its shape's template is byte for
byte what the Scapy layer builds for it, for every shape and whatever values are patched in."""

from __future__ import annotations

import pytest

from harness.agents import wire
from harness.agents.wire import Template, build_template, scapy_build, shape, through_layer, to_wire
from harness.sip.build import add_via, make_response
from harness.sip.message import Header, SipMessage
from harness.sip.sdp import offer_audio


def _invite(call_id: str, tag: str, cseq: int, port: int, host: str = "127.9.0.1") -> SipMessage:
    sdp = bytes(offer_audio(host, port, 1234, 1))
    msg = SipMessage.request("INVITE", "sip:ue2@127.9.0.2", [
        ("Route", "<sip:127.9.0.11;lr>, <sip:127.9.0.12;lr>"),
        ("From", f"<sip:ue1@{host}>;tag={tag}"),
        ("To", "<sip:ue2@127.9.0.2>"),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} INVITE"),
        ("Contact", f"<sip:ue1@{host}:5060>"),
        ("Content-Type", "application/sdp"),
    ], sdp, content_length=True)
    add_via(msg, host, 5060, rport=True)
    return msg


def _odd() -> SipMessage:
    """Compact names, odd separators, a per-line LF, a '%' and non-ASCII text in values."""
    msg = SipMessage.request("OPTIONS", "sip:x@127.9.0.2", [("v", "SIP/2.0/UDP 127.9.0.1;branch=z9hG4bK%41")])
    msg.headers += [Header("f", "\"Jürgen 100%\" <sip:a@b>;tag=1", " : "), Header("t", "<sip:c@d>", ":", "\n"),
                    Header("i", "%s%d@x", ":  "), Header("CSeq", "1 OPTIONS"), Header("l", "0")]
    return msg


MESSAGES = {
    "INVITE with SDP": lambda: _invite("a@h", "t1", 1, 20000),
    "200 with To tag and SDP": lambda: make_response(_invite("a@h", "t1", 1, 20000), 200, "OK", to_tag="tt",
                                                     headers=[("Contact", "<sip:ue2@127.9.0.2>"),
                                                              ("Content-Type", "application/sdp")],
                                                     body=bytes(offer_audio("127.9.0.2", 30000, 5, 1))),
    "odd spellings": _odd,
    "LF-only message": lambda: SipMessage(method="BYE", uri="sip:a@b", eol="\n", headers=[
        Header("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"), Header("CSeq", "2 BYE"), Header("Content-Length", "0")]),
    "response with empty reason": lambda: SipMessage.response(180, "", [("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"),
                                                                          ("Content-Length", "0")]),
}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_template_render_is_byte_exact_with_scapy(name: str) -> None:
    msg = MESSAGES[name]()
    template = build_template(msg)
    assert template is not None
    assert template.render(msg) == scapy_build(msg) == bytes(msg)
    assert to_wire(msg) == scapy_build(msg)  # first of its shape
    assert to_wire(msg) == scapy_build(msg)  # from the template


def test_patched_values_of_the_same_shape_are_byte_exact() -> None:
    """One template, many calls: Call-ID, tags, branch, CSeq, SDP address and port all patched."""
    first = _invite("first@h", "t1", 1, 20000)
    template = build_template(first)
    assert template is not None
    for k in range(1, 30):
        msg = _invite(f"call-{k}@h", f"tag{k}", k * 7, 20000 + 2 * k, host=f"127.9.{k}.1")
        assert shape(msg) == shape(first)
        assert template.render(msg) == scapy_build(msg)
        assert to_wire(msg) == scapy_build(msg)


def test_content_length_is_right_after_patching() -> None:
    """Bodies of other lengths in the same shape: the patched Content-Length matches each body."""
    for port in (2, 20000, 65534):
        msg = _invite("cl@h", "t", 1, port)
        msg.body = msg.body + b"a=x-pad:" + b"y" * (port % 97) + b"\r\n"
        msg.set("Content-Length", str(len(msg.body)))
        parsed = SipMessage.parse(to_wire(msg))
        assert parsed.get("Content-Length") == str(len(parsed.body)) == str(len(msg.body))
        assert parsed.body == msg.body


def test_template_holds_only_constant_bytes() -> None:
    template = build_template(_invite("x@h", "t", 1, 20000))
    assert template is not None
    assert template.slots == 1 + 9  # Request-URI + every header value
    assert "x@h" not in template.fmt and "z9hG4bK" not in template.fmt
    assert template.fmt.startswith("INVITE %s SIP/2.0\r\nVia: %s\r\n")


def test_a_template_that_disagrees_with_scapy_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first message of a shape is also built in full by Scapy; a wrong template is discarded."""
    monkeypatch.setattr(wire, "_TEMPLATES", {})
    monkeypatch.setattr(wire, "build_template", lambda msg: Template("BROKEN %s" + "%s" * len(msg.headers),
                                                                     1 + len(msg.headers)))
    msg = _invite("a@h", "t1", 1, 20000)
    assert to_wire(msg) == scapy_build(msg)
    other = _invite("b@h", "t2", 2, 20002)
    assert to_wire(other) == scapy_build(other)
    assert wire._TEMPLATES[shape(msg)] is None


def test_through_layer_gives_a_message_that_serialises_to_the_wire_bytes() -> None:
    for make in MESSAGES.values():
        msg = make()
        out = through_layer(msg)
        assert bytes(out) == scapy_build(msg)
        out.set("Max-Forwards", "1")  # a copy: the caller's message is not changed
        assert bytes(msg) == scapy_build(msg)
