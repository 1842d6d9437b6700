"""Judging a SUT run step by step, for the interop tests and --sut-profile.

A peer's known deviations are listed per step as the exact MUST checks it fails. The step then has
two tests: one asserting it fails with exactly those ids (so nothing else hides behind a known
failure) and the step test itself, marked xfail(strict=True) with the reason: if the peer is
fixed, or the verifier stops flagging it, the xfail turns into a failure and someone looks.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.flows.a2_1.steps import FLOW
from testcases.steps_junit import record_step

STEP_IDS = [step.id for step in FLOW.steps]


def step_result(outcome, step_id: str):  # noqa: ANN001, ANN201 - SutOutcome -> StepResult
    result = outcome.result
    assert hasattr(result, "steps"), f"the capture held several A.2.1 instances: {result.notes}"
    return next(s for s in result.steps if s.step == step_id)


def explain(outcome, step) -> str:  # noqa: ANN001
    """What failed, the run's notes and where its files are: enough to debug from the test log."""
    checks = "\n".join(f"  {c.id} {c.verdict} ({c.level}): {c.detail} frames={c.frames}"
                       for c in step.checks if c.verdict != "pass")
    notes = "\n".join(f"  note: {n}" for n in outcome.result.notes)
    return f"step {step.step} {step.verdict}:\n{checks}\n{notes}\n  capture: {outcome.pcap}"


def assert_step_passes(outcome, step_id: str) -> None:  # noqa: ANN001
    """The step test: in --junitxml named `A.2.1 step <id>`, with the verifier's reason (steps_junit.py)."""
    record_step(outcome, step_id)
    step = step_result(outcome, step_id)
    assert step.checks, f"step {step_id} ran no check"
    assert step.verdict == "pass", explain(outcome, step)


def assert_fails_exactly(outcome, step_id: str, check_ids: set[str]) -> None:  # noqa: ANN001
    """The step fails, and its failing MUST checks are exactly `check_ids`."""
    step = step_result(outcome, step_id)
    failing = {c.id for c in step.checks if c.verdict == "fail" and c.level == "MUST"}
    assert step.verdict == "fail" and failing == check_ids, f"expected {sorted(check_ids)}\n{explain(outcome, step)}"


def step_params(deviations: dict[str, tuple[set[str], str]]) -> list[object]:
    """STEP_IDS as pytest params, the deviating ones xfail(strict) with their reason."""
    return [pytest.param(s, marks=pytest.mark.xfail(strict=True, reason=deviations[s][1]))
            if s in deviations else s for s in STEP_IDS]


def sip_fields(pcap: Path, display_filter: str, *fields: str) -> list[list[str]]:
    """tshark -T fields over the capture: one list of field values per matching frame."""
    args = ["tshark", "-r", str(pcap), "-Y", display_filter, "-T", "fields"]
    for name in fields:
        args += ["-e", name]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
    return [line.split("\t") for line in out.stdout.splitlines() if line.strip()]
