"""UEs over real loopback through the P-CSCF and S-CSCF: call, hold (RFC 3264 §6.1 answer and media
direction), BYE, unknown dialogs, bounded waits, and the hold faults."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from harness.agents.errors import FlowTimeout
from harness.agents.proxy import Proxy
from harness.agents.topology import Topology
from harness.agents.ue import UserEquipment
from harness.sip.message import SipMessage
from harness.sip.sdp import Sdp

Scenario = Callable[[Topology, UserEquipment, UserEquipment], Awaitable[Any]]


@pytest.fixture
def topology(subnets: Iterator[int]) -> Topology:
    return Topology(next(subnets))


def _run(topology: Topology, scenario: Scenario, faults: frozenset[str] = frozenset()) -> Any:
    async def main() -> Any:
        proxies = [Proxy(role, topology.ip(role), faults=faults) for role in ("P-CSCF", "S-CSCF")]
        ue1 = UserEquipment("UE-1", topology, faults, wait=2.0)
        ue2 = UserEquipment("UE-2", topology, faults, wait=2.0)
        try:
            for agent in (*proxies, ue1, ue2):
                await agent.start()
            return await asyncio.wait_for(scenario(topology, ue1, ue2), 10.0)
        finally:
            for agent in (ue1, ue2, *proxies):
                await agent.stop()
    return asyncio.run(main())


async def _call_and_hold(topology: Topology, ue1: UserEquipment, ue2: UserEquipment) -> dict[str, Any]:
    call = await ue1.call(topology.user_uri("UE-2"))
    peer = await ue2.wait_call_from(ue1.aor)
    before = (call.media.stream.sending, peer.media.stream.sending)
    offer_version = call.local_sdp.origin.sess_version
    response = await ue1.hold(call)
    await asyncio.sleep(0.1)
    result = {
        "before": before,
        "after": (call.media.stream.sending, peer.media.stream.sending),
        "offer": (call.local_sdp.direction(0), call.local_sdp.origin.sess_version - offer_version),
        "answer": Sdp.parse(response.body).direction(0),
        "cseq": call.dialog.local_seq if call.dialog else None,
    }
    assert await ue1.bye(call)
    await ue2.wait_until(lambda: peer.ended, 2.0, "UE-2 did not see the BYE")
    result["ended"] = peer.ended
    result["errors"] = ue1.errors + ue2.errors
    return result


def test_call_hold_bye(topology: Topology) -> None:
    result = _run(topology, _call_and_hold)
    assert result["before"] == (True, True)
    assert result["offer"] == ("sendonly", 1)  # o= version + 1 (RFC 3264 §8)
    assert result["answer"] == "recvonly"  # RFC 3264 §6.1
    assert result["after"] == (True, False)  # the held party stops sending; UE-1 may keep sending
    assert result["cseq"] == 2 and result["ended"] and result["errors"] == []


def test_hold_answer_fault(topology: Topology) -> None:
    result = _run(topology, _call_and_hold, frozenset({"ue2-hold-answer-sendrecv"}))
    assert result["answer"] == "sendrecv"


def test_keeps_sending_on_hold_fault(topology: Topology) -> None:
    result = _run(topology, _call_and_hold, frozenset({"ue2-keeps-sending-on-hold"}))
    assert result["answer"] == "recvonly" and result["after"] == (True, True)


def test_request_outside_any_dialog_gets_481(topology: Topology) -> None:
    async def scenario(topology: Topology, ue1: UserEquipment, ue2: UserEquipment) -> SipMessage:
        bye = SipMessage.request("BYE", topology.contact("UE-2"), [
            ("From", f"<{ue1.aor}>;tag=x1"), ("To", f"<{ue2.aor}>;tag=nope"),
            ("Call-ID", "unknown@test"), ("CSeq", "7 BYE")])
        return await ue1.request(bye, 2.0, "no answer to a stray BYE")

    assert _run(topology, scenario).status == 481


def test_call_to_nobody_times_out_with_a_clear_message(topology: Topology) -> None:
    async def scenario(topology: Topology, ue1: UserEquipment, ue2: UserEquipment) -> str:
        with pytest.raises(FlowTimeout) as info:
            await ue1.call(topology.user_uri("UE-3"), timeout=0.3)  # nobody plays UE-3 here
        return str(info.value)

    message = _run(topology, scenario)
    assert message.startswith("UE-1 did not receive a final response to INVITE") and "0.3 s" in message


def test_stop_lets_a_failed_join_send_its_final_notify(topology: Topology) -> None:
    """RFC 3515 §2.4.5: the flow may stop as soon as a join fails; UE-2's final NOTIFY (sipfrag with
    the join's status) still goes out, after the one-a-second spacing, before UE-2 closes."""
    async def main() -> tuple[int | None, int]:
        proxies = [Proxy(role, topology.ip(role)) for role in ("P-CSCF", "S-CSCF")]
        ue1 = UserEquipment("UE-1", topology, wait=2.0)
        ue2 = UserEquipment("UE-2", topology, wait=2.0)
        try:
            for agent in (*proxies, ue1, ue2):
                await agent.start()
            call = await ue1.call(topology.user_uri("UE-2"))
            await ue2.wait_call_from(ue1.aor)
            # The S-CSCF's own URI: UE-2's INVITE there is answered 404 by the proxy (RFC 3261 §16.4).
            referral = await ue1.refer(call, f"sip:{topology.ip('S-CSCF')}:{topology.sip_port}")
            await referral.wait_first_notify(2.0)
            joined = await ue2.wait_until(lambda: ue2.referred and ue2.referred[0].final_status, 5.0,
                                          "UE-2's join did not fail")
            await ue2.stop()  # within the NOTIFY spacing: the final NOTIFY is still owed
            await ue1.wait_until(lambda: referral.final_status, 2.0, "UE-1 got no final NOTIFY")
            return referral.final_status, joined
        finally:
            for agent in (ue1, ue2, *proxies):
                await agent.stop()

    final, joined = asyncio.run(main())
    assert joined == 404 and final == 404
