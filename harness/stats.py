"""Counts read off the verifier's analysis of a capture, for run and load reports.

The verifier sets retransmissions aside (the same logical message seen again on the same hop,
harness/verify/model.py) and names them in each step's notes; these helpers count them per step,
so a report over lossy links shows where RFC 3261's timers had to work. A many-instance analysis
(a load run) is summed over its instances.
"""

from __future__ import annotations

from typing import Any


def _analyses(analysis: Any) -> list[Any]:
    return list(getattr(analysis, "analyses", None) or [analysis])


def retransmissions_per_step(analysis: Any) -> dict[str, int]:
    """step id -> retransmitted copies of the messages bound to that step (every step listed)."""
    counts = {step.id: 0 for step in analysis.flow.steps}
    for one in _analyses(analysis):
        ev = one.evidence
        if ev is None:  # another flow: nothing is bound to a step
            continue
        seen: set[int] = set()
        for step in one.flow.steps:
            for logical in ev.step_logicals(step):
                if id(logical) not in seen:  # a message proves one step: count it once
                    seen.add(id(logical))
                    counts[step.id] += len(logical.retransmissions)
    return counts


def total_retransmissions(analysis: Any) -> int:
    """Every retransmitted copy in the capture, bound to a step or not (e.g. NOTIFY 200s)."""
    total = 0
    for one in _analyses(analysis):
        model = getattr(one, "model", None) or (one.evidence.model if one.evidence is not None else None)
        if model is not None:
            total += sum(len(logical.retransmissions) for logical in model.logicals)
    return total


def format_retransmissions(per_step: dict[str, int], total: int | None = None) -> str:
    """One line for the run report: `retransmissions per step: 3~11:2 22~27:1 (all messages: 5)`."""
    parts = [f"{step}:{n}" for step, n in per_step.items() if n]
    line = "retransmissions per step: " + (" ".join(parts) if parts else "none")
    if total is not None:
        line += f" (all messages: {total})"
    return line


def call_setup_latency(analysis: Any) -> float | None:
    """Seconds from UE-1's first INVITE (step 1) on the wire to its 200 reaching UE-1, from the capture."""
    ev = getattr(analysis, "evidence", None)
    if ev is None or ev.d12 is None:
        return None
    exchange = ev.creator(ev.d12)
    if exchange is None or exchange.ok is None:
        return None
    return exchange.ok.end_time - exchange.request.time


def percentiles(values: list[float], points: tuple[int, ...] = (50, 90, 99)) -> dict[str, float]:
    """Nearest-rank percentiles plus min/max; empty for no values."""
    if not values:
        return {}
    ordered = sorted(values)
    out = {"min": ordered[0]}
    for p in points:
        rank = max(1, -(-p * len(ordered) // 100))  # ceil(p/100 * n), 1-based
        out[f"p{p}"] = ordered[rank - 1]
    out["max"] = ordered[-1]
    return out
