"""A.2.1 end to end with every role played by the harness: one test per numbered step range.

The verdicts come from the capture alone (tshark via pyshark), never from the agents' memory.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.flows.a2_1.steps import FLOW
from testcases.steps_junit import record_step

pytestmark = pytest.mark.flow


def _explain(step) -> str:  # noqa: ANN001
    return "\n".join(f"  {c.id} {c.verdict}: {c.detail} frames={c.frames}"
                     for c in step.checks if c.verdict != "pass")


@pytest.mark.parametrize("step_id", [step.id for step in FLOW.steps])
def test_step(a21_run, step_id: str) -> None:
    """In --junitxml: `A.2.1 step <id>`, the verifier's reason as failure message (steps_junit.py)."""
    step = record_step(a21_run, step_id)
    assert step is not None, f"the verdict has no step {step_id}"
    assert step.checks, f"step {step_id} ran no check"
    assert step.verdict == "pass", f"step {step_id} {step.verdict}:\n{_explain(step)}"


def test_every_numbered_step_has_a_verdict(a21_run) -> None:
    assert [s.step for s in a21_run.result.steps] == [s.id for s in FLOW.steps]
    assert len(FLOW.steps) == 20
    assert a21_run.play_error is None, a21_run.play_error


def test_capture_is_a_pcapng_tshark_opens(a21_run) -> None:
    out = subprocess.run(["tshark", "-r", str(a21_run.pcap), "-Y", "sip.Method == REFER", "-T", "fields",
                          "-e", "frame.number"], capture_output=True, text=True, timeout=60, check=True)
    assert len(out.stdout.split()) >= 2, "expected REFER hop copies in the capture"
    assert a21_run.pcap.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a", "not a pcapng section header block"


def test_verdict_json_has_the_contract_shape(a21_run) -> None:
    data = json.loads(a21_run.verdict_path.read_text())
    assert data["flow"] == "A.2.1" and data["verdict"] == "pass"
    assert [s["step"] for s in data["steps"]] == [s.id for s in FLOW.steps]
    for step in data["steps"]:
        assert set(step) >= {"step", "verdict", "checks"}
        for check in step["checks"]:
            assert set(check) >= {"id", "verdict", "detail", "frames"}


def test_verify_cli_infers_roles_on_the_same_capture(a21_run) -> None:
    """`verify` without --role must reach the same verdicts as the run that knew the addresses."""
    proc = subprocess.run([sys.executable, "-m", "harness", "verify", str(a21_run.pcap), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
    data = json.loads(proc.stdout)
    assert {s["step"]: s["verdict"] for s in data["steps"]} == {s.id: "pass" for s in FLOW.steps}
