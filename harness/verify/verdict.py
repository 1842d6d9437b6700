"""Verdicts: per check, per step, per flow (docs/interfaces.md, "Verdict model").

A step fails only on a failed MUST check: a SHOULD that is not met is reported as `warn`, and INFO
checks never fail. A step with a check that could not be judged (evidence absent from the capture)
is `inconclusive` unless something else already failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["pass", "fail", "inconclusive", "warn"]
Level = Literal["MUST", "SHOULD", "INFO"]


@dataclass
class CheckResult:
    id: str
    verdict: Verdict
    detail: str
    frames: list[int] = field(default_factory=list)
    level: Level = "MUST"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "verdict": self.verdict, "detail": self.detail, "frames": sorted(set(self.frames))}


def step_verdict(checks: list[CheckResult]) -> Verdict:
    if any(c.verdict == "fail" and c.level == "MUST" for c in checks):
        return "fail"
    if any(c.verdict == "inconclusive" for c in checks):
        return "inconclusive"
    return "pass"


@dataclass
class StepResult:
    step: str
    title: str
    checks: list[CheckResult]
    verdict: Verdict = "pass"

    def __post_init__(self) -> None:
        self.verdict = step_verdict(self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.verdict == "fail"]

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "verdict": self.verdict, "checks": [c.to_json() for c in self.checks]}


@dataclass
class FlowResult:
    steps: list[StepResult]
    flow: str = "A.2.1"
    capture: str = ""
    roles: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    verdict: Verdict = "pass"

    def __post_init__(self) -> None:
        verdicts = {s.verdict for s in self.steps}
        self.verdict = "fail" if "fail" in verdicts else "inconclusive" if "inconclusive" in verdicts else "pass"

    def step(self, step_id: str) -> StepResult:
        for s in self.steps:
            if s.step == step_id:
                return s
        raise KeyError(step_id)

    def to_json(self) -> dict[str, Any]:
        return {"flow": self.flow, "verdict": self.verdict, "steps": [s.to_json() for s in self.steps],
                "capture": self.capture, "roles": dict(self.roles), "notes": list(self.notes)}
