"""Run every check of every step of a flow over one capture."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.flows.step import Flow
from harness.verify.a21 import Evidence, bind
from harness.verify.checks import REGISTRY
from harness.verify.model import Model
from harness.verify.reader import read_capture
from harness.verify.roles import infer_roles, parse_role_overrides
from harness.verify.verdict import CheckResult, FlowResult, StepResult


def run_checks(ev: Evidence, flow: Flow) -> list[StepResult]:
    results = []
    for step in flow.steps:
        checks: list[CheckResult] = []
        for check_id in step.checks:
            fn = REGISTRY.get(check_id)
            if fn is None:
                checks.append(CheckResult(check_id, "inconclusive", f"no check implements {check_id}", [], "INFO"))
                continue
            try:
                checks.append(fn(ev, step))
            except Exception as exc:  # a checker bug must not hide the other verdicts
                checks.append(CheckResult(check_id, "inconclusive",
                                          f"checker error: {type(exc).__name__}: {exc}", [], "MUST"))
        results.append(StepResult(step.id, step.title, checks))
    return results


@dataclass
class Analysis:
    """A verdict plus the evidence behind it (what the ladder report draws)."""

    flow: Flow
    evidence: Evidence
    result: FlowResult


def analyse(path: str | Path, flow: Flow, roles: dict[str, str] | list[str] | None = None,
            factory_uri: str | None = None) -> Analysis:
    data = read_capture(path)
    model = Model(data.messages)
    inferred = infer_roles(model, parse_role_overrides(roles))
    ev = bind(data, model, inferred, factory_uri)
    steps = run_checks(ev, flow)
    notes = [*data.notes, *inferred.notes]
    retrans = sum(len(lg.retransmissions) for lg in model.logicals)
    notes.append(f"{len(data.messages)} SIP messages = {len(model.logicals)} logical messages "
                 f"({retrans} retransmissions), {len(data.rtp)} RTP packets")
    for name, branch in ev.branches.items():
        extra = len(branch.notifies) - len({id(n) for n in (branch.first_notify, branch.final_notify) if n})
        if extra > 0:
            notes.append(f"{name}: {extra} intermediate NOTIFY(s) accepted (not bound to a step)")
    result = FlowResult(steps=steps, flow=flow.name, capture=str(path), roles=inferred.as_dict(), notes=notes)
    return Analysis(flow, ev, result)


def verify(path: str | Path, flow: Flow, roles: dict[str, str] | list[str] | None = None,
           factory_uri: str | None = None) -> FlowResult:
    return analyse(path, flow, roles, factory_uri).result
