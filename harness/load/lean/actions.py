"""The step table's actions for the lean agents: play.py's, but for the three that read what only the
reference agents keep (the MRFP's allocation log, the hold answer and NOTIFY headers as SipMessages)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from harness.flows.a2_1.play import ACTIONS, FlowContext
from harness.flows.step import Step
from harness.load.lean.ue import sdp_direction


async def _media_alloc(ctx: FlowContext, step: Step) -> str:
    participant = step.branch or ctx.conf_creator
    port = await ctx.cs.wait_allocated(ctx.aor(participant), ctx.wait)  # type: ignore[attr-defined]
    return f"MRFP {ctx.topology.ip('MRFP')}:{port} for {participant}"


async def _hold(ctx: FlowContext, step: Step) -> str:
    holder, held = step.actors
    response = await ctx.ue(holder).hold(ctx.calls[(holder, held)])
    answer = sdp_direction(response.body) if response.body else "none"
    return f"offer sendonly, answer {answer}"


async def _notify_trying(ctx: FlowContext, step: Step) -> str:
    notifier, _ = step.actors
    notify = await ctx.referrals[notifier].wait_first_notify(ctx.wait)
    state = (notify.substate or b"").decode("utf-8", "replace")
    first_line = notify.body.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    return f"NOTIFY {state} '{first_line}'"


LEAN_ACTIONS: dict[str, Callable[[FlowContext, Step], Awaitable[str]]] = {
    **ACTIONS, "media-alloc": _media_alloc,
    "notify-trying": _notify_trying, "hold": _hold,
}
