"""The proxy's fast path (byte patching of the received datagram) against its reference path
(parse, route, serialise through the Scapy layer): byte-equal wherever the fast path forwards,
and the reference path's answer wherever it declines (errors, faults, odd forms, RFC 4475)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from harness.agents.proxy import Proxy
from harness.load.runner import LoadRun
from harness.robustness.corpus import CASES, render
from harness.robustness.mutate import fill, mutations
from harness.sip.message import SipMessage

N = 42
PCSCF = f"127.{N}.0.11"
SCSCF = f"127.{N}.0.12"
UE1 = (f"127.{N}.0.1", 5060)


def _invite(**over: str) -> str:
    lines = {
        "start": f"INVITE sip:ue2@127.{N}.0.2 SIP/2.0",
        "via": f"Via: SIP/2.0/UDP 127.{N}.0.1:5060;branch=z9hG4bKaaa111;rport",
        "mf": "Max-Forwards: 70",
        "route": f"Route: <sip:{PCSCF};lr>, <sip:{SCSCF};lr>",
        "from": f"From: <sip:ue1@127.{N}.0.1>;tag=f1",
        "to": f"To: <sip:ue2@127.{N}.0.2>",
        "callid": "Call-ID: abc@host",
        "cseq": "CSeq: 1 INVITE",
        "contact": f"Contact: <sip:ue1@127.{N}.0.1:5060>",
        "ctype": "Content-Type: application/sdp",
        "cl": "Content-Length: $CL",
    }
    lines.update(over)
    return "\r\n".join(v for v in lines.values() if v) + "\r\n\r\n"


SDP = f"v=0\r\no=- 1 1 IN IP4 127.{N}.0.1\r\ns=-\r\nc=IN IP4 127.{N}.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0\r\n"


def _datagram(head: str, body: str = SDP) -> bytes:
    return head.replace("$CL", str(len(body))).encode() + body.encode()


def _both(proxy: Proxy, data: bytes, source: tuple[str, int] = UE1) -> tuple[object, object]:
    return proxy.fast.forward(data, source), proxy.reference(data, source)


# Requests and responses the fast path must take, each byte-equal with the reference path.
TAKEN = {
    "initial INVITE at the P-CSCF (Route popped, Record-Route, rport)": (PCSCF, _invite()),
    "compact forms and odd separators": (PCSCF, _invite(
        via=f"v : SIP/2.0/UDP 127.{N}.0.1:5060;branch=z9hG4bKc1;rport", mf="Max-Forwards:12",
        to=f"t:<sip:ue2@127.{N}.0.2>", callid="i: x@y", cl="l: $CL", ctype="c: application/sdp")),
    "Route as two lines, one value each": (PCSCF, _invite(route=f"Route: <sip:{PCSCF};lr>\r\nRoute: <sip:{SCSCF};lr>")),
    "existing Record-Route (ours goes above it)": (SCSCF, _invite(
        via=f"Via: SIP/2.0/UDP {PCSCF}:5060;branch=z9hG4bKp1\r\nVia: SIP/2.0/UDP 127.{N}.0.1:5060;branch=z9hG4bKx;rport=5060",
        route=f"Route: <sip:{SCSCF};lr>", contact=f"Record-Route: <sip:{PCSCF};lr>\r\nContact: <sip:ue1@127.{N}.0.1>")),
    "in-dialog request: no Record-Route": (PCSCF, _invite(
        start=f"BYE sip:ue2@127.{N}.0.2:5060 SIP/2.0", to=f"To: <sip:ue2@127.{N}.0.2>;tag=t2", cseq="CSeq: 2 BYE",
        ctype="", contact="")),
    "sender behind another address: received": (PCSCF, _invite(
        via="Via: SIP/2.0/UDP 10.9.9.9:5070;branch=z9hG4bKnat")),
    "no Route: Request-URI next hop": (SCSCF, _invite(route="", start=f"REFER sip:ue2@127.{N}.0.2:5062 SIP/2.0",
                                                         cseq="CSeq: 5 REFER")),
    "Max-Forwards with spaces, '%' in a value": (PCSCF, _invite(mf="Max-Forwards :  7 ", contact="Subject: 100% fast")),
}


@pytest.mark.parametrize("name", sorted(TAKEN))
def test_fast_forward_equals_reference(name: str) -> None:
    ip, head = TAKEN[name]
    proxy = Proxy("P-CSCF" if ip == PCSCF else "S-CSCF", ip)
    body = "" if "BYE" in head else SDP
    fast, ref = _both(proxy, _datagram(head, body))
    assert fast is not None, "the fast path declined a message it should take"
    assert fast == ref
    assert proxy.fast.taken == 1


def test_initial_invite_is_patched_as_section_16_says() -> None:
    proxy = Proxy("P-CSCF", PCSCF)
    out = proxy.fast.forward(_datagram(_invite()), UE1)
    assert out is not None
    data, target = out
    assert target == (SCSCF, 5060)
    msg = SipMessage.parse(data)
    assert msg.get_all("Route") == [f"<sip:{SCSCF};lr>"]
    assert msg.get_all("Record-Route") == [f"<sip:{PCSCF};lr>"]
    assert msg.get("Max-Forwards") == "69"
    vias = msg.get_all("Via")
    assert vias[0].startswith(f"SIP/2.0/UDP {PCSCF}:5060;branch=z9hG4bK") and "rport=5060" in vias[1]
    assert msg.body == SDP.encode() and msg.get("Content-Length") == str(len(SDP))


def test_response_pops_our_via_and_goes_to_the_next() -> None:
    proxy = Proxy("S-CSCF", SCSCF)
    head = (f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {SCSCF}:5060;branch=z9hG4bKs\r\n"
            f"Via: SIP/2.0/UDP {PCSCF}:5060;branch=z9hG4bKp\r\n"
            f"Via: SIP/2.0/UDP 127.{N}.0.1:5060;branch=z9hG4bKu;rport=5060\r\n"
            f"Record-Route: <sip:{SCSCF};lr>, <sip:{PCSCF};lr>\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\n"
            "Call-ID: x\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: $CL\r\n\r\n")
    fast, ref = _both(proxy, _datagram(head))
    assert fast is not None and fast == ref
    data, target = fast
    assert target == (PCSCF, 5060)
    assert SipMessage.parse(data).get_all("Via")[0].startswith(f"SIP/2.0/UDP {PCSCF}")


# What the fast path must leave to the reference path (which answers or drops as RFC 3261 says).
DECLINED = {
    "Max-Forwards 0 (483)": _invite(mf="Max-Forwards: 0"),
    "no Max-Forwards": _invite(mf=""),
    "Proxy-Require (420)": _invite(contact="Proxy-Require: foo"),
    "two Call-IDs (400)": _invite(contact="Call-ID: other@host"),
    "CSeq method differs (400)": _invite(cseq="CSeq: 1 BYE"),
    "folded header line": _invite(contact="Contact:\r\n <sip:ue1@x>"),
    "tel Request-URI without Route (416)": _invite(route="", start="INVITE tel:+1234 SIP/2.0"),
    "addressed to the proxy itself (404)": _invite(route="", start=f"INVITE sip:{PCSCF} SIP/2.0"),
    "RFC 2543 branch": _invite(via=f"Via: SIP/2.0/UDP 127.{N}.0.1:5060;branch=old1"),
    "two Via values in one line": _invite(via=f"Via: SIP/2.0/UDP 127.{N}.0.1;branch=z9hG4bK1, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK2"),
    "headers in the Request-URI (400)": _invite(start=f"INVITE sip:ue2@127.{N}.0.2?Subject=x SIP/2.0"),
    "To that does not parse (400)": _invite(start=f"BYE sip:ue2@127.{N}.0.2 SIP/2.0", cseq="CSeq: 2 BYE", to="To: <sip:ue2@"),
    "UTF-8 display name": _invite(**{"from": f"From: \"Jürgen\" <sip:ue1@127.{N}.0.1>;tag=f1"}),
}


@pytest.mark.parametrize("name", sorted(DECLINED))
def test_fast_path_declines_and_reference_decides(name: str) -> None:
    proxy = Proxy("P-CSCF", PCSCF)
    fast, _ = _both(proxy, _datagram(DECLINED[name]))
    assert fast is None
    assert proxy.fast.taken == 0


def test_content_length_mismatch_and_lf_only_are_declined() -> None:
    proxy = Proxy("P-CSCF", PCSCF)
    good = _datagram(_invite())
    assert proxy.fast.forward(good + b"junk", UE1) is None  # §18.3 framing: the reference path trims
    assert proxy.fast.forward(good.replace(b"\r\n", b"\n"), UE1) is None


@pytest.mark.parametrize("setup", ["fault", "assert-identity", "tcp"])
def test_fast_path_is_off_when_a_fault_or_feature_touches_the_proxy(setup: str) -> None:
    proxy = Proxy("S-CSCF", SCSCF, faults=frozenset({"scscf-no-max-forwards-decrement"}) if setup == "fault" else
                  frozenset(), transport="tcp" if setup == "tcp" else "udp")
    proxy.assert_identity = setup == "assert-identity"
    data = _datagram(_invite(route=f"Route: <sip:{SCSCF};lr>"))
    assert proxy.fast.forward(data, UE1) is None
    ref = proxy.reference(data, UE1)
    assert ref is not None
    if setup == "fault":
        assert SipMessage.parse(ref[0]).get("Max-Forwards") == "70"  # the fault still applies


@pytest.fixture
def subnet(subnets: Iterator[int]) -> int:
    return next(subnets)


def _torture() -> Iterator[tuple[str, bytes]]:
    values = {"HOST": PCSCF, "RURI": f"127.{N}.0.2", "PROBE": f"127.{N}.0.99:5099", "SINK": f"127.{N}.0.98",
              "BRANCH": "z9hG4bKtorture", "CALLID": "torture-call", "TAG": "t0rture"}
    for case in CASES:
        yield case.name, render(case, values)
    for mutation in mutations(values, 150, seed=7):
        yield mutation.name, fill(mutation.data, values)


def test_torture_corpus_fast_path_never_differs_from_reference() -> None:
    """RFC 4475 and mutations: whatever the fast path forwards, the reference path forwards the same
    bytes to the same place; everything else it leaves alone."""
    taken = 0
    for name, data in _torture():
        proxy = Proxy("P-CSCF", PCSCF)
        fast, ref = _both(proxy, data, (f"127.{N}.0.99", 5099))
        if fast is not None:
            taken += 1
            assert fast == ref, name
    assert taken > 0  # the corpus has well-formed cases the fast path takes


def test_a2_1_traffic_through_both_paths_is_identical(subnet: int) -> None:
    """Every datagram the proxies receive in a real A.2.1 instance: the fast path takes them all
    and forwards exactly what the reference path would."""
    seen: list[tuple[Proxy, bytes, tuple[str, int], tuple[bytes, tuple[str, int]] | None]] = []
    original = Proxy._datagram

    def recording(self: Proxy, data: bytes, addr: tuple[str, int]) -> None:
        seen.append((self, data, addr, self.reference(data, addr)))
        original(self, data, addr)

    Proxy._datagram = recording  # type: ignore[method-assign]
    try:
        records = asyncio.run(LoadRun(subnet, 1, 1, media_seconds=0.0).run())
    finally:
        Proxy._datagram = original  # type: ignore[method-assign]
    assert records[0].ok, records[0].error
    assert len(seen) > 40
    for proxy, data, addr, ref in seen:
        assert ref is not None
        assert proxy.fast.forward(data, addr) == ref, data[:60]
