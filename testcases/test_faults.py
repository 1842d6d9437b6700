"""Every check can fail: each catalogued fault, committed by a harness agent on the wire, must make the
verifier fail the expected step with the expected requirement id — judged from the capture alone.
"""

from __future__ import annotations

import pytest

from harness.agents.faults import FAULTS, PENDING_CHECKS

pytestmark = pytest.mark.flow


def _case(name: str):  # noqa: ANN202
    """A fault whose requirement the verifier cannot judge yet is an expected failure; strict, so the
    day the check lands this turns red until the id leaves PENDING_CHECKS (harness/agents/faults.py)."""
    requirement = FAULTS[name].requirement
    if requirement in PENDING_CHECKS:
        return pytest.param(name, marks=pytest.mark.xfail(
            strict=True, reason=f"{requirement} has no verifier check yet (docs/requirements.md)"))
    return name


def _failures(result) -> dict[str, set[str]]:  # noqa: ANN001
    return {s.step: {c.id for c in s.checks if c.verdict == "fail"} for s in result.steps if s.verdict == "fail"}


@pytest.mark.parametrize("name", [_case(name) for name in sorted(FAULTS)])
def test_fault_fails_its_step_with_its_id(flow_runner, name: str) -> None:
    fault = FAULTS[name]
    outcome = flow_runner(f"fault-{name}", faults=frozenset({name}), media_seconds=0.5)
    failures = _failures(outcome.result)
    if fault.verdict == "warn":  # a SHOULD broken: the check warns at its step and nothing fails
        verdicts = {c.verdict for c in outcome.result.step(fault.step).checks if c.id == fault.requirement}
        assert verdicts == {"warn"}, f"{name}: expected {fault.requirement} to warn at {fault.step}; got {verdicts}"
        assert failures == {}, f"{name}: a SHOULD-only fault failed {failures}"
        return
    assert outcome.result.verdict == "fail", f"{name}: verifier passed a faulty run"
    assert fault.requirement in failures.get(fault.step, set()), (
        f"{name}: expected step {fault.step} to fail {fault.requirement}; failures were {failures}")


def test_clean_run_has_no_failure(a21_run) -> None:
    assert _failures(a21_run.result) == {}
    assert a21_run.result.verdict == "pass"
