"""The lean engine's cheaper receive and respond path says exactly what the plain one says: the
two-phase head reader against the line-by-line reference reader, the remembered tags against the
tag parser, Sender.respond's keyed templates against forms.response, the response target's
shortcut against its regexes."""

from __future__ import annotations

import random
import re

import hypothesis
import hypothesis.strategies as st
import pytest

from harness.load.lean import forms
from harness.load.lean import head as head_module
from harness.load.lean.dialog import Sender
from harness.load.lean.endpoint import _RECEIVED, _RPORT, _SENT_BY, response_target
from harness.load.lean.head import FIELDS, Head, HeadError, read, tag_of

SETTINGS = hypothesis.settings(max_examples=500, deadline=None,
                               suppress_health_check=[hypothesis.HealthCheck.too_slow])

_STARTS = [b"INVITE sip:ue2@127.9.1.2 SIP/2.0", b"ACK sip:ue2@127.9.1.2 SIP/2.0", b"SIP/2.0 200 OK",
           b"SIP/2.0 202 Accepted", b"SIP/2.0 486 Busy Here", b"NOTIFY sip:a@h SIP/2.0"]
_BAD_STARTS = [b"SIP/2.0 2000 OK", b"SIP/2.0 20x OK", b"INVITE sip:x SIP/2.1", b"HELLO", b"BYE sip:x SIP/2.0 "]
# Every request and response carries these (one of each; the test leaves one out at times); each list
# holds spellings of one field.
_REQUIRED = [
    [b"Via: SIP/2.0/UDP 127.9.0.12:5060;branch=z9hG4bKs1", b"v: SIP/2.0/UDP a;branch=z9hG4bKa, SIP/2.0/UDP b",
     b"Via: , ,", b"Via:", b"VIA: SIP/2.0/UDP h;BRANCH = z9hG4bKup;rport=1;received=x",
     b"Via: SIP/2.0/UDP h;branch=;branch=z9hG4bKsecond", b"Via: SIP/2.0/UDP h;received=1.2.3.4",
     b"Via: SIP/2.0/UDP h ;branch= z9hG4bKsp ", b'Via: SIP/2.0/UDP h;branch="a,b", SIP/2.0/UDP c'],
    [b'From: "A, B" <sip:a@h>;tag=f1', b"f: <sip:a@h>;tag=;tag=f2", b"From: sip:a@h;tag=f3", b"From:  <sip:a@h>",
     b"From: <sip:a@h>;tag=f4 ", b"From: <sip:a@h>;tag=f5"],
    [b"To: <sip:b@h>", b"t:<sip:b@h>;tag=t1 ;x=y", b"To: <sip:b@h>;tag=t2>", b"To: <sip:b;tag=no@h>;TAG=t3",
     b"To: <sip:b@h>;tag=t4"],
    [b"Call-ID: c1@h", b"i:c2@h ", b"Call-ID: c3", b"Call-ID: c4"],
    [b"CSeq: 7 INVITE", b"CSeq:  8   BYE ", b"CSeq: 9", b"CSeq: 10\tACK", b"CSeq: 11 NOTIFY", b"CSeq: x INVITE"],
]
_OTHERS = [
    b"Via: SIP/2.0/UDP 127.9.0.11:5060;branch=z9hG4bKp1", b"v: , SIP/2.0/UDP z;branch=z9hG4bKz",
    b"Max-Forwards: 70", b"Record-Route: <sip:p1;lr>, <sip:p2;lr>", b"Record-Route: <sip:p3;lr>",
    b"Route: <sip:r;lr>", b"Route: , <sip:r2;lr>", b"Contact: <sip:a@h:5060>", b"m: <sip:a@h>;expires=60",
    b"Event: refer;id=7", b"o: refer", b"Subscription-State: active;expires=60", b"r: <sip:conf@cs>",
    b"Referred-By: <sip:a@h>", b"b:<sip:c@h> ", b"Content-Length: 4", b"l: 0", b"Content-Length: 40",
    b"Content-Length: 00000000000000000000004", b"Content-Length: " + b"0" * 5000 + b"4", b"Allow: INVITE, ACK",
    b"X-Odd: a:b", b"CONTACT : <sip:x@y>", b"Content-Type: application/sdp"]
# What the reader refuses in a head, whatever else it holds
_WRONG = [b"Content-Length: " + b"9" * 5000, b"Content-Length: x", b" folded: x", b"\tfolded", b": empty",
          b"no colon", b"To: <sip:dup@x>", b"CSeq: 2 BYE", b"Content-Length: 5", b"Via: , ,"]


def _said(data: bytes, reader: object, order: list[str]) -> object:
    """What `reader` says of `data`: its fields (read in `order`) or its refusal."""
    try:
        head = reader(data)  # type: ignore[operator]
    except HeadError as exc:
        return f"HeadError: {exc}"
    got = {name: getattr(head, name) for name in order}
    return tuple(got[name] for name in FIELDS)


def _reference(data: bytes) -> Head:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise HeadError("no end of header")
    return head_module._read_lines(data, end, data[:end].split(b"\r\n"))


@SETTINGS
@hypothesis.given(st.one_of(st.sampled_from(_STARTS), st.sampled_from(_BAD_STARTS)),
                  st.tuples(*(st.sampled_from(spellings) for spellings in _REQUIRED)),
                  st.sampled_from([None] * 15 + list(range(len(_REQUIRED)))),
                  st.lists(st.sampled_from(_OTHERS), max_size=8), st.lists(st.sampled_from(_WRONG), max_size=1),
                  st.sampled_from([b"", b"body", b"bodyEXTRA", b"v=0\r\n"]), st.randoms(use_true_random=False))
def test_two_phase_reader_says_what_the_reference_reader_says(
        start: bytes, required: tuple[bytes, ...], left_out: int | None, others: list[bytes], wrong: list[bytes],
        body: bytes, rng: random.Random) -> None:
    """Whatever the start line and fields (compact forms, comma lists, empty lists, odd branches and
    tags, Content-Length with leading zeros or too many digits, folding, duplicates, no colon), in
    whatever order, and in whichever order the agent asks for the fields (the lazy ones are read in
    groups), read() says what the reference reader says or refuses with the same error; the second
    read finds the shape remembered."""
    lines = [line for n, line in enumerate(required) if n != left_out] + others + wrong
    rng.shuffle(lines)
    data = b"\r\n".join([start, *lines]) + b"\r\n\r\n" + body
    order = list(FIELDS)
    rng.shuffle(order)
    expected = _said(data, _reference, list(FIELDS))
    for _ in range(2):
        if rng.random() < 0.5:
            head_module._TAGS.clear()
        assert _said(data, read, order) == expected, data


def test_the_generated_heads_are_mostly_read() -> None:
    """The equivalence above is about reading, not only about refusing: most generated heads are read."""
    rng = random.Random(7)
    read_ok = 0
    for _ in range(300):
        lines = [rng.choice(spellings) for spellings in _REQUIRED] + rng.sample(_OTHERS, rng.randrange(5))
        try:
            read(b"\r\n".join([rng.choice(_STARTS), *lines]) + b"\r\n\r\nbody")
            read_ok += 1
        except HeadError:
            pass
    assert read_ok > 150, read_ok


def test_a_content_length_int_cannot_parse_is_refused_not_raised() -> None:
    """int() refuses more than 4300 digits with ValueError; both readers say bad Content-Length
    (and read leading zeros however many)."""
    base = b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n" \
           b"To: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: %s\r\n\r\nbody"
    for reader in (read, _reference):
        with pytest.raises(HeadError, match="Content-Length"):
            reader(base % (b"9" * 5000))
        assert reader(base % (b"0" * 5000 + b"3")).body == b"bod"


def test_lazy_fields_are_read_once_and_unknown_names_still_fail() -> None:
    data = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n"
            b"To: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n")
    head = read(data)
    assert (head.status, head.branch, head.call_id, head.cseq, head.cseq_method) == (200, b"z9hG4bK1", b"c", b"1",
                                                                                    b"BYE")
    assert head.via is head.via and head.to_tag == b"2" and head.from_tag == b"1"
    with pytest.raises(AttributeError, match="nothing"):
        head.nothing  # noqa: B018
    with pytest.raises(AttributeError):
        Head().to  # noqa: B018  # a head of the reference reader's making has no lazy part


def _old_tag_of(name_addr: bytes) -> bytes | None:
    """tag_of as it was (the oracle): the find-based shortcut, then the regex."""
    at = name_addr.find(b">;tag=")
    if at >= 0 and name_addr.find(b">", at + 1) < 0:
        end = at + 6
        stop = len(name_addr)
        for sep in (b";", b",", b" ", b"\t"):
            found = name_addr.find(sep, end)
            if 0 <= found < stop:
                stop = found
        return name_addr[end:stop] or None
    close = name_addr.rfind(b">")
    found = re.compile(rb";[ \t]*tag[ \t]*=[ \t]*([^;, \t>]+)", re.I).search(name_addr, close + 1 if close >= 0 else 0)
    return found.group(1) if found else None


@SETTINGS
@hypothesis.given(st.lists(st.sampled_from([b"<", b">", b";", b";tag=", b">;tag=", b"tag", b"=", b" ", b"\t", b",",
                                            b"x", b"7", b"sip:a@h", b'"', b";TAG = "]), max_size=12))
def test_tag_of_says_what_it_said(parts: list[bytes]) -> None:
    value = b"".join(parts)
    head_module._TAGS.clear()
    assert tag_of(value) == _old_tag_of(value) == tag_of(value), value  # the second from the memo


def test_tag_memo_is_bounded() -> None:
    head_module._TAGS.clear()
    for n in range(head_module.TAGS_KEPT + 5):
        assert tag_of(b"<sip:a@h>;tag=%d" % n) == b"%d" % n
    assert len(head_module._TAGS) <= head_module.TAGS_KEPT


class _Kept:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def respond(self, request: Head, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


_REQUEST = (b"INVITE sip:b@127.0.0.2 SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.12:5060;branch=z9hG4bKp2\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.11:5060;branch=z9hG4bKp1, SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKu;rport=5070\r\n"
            b"From: <sip:a@127.0.0.1>;tag=a1\r\nTo: <sip:b@127.0.0.2>%s\r\nCall-ID: c@127.0.0.1\r\nCSeq: 4 INVITE\r\n"
            b"Record-Route: <sip:127.0.0.12;lr>\r\nRecord-Route: <sip:127.0.0.11;lr>\r\nContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize("to", [b"", b";tag=b2"])
@pytest.mark.parametrize("record_route", [False, True])
@pytest.mark.parametrize("extra", [[], [("Contact", b"<sip:b@127.0.0.2>")],
                                   [("Contact", b"<sip:b@127.0.0.2>"), ("Allow", b"INVITE, ACK")]])
def test_keyed_responses_are_what_forms_response_builds(to: bytes, record_route: bool,
                                                        extra: list[tuple[str, bytes]]) -> None:
    """Sender.respond fills a template it finds by (status, Vias, Record-Routes, extra names): the same
    bytes as forms.response with every field named, the first time and from the remembered template."""
    request = read(_REQUEST % to)
    kept = _Kept()
    sender = Sender(kept, "127.0.0.2", 5060)  # type: ignore[arg-type]
    for status, reason, body in ((200, b"OK", b"v=0\r\n"), (486, b"Busy Here", b""), (200, b"OK", b"v=1\r\n")):
        sender.respond(request, status, reason, extra, body, to_tag=b"new", record_route=record_route)
        fields = [("Via", via) for via in request.via] + [
            ("From", request.from_), ("To", request.to if to else request.to + b";tag=new"),
            ("Call-ID", request.call_id), ("CSeq", b"4 INVITE")]
        fields += [("Record-Route", r) for r in request.record_route] if record_route else []
        assert kept.sent.pop() == (forms.response(status, reason, fields + extra, body), ("127.0.0.12", 5060))


def _target_by_regexes(via: bytes) -> tuple[str, int]:
    sent_by = _SENT_BY.match(via)
    assert sent_by is not None
    received, rport = _RECEIVED.search(via), _RPORT.search(via)
    host = (received.group(1) if received else sent_by.group(1)).strip(b"[]").decode()
    return host, int(rport.group(1)) if rport else int(sent_by.group(2) or 5060)


@SETTINGS
@hypothesis.given(st.sampled_from([b"SIP/2.0/UDP 10.0.0.1", b"SIP/2.0/UDP 10.0.0.1:5070", b"SIP/2.0/UDP [::1]:5080"]),
                  st.lists(st.sampled_from([b";branch=z9hG4bKx", b";rport=4000", b";rport", b";received=127.0.0.2",
                                            b"; RECEIVED = 127.0.0.3", b";Rport=4001", b";x=y", b";branch=a=b",
                                            b";lr"]), max_size=4))
def test_response_target_shortcut_agrees_with_the_regexes(sent_by: bytes, params: list[bytes]) -> None:
    via = sent_by + b"".join(params)
    assert response_target(via) == _target_by_regexes(via), via
