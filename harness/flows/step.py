"""The step model shared by choreography (flows) and verification (verify)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Step:
    """One numbered range of a call flow, as the specification numbers it."""

    id: str
    title: str
    actors: tuple[str, str]
    action: str
    branch: str | None
    messages: tuple[str, ...]
    checks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Flow:
    """A named flow: its step table in text order."""

    name: str
    title: str
    steps: tuple[Step, ...]

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)
