"""Plain-text verdict table: one row per step, then every failing check with its frames.

Reading order matters to a tester: which step broke, why in one line, then the evidence.
"""

from __future__ import annotations

import textwrap

from harness.verify.verdict import CheckResult, FlowResult, StepResult

REASON_WIDTH = 78


def step_reason(step: StepResult) -> str:
    """One line: the failing ids and the first failure, or why it could not be judged, or the warnings."""
    failed = [c for c in step.checks if c.verdict == "fail" and c.level == "MUST"]
    if failed:
        ids = ", ".join(dict.fromkeys(c.id for c in failed))
        return f"{ids}: {failed[0].detail}"
    unknown = [c for c in step.checks if c.verdict == "inconclusive"]
    if unknown:
        return unknown[0].detail
    warned = [c for c in step.checks if c.verdict in ("warn", "fail")]
    if warned:
        return "warn " + ", ".join(dict.fromkeys(c.id for c in warned))
    return ""


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _check_lines(step: str, check: CheckResult) -> list[str]:
    head = f"  [{step}] {check.id} {check.verdict.upper()} ({check.level})"
    body = textwrap.wrap(check.detail, 100, initial_indent="      ", subsequent_indent="      ") or ["      -"]
    frames = f"      frames: {', '.join(map(str, check.frames))}" if check.frames else "      frames: -"
    return [head, *body, frames]


def render_table(result: FlowResult, reason_width: int = REASON_WIDTH) -> str:
    lines = [f"{result.flow} verdict: {result.verdict.upper()}    capture: {result.capture}"]
    if result.roles:
        lines.append("roles: " + "; ".join(f"{r}={a}" for r, a in result.roles.items()))
    lines.append("")
    width = max(len("step"), *(len(s.step) for s in result.steps)) if result.steps else 4
    lines.append(f"{'step':<{width}} | {'verdict':<12} | reason")
    lines.append(f"{'-' * width}-+-{'-' * 12}-+-{'-' * reason_width}")
    for step in result.steps:
        lines.append(f"{step.step:<{width}} | {step.verdict:<12} | {_clip(step_reason(step), reason_width)}")
    failing = [(s.step, c) for s in result.steps for c in s.checks if c.verdict == "fail"]
    if failing:
        lines += ["", "Failing checks:"]
        for step_id, check in failing:
            lines += _check_lines(step_id, check)
    warned = [(s.step, c) for s in result.steps for c in s.checks if c.verdict == "warn"]
    if warned:
        lines += ["", "Warnings:"]
        for step_id, check in warned:
            lines.append(f"  [{step_id}] {check.id}: {_clip(check.detail, 110)}")
    if result.notes:
        lines += ["", "Notes:", *(f"  - {n}" for n in result.notes)]
    return "\n".join(lines) + "\n"
