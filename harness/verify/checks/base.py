"""Shared vocabulary of the checks: a findings collector that turns into one CheckResult."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.flows.step import Step
from harness.verify.a21 import Evidence
from harness.verify.verdict import CheckResult, Level
from harness.verify.wire import WireMessage

CheckFn = Callable[[Evidence, Step], CheckResult]


def memo(ev: Evidence, name: str) -> dict[Any, Any]:
    """A table kept with one instance's evidence, for what several checks or steps would otherwise
    compute again per message or logical (keyed by id(): the evidence holds the objects alive)."""
    table = ev._memo.get((name, ""))
    if table is None:
        table = ev._memo[(name, "")] = {}
    return table  # type: ignore[return-value]


def first_values(ev: Evidence, m: WireMessage) -> dict[str, str]:
    """The first value of each header field of `m`, by canonical name: `m.get(name)` for every name
    at once (several checks read a dozen headers of every copy)."""
    table = memo(ev, "first-values")
    first: dict[str, str] | None = table.get(id(m))
    if first is None:
        first = table[id(m)] = dict(reversed(m.headers))   # the earliest line of a name wins
    return first


def where(ev: Evidence, m: WireMessage) -> str:
    """`frame 12 (REFER UE-1->P-CSCF)`: enough to find the packet and the hop."""
    head = m.method if m.is_request else str(m.status)
    return f"frame {m.frame} ({head} {ev.role(m.src_ep)}->{ev.role(m.dst_ep)})"


@dataclass(slots=True)
class Findings:
    """Collects failures, warnings and passing notes for one check id."""

    id: str
    level: Level = "MUST"
    fails: list[str] = field(default_factory=list)
    warns: list[str] = field(default_factory=list)
    oks: list[str] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    bad_frames: list[int] = field(default_factory=list)

    def fail(self, text: str, *frames: int) -> None:
        self.fails.append(text)
        self.bad_frames += frames

    def warn(self, text: str, *frames: int) -> None:
        self.warns.append(text)
        self.bad_frames += frames

    def ok(self, text: str, *frames: int) -> None:
        self.oks.append(text)
        self.frames += frames

    def result(self) -> CheckResult:
        if self.fails:
            verdict = "fail" if self.level == "MUST" else "warn"
            detail = "; ".join(self.fails + self.warns)
            return CheckResult(self.id, verdict, detail, _cap(self.bad_frames), self.level)
        if self.warns:
            return CheckResult(self.id, "warn", "; ".join(self.warns), _cap(self.bad_frames), self.level)
        return CheckResult(self.id, "pass", "; ".join(self.oks) or "ok", _cap(self.frames), self.level)


def _cap(frames: list[int], limit: int = 40) -> list[int]:
    return sorted(set(frames))[:limit] if frames else []


def inconclusive(check_id: str, why: str, level: Level = "MUST", frames: list[int] | None = None) -> CheckResult:
    return CheckResult(check_id, "inconclusive", why, frames or [], level)
