"""Verdicts: per check, per step, per flow (docs/interfaces.md, "Verdict model").

A step fails only on a failed MUST check: a SHOULD that is not met is reported as `warn`, and INFO
checks never fail. A step with a check that could not be judged (evidence absent from the capture)
is `inconclusive` unless something else already failed.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

# json.dumps(..., ensure_ascii=False) without its check for circular references (~10% of the time;
# to_json() builds a fresh tree of dicts and lists each time).
_ENCODER = json.JSONEncoder(ensure_ascii=False, check_circular=False)

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
    notes: list[str] = field(default_factory=list)   # e.g. retransmissions seen, why a step is absent

    def __post_init__(self) -> None:
        self.verdict = step_verdict(self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.verdict == "fail"]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"step": self.step, "verdict": self.verdict, "checks": [c.to_json() for c in self.checks]}
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def worst(verdicts: set[str]) -> Verdict:
    return "fail" if "fail" in verdicts else "inconclusive" if "inconclusive" in verdicts else "pass"


@dataclass
class FlowResult:
    """One A.2.1 instance. `different_flow` says why the capture is another scenario (checklist §8d)
    instead of listing every step as missing; `instance` names the instance in a many-instance capture."""

    steps: list[StepResult]
    flow: str = "A.2.1"
    capture: str = ""
    roles: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    verdict: Verdict = "pass"
    different_flow: str | None = None
    instance: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.verdict = worst({s.verdict for s in self.steps})
        if self.different_flow and self.verdict == "pass":
            self.verdict = "inconclusive"

    def step(self, step_id: str) -> StepResult:
        for s in self.steps:
            if s.step == step_id:
                return s
        raise KeyError(step_id)

    def json_text(self) -> str:
        """`to_json()` as compact JSON text (harness/report/json.py prints one per line of a load
        capture's report). A verdict-only worker renders it where it judged the instance
        (`freeze_json`), so the parent, which prints alone, only copies the text."""
        frozen = self.__dict__.get("_json_text")
        if frozen is not None and frozen[0] == self._fingerprint():
            return frozen[1]   # type: ignore[no-any-return]
        return _ENCODER.encode(self.to_json())

    def freeze_json(self) -> None:
        """Render `json_text()` now and keep it (until the verdict, instance or step count changes)."""
        self.__dict__["_json_text"] = (self._fingerprint(), _ENCODER.encode(self.to_json()))

    def _fingerprint(self) -> tuple[object, ...]:
        return (self.verdict, len(self.steps), len(self.notes), repr(self.instance), self.capture)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"flow": self.flow, "verdict": self.verdict, "steps": [s.to_json() for s in self.steps],
                               "capture": self.capture, "roles": dict(self.roles), "notes": list(self.notes)}
        if self.different_flow:
            out["different_flow"] = self.different_flow
        if self.instance is not None:
            out["instance"] = dict(self.instance)
        return out


# Sending a verdict between processes (harness/verify/parallel.py): plain tuples pickle and unpickle
# in ~20% less time than the ~190 dataclass instances of a FlowResult, each with its __dict__.
_CHECK = ("id", "verdict", "detail", "frames", "level")
_STEP = ("step", "title", "checks", "verdict", "notes")


def pack_result(result: FlowResult | None) -> tuple[Any, ...] | None:
    """`result` as nested tuples for `unpack_result` (any object with extra attributes goes as is)."""
    if result is None:
        return None
    state = dict(result.__dict__)
    steps = state.pop("steps")
    return type(result), state, tuple(_pack_step(s) for s in steps)


def unpack_result(packed: tuple[Any, ...] | None) -> FlowResult | None:
    """The FlowResult `pack_result` was given: same classes, same attributes, in the same order."""
    if packed is None:
        return None
    cls, state, steps = packed
    result = object.__new__(cls)
    result.__dict__.update(steps=[_unpack_step(s) for s in steps])
    result.__dict__.update(state)
    return result  # type: ignore[no-any-return]


RESULT_WIRE = (pack_result, unpack_result)   # for parallel.map_indices


def _pack_step(step: StepResult) -> object:
    if type(step) is not StepResult or tuple(step.__dict__) != _STEP or type(step.checks) is not list:
        return step
    return (step.step, step.title, tuple(_pack_check(c) for c in step.checks), step.verdict, step.notes)


def _unpack_step(packed: object) -> StepResult:
    if not isinstance(packed, tuple):
        return packed  # type: ignore[return-value]
    step = object.__new__(StepResult)
    step.__dict__ = dict(zip(_STEP, packed, strict=True))
    step.checks = [_unpack_check(c) for c in step.checks]
    return step


def _pack_check(check: CheckResult) -> object:
    if type(check) is not CheckResult or tuple(check.__dict__) != _CHECK:
        return check
    return check.id, check.verdict, check.detail, check.frames, check.level


def _unpack_check(packed: object) -> CheckResult:
    if not isinstance(packed, tuple):
        return packed  # type: ignore[return-value]
    check = object.__new__(CheckResult)
    check.__dict__ = dict(zip(_CHECK, packed, strict=True))
    return check


@dataclass
class CaptureResult:
    """Several A.2.1 instances in one capture: each judged on its own, plus a summary."""

    instances: list[FlowResult]
    capture: str = ""
    notes: list[str] = field(default_factory=list)
    flow: str = "A.2.1"

    @property
    def verdict(self) -> Verdict:
        return worst({r.verdict for r in self.instances}) if self.instances else "inconclusive"

    def summary(self) -> dict[str, Any]:
        counts = Counter(r.verdict for r in self.instances)
        failed: Counter[str] = Counter()
        for r in self.instances:
            for s in r.steps:
                for c in s.checks:
                    if c.verdict == "fail" and c.level == "MUST":
                        failed[f"{s.step} {c.id}"] += 1
        return {"flow": self.flow, "capture": self.capture, "verdict": self.verdict, "instances": len(self.instances),
                "pass": counts["pass"], "fail": counts["fail"], "inconclusive": counts["inconclusive"],
                "different_flow": sum(1 for r in self.instances if r.different_flow),
                "failed_checks": dict(sorted(failed.items(), key=lambda kv: (-kv[1], kv[0]))),
                "notes": list(self.notes)}

    def to_json(self) -> dict[str, Any]:
        return {"instances": [r.to_json() for r in self.instances], "summary": self.summary()}
