"""pytest plugin for the harness: options, capture tools, per-worker loopback subnets, shared flow runs.

Every flow test talks SIP only on its own 127.N.0.0/24; each xdist worker gets a disjoint block of N
so parallel workers never share an address, and captures land in captures/pytest-<uid>/<worker>/.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
SUBNETS_PER_WORKER = 24


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "SIP/IMS harness")
    group.addoption("--media-seconds", type=float, default=1.0,
                    help="seconds of conference media in flow tests (default 1)")


def _worker_index(worker_id: str) -> int:
    match = re.fullmatch(r"gw(\d+)", worker_id)
    return int(match.group(1)) + 1 if match else 0


@pytest.fixture(scope="session")
def capture_tools() -> None:
    """Fail (not skip) with the install hint when tshark/dumpcap are missing."""
    from harness.capture.dumpcap import ToolMissing, require_tools

    try:
        require_tools()
    except ToolMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def subnets(worker_id: str) -> Iterator[int]:
    """An endless supply of free 127.N subnets from this worker's own block."""
    from harness.agents.topology import subnet_free

    first = 100 + _worker_index(worker_id) * SUBNETS_PER_WORKER
    block = itertools.cycle(range(first, min(first + SUBNETS_PER_WORKER, 255)))

    def supply() -> Iterator[int]:
        for n in block:
            if subnet_free(n):
                yield n

    return supply()


@pytest.fixture(scope="session")
def run_root(testrun_uid: str, worker_id: str) -> Path:
    path = ROOT / "captures" / f"pytest-{testrun_uid[:8]}" / worker_id
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def flow_runner(capture_tools: None, subnets: Iterator[int], run_root: Path, pytestconfig: pytest.Config):
    """Call `flow_runner(name, faults=...)` to play A.2.1 under a capture and get the RunOutcome."""
    from harness.session import captured_run

    media = pytestconfig.getoption("--media-seconds")

    def run(name: str, *, flow: str = "a2.1", faults: frozenset[str] = frozenset(), media_seconds: float = media):
        return captured_run(flow, run_root / name, media_seconds=media_seconds, faults=faults,
                            subnet=next(subnets), timeout=60.0)

    return run


@pytest.fixture(scope="module")
def a21_run(flow_runner):
    """One clean A.2.1 run shared by every test of a module."""
    return flow_runner("a2.1-clean")
