"""Seeded mutations of A.2.1 messages, built with the Scapy SIP layer.

The seeds are the flow's own requests (INVITE with SDP, REFER, NOTIFY with a sipfrag, BYE,
OPTIONS), addressed to the target. Each mutation is one named operator applied with a
`random.Random(seed)`: broken or missing headers, duplicated single-value headers, huge values,
bad Content-Length, invalid sipfrag, binary garbage, a truncated or garbled start line. The same
(seed, index) always gives the same bytes, so a case that hurt a target can be replayed alone.

Operators that leave Via, From, To, Call-ID and CSeq readable but break RFC 3261's syntax expect
400; the others expect only that the target survives.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from harness.sip.layer import SIP
from harness.sip.message import Header, SipMessage
from harness.sip.sdp import offer_audio
from harness.sip.sipfrag import make_sipfrag


@dataclass(frozen=True)
class Mutation:
    name: str
    description: str
    data: bytes
    expect: str


def seeds(values: dict[str, str]) -> list[SipMessage]:
    """A.2.1's requests as the target could receive them (out of dialog: 481s are fine answers)."""
    ruri, sink, probe = f"sip:ue@{values['RURI']}", values["SINK"], values["PROBE"]

    def request(method: str, extra: list[tuple[str, str]], body: bytes = b"", cseq: int = 1) -> SipMessage:
        headers = [("Via", f"SIP/2.0/UDP {probe};branch=$BRANCH"), ("Max-Forwards", "70"),
                   ("From", f"<sip:ue1@{sink}>;tag=$TAG"), ("To", f"<{ruri}>"), ("Call-ID", "$CALLID"),
                   ("CSeq", f"{cseq} {method}"), *extra]
        return SipMessage.request(method, ruri, headers, body, content_length=True)

    sdp = bytes(offer_audio(sink, 40000, 1234, 1, "sendrecv"))
    return [
        request("INVITE", [("Contact", f"<sip:ue1@{sink}>"), ("Content-Type", "application/sdp")], sdp),
        request("REFER", [("Contact", f"<sip:ue1@{sink}>"), ("Refer-To", f"<sip:conf-1@{sink};isfocus>"),
                          ("Referred-By", f"<sip:ue1@{sink}>")], cseq=2),
        request("NOTIFY", [("Event", "refer;id=2"), ("Subscription-State", "active;expires=60"),
                           ("Content-Type", "message/sipfrag;version=2.0")], make_sipfrag(100, "Trying"), cseq=3),
        request("BYE", [], cseq=4),
        request("OPTIONS", [("Accept", "application/sdp")], cseq=5),
    ]


def _headers(pkt: SIP) -> list[Header]:
    return list(pkt.headers)


def _drop(rng: random.Random, pkt: SIP) -> tuple[bytes, str, str]:
    name = rng.choice(["Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Type"])
    pkt.headers = [h for h in _headers(pkt) if h.canonical != name]
    return bytes(pkt), f"without {name}", "any"  # without Via/From/To/Call-ID/CSeq there is no one to answer


def _duplicate(rng: random.Random, pkt: SIP) -> tuple[bytes, str, str]:
    name = rng.choice(["Call-ID", "CSeq", "From", "To", "Max-Forwards"])
    other = {"Call-ID": "other-call-id@x", "CSeq": "77 BYE", "From": "<sip:x@y>;tag=other",
             "To": "<sip:z@y>", "Max-Forwards": "12"}[name]
    headers = _headers(pkt)
    headers.insert(rng.randrange(1, len(headers) + 1), Header(name, other))
    pkt.headers = headers
    return bytes(pkt), f"a second, different {name}", "400"


def _huge(rng: random.Random, pkt: SIP) -> tuple[bytes, str, str]:
    size = rng.choice([1024, 8192, 30000])
    headers = _headers(pkt)
    headers.append(Header("Subject", "x" * size))
    pkt.headers = headers
    return bytes(pkt), f"a {size}-octet Subject", "valid"


def _content_length(rng: random.Random, pkt: SIP) -> tuple[bytes, str, str]:
    value = rng.choice(["-1", "99999", "abc", "1e3", "0x10", " 5 5", "18446744073709551617"])
    headers = [Header(h.name, value) if h.canonical == "Content-Length" else h for h in _headers(pkt)]
    pkt.headers = headers
    return bytes(pkt), f"Content-Length: {value}", "400"


def _sipfrag(rng: random.Random, pkt: SIP) -> tuple[bytes, str, str]:
    body = rng.choice([b"SIP/2.0\r\n", b"SIP/2.0 99999999999 Huge\r\n", b"HTTP/1.1 200 OK\r\n",
                       b"\x00\xff\xfe garbage\r\n", b"SIP/2.0 200\r\n" * 500])
    pkt.body = body
    headers = [Header("Content-Length", str(len(body))) if h.canonical == "Content-Length" else h
               for h in _headers(pkt)]
    headers = [Header("Content-Type", "message/sipfrag") if h.canonical == "Content-Type" else h for h in headers]
    pkt.headers = headers
    return bytes(pkt), f"sipfrag body {body[:24]!r}", "any"


def _garbage_value(rng: random.Random, pkt: SIP) -> tuple[bytes, str, str]:
    headers = _headers(pkt)
    index = rng.randrange(1, len(headers))
    junk = rng.randbytes(rng.randrange(1, 64)).replace(b"\r", b"").replace(b"\n", b"")
    raw = bytes(pkt)
    target = f"{headers[index].name}{headers[index].sep}{headers[index].value}".encode()
    return raw.replace(target, target + junk, 1), f"binary garbage after {headers[index].name}", "any"


def _garbage(rng: random.Random, pkt: SIP) -> tuple[bytes, str, str]:
    return rng.randbytes(rng.randrange(1, 1400)), "a datagram of random bytes", "any"


def _truncate(rng: random.Random, pkt: SIP) -> tuple[bytes, str, str]:
    raw = bytes(pkt)
    cut = rng.randrange(1, len(raw))
    return raw[:cut], f"cut after {cut} of {len(raw)} octets", "any"


def _start_line(rng: random.Random, pkt: SIP) -> tuple[bytes, str, str]:
    raw = bytes(pkt)
    line, _, rest = raw.partition(b"\r\n")
    method, uri, version = line.split(b" ", 2)
    broken = rng.choice([method + b" " + uri, method + b"  " + uri + b" " + version, method.lower() + b" " + uri +
                         b" " + version, method + b" " + uri + b" SIP/2.0 extra", b"\x00" + line])
    return broken + b"\r\n" + rest, f"start line {broken[:40]!r}", "any"


def _cseq(rng: random.Random, pkt: SIP) -> tuple[bytes, str, str]:
    value = rng.choice(["4294967296", "-1", "one", "2147483648 " + (pkt.method or "X"), ""])
    pkt.headers = [Header("CSeq", f"{value} {pkt.method}") if h.canonical == "CSeq" else h for h in _headers(pkt)]
    return bytes(pkt), f"CSeq: {value} {pkt.method}", "400"


OPERATORS: dict[str, Callable[[random.Random, SIP], tuple[bytes, str, str]]] = {
    "drop-header": _drop, "duplicate-header": _duplicate, "huge-value": _huge,
    "bad-content-length": _content_length, "bad-sipfrag": _sipfrag, "garbage-in-header": _garbage_value,
    "garbage-datagram": _garbage, "truncate": _truncate, "bad-start-line": _start_line, "bad-cseq": _cseq,
}


def mutations(values: dict[str, str], count: int, seed: int) -> list[Mutation]:
    """`count` mutations; the i-th depends only on (seed, i) and the addresses in `values`."""
    base = seeds(values)
    out = []
    for i in range(count):
        rng = random.Random(f"{seed}:{i}")
        msg = rng.choice(base)
        op = rng.choice(sorted(OPERATORS))
        if op == "bad-sipfrag" and msg.method != "NOTIFY":
            msg = base[2]
        data, detail, expect = OPERATORS[op](rng, SIP.from_message(msg.copy()))
        out.append(Mutation(f"mut{seed}-{i:03d}-{op}", f"{msg.method}: {detail}", data, expect))
    return out


def fill(data: bytes, values: dict[str, str]) -> bytes:
    """Per-case identifiers into a mutation's bytes (after mutating, so they stay fresh per send)."""
    for key in ("BRANCH", "CALLID", "TAG"):
        data = data.replace(f"${key}".encode(), values[key].encode())
    return data
