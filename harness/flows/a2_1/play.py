"""The A.2.1 choreography, driven by the step table: each step's `action` names a small coroutine
that performs it or awaits the evidence of it. Branches "UE-2" and "UE-3" (22~52 and 53~83) run
concurrently, as the text says ("in parallel"). Agents are started proxies first and always stopped.

The PlayReport says what each step did, for the log only: verdicts come from the capture alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field

from harness.agents.errors import FlowError, bounded
from harness.agents.faults import FAULTS, check_faults
from harness.agents.focus import ConferenceServer
from harness.agents.mrfp import Mrfp
from harness.agents.proxy import Proxy
from harness.agents.topology import UES, Topology
from harness.agents.ua import WAIT
from harness.agents.ue import Call, Referral, UserEquipment
from harness.flows.a2_1.steps import STEPS
from harness.flows.step import Step
from harness.rtp.rtcp import INTERVAL
from harness.sip.headers import NameAddr
from harness.sip.sdp import Sdp

log = logging.getLogger(__name__)

# Media between common steps, so each phase of checklist §5 shows on the wire.
PAUSE_AFTER = {"1": 0.3, "2": 0.3, "3~11": 0.3, "16~21": 0.2}
TAIL = 0.3  # steady state after 78~83: everyone only <-> MRFP
STEADY_SLACK = 30.0  # how long a branch waits for the others before the BYEs (beyond media_seconds)


class StepSkipped(Exception):
    """A step deliberately not performed (a fault says so)."""


@dataclass
class StepRecord:
    id: str
    action: str
    actors: tuple[str, str]
    branch: str | None
    status: str = "not-run"  # done | skipped | failed | not-run
    detail: str = ""
    started: float | None = None
    ended: float | None = None


@dataclass(frozen=True)
class LegAudio:
    """What one leg received, for tests that analyse the audio (never read by the verifier)."""

    payload_types: frozenset[int]
    sources: frozenset[tuple[str, int]]
    tail: tuple[tuple[int, bytes], ...]  # (payload type, payload) of the last packets received
    rtcp_types: frozenset[int]


@dataclass
class PlayReport:
    """What the choreography did. Never read by the verifier."""

    subnet: int
    roles: dict[str, str]
    faults: frozenset[str]
    steps: list[StepRecord] = field(default_factory=list)
    error: str | None = None
    agent_errors: dict[str, list[str]] = field(default_factory=dict)
    media: dict[str, dict[str, int]] = field(default_factory=dict)
    audio: dict[str, LegAudio] = field(default_factory=dict)  # same keys as `media`
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and all(s.status in ("done", "skipped") for s in self.steps)

    def step(self, step_id: str) -> StepRecord:
        return next(s for s in self.steps if s.id == step_id)

    def summary(self) -> str:
        lines = [f"A.2.1 on 127.{self.subnet}.0.0/24 faults={sorted(self.faults)} "
                 f"{'ok' if self.ok else 'FAILED'} in {self.duration:.1f} s"]
        lines += [f"  {s.id:>6} {s.action:<13} {s.status:<8} {s.detail}" for s in self.steps]
        if self.error:
            lines.append(f"  error: {self.error}")
        lines += [f"  {role}: {err}" for role, errs in self.agent_errors.items() for err in errs]
        return "\n".join(lines)


class SteadyPhase:
    """The conference's steady state before the BYEs: once every branch has arrived (or given up),
    hold `seconds` of media once, then release all of them."""

    def __init__(self, branches: set[str], seconds: float, slack: float = STEADY_SLACK) -> None:
        self.waiting = set(branches)
        self.seconds = seconds
        self.slack = slack
        self.done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def leave(self, branch: str | None) -> None:
        self.waiting.discard(branch or "")
        if not self.waiting and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._hold())

    async def _hold(self) -> None:
        await asyncio.sleep(self.seconds)
        self.done.set()

    async def arrive(self, branch: str | None) -> None:
        self.leave(branch)
        await bounded(self.done.wait(), self.seconds + self.slack,
                      f"branch {branch} waited for the other branches to reach the conference")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


@dataclass
class FlowContext:
    """Agents and what earlier steps learnt (dialogs, conference URI, referrals)."""

    topology: Topology
    ues: dict[str, UserEquipment]
    cs: ConferenceServer
    mrfp: Mrfp
    steady: SteadyPhase
    wait: float = WAIT
    calls: dict[tuple[str, str], Call] = field(default_factory=dict)
    conf_task: asyncio.Task[Call] | None = None
    conf_creator: str = "UE-1"
    conf_uri: str | None = None
    referrals: dict[str, Referral] = field(default_factory=dict)
    # Step action -> coroutine, when a run replaces some (external roles: harness/flows/a2_1/external.py).
    actions: Mapping[str, Callable[[FlowContext, Step], Awaitable[str]]] | None = None

    def ue(self, role: str) -> UserEquipment:
        return self.ues[role]

    def aor(self, role: str) -> str:
        return self.topology.user_uri(role)


# --- actions: one per Step.action ---------------------------------------------------------------

async def _call(ctx: FlowContext, step: Step) -> str:
    caller, callee = step.actors
    call = await ctx.ue(caller).call(ctx.aor(callee))
    ctx.calls[(caller, callee)] = call
    await ctx.ue(callee).wait_call_from(ctx.aor(caller), ctx.wait)
    return f"{caller} -> {callee} established, Call-ID {call.call_id}"


async def _hold(ctx: FlowContext, step: Step) -> str:
    holder, held = step.actors
    response = await ctx.ue(holder).hold(ctx.calls[(holder, held)])
    answer = Sdp.parse(response.body).direction(0) if response.body else "none"
    return f"offer sendonly, answer {answer}"


async def _create_conf(ctx: FlowContext, step: Step) -> str:
    creator, _ = step.actors
    ctx.conf_creator = creator
    ctx.conf_task = asyncio.get_running_loop().create_task(
        ctx.ue(creator).call(ctx.topology.factory_uri), name="conference INVITE")
    participant = await ctx.cs.wait_invite(ctx.aor(creator), ctx.wait)
    return f"INVITE {participant.uri} reached the CS"


async def _media_alloc(ctx: FlowContext, step: Step) -> str:
    participant = step.branch or ctx.conf_creator
    port = await ctx.mrfp.wait_allocated(ctx.aor(participant), ctx.wait)
    return f"MRFP {ctx.mrfp.ip}:{port} for {participant}"


async def _conf_answer(ctx: FlowContext, step: Step) -> str:
    assert ctx.conf_task is not None, "create-conf must run before conf-answer"
    call: Call = await bounded(asyncio.shield(ctx.conf_task), ctx.wait,
                               f"{ctx.conf_creator} did not get the conference established")
    if call.remote_contact is None:
        raise FlowError("the CS's 200 OK has no Contact: no conference URI")
    ctx.conf_uri = str(NameAddr.parse(call.remote_contact).uri)
    ctx.calls[(ctx.conf_creator, "CS")] = call
    await ctx.cs.wait_acked(ctx.aor(ctx.conf_creator), ctx.wait)
    return f"conference {ctx.conf_uri} (Contact {call.remote_contact})"


async def _refer(ctx: FlowContext, step: Step) -> str:
    referrer, referee = step.actors
    assert ctx.conf_uri is not None, "conf-answer must run before refer"
    referral = await ctx.ue(referrer).refer(ctx.calls[(referrer, referee)], ctx.conf_uri)
    ctx.referrals[referee] = referral
    assert referral.response is not None
    return f"Refer-To <{ctx.conf_uri}> answered {referral.response.status}"


async def _notify_trying(ctx: FlowContext, step: Step) -> str:
    notifier, _ = step.actors
    notify = await ctx.referrals[notifier].wait_first_notify(ctx.wait)
    first_line = notify.body.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    return f"NOTIFY {notify.get('Subscription-State')} '{first_line}'"


async def _join(ctx: FlowContext, step: Step) -> str:
    joiner, _ = step.actors
    participant = await ctx.cs.wait_invite(ctx.aor(joiner), ctx.wait)
    return f"INVITE {participant.uri} reached the CS"


async def _join_answer(ctx: FlowContext, step: Step) -> str:
    _, joiner = step.actors
    call = await ctx.ue(joiner).wait_join(ctx.wait)
    await ctx.cs.wait_acked(ctx.aor(joiner), ctx.wait)
    return f"{joiner} in the conference (Contact {call.remote_contact})"


async def _notify_final(ctx: FlowContext, step: Step) -> str:
    notifier, _ = step.actors
    status = await ctx.referrals[notifier].wait_final(ctx.wait)
    if status >= 300:
        raise FlowError(f"{notifier} reports the join failed: sipfrag {status}")
    return f"final sipfrag {status}"


async def _bye(ctx: FlowContext, step: Step) -> str:
    sender, peer = step.actors
    await ctx.steady.arrive(step.branch)
    if not await ctx.ue(sender).bye(ctx.calls[(sender, peer)]):
        raise StepSkipped(f"{sender} skipped the BYE (fault)")
    return f"{sender} ended its dialog with {peer}"


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


# --- running the table ----------------------------------------------------------------------------

@contextlib.contextmanager
def recording(record: StepRecord) -> Iterator[None]:
    """What a step did, into its record: its times, done / skipped (StepSkipped) / failed (re-raised),
    "cancelled" when its flow was ended first (asyncio's cancellation or a closed generator)."""
    record.started = time.monotonic()
    try:
        yield
        record.status = "done"
    except StepSkipped as exc:
        record.status, record.detail = "skipped", str(exc)
    except Exception as exc:
        record.status, record.detail = "failed", f"{type(exc).__name__}: {exc}"
        raise
    except (asyncio.CancelledError, GeneratorExit):
        record.status, record.detail = "failed", "cancelled (the flow ran out of time)"
        raise
    finally:
        record.ended = time.monotonic()
        log.info("step %s %s: %s", record.id, record.status, record.detail)


async def _run_step(ctx: FlowContext, step: Step, record: StepRecord) -> None:
    with recording(record):
        record.detail = await (ctx.actions or ACTIONS)[step.action](ctx, step)


async def _run_branch(ctx: FlowContext, branch: str, steps: list[Step], records: dict[str, StepRecord]) -> None:
    try:
        for step in steps:
            await _run_step(ctx, step, records[step.id])
    finally:
        ctx.steady.leave(branch)


async def play(topology: Topology, media_seconds: float = 2.0, faults: frozenset[str] = frozenset(),
               timeout: float = 30.0, rtcp_interval: float = INTERVAL, wait: float = WAIT) -> PlayReport:
    """Play A.2.1 on `topology` with every role embedded; returns what each step did.
    `rtcp_interval`: RTCP report interval (RFC 3550's 5 s minimum unless a test wants more reports)."""
    check_faults(faults)
    unknown = {s.action for s in STEPS} - ACTIONS.keys()
    if unknown:
        raise ValueError(f"step table uses actions with no coroutine: {sorted(unknown)}")
    report = PlayReport(topology.subnet, topology.role_map(), faults)
    records = {s.id: StepRecord(s.id, s.action, s.actors, s.branch) for s in STEPS}
    report.steps = list(records.values())
    proxies = [Proxy(role, topology.ip(role), topology.port(role), faults, topology.transport(role))
               for role in ("P-CSCF", "S-CSCF")]
    mrfp = Mrfp(topology.ip("MRFP"), faults, topology.rtp_base_port, rtcp_interval)
    cs = ConferenceServer(topology, mrfp, faults, wait=wait)
    ues = {role: UserEquipment(role, topology, faults, wait=wait, rtcp_interval=rtcp_interval) for role in UES}
    branches: dict[str, list[Step]] = {}
    for step in STEPS:
        if step.branch is not None:
            branches.setdefault(step.branch, []).append(step)
    # `wait` bounds every wait for a peer (longer on impaired links: harness/agents/placement.py).
    ctx = FlowContext(topology, ues, cs, mrfp,
                      SteadyPhase(set(branches), media_seconds, max(STEADY_SLACK, 3 * wait)), wait)

    async def start() -> None:
        for proxy in proxies:
            await proxy.start()
        await mrfp.start()
        await cs.start()
        for ue in ues.values():
            await ue.start()

    async def stop() -> None:
        _collect_media(report, ues, mrfp)
        for agent in (*ues.values(), cs):
            await agent.stop()
            if agent.errors:
                report.agent_errors[agent.role] = list(agent.errors)
        await mrfp.stop()
        for proxy in proxies:
            await proxy.stop()

    await choreograph(ctx, report, records, branches, timeout, start, stop)
    return report


async def run_table(ctx: FlowContext, records: dict[str, StepRecord], branches: dict[str, list[Step]]) -> str | None:
    """The step table: the unbranched steps in order, then the branches side by side, then the tail.
    Returns why a branch failed (None when all finished); an unbranched step's failure raises."""
    for step in (s for s in STEPS if s.branch is None):
        await _run_step(ctx, step, records[step.id])
        await asyncio.sleep(PAUSE_AFTER.get(step.id, 0.0))
    results = await asyncio.gather(*(_run_branch(ctx, name, steps, records) for name, steps in branches.items()),
                                   return_exceptions=True)
    failures = [f"{name}: {type(r).__name__}: {r}" for name, r in zip(branches, results, strict=True)
                if isinstance(r, BaseException)]
    await asyncio.sleep(TAIL)
    return "; ".join(failures) or None


async def choreograph(ctx: FlowContext, report: PlayReport, records: dict[str, StepRecord],
                      branches: dict[str, list[Step]], timeout: float,
                      start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]) -> None:
    """Start the agents, run the unbranched steps in order and then the branches side by side, all
    within `timeout`; whatever happens, stop the conference and the agents and time the run.
    Shared by `play` (every role embedded) and `external.play_sut` (some roles are SUTs)."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            await start()
            report.error = await run_table(ctx, records, branches)
    except FlowError as exc:  # before TimeoutError: a FlowTimeout names what a role waited for
        report.error = f"{type(exc).__name__}: {exc}"
    except TimeoutError:
        report.error = f"flow did not finish within {timeout:g} s"
    except Exception as exc:
        report.error = f"{type(exc).__name__}: {exc}"
    finally:
        if ctx.conf_task is not None and not ctx.conf_task.done():
            ctx.conf_task.cancel()
        if ctx.conf_task is not None:
            await asyncio.gather(ctx.conf_task, return_exceptions=True)
        await ctx.steady.close()
        await stop()
        report.duration = time.monotonic() - started


def _collect_media(report: PlayReport, ues: dict[str, UserEquipment], mrfp: Mrfp) -> None:
    for role, ue in ues.items():
        for call in ue.calls:
            key = f"{role} <-> {call.peer}"
            media = call.media
            report.media[key] = {
                "port": media.port, "sent": media.packets_sent, "received": media.rx.packets,
                "rtcp_sent": media.rtcp.reports_sent, "rtcp_received": media.rtcp.reports_received}
            report.audio[key] = LegAudio(frozenset(media.rx.payload_types), frozenset(media.rx.sources),
                                         tuple(media.rx.tail), frozenset(media.rtcp.received_types))
    for allocation in (*mrfp.released, *mrfp.allocations.values()):
        key = f"MRFP <-> {allocation.participant}"
        report.media[key] = {
            "port": allocation.port, "sent": allocation.stream.packets_sent, "received": allocation.received,
            "rtcp_sent": allocation.rtcp.reports_sent, "rtcp_received": allocation.rtcp.reports_received}
        report.audio[key] = LegAudio(frozenset(allocation.payload_types), frozenset(), (),
                                     frozenset(allocation.rtcp.received_types))


def run_flow(topology: Topology, media_seconds: float = 2.0, faults: frozenset[str] = frozenset(),
             timeout: float = 30.0, rtcp_interval: float = INTERVAL, wait: float = WAIT) -> PlayReport:
    """Synchronous wrapper: its own event loop, closed on return."""
    return asyncio.run(play(topology, media_seconds=media_seconds, faults=faults, timeout=timeout,
                            rtcp_interval=rtcp_interval, wait=wait))


__all__ = ["ACTIONS", "FAULTS", "LegAudio", "PlayReport", "StepRecord", "play", "run_flow"]
