"""The stateless record-routing proxy (RFC 3261 §16.11): pure routing decisions, then a REFER
forwarded over real loopback sockets and its 202 routed back by the Via stack."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from harness.agents.proxy import Proxy
from harness.net.udp import UdpSocket
from harness.sip.message import SipMessage

N = 42  # routing decisions need no sockets; any subnet number will do


def _refer(route: str, to_tag: str | None = "b2", branch: str = "z9hG4bKabc", max_forwards: str = "70") -> SipMessage:
    to = "<sip:ue2@127.42.0.2>" + (f";tag={to_tag}" if to_tag else "")
    return SipMessage.request("REFER", "sip:ue2@127.42.0.2:5060", [
        ("Via", f"SIP/2.0/UDP 127.42.0.1:5060;branch={branch};rport"),
        ("Max-Forwards", max_forwards),
        ("Route", route),
        ("From", "<sip:ue1@127.42.0.1>;tag=a1"),
        ("To", to),
        ("Call-ID", "c1@127.42.0.1"),
        ("CSeq", "3 REFER"),
        ("Refer-To", "<sip:conf-1@127.42.0.4:5060>"),
        ("Referred-By", "<sip:ue1@127.42.0.1>"),
        ("Contact", "<sip:ue1@127.42.0.1:5060>"),
    ], content_length=True)


PCSCF = Proxy("P-CSCF", f"127.{N}.0.11")


def test_pops_own_route_decrements_and_forwards_to_next_route() -> None:
    msg = _refer("<sip:127.42.0.11;lr>, <sip:127.42.0.12;lr>")
    out = PCSCF.route_request(msg, ("127.42.0.1", 5060))
    assert out is not None
    fwd, target = out
    assert target == ("127.42.0.12", 5060)
    assert fwd.get_all("Route") == ["<sip:127.42.0.12;lr>"]
    assert fwd.get("Max-Forwards") == "69"
    vias = fwd.get_all("Via")
    assert len(vias) == 2 and vias[0].startswith("SIP/2.0/UDP 127.42.0.11:5060;branch=z9hG4bK")
    assert "rport=5060" in vias[1]  # RFC 3581: the source port noted for the way back
    assert fwd.get_all("Record-Route") == []  # in-dialog: no Record-Route
    for name in ("From", "To", "Call-ID", "CSeq", "Refer-To", "Referred-By"):
        assert fwd.get(name) == msg.get(name)  # G5
    assert fwd.body == msg.body


def test_dialog_creating_request_is_record_routed_and_sent_to_request_uri() -> None:
    out = PCSCF.route_request(_refer("<sip:127.42.0.11;lr>", to_tag=None), ("127.42.0.1", 5060))
    assert out is not None
    fwd, target = out
    assert target == ("127.42.0.2", 5060)
    assert fwd.get_all("Record-Route") == ["<sip:127.42.0.11;lr>"]
    assert fwd.get("Route") is None


def test_branch_is_stable_for_retransmissions_and_distinct_per_request() -> None:
    route = "<sip:127.42.0.11;lr>"
    first = PCSCF.route_request(_refer(route), ("127.42.0.1", 5060))
    again = PCSCF.route_request(_refer(route), ("127.42.0.1", 5060))
    other = PCSCF.route_request(_refer(route, branch="z9hG4bKdef"), ("127.42.0.1", 5060))
    assert first and again and other
    assert first[0].branch == again[0].branch != other[0].branch
    assert first[0].branch is not None and first[0].branch.startswith("z9hG4bK")


def test_max_forwards_zero_gets_483_back_to_the_sender() -> None:
    out = PCSCF.route_request(_refer("<sip:127.42.0.11;lr>", max_forwards="0"), ("127.42.0.1", 5060))
    assert out is not None
    reply, target = out
    assert reply.status == 483 and target == ("127.42.0.1", 5060)


def test_scscf_fault_skips_the_decrement() -> None:
    faulty = Proxy("S-CSCF", "127.42.0.12", faults=frozenset({"scscf-no-max-forwards-decrement"}))
    out = faulty.route_request(_refer("<sip:127.42.0.12;lr>"), ("127.42.0.11", 5060))
    assert out is not None and out[0].get("Max-Forwards") == "70"
    # the same fault name does not make a P-CSCF misbehave
    pcscf = Proxy("P-CSCF", "127.42.0.11", faults=frozenset({"scscf-no-max-forwards-decrement"}))
    out = pcscf.route_request(_refer("<sip:127.42.0.11;lr>"), ("127.42.0.1", 5060))
    assert out is not None and out[0].get("Max-Forwards") == "69"


def test_response_not_via_us_is_dropped() -> None:
    response = SipMessage.response(200, "OK", [("Via", "SIP/2.0/UDP 127.42.0.99:5060;branch=z9hG4bKx"),
                                               ("CSeq", "1 REFER")], content_length=True)
    assert PCSCF.route_response(response) is None


@pytest.fixture
def subnet(subnets: Iterator[int]) -> int:
    return next(subnets)


def test_refer_and_202_through_two_proxies_over_loopback(subnet: int) -> None:
    """UE-1 -> P-CSCF -> S-CSCF -> UE-2 and the 202 back, on real sockets."""
    n = subnet

    async def main() -> tuple[SipMessage, SipMessage]:
        at_ue1: asyncio.Queue[SipMessage] = asyncio.Queue()
        at_ue2: asyncio.Queue[SipMessage] = asyncio.Queue()
        ue1 = await UdpSocket.bind(f"127.{n}.0.1", 5060, lambda d, a: at_ue1.put_nowait(SipMessage.parse(d)))
        ue2 = await UdpSocket.bind(f"127.{n}.0.2", 5060, lambda d, a: at_ue2.put_nowait(SipMessage.parse(d)))
        proxies = [Proxy("P-CSCF", f"127.{n}.0.11"), Proxy("S-CSCF", f"127.{n}.0.12")]
        try:
            for proxy in proxies:
                await proxy.start()
            refer = _refer(f"<sip:127.{n}.0.11;lr>, <sip:127.{n}.0.12;lr>")
            refer.uri = f"sip:ue2@127.{n}.0.2:5060"
            refer.set("Via", f"SIP/2.0/UDP 127.{n}.0.1:5060;branch=z9hG4bKloop;rport")
            ue1.sendto(bytes(refer), (f"127.{n}.0.11", 5060))
            got = await asyncio.wait_for(at_ue2.get(), 2.0)
            accepted = SipMessage.response(202, "Accepted", [
                *(("Via", v) for v in got.get_all("Via")),
                *((name, str(got.get(name))) for name in ("From", "To", "Call-ID", "CSeq")),
                ("Contact", f"<sip:ue2@127.{n}.0.2:5060>")], content_length=True)
            ue2.sendto(bytes(accepted), (f"127.{n}.0.12", 5060))
            back = await asyncio.wait_for(at_ue1.get(), 2.0)
            return got, back
        finally:
            for proxy in proxies:
                await proxy.stop()
            ue1.close()
            ue2.close()

    got, back = asyncio.run(main())
    assert got.method == "REFER" and got.get("Max-Forwards") == "68"
    assert len(got.get_all("Via")) == 3 and got.get("Route") is None
    assert got.get_all("Refer-To") == ["<sip:conf-1@127.42.0.4:5060>"]
    assert back.status == 202 and len(back.get_all("Via")) == 1
    assert back.branch == "z9hG4bKloop"
