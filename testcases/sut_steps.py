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


def peer_suite(profile: Path, name: str, deviations: dict[str, tuple[set[str], str]]) -> dict[str, object]:
    """The step tests of one third-party peer's profile, for a test module to take into its namespace:
    `globals().update(peer_suite(PROFILE, "baresip-ue2-ue3", DEVIATIONS))`.

    A module-scoped `run` (one SUT run per module), `test_step` per step (the deviating ones strict
    xfails), `test_known_deviation_is_exactly_what_fails` and `test_the_flow_ran_to_the_end`; the
    module adds its peer-specific tests, which may use `run` too."""

    @pytest.fixture(scope="module")
    def run(sut_runner):  # noqa: ANN001, ANN202
        return sut_runner(profile, name)

    @pytest.mark.parametrize("step_id", step_params(deviations))
    def test_step(run, step_id: str) -> None:  # noqa: ANN001
        assert_step_passes(run, step_id)

    @pytest.mark.parametrize("step_id", sorted(deviations))
    def test_known_deviation_is_exactly_what_fails(run, step_id: str) -> None:  # noqa: ANN001
        assert_fails_exactly(run, step_id, deviations[step_id][0])

    def test_the_flow_ran_to_the_end(run) -> None:  # noqa: ANN001
        assert run.play_error is None, run.play_error

    return {"run": run, "test_step": test_step,
            "test_known_deviation_is_exactly_what_fails": test_known_deviation_is_exactly_what_fails,
            "test_the_flow_ran_to_the_end": test_the_flow_ran_to_the_end}
