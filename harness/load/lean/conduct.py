"""The A.2.1 choreography of the lean engine, driven by the step table as play.py drives the
reference agents: each step's `action` names a small flow (a generator, signal.py) that performs it
or waits for its evidence; the unbranched steps run in order with play.py's pauses, then the
branches "UE-2" and "UE-3" side by side, then the tail. The actions read as play.py's do, with
`yield` where those `await`: a step costs function calls, not event-loop passes.

What the agents saw goes into the StepRecords (for progress and setup times); verdicts come from
the capture alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.agents.errors import FlowError
from harness.agents.topology import Topology
from harness.flows.a2_1.external import EXTERNAL_MRFP
from harness.flows.a2_1.play import PAUSE_AFTER, TAIL, StepRecord, StepSkipped, recording
from harness.flows.a2_1.steps import STEPS
from harness.flows.step import Step
from harness.load.lean.cs import LeanCs
from harness.load.lean.signal import Clock, Flow, Play, Signal, all_done
from harness.load.lean.ue import LeanCall, LeanReferral, LeanUe, sdp_direction
from harness.sip.headers import NameAddr


class SteadyPhase:
    """The conference's steady state before the BYEs: once every branch has arrived (or given up),
    `seconds` of media once, then every branch goes on (play.py's SteadyPhase, on the Clock)."""

    def __init__(self, branches: set[str], seconds: float, slack: float, clock: Clock) -> None:
        self.waiting = set(branches)
        self.seconds, self.slack, self.clock = seconds, slack, clock
        self.done: Signal[None] = Signal()
        self._started = False

    def leave(self, branch: str | None) -> None:
        self.waiting.discard(branch or "")
        if not self.waiting and not self._started:
            self._started = True
            self.clock.at(self.clock.time() + self.seconds, lambda: self.done.set(None))

    def arrive(self, branch: str | None) -> Flow[None]:
        self.leave(branch)
        mine: Signal[None] = Signal()  # bounded for this branch alone
        self.done.then(lambda _: mine.set(None))
        yield self.clock.within(mine, self.seconds + self.slack,
                                f"branch {branch} waited for the other branches to reach the conference")


@dataclass
class LeanContext:
    """Agents and what earlier steps learnt (dialogs, conference URI, referrals)."""

    topology: Topology
    ues: dict[str, LeanUe]
    cs: LeanCs | None  # None: the CS is a SUT's, whose side of a step is judged from the capture alone
    steady: SteadyPhase
    clock: Clock
    wait: float
    calls: dict[tuple[str, str], LeanCall] = field(default_factory=dict)
    conf_call: Signal[LeanCall] | None = None
    conf_creator: str = "UE-1"
    conf_uri: str | None = None
    referrals: dict[str, LeanReferral] = field(default_factory=dict)
    plays: list[Play[Any]] = field(default_factory=list)  # closed when the instance ends

    def ue(self, role: str) -> LeanUe:
        return self.ues[role]

    def aor(self, role: str) -> str:
        """The role's AoR: a UE's as it keeps it (the topology formats it anew per call, and the steps
        ask for it at every wait)."""
        ue = self.ues.get(role)
        return ue.aor if ue is not None else self.topology.user_uri(role)

    def bounded(self, signal: Signal[Any], what: str) -> Signal[Any]:
        return self.clock.within(signal, self.wait, what)


# --- actions: one per Step.action ---------------------------------------------------------------

def _call(ctx: LeanContext, step: Step) -> Flow[str]:
    caller, callee = step.actors
    call: LeanCall = yield ctx.ue(caller).call(ctx.aor(callee))
    ctx.calls[(caller, callee)] = call
    yield ctx.bounded(ctx.ue(callee).call_from(ctx.aor(caller)),
                      f"{callee} did not receive an INVITE and ACK from {ctx.aor(caller)}")
    return f"{caller} -> {callee} established, Call-ID {call.call_id}"


def _hold(ctx: LeanContext, step: Step) -> Flow[str]:
    holder, held = step.actors
    response = yield ctx.ue(holder).hold(ctx.calls[(holder, held)])
    answer = sdp_direction(response.body) if response.body else "none"
    return f"offer sendonly, answer {answer}"


def _create_conf(ctx: LeanContext, step: Step) -> Flow[str]:
    creator, _ = step.actors
    ctx.conf_creator = creator
    ctx.conf_call = ctx.ue(creator).call(ctx.topology.factory_uri)
    if ctx.cs is None:
        return f"INVITE {ctx.topology.factory_uri} sent to the external CS (answer awaited at the next step)"
    participant = yield ctx.bounded(ctx.cs.invited(ctx.aor(creator)), f"CS did not receive an INVITE from {ctx.aor(creator)}")
    return f"INVITE {participant.uri} reached the CS"


def _media_alloc(ctx: LeanContext, step: Step) -> Flow[str]:
    participant = step.branch or ctx.conf_creator
    if ctx.cs is None:
        return EXTERNAL_MRFP
    port = yield ctx.bounded(ctx.cs.allocated(ctx.aor(participant)), f"MRFP allocated no port for {ctx.aor(participant)}")
    return f"MRFP {ctx.topology.ip('MRFP')}:{port} for {participant}"


def _conf_answer(ctx: LeanContext, step: Step) -> Flow[str]:
    assert ctx.conf_call is not None, "create-conf must run before conf-answer"
    call: LeanCall = yield ctx.bounded(ctx.conf_call, f"{ctx.conf_creator} did not get the conference established")
    if not call.remote_contact:
        raise FlowError("the CS's 200 OK has no Contact: no conference URI")
    ctx.conf_uri = str(NameAddr.parse(call.remote_contact).uri)
    ctx.calls[(ctx.conf_creator, "CS")] = call
    if ctx.cs is not None:
        yield ctx.bounded(ctx.cs.acked_by(ctx.aor(ctx.conf_creator)), f"CS did not receive the ACK from {ctx.aor(ctx.conf_creator)}")
    return f"conference {ctx.conf_uri} (Contact {call.remote_contact})"


def _refer(ctx: LeanContext, step: Step) -> Flow[str]:
    referrer, referee = step.actors
    assert ctx.conf_uri is not None, "conf-answer must run before refer"
    referral: LeanReferral = yield ctx.ue(referrer).refer(ctx.calls[(referrer, referee)], ctx.conf_uri)
    ctx.referrals[referee] = referral
    assert referral.response is not None
    return f"Refer-To <{ctx.conf_uri}> answered {referral.response.status}"


def _notify_trying(ctx: LeanContext, step: Step) -> Flow[str]:
    notifier, _ = step.actors
    referral = ctx.referrals[notifier]
    notify = yield ctx.bounded(referral.first, f"{referral.referrer} did not receive a NOTIFY for its REFER")
    state = (notify.substate or b"").decode("utf-8", "replace")
    first_line = notify.body.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    return f"NOTIFY {state} '{first_line}'"


def _join(ctx: LeanContext, step: Step) -> Flow[str]:
    joiner, _ = step.actors
    if ctx.cs is None:
        return f"{joiner} INVITEs the external CS (answer awaited at the next step)"
    participant = yield ctx.bounded(ctx.cs.invited(ctx.aor(joiner)), f"CS did not receive an INVITE from {ctx.aor(joiner)}")
    return f"INVITE {participant.uri} reached the CS"


def _join_answer(ctx: LeanContext, step: Step) -> Flow[str]:
    _, joiner = step.actors
    call: LeanCall = yield ctx.bounded(ctx.ue(joiner).joined(),
                                       f"{joiner} did not establish the call to the Refer-To target")
    if ctx.cs is not None:
        yield ctx.bounded(ctx.cs.acked_by(ctx.aor(joiner)), f"CS did not receive the ACK from {ctx.aor(joiner)}")
    return f"{joiner} in the conference (Contact {call.remote_contact})"


def _notify_final(ctx: LeanContext, step: Step) -> Flow[str]:
    notifier, _ = step.actors
    referral = ctx.referrals[notifier]
    status = yield ctx.bounded(referral.final, f"{referral.referrer} did not receive the final NOTIFY for its REFER")
    if status >= 300:
        raise FlowError(f"{notifier} reports the join failed: sipfrag {status}")
    return f"final sipfrag {status}"


def _bye(ctx: LeanContext, step: Step) -> Flow[str]:
    sender, peer = step.actors
    yield from ctx.steady.arrive(step.branch)
    if not (yield ctx.ue(sender).bye(ctx.calls[(sender, peer)])):
        raise StepSkipped(f"{sender} skipped the BYE (fault)")
    return f"{sender} ended its dialog with {peer}"


ACTIONS: dict[str, Callable[[LeanContext, Step], Flow[str]]] = {
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

def _run_step(ctx: LeanContext, step: Step, record: StepRecord) -> Flow[None]:
    with recording(record):
        record.detail = yield from ACTIONS[step.action](ctx, step)


def _run_branch(ctx: LeanContext, branch: str, steps: list[Step], records: dict[str, StepRecord]) -> Flow[None]:
    try:
        for step in steps:
            yield from _run_step(ctx, step, records[step.id])
    finally:
        ctx.steady.leave(branch)


def run_table(ctx: LeanContext, records: dict[str, StepRecord], branches: dict[str, list[Step]]) -> Flow[str | None]:
    """The step table: the unbranched steps in order, then the branches side by side, then the tail.
    Returns why a branch failed (None when all finished); an unbranched step's failure raises."""
    for step in (s for s in STEPS if s.branch is None):
        yield from _run_step(ctx, step, records[step.id])
        pause = PAUSE_AFTER.get(step.id, 0.0)
        if pause:
            yield ctx.clock.sleep(pause)
    runs = [Play(_run_branch(ctx, name, steps, records)) for name, steps in branches.items()]
    ctx.plays += runs
    yield all_done([run.done for run in runs])
    failures = [f"{name}: {type(run.done.error).__name__}: {run.done.error}"
                for name, run in zip(branches, runs, strict=True) if run.done.error is not None]
    yield ctx.clock.sleep(TAIL)
    return "; ".join(failures) or None


def unknown_actions() -> set[str]:
    """Step actions of the table that have no lean flow (a new action must get one here)."""
    return {s.action for s in STEPS} - ACTIONS.keys()
