"""A.2.1 against your own SUT: `pytest testcases/test_sut_profile.py --sut-profile FILE`.

The profile is played at its own addresses (not relocated), the peers it launches are started, and
every step is judged from the capture, one test per step. Without --sut-profile conftest.py
deselects them: they have nothing to run against. A profile with mistakes stops the session at start-up
with each mistake named (conftest.py).
"""

from __future__ import annotations

import pytest

from testcases.sut_steps import STEP_IDS, assert_step_passes


@pytest.fixture(scope="module")
def run(sut_profile, sut_runner):  # noqa: ANN001, ANN201
    if sut_profile is None:
        pytest.skip("no --sut-profile FILE given")
    return sut_runner(sut_profile, f"sut-profile-{sut_profile.name}", relocate=False)


@pytest.mark.parametrize("step_id", STEP_IDS)
def test_step(run, step_id: str) -> None:  # noqa: ANN001
    assert_step_passes(run, step_id)


def test_the_flow_ran_to_the_end(run) -> None:  # noqa: ANN001
    assert run.play_error is None, run.play_error
