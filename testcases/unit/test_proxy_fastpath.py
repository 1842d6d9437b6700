"""The proxy's fast path (byte patching of the received datagram) against its reference path
(parse, route, serialise through the Scapy layer): byte-equal wherever the fast path forwards,
and the reference path's answer wherever it declines (errors, faults, odd forms, RFC 4475)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from harness.agents.proxy import Forwarded, Proxy, clear_caches
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
    "odd case in header names": (PCSCF, _invite(
        via=f"VIA: SIP/2.0/UDP 127.{N}.0.1:5060;branch=z9hG4bKcase;rport", mf="max-FORWARDS: 9", cseq="cSeq: 1 INVITE",
        to=f"tO: <sip:ue2@127.{N}.0.2>", route=f"ROUTE: <sip:{PCSCF};lr>, <sip:{SCSCF};lr>", cl="CONTENT-LENGTH: $CL")),
    "Via in the general form (spaces, a host name): the codec's parser": (PCSCF, _invite(
        via="Via: SIP / 2.0 / UDP ue1.example.com:5070 ; branch=z9hG4bKgen ; rport")),
    "Via params in odd case, an old received": (PCSCF, _invite(
        via=f"Via: SIP/2.0/UDP 127.{N}.0.1;BRANCH=z9hG4bKup;received=192.0.2.1;RPort")),
    "Via with duplicate params (the first counts)": (PCSCF, _invite(
        via="Via: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKd1;branch=z9hG4bKd2;rport;rport=7")),
    "To tag without a value: no tag, Record-Route": (PCSCF, _invite(to=f"To: <sip:ue2@127.{N}.0.2>;tag")),
    "To tag in odd case: a tag, no Record-Route": (PCSCF, _invite(to=f"To: <sip:ue2@127.{N}.0.2>;TaG=t9")),
    "To with a valueless tag first: no tag": (PCSCF, _invite(to=f"To: <sip:ue2@127.{N}.0.2>;tag;tag=t9")),
    "To with a quoted display name": (PCSCF, _invite(to=f'To: "Ue, Two" <sip:ue2@127.{N}.0.2>;tag=t2')),
    "To as a bare addr-spec with a tag": (PCSCF, _invite(to=f"To: sip:ue2@127.{N}.0.2;tag=t2")),
    "SUBSCRIBE is record-routed": (PCSCF, _invite(start=f"SUBSCRIBE sip:ue2@127.{N}.0.2 SIP/2.0", cseq="CSeq: 3 SUBSCRIBE",
                                                  ctype="Event: conference")),
    "Route with our URI alone on its line, more lines below": (PCSCF, _invite(
        route=f"Route: <sip:{PCSCF};lr>\r\nRoute: <sip:{SCSCF};lr>, <sip:127.{N}.0.13;lr>")),
    # The common-form shortcuts (_SENDER_VIA, _PLAIN_SIP_URI) and where they must leave the parsers.
    "bare rport from another address: rport and received appended": (PCSCF, _invite(
        via="Via: SIP/2.0/UDP 10.9.9.9:5070;branch=z9hG4bKnat2;rport")),
    "Via without a port, bare rport": (PCSCF, _invite(via=f"Via: SIP/2.0/UDP 127.{N}.0.1;branch=z9hG4bKnp;rport")),
    "Via port with a leading zero (written back as the parser reads it)": (PCSCF, _invite(
        via="Via: SIP/2.0/UDP 10.9.9.9:05070;branch=z9hG4bKz0;rport")),
    "Via with trailing blanks": (PCSCF, _invite(via="Via: SIP/2.0/UDP 10.9.9.9:5070;branch=z9hG4bKtb;rport  ")),
    "Via with rport before the branch": (PCSCF, _invite(via="Via: SIP/2.0/UDP 10.9.9.9:5070;rport;branch=z9hG4bKrb")),
    "Request-URI without a user part, a port": (SCSCF, _invite(route="", start=f"INVITE sip:127.{N}.0.2:5062 SIP/2.0")),
    "Request-URI with a URI parameter (the parser)": (SCSCF, _invite(
        route="", start=f"INVITE sip:ue2@127.{N}.0.2;maddr=127.{N}.0.3 SIP/2.0")),
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
    clear_caches()  # and again with nothing remembered (the shared caches hold what the first saw)
    assert Proxy(proxy.role, ip).fast.forward(_datagram(head, body), UE1) == ref


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
    "two CSeq lines (400)": _invite(contact="CSeq: 1 INVITE"),
    "two To lines, compact and full (400)": _invite(contact=f"t: <sip:ue2@127.{N}.0.2>"),
    "two Max-Forwards lines": _invite(contact="max-forwards: 70"),
    "Max-Forwards garbage (400)": _invite(mf="Max-Forwards: 7a"),
    "Max-Forwards negative (400)": _invite(mf="Max-Forwards: -1"),
    "Content-Length not a number": _invite(cl="Content-Length: x$CL"),
    "Content-Length says less than the body": _invite(cl="Content-Length: 3"),
    "two Content-Length lines": _invite(contact="l: $CL"),
    "a header line without a colon": _invite(contact="Contact <sip:ue1@x>"),
    "a header name with a space inside": _invite(contact="Sub ject: x"),
    "a header name not a token": _invite(contact="Sub(ject): x"),
    "a control byte in a value": _invite(contact="Subject: a\x01b"),
    "a bare LF in a value": _invite(contact="Subject: a\nb"),
    "a Via port above 65535 (400)": _invite(via=f"Via: SIP/2.0/UDP 127.{N}.0.1:70000;branch=z9hG4bKp"),
    "an empty Via": _invite(via="Via: "),
    "P-Asserted-Identity (the reference path judges it)": _invite(contact="P-Asserted-Identity: <sip:x@y>"),
    "a Request-URI port above 65535 (400)": _invite(route="", start=f"INVITE sip:ue2@127.{N}.0.2:70000 SIP/2.0"),
    "a To URI port above 65535 (400)": _invite(to=f"To: <sip:ue2@127.{N}.0.2:99999>"),
    "addressed to the proxy itself, port written (404)": _invite(route="", start=f"INVITE sip:{PCSCF}:5060 SIP/2.0"),
}


@pytest.mark.parametrize("name", sorted(DECLINED))
def test_fast_path_declines_and_reference_decides(name: str) -> None:
    proxy = Proxy("P-CSCF", PCSCF)
    fast, _ = _both(proxy, _datagram(DECLINED[name]))
    assert fast is None
    assert proxy.fast.taken == 0


def _response(first_via: str, second_via: str = f"Via: SIP/2.0/UDP {PCSCF}:5060;branch=z9hG4bKp") -> bytes:
    head = (f"SIP/2.0 200 OK\r\n{first_via}\r\n{second_via}\r\n"
            f"Via: SIP/2.0/UDP 127.{N}.0.1:5060;branch=z9hG4bKu;rport=5060\r\nFrom: <sip:a@b>;tag=1\r\n"
            "To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
            "Content-Length: $CL\r\n\r\n")
    return _datagram(head)


@pytest.mark.parametrize("first, second, taken", [
    (f"Via: SIP/2.0/UDP {SCSCF}:5060;branch=z9hG4bKs", f"v: SIP/2.0/UDP {PCSCF};branch=z9hG4bKp;received=10.0.0.9;rport=5099", True),
    (f"via:SIP/2.0/UDP {SCSCF};branch=z9hG4bKs", f"Via: SIP/2.0/UDP {PCSCF}:5070;branch=z9hG4bKp, SIP/2.0/UDP 10.0.0.1", True),
    (f"Via: SIP / 2.0 / UDP {SCSCF} : 5060 ; branch=z9hG4bKs", "Via: SIP/2.0/UDP p.example.com;branch=z9hG4bKp", True),
    (f"Via: SIP/2.0/UDP {PCSCF}:5060;branch=z9hG4bKs", f"Via: SIP/2.0/UDP {PCSCF};branch=z9hG4bKp", False),  # not ours
    (f"Via: SIP/2.0/UDP {SCSCF}:5062;branch=z9hG4bKs", f"Via: SIP/2.0/UDP {PCSCF};branch=z9hG4bKp", False),  # not ours
    (f"Via: SIP/2.0/UDP {SCSCF};branch=z9hG4bKs, SIP/2.0/UDP 10.0.0.1", f"Via: SIP/2.0/UDP {PCSCF};branch=z9hG4bKp", False),
    (f"Via: SIP/2.0/UDP {SCSCF};branch=z9hG4bKs", "Via: ", False),
    # our Via's prefix (`_ours_on_top`) followed by more than a token: the Via parser decides
    (f"Via: SIP/2.0/UDP {SCSCF}:5060;branch=z9hG4bKs-1;rport", f"Via: SIP/2.0/UDP {PCSCF};branch=z9hG4bKp", True),
    (f"Via: SIP/2.0/UDP {SCSCF}:5060;branch=z9hG4bKs, SIP/2.0/UDP 10.0.0.1", f"Via: SIP/2.0/UDP {PCSCF};branch=z9hG4bKp",
     False),
    # the next Via in _RETURN_VIA's form: rport 0 (the sent-by port), a leading zero, a port out of range
    (f"Via: SIP/2.0/UDP {SCSCF}:5060;branch=z9hG4bKs", f"Via: SIP/2.0/UDP {PCSCF}:5070;branch=z9hG4bKp;rport=0", True),
    (f"Via: SIP/2.0/UDP {SCSCF}:5060;branch=z9hG4bKs", f"Via: SIP/2.0/UDP {PCSCF}:05070;branch=z9hG4bKp", True),
    (f"Via: SIP/2.0/UDP {SCSCF}:5060;branch=z9hG4bKs", f"Via: SIP/2.0/UDP {PCSCF}:70000;branch=z9hG4bKp", False),
])
def test_responses_with_odd_vias(first: str, second: str, taken: bool) -> None:
    proxy = Proxy("S-CSCF", SCSCF)
    fast, ref = _both(proxy, _response(first, second))
    assert (fast is not None) == taken
    if taken:
        assert fast == ref


def test_a_request_then_its_response_and_a_retransmission() -> None:
    """The Via lines a proxy writes are remembered for the responses that bring them back, and a
    retransmission maps to the same branch (§16.11): both still byte-equal with the reference path."""
    pcscf, scscf = Proxy("P-CSCF", PCSCF), Proxy("S-CSCF", SCSCF)
    invite = _datagram(_invite())
    first = pcscf.fast.forward(invite, UE1)
    assert first is not None and first == pcscf.reference(invite, UE1)
    assert pcscf.fast.forward(invite, UE1) == first
    second = scscf.fast.forward(first[0], (PCSCF, 5060))
    assert second is not None and second == scscf.reference(first[0], (PCSCF, 5060))
    request = SipMessage.parse(second[0])
    vias = "".join(f"Via: {via}\r\n" for via in request.get_all("Via"))
    ok = (f"SIP/2.0 200 OK\r\n{vias}From: {request.get('From')}\r\nTo: {request.get('To')};tag=t2\r\n"
          f"Call-ID: {request.get('Call-ID')}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode()
    back = scscf.fast.forward(ok, (f"127.{N}.0.2", 5060))
    assert back is not None and back == scscf.reference(ok, (f"127.{N}.0.2", 5060))
    assert back[1] == (PCSCF, 5060)
    home = pcscf.fast.forward(back[0], (SCSCF, 5060))
    assert home is not None and home == pcscf.reference(back[0], (SCSCF, 5060))
    assert home[1] == UE1


def test_a_response_finds_the_via_line_the_proxy_patched() -> None:
    """The sender's Via the P-CSCF patched (rport and received of a sender behind a NAT) is
    remembered with where its responses go (`_RETURNS`): the response goes to the address and
    port the request came from, byte-equal with the reference path."""
    pcscf = Proxy("P-CSCF", PCSCF)
    nat = ("10.0.0.9", 7000)
    invite = _datagram(_invite(via=f"Via: SIP/2.0/UDP 127.{N}.0.1:5060;branch=z9hG4bKnat3;rport"))
    out = pcscf.fast.forward(invite, nat)
    assert out is not None and out == pcscf.reference(invite, nat)
    vias = "".join(f"Via: {via}\r\n" for via in SipMessage.parse(out[0]).get_all("Via"))
    ok = (f"SIP/2.0 200 OK\r\n{vias}From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\n"
          "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode()
    back = pcscf.fast.forward(ok, (SCSCF, 5060))
    assert back is not None and back == pcscf.reference(ok, (SCSCF, 5060))
    assert back[1] == nat


def test_a_known_shape_is_recognised_by_its_names_only() -> None:
    """A head with the line count and start of a shape the proxy has met, but another header
    name, is read name by name (`_known_shape` tests each line's name): a Proxy-Require there is
    still left to the reference path (420), another name still forwarded byte-equal."""
    proxy = Proxy("P-CSCF", PCSCF)
    assert proxy.fast.forward(_datagram(_invite()), UE1) is not None
    assert proxy.fast.forward(_datagram(_invite(contact="Proxy-Require: foo")), UE1) is None
    assert proxy.fast.forward(_datagram(_invite(contact="Contact <sip:ue1@x>")), UE1) is None  # no colon
    other = _datagram(_invite(contact="Subject: x"))
    fast = proxy.fast.forward(other, UE1)
    assert fast is not None and fast == proxy.reference(other, UE1)


def test_log_reads_as_the_reference_paths() -> None:
    """`proxy.log` holds the same Forwarded records whichever path forwarded."""
    fast, ref = Proxy("P-CSCF", PCSCF), Proxy("P-CSCF", PCSCF)
    invite = _datagram(_invite())
    assert fast.fast.forward(invite, UE1) is not None
    ref.reference(invite, UE1)
    assert list(fast.log) == list(ref.log) == [Forwarded("request", f"INVITE sip:ue2@127.{N}.0.2", (SCSCF, 5060))]
    response = _response(f"Via: SIP/2.0/UDP {PCSCF}:5060;branch=z9hG4bKs",
                         f"Via: SIP/2.0/UDP 127.{N}.0.1:5060;branch=z9hG4bKu;rport=5061")
    assert fast.fast.forward(response, (SCSCF, 5060)) is not None
    ref.reference(response, (SCSCF, 5060))
    assert list(fast.log) == list(ref.log)
    assert fast.log[-1] == Forwarded("response", "200 INVITE", (f"127.{N}.0.1", 5061))


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
