"""Plain-text verdict table: one row per step, then every failing check with its frames.

Reading order matters to a tester: which step broke, why in one line, then the evidence.
"""

from __future__ import annotations

import textwrap

from harness.verify.verdict import CaptureResult, CheckResult, FlowResult, StepResult

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
    if result.different_flow:
        lines = [f"{result.flow} verdict: DIFFERENT FLOW ({result.verdict})    capture: {result.capture}", "",
                 *textwrap.wrap(result.different_flow, 100)]
        if result.notes:
            lines += ["", "Notes:", *(f"  - {n}" for n in result.notes)]
        return "\n".join(lines) + "\n"
    lines = [f"{result.flow} verdict: {result.verdict.upper()}    capture: {result.capture}"]
    if result.roles:
        lines.append("roles: " + "; ".join(f"{r}={a}" for r, a in result.roles.items()))
    lines.append("")
    width = max(len("step"), *(len(s.step) for s in result.steps)) if result.steps else 4
    lines.append(f"{'step':<{width}} | {'verdict':<12} | reason")
    lines.append(f"{'-' * width}-+-{'-' * 12}-+-{'-' * reason_width}")
    for step in result.steps:
        reason = step_reason(step) or "; ".join(step.notes)
        lines.append(f"{step.step:<{width}} | {step.verdict:<12} | {_clip(reason, reason_width)}")
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


def _instance_row(r: FlowResult) -> tuple[str, str, str, str, str]:
    info = r.instance or {}
    reason = r.different_flow or next((step_reason(s) for s in r.steps if s.verdict == r.verdict and s.verdict != "pass"),
                                      "")
    failed = [s.step for s in r.steps if s.verdict == "fail"]
    if failed:
        reason = f"[{', '.join(failed)}] {reason}"
    return (str(info.get("index", "")), r.verdict, str(info.get("conference") or "-"),
            r.roles.get("UE-1", "-").split(",")[0], reason)


def render_capture(result: CaptureResult, details: bool = True, reason_width: int = 70) -> str:
    """A many-instance capture: summary, one row per instance, then the full table of each instance
    that did not pass (`details`)."""
    s = result.summary()
    lines = [f"{result.flow} verdict: {result.verdict.upper()}    capture: {result.capture}",
             f"instances: {s['instances']} ({s['pass']} pass, {s['fail']} fail, {s['inconclusive']} inconclusive"
             f"{', ' + str(s['different_flow']) + ' a different flow' if s['different_flow'] else ''})", ""]
    rows = [_instance_row(r) for r in result.instances]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(("#", "verdict", "conference", "UE-1"))]
    head = ("#", "verdict", "conference", "UE-1")
    lines.append(" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " | reason")
    lines.append("-+-".join("-" * w for w in widths) + "-+-" + "-" * reason_width)
    for row in rows:
        lines.append(" | ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + " | "
                     + _clip(row[4], reason_width))
    if s["failed_checks"]:
        lines += ["", "Failed checks over all instances:"]
        lines += [f"  {key}: {n} instance{'s' if n > 1 else ''}" for key, n in s["failed_checks"].items()]
    if result.notes:
        lines += ["", "Notes:", *(f"  - {n}" for n in result.notes)]
    if details:
        for r in result.instances:
            if r.verdict != "pass":
                info = r.instance or {}
                lines += ["", f"=== instance #{info.get('index')} ({info.get('conference') or '-'}) ===",
                          render_table(r).rstrip("\n")]
    return "\n".join(lines) + "\n"
