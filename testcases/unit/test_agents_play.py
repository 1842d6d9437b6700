"""A.2.1 end to end with every role embedded, no capture: the choreography walks the whole step
table, and every fault still lets it finish (no hang) on its own loopback subnet."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.agents.faults import ABORTS, FAULTS, PENDING_CHECKS, check_faults
from harness.agents.topology import Topology, subnet_free
from harness.flows.a2_1.play import ACTIONS, play, run_flow
from harness.flows.a2_1.steps import STEPS

ROOT = Path(__file__).resolve().parents[2]


def test_every_step_action_has_a_coroutine() -> None:
    assert {step.action for step in STEPS} <= ACTIONS.keys()


def test_fault_catalogue_names_real_steps() -> None:
    step_ids = {step.id for step in STEPS}
    judged = {c for s in STEPS for c in s.checks}
    defined = (ROOT / "docs" / "requirements.md").read_text()
    for name, fault in FAULTS.items():
        assert fault.step in step_ids, name
        assert fault.requirement in judged or fault.requirement in PENDING_CHECKS, name
        if fault.requirement in PENDING_CHECKS:
            assert f"| {fault.requirement} |" in defined, f"{fault.requirement} is not in docs/requirements.md"
    with pytest.raises(ValueError, match="unknown fault"):
        check_faults(frozenset({"ue9-typo"}))


def test_play_without_faults_completes_every_step(subnets: Iterator[int]) -> None:
    topology = Topology(next(subnets))
    report = run_flow(topology, media_seconds=0.5, timeout=15.0)
    assert report.ok, report.summary()
    assert [s.id for s in report.steps] == [s.id for s in STEPS]
    assert all(s.status == "done" for s in report.steps), report.summary()
    assert report.agent_errors == {}, report.summary()
    # media flowed on every leg the phases of checklist §5 ask for
    media = report.media
    ue2_on_d12 = media[f"UE-2 <-> {topology.user_uri('UE-1')}"]
    assert 0 < ue2_on_d12["sent"] < media[f"UE-1 <-> {topology.user_uri('UE-2')}"]["sent"]  # stopped on hold
    for who in ("UE-1", "UE-2", "UE-3"):
        assert media[f"MRFP <-> {topology.user_uri(who)}"]["received"] > 0
    assert subnet_free(topology.subnet)  # every socket was closed


def test_every_fault_still_finishes(subnets: Iterator[int]) -> None:
    """All faults at once, each on its own subnet, concurrently (one loop keeps this short)."""
    names = sorted(set(FAULTS) - ABORTS)  # those end the flow on purpose (testcases/test_no_hangs.py)
    topologies = [Topology(next(subnets)) for _ in names]

    async def main():  # noqa: ANN202
        return await asyncio.gather(*(play(t, media_seconds=0.2, faults=frozenset({name}), timeout=20.0)
                                      for t, name in zip(topologies, names, strict=True)))

    reports = dict(zip(names, asyncio.run(main()), strict=True))
    for name, report in reports.items():
        assert report.ok, f"{name}:\n{report.summary()}"
    assert reports["ue1-skip-bye-ue2"].step("47~52").status == "skipped"
    assert all(s.status == "done" for s in reports["ue2-bad-sipfrag"].steps)
