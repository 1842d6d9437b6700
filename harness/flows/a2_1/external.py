"""A.2.1 with some roles played by someone else (a SUT profile's `external` roles).

The harness drives the roles it plays. When a step's initiator is external, the harness cannot make
it act: it waits, at the agent on the other end, for the evidence that it did (a REFER arriving, a
BYE ending the call...), bounded by the profile's `external_wait`, and a timeout says so plainly:
"the SUT (UE-1) did not send REFER to UE-2 within 10 s". When the peer that must answer is
external, the harness's own wait is stretched to `external_wait` and reworded the same way. A step
between two external roles has nothing here to wait on; it is judged from the capture alone, as
every step is: nothing this module learns reaches the verifier.

Before the first step every harness UE registers when the profile names a registrar
(harness/agents/registration.py), and keeps its binding fresh until the run ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from harness.agents.errors import FlowError, FlowTimeout, bounded
from harness.agents.faults import check_faults
from harness.agents.focus import ConferenceServer, Participant
from harness.agents.mrfp import Mrfp
from harness.agents.proxy import Proxy
from harness.agents.registration import Attempt, Registration
from harness.agents.sut import SutTopology
from harness.agents.topology import UES
from harness.agents.ua import WAIT, SipAgent
from harness.agents.ue import Call, IncomingReferral, UserEquipment
from harness.flows.a2_1 import play
from harness.flows.a2_1.play import FlowContext, PlayReport, SteadyPhase, StepRecord
from harness.flows.a2_1.steps import STEPS
from harness.flows.step import Step
from harness.rtp.g711 import PCMA, PCMU
from harness.rtp.rtcp import INTERVAL
from harness.sip.headers import NameAddr
from harness.sip.sdp import Sdp

T = TypeVar("T")
PROXIES = ("P-CSCF", "S-CSCF")
HOLD_DIRECTIONS = ("sendonly", "inactive")
BOTH_EXTERNAL = "between external roles: judged from the capture alone"
EXTERNAL_MRFP = "the CS is external: its MRFP is judged from the capture alone"


@dataclass
class SutReport(PlayReport):
    """PlayReport plus what only a SUT run has: which roles were external, how registration went."""

    external: tuple[str, ...] = ()
    registrations: dict[str, list[Attempt]] = field(default_factory=dict)


@dataclass
class SutContext(FlowContext):
    """FlowContext where some roles have no agent (`external`) and `cs` may be None."""

    external: frozenset[str] = frozenset()
    external_wait: float = 30.0
    incoming: dict[str, IncomingReferral] = field(default_factory=dict)  # REFERs our UEs received

    @property
    def sut(self) -> SutTopology:
        assert isinstance(self.topology, SutTopology)
        return self.topology

    def agent(self, role: str) -> bool:
        return role not in self.external

    def wait_for(self, role: str) -> float:
        """How long to wait for `role` to act: the profile's external_wait for someone else's stack."""
        return self.external_wait if role in self.external else self.wait

    def focus(self) -> ConferenceServer:
        if self.cs is None:
            raise FlowError("the CS is external: the harness has no focus to ask")
        return self.cs

    async def from_sut(self, role: str, what: str, awaitable: Awaitable[T]) -> T:
        """`awaitable`, with its timeout reworded as the external role's failure when `role` is external."""
        try:
            return await awaitable
        except FlowTimeout:
            if role not in self.external:
                raise
            raise FlowTimeout(f"the SUT ({role}) did not send {what} within {self.external_wait:g} s") from None

    async def sut_act(self, agent: SipAgent, predicate: Callable[[], T | None], role: str, what: str) -> T:
        """Wait at our `agent` for the evidence that external `role` did `what`."""
        result: T = await agent.wait_until(predicate, self.external_wait, f"the SUT ({role}) did not send {what}")
        return result


def _ctx(ctx: FlowContext) -> SutContext:
    assert isinstance(ctx, SutContext)
    return ctx


# --- actions -------------------------------------------------------------------------------------

async def _call(base: FlowContext, step: Step) -> str:
    ctx = _ctx(base)
    caller, callee = step.actors
    if ctx.agent(caller):
        call = await ctx.from_sut(callee, f"a final response to {caller}'s INVITE", ctx.ue(caller).call(
            ctx.sut.target_uri(callee), timeout=ctx.wait_for(callee), to=ctx.aor(callee)))
        ctx.calls[(caller, callee)] = call
        if ctx.agent(callee):
            await ctx.ue(callee).wait_call_from(ctx.aor(caller), ctx.wait)
        return f"{caller} -> {callee} established, Call-ID {call.call_id}"
    if ctx.agent(callee):
        ue = ctx.ue(callee)
        call = await ctx.sut_act(ue, lambda: next((c for c in ue.calls if not c.outgoing and c.acked
                                                   and c.peer == ctx.aor(caller)), None),
                                 caller, f"INVITE and ACK to {callee}")
        ctx.calls[(callee, caller)] = call
        return f"{caller} (external) -> {callee} established, Call-ID {call.call_id}"
    return BOTH_EXTERNAL


async def _hold(base: FlowContext, step: Step) -> str:
    ctx = _ctx(base)
    holder, held = step.actors
    if ctx.agent(holder):
        return await ctx.from_sut(held, "a final response to the hold re-INVITE", play._hold(ctx, step))
    if ctx.agent(held):
        call = ctx.calls[(held, holder)]

        def held_now() -> Sdp | None:
            sdp = call.remote_sdp
            return sdp if sdp is not None and sdp.direction(0) in HOLD_DIRECTIONS else None
        offer = await ctx.sut_act(ctx.ue(held), held_now, holder, f"a hold re-INVITE (sendonly) to {held}")
        return f"{holder} (external) offered {offer.direction(0)}"
    return BOTH_EXTERNAL


async def _create_conf(base: FlowContext, step: Step) -> str:
    ctx = _ctx(base)
    creator, cs_role = step.actors
    ctx.conf_creator = creator
    if ctx.agent(creator):
        ctx.conf_task = asyncio.get_running_loop().create_task(
            ctx.ue(creator).call(ctx.topology.factory_uri, timeout=ctx.wait_for(cs_role)), name="conference INVITE")
        if not ctx.agent(cs_role):
            return f"INVITE {ctx.topology.factory_uri} sent to the external CS"
        participant = await ctx.focus().wait_invite(ctx.aor(creator), ctx.wait)
        return f"INVITE {participant.uri} reached the CS"
    if ctx.agent(cs_role):
        cs = ctx.focus()
        participant = await ctx.sut_act(cs, lambda: _participant(cs, ctx.aor(creator)), creator,
                                        "INVITE to the conference factory URI")
        return f"{creator} (external) INVITE {participant.uri} reached the CS"
    return BOTH_EXTERNAL


def _participant(cs: ConferenceServer, aor: str, acked: bool = False) -> Participant | None:
    return next((p for p in reversed(cs.invites) if p.aor == aor and (p.acked or not acked)), None)


async def _media_alloc(base: FlowContext, step: Step) -> str:
    ctx = _ctx(base)
    if not ctx.agent("CS"):
        return EXTERNAL_MRFP
    return await play._media_alloc(ctx, step)


async def _conf_answer(base: FlowContext, step: Step) -> str:
    ctx = _ctx(base)
    cs_role, creator = step.actors
    if ctx.agent(creator):
        assert ctx.conf_task is not None, "create-conf must run before conf-answer"
        call: Call = await ctx.from_sut(cs_role, "a final response to the conference INVITE", bounded(
            asyncio.shield(ctx.conf_task), ctx.wait_for(cs_role), f"{creator} did not get the conference established"))
        if call.remote_contact is None:
            raise FlowError("the CS's 200 OK has no Contact: no conference URI")
        ctx.conf_uri = str(NameAddr.parse(call.remote_contact).uri)
        ctx.calls[(creator, cs_role)] = call
        if ctx.agent(cs_role):
            await ctx.focus().wait_acked(ctx.aor(creator), ctx.wait)
        return f"conference {ctx.conf_uri} (Contact {call.remote_contact})"
    if ctx.agent(cs_role):
        cs = ctx.focus()
        participant = await ctx.sut_act(cs, lambda: _participant(cs, ctx.aor(creator), acked=True), creator,
                                        "ACK for the CS's 200 OK")
        conference = next(c for c in cs.conferences.values() if participant in c.participants)
        ctx.conf_uri = str(NameAddr.parse(conference.contact).uri)
        return f"conference {ctx.conf_uri} acknowledged by {creator} (external)"
    return BOTH_EXTERNAL


async def _refer(base: FlowContext, step: Step) -> str:
    ctx = _ctx(base)
    referrer, referee = step.actors
    if ctx.agent(referrer):
        assert ctx.conf_uri is not None, "conf-answer must run before refer"
        referral = await ctx.from_sut(referee, "a final response to REFER", ctx.ue(referrer).refer(
            ctx.calls[(referrer, referee)], ctx.conf_uri, timeout=ctx.wait_for(referee)))
        ctx.referrals[referee] = referral
        assert referral.response is not None
        return f"Refer-To <{ctx.conf_uri}> answered {referral.response.status}"
    if ctx.agent(referee):
        ue, call = ctx.ue(referee), ctx.calls[(referee, referrer)]
        incoming = await ctx.sut_act(ue, lambda: next((r for r in ue.referred if r.call is call), None),
                                     referrer, f"REFER to {referee}")
        ctx.incoming[referee] = incoming
        return f"{referrer} (external) REFERred {referee} to {incoming.target}"
    return BOTH_EXTERNAL


async def _notify_trying(base: FlowContext, step: Step) -> str:
    ctx = _ctx(base)
    notifier, subscriber = step.actors
    if ctx.agent(subscriber):
        if ctx.agent(notifier):
            return await play._notify_trying(ctx, step)
        return await _first_notify_from_sut(ctx, notifier)
    if ctx.agent(notifier):
        incoming = ctx.incoming[notifier]
        await ctx.ue(notifier).wait_until(lambda: incoming.notifies_sent >= 1, ctx.wait,
                                          f"{notifier} did not send its first NOTIFY")
        return f"{notifier} notified {subscriber} (external)"
    return BOTH_EXTERNAL


async def _first_notify_from_sut(ctx: SutContext, notifier: str) -> str:
    referral = ctx.referrals[notifier]
    notify = await ctx.from_sut(notifier, "a NOTIFY for the REFER", referral.wait_first_notify(ctx.external_wait))
    first_line = notify.body.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    return f"NOTIFY {notify.get('Subscription-State')} '{first_line}' from {notifier} (external)"


async def _join(base: FlowContext, step: Step) -> str:
    ctx = _ctx(base)
    joiner, cs_role = step.actors
    if ctx.agent(cs_role):
        cs = ctx.focus()
        if ctx.agent(joiner):
            participant = await cs.wait_invite(ctx.aor(joiner), ctx.wait)
        else:
            participant = await ctx.sut_act(cs, lambda: _participant(cs, ctx.aor(joiner)), joiner,
                                            "INVITE to the conference URI")
        return f"INVITE {participant.uri} reached the CS"
    if ctx.agent(joiner):
        return f"{joiner} INVITEs the external CS (answer awaited at the next step)"
    return BOTH_EXTERNAL


async def _join_answer(base: FlowContext, step: Step) -> str:
    ctx = _ctx(base)
    cs_role, joiner = step.actors
    if ctx.agent(joiner):
        call = await ctx.from_sut(cs_role, "a final response to the join INVITE",
                                  ctx.ue(joiner).wait_join(ctx.wait_for(cs_role)))
        if ctx.agent(cs_role):
            await ctx.focus().wait_acked(ctx.aor(joiner), ctx.wait)
        return f"{joiner} in the conference (Contact {call.remote_contact})"
    if ctx.agent(cs_role):
        cs = ctx.focus()
        await ctx.sut_act(cs, lambda: _participant(cs, ctx.aor(joiner), acked=True), joiner,
                          "ACK for the CS's 200 OK")
        return f"{joiner} (external) in the conference"
    return BOTH_EXTERNAL


async def _notify_final(base: FlowContext, step: Step) -> str:
    ctx = _ctx(base)
    notifier, subscriber = step.actors
    if ctx.agent(subscriber):
        status = await ctx.from_sut(notifier, f"the final NOTIFY to {subscriber}",
                                    ctx.referrals[notifier].wait_final(ctx.wait_for(notifier)))
        if status >= 300:
            raise FlowError(f"{notifier} reports the join failed: sipfrag {status}")
        return f"final sipfrag {status}" + ("" if ctx.agent(notifier) else f" from {notifier} (external)")
    if ctx.agent(notifier):
        incoming = ctx.incoming[notifier]
        await ctx.ue(notifier).wait_until(lambda: incoming.final_status is not None and incoming.notifies_sent >= 2,
                                          ctx.wait_for("CS"), f"{notifier} did not send its final NOTIFY")
        return f"final sipfrag {incoming.final_status} to {subscriber} (external)"
    return BOTH_EXTERNAL


async def _bye(base: FlowContext, step: Step) -> str:
    ctx = _ctx(base)
    sender, peer = step.actors
    if ctx.agent(sender):
        return await ctx.from_sut(peer, "a final response to BYE", play._bye(ctx, step))
    await ctx.steady.arrive(step.branch)
    if ctx.agent(peer):
        call = ctx.calls[(peer, sender)]
        await ctx.sut_act(ctx.ue(peer), lambda: call.ended, sender, f"BYE to {peer}")
        return f"{sender} (external) ended its dialog with {peer}"
    return BOTH_EXTERNAL


ACTIONS: dict[str, Callable[[FlowContext, Step], Awaitable[str]]] = {
    "call": _call,
    "hold": _hold,
    "create-conf": _create_conf,
    "media-alloc": _media_alloc,
    "conf-answer": _conf_answer,
    "refer": _refer,
    "notify-trying": _notify_trying,
    "join": _join,
    "join-answer": _join_answer,
    "notify-final": _notify_final,
    "bye": _bye,
}


# --- registration --------------------------------------------------------------------------------

def registrations(topology: SutTopology, ues: dict[str, UserEquipment], wait: float) -> list[Registration]:
    """One Registration per harness UE when the profile names a registrar (none otherwise)."""
    profile = topology.profile
    assert profile is not None
    out = []
    for role, ue in ues.items():
        if not topology.registers(role):
            continue
        user = profile.users[role]
        assert user.username is not None and user.password is not None  # check_profile demands them
        out.append(Registration(
            ue, aor=topology.target_uri(role), contact=ue.contact, username=user.username, password=user.password,
            registrar_uri=f"sip:{profile.domain.home or topology.ip(profile.registration.registrar or 'S-CSCF')}",
            hop=topology.registration_hop(role), expires=profile.registration.expires, wait=wait,
            extra_headers=tuple(ue.initial_headers)))
    return out


# --- the run -------------------------------------------------------------------------------------

async def play_sut(topology: SutTopology, media_seconds: float = 2.0, faults: frozenset[str] = frozenset(),
                   timeout: float = 90.0, rtcp_interval: float = INTERVAL, wait: float = WAIT) -> SutReport:
    """Play A.2.1 with agents for the profile's agent roles only; external roles are awaited."""
    profile = topology.profile
    assert profile is not None
    check_faults(faults)
    external = topology.external
    report = SutReport(topology.subnet, topology.role_map(), faults, external=tuple(sorted(external)))
    records = {s.id: StepRecord(s.id, s.action, s.actors, s.branch) for s in STEPS}
    report.steps = list(records.values())
    proxies = [Proxy(role, topology.ip(role), topology.port(role), faults, topology.transport(role))
               for role in PROXIES if role not in external]
    for proxy in proxies:
        proxy.assert_identity = profile.ims.p_asserted_identity
    mrfp = Mrfp(topology.ip("MRFP"), faults, topology.rtp_base_port, rtcp_interval)
    cs = None if "CS" in external else ConferenceServer(topology, mrfp, faults, wait=wait)
    ues = {role: UserEquipment(role, topology, faults, wait=wait, rtcp_interval=rtcp_interval)
           for role in UES if role not in external}
    for ue in ues.values():
        ue.payload_type = PCMA if profile.media.codec == "PCMA" else PCMU
        _ims_headers(ue, topology)
    agents: list[SipAgent] = [*ues.values(), *([cs] if cs is not None else [])]
    for agent in agents:
        agent.t1, agent.t2 = profile.timers.t1, profile.timers.t2
    branches: dict[str, list[Step]] = {}
    for step in STEPS:
        if step.branch is not None:
            branches.setdefault(step.branch, []).append(step)
    ctx = SutContext(topology, ues, cs, mrfp,  # type: ignore[arg-type]  # cs is None when external
                     SteadyPhase(set(branches), media_seconds, max(play.STEADY_SLACK, 3 * profile.timers.external_wait)),
                     wait, actions=ACTIONS, external=external, external_wait=profile.timers.external_wait)
    regs = registrations(topology, ues, wait)
    async def start() -> None:
        for proxy in proxies:
            await proxy.start()
        if cs is not None:
            await mrfp.start()
        for agent in agents:
            await agent.start()
        await asyncio.gather(*(reg.register() for reg in regs))
        for reg in regs:
            reg.start_refresh()

    async def stop() -> None:
        for reg in regs:
            await reg.stop()
            report.registrations[reg.agent.role] = list(reg.attempts)
        play._collect_media(report, ues, mrfp)
        for agent in agents:
            await agent.stop()
            if agent.errors:
                report.agent_errors[agent.role] = list(agent.errors)
        if cs is not None:
            await mrfp.stop()
        for proxy in proxies:
            await proxy.stop()

    await play.choreograph(ctx, report, records, branches, timeout, start, stop)
    return report


def _ims_headers(ue: UserEquipment, topology: SutTopology) -> None:
    """The IMS header fields the profile asks a harness UE for (TS 24.229; checklist §9 examples)."""
    assert topology.profile is not None
    ims = topology.profile.ims
    if ims.p_preferred_identity:
        ue.initial_headers.append(("P-Preferred-Identity", f"<{ue.aor}>"))
    if ims.gruu:
        ue.initial_headers.append(("Supported", "gruu"))
        ue.contact = f'{ue.contact};+sip.instance="<urn:uuid:{topology.instance_id(ue.role)}>"'


def run_sut(topology: SutTopology, media_seconds: float = 2.0, faults: frozenset[str] = frozenset(),
            timeout: float = 90.0, rtcp_interval: float = INTERVAL, wait: float = WAIT) -> SutReport:
    """Synchronous wrapper: its own event loop, closed on return."""
    return asyncio.run(play_sut(topology, media_seconds, faults, timeout, rtcp_interval, wait))


__all__ = ["ACTIONS", "SutContext", "SutReport", "play_sut", "registrations", "run_sut"]
