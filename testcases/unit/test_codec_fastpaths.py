"""The codec's fast paths give what its general paths give: head parsing (one pass over a regular
CRLF head vs line by line), comma/semicolon splitting, the per-message top-Via cache, the parse
caches of immutable values, and the transaction layer's deadline heap."""

from __future__ import annotations

import random

import pytest

from harness.robustness.corpus import CASES, render
from harness.robustness.mutate import fill, mutations
from harness.sip import headers
from harness.sip.headers import NameAddr, Via, first_comma_value, split_commas
from harness.sip.message import Header, SipMessage, _parse_head, _parse_head_lines
from harness.sip.transaction import TransactionLayer

VALUES = {"HOST": "127.9.0.11", "RURI": "127.9.0.2", "PROBE": "127.9.0.99:5099", "SINK": "127.9.0.98",
          "BRANCH": "z9hG4bKx1", "CALLID": "c1", "TAG": "t1"}


def _outcome(parse, data: bytes) -> object:  # noqa: ANN001
    try:
        msg, end = parse(data)
    except Exception as exc:  # noqa: BLE001 - the error (type and reason) is part of the outcome
        return type(exc), str(exc)
    return bytes(msg), msg.headers, msg.eol, msg.blank_eol, end


def _heads() -> list[bytes]:
    datas = [render(case, VALUES) for case in CASES]
    datas += [fill(m.data, VALUES) for m in mutations(VALUES, 200, seed=11)]
    rng = random.Random(5)
    pieces = [b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b"a", b"Via", b"\x00", b"\xc3\xa9", b"\xff",
              b"SIP/2.0 200 OK", b"INVITE sip:a@b SIP/2.0", b"\r\n\r\n", b"X: y", b"\r\n ", b"v :"]
    datas += [b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 14))) for _ in range(5000)]
    return datas


def test_one_pass_head_parse_equals_line_by_line() -> None:
    """Same message, same header list, same body offset, or the same error with the same reason."""
    fast_taken = 0
    for data in _heads():
        assert _outcome(_parse_head, data) == _outcome(_parse_head_lines, data), data[:80]
        fast_taken += b"\r\n\r\n" in data
    assert fast_taken > 100


def _split_reference(text: str, sep: str) -> list[str]:
    """The character loop `_split_outside` used to be."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            end = headers._quoted_end(text, i)
            i = len(text) if end < 0 else end
            continue
        if ch == "<":
            depth += 1
        elif ch == ">" and depth:
            depth -= 1
        elif ch == sep and not depth:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def test_split_outside_equals_the_character_loop() -> None:
    rng = random.Random(1)
    alphabet = 'ab,;<>"\\ '
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 16)))
        for sep in ",;":
            assert headers._split_outside(text, sep) == _split_reference(text, sep), (text, sep)


@pytest.mark.parametrize("text", ["", " ", "a", " a , b ", ",,a", '"x,y" <sip:a,b>, c', "<sip:a;lr>, <sip:b;lr>"])
def test_first_comma_value(text: str) -> None:
    values = split_commas(text)
    assert first_comma_value(text) == (values[0] if values else None)


def test_top_via_follows_edits_of_the_header_list() -> None:
    msg = SipMessage.request("OPTIONS", "sip:a@b", [("Via", "SIP/2.0/UDP h1;branch=z9hG4bK1"),
                                                    ("CSeq", "1 OPTIONS")])
    assert msg.top_via.branch == "z9hG4bK1"
    msg.add("Via", "SIP/2.0/UDP h2;branch=z9hG4bK2", first=True)
    assert msg.top_via.branch == "z9hG4bK2"
    msg.headers[0] = Header("Via", "SIP/2.0/UDP h3;branch=z9hG4bK3, SIP/2.0/UDP h2;branch=z9hG4bK2")
    assert msg.top_via.host == "h3"
    msg.headers.insert(0, Header("Via", " , "))  # no value on that line: the next line's first value
    assert msg.top_via.host == "h3"
    msg.pop_first("Via")
    msg.pop_first("Via")
    assert msg.top_via.host == "h2"
    msg.remove("Via")
    with pytest.raises(ValueError, match="no Via"):
        _ = msg.top_via


def test_to_tag_follows_edits() -> None:
    msg = SipMessage.request("BYE", "sip:a@b", [("To", "<sip:a@b>"), ("From", "<sip:c@d>;tag=f")])
    assert msg.to_tag is None and msg.from_tag == "f"
    msg.set("To", "<sip:a@b>;tag=t9")
    assert msg.to_tag == "t9"


def test_cached_parses_are_the_parses() -> None:
    for text in ("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKq;rport", "SIP/2.0/TCP [::1];received=1.2.3.4"):
        assert Via.parse(text) == Via.parse.__wrapped__(Via, text)
        assert str(Via.parse(text)) == text
    value = '"A, B" <sip:x@y;lr>;tag=1'
    assert NameAddr.parse(value) == NameAddr.parse.__wrapped__(NameAddr, value)
    with pytest.raises(ValueError):
        NameAddr.parse("<sip:")  # errors are raised each time, never cached
    with pytest.raises(ValueError):
        NameAddr.parse("<sip:")


def test_deadline_heap_fires_in_order_and_skips_disarmed_timers() -> None:
    """Many transactions: get_timer is the earliest live deadline; stopped transactions' timers
    never fire (Timer E retransmissions end when the final response arrives)."""
    layer = TransactionLayer(("127.9.0.1", 5060))
    keys = []
    for k in range(50):
        msg = SipMessage.request("OPTIONS", "sip:b@127.9.0.2", [
            ("Via", f"SIP/2.0/UDP 127.9.0.1:5060;branch=z9hG4bKh{k}"), ("From", "<sip:a@h>;tag=1"),
            ("To", "<sip:b@h>"), ("Call-ID", f"c{k}"), ("CSeq", "1 OPTIONS")], content_length=True)
        keys.append(layer.send_request(msg, ("127.9.0.2", 5060), now=k * 0.01))
    assert layer.get_timer() == pytest.approx(0.5)  # Timer E of the first, T1 after 0.0
    layer.datagrams_to_send(0)
    # The first ten get their final response: their E and F timers are disarmed, K armed.
    for k in range(10):
        ok = (f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.9.0.1:5060;branch=z9hG4bKh{k}\r\nFrom: <sip:a@h>;tag=1\r\n"
              f"To: <sip:b@h>;tag=2\r\nCall-ID: c{k}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()
        layer.receive(ok, ("127.9.0.2", 5060), now=0.2)
    assert layer.get_timer() == pytest.approx(0.6)  # the first still-running Timer E: k=10
    layer.handle_timer(0.75)
    resent = layer.datagrams_to_send(0.75)
    assert [d.split(b"branch=")[1].split(b"\r\n")[0] for d, _ in resent] == [f"z9hG4bKh{k}".encode() for k in range(10, 26)]
    assert all(layer.state(keys[k]) == "Completed" for k in range(10))
