"""pytest plugin for the harness: options, capture tools, per-worker loopback subnets, shared flow runs.

Every flow test talks SIP only on its own 127.N.0.0/24; each xdist worker gets a disjoint block of N
(sized by the worker count), so parallel workers never share an address and every port of those
addresses (SIP 5060, RTP from 20000: below the ephemeral range) is the worker's own. A subnet is
handed out only once its SIP sockets are bound (`ReservationPool`): the agents then receive those
very sockets, so no other process (another pytest session on this machine) can slip in between a
check and a bind. Captures land in captures/pytest-<testrun_uid>/<worker>/<test>/.
Tests that share one external SUT account carry `@pytest.mark.xdist_group("<account>")` and tox
runs with `--dist loadgroup`, so one worker runs them in turn.

testcases/steps_junit.py (registered below) gives --junitxml one testcase per step (`A.2.1 step 22~27`,
the verifier's reason as failure message, capture/report paths as properties) and --prune-passed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
SUBNETS_PER_WORKER = 24
FIRST_SUBNET, LAST_SUBNET = 100, 254

pytest_plugins = ("testcases.steps_junit",)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "SIP/IMS harness")
    group.addoption("--media-seconds", type=float, default=1.0,
                    help="seconds of conference media in flow tests (default 1)")
    group.addoption("--impair-seed", type=int, default=None,
                    help="seed of the impaired-link tests (default: each test's own fixed seed)")
    group.addoption("--sut-profile", type=Path, default=None, metavar="FILE",
                    help="a SUT profile (TOML): testcases/test_sut_profile.py plays A.2.1 as it says, at its "
                         "own addresses, and judges every step")
    group.addoption("--prune-passed", action="store_true", default=False,
                    help="at the end, delete the capture directories of runs whose tests all passed; a run "
                         "any failed or errored test used is kept (testcases/steps_junit.py)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without --sut-profile the SUT tests have nothing to run against: deselect them (a visible
    count in the summary) instead of reporting 21 skips that look like untested asserts."""
    if config.getoption("--sut-profile", default=None):
        return
    keep = [item for item in items if item.path.name != "test_sut_profile.py"]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.path.name == "test_sut_profile.py"])
        items[:] = keep


def pytest_configure(config: pytest.Config) -> None:
    """A --sut-profile with mistakes stops the session before any test, naming each one."""
    path = config.getoption("--sut-profile", default=None)
    if path is not None:
        from harness.profile import check_profile

        problems = check_profile(path)
        if problems:
            raise pytest.UsageError(f"--sut-profile {path}:\n" + "\n".join(f"  {p}" for p in problems))


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


def worker_block(worker_id: str, workers: int) -> range:
    """This worker's 127.N subnets: disjoint from every other worker's (and the controller's)."""
    size = min(SUBNETS_PER_WORKER, (LAST_SUBNET - FIRST_SUBNET + 1) // (workers + 1))
    if size < 2:
        raise pytest.UsageError(f"{workers} xdist workers leave fewer than 2 loopback subnets each")
    first = FIRST_SUBNET + _worker_index(worker_id) * size
    return range(first, first + size)


@pytest.fixture(scope="session")
def subnet_pool() -> Iterator[object]:
    """The session's ReservationPool, installed as the UDP binder for everything this worker runs."""
    from harness.agents.placement import ReservationPool
    from harness.net.udp import BINDER

    pool = ReservationPool()
    token = BINDER.set(pool.binder)
    try:
        yield pool
    finally:
        BINDER.reset(token)
        pool.release_unused()


@pytest.fixture(scope="session")
def subnets(worker_id: str, subnet_pool) -> Iterator[int]:  # noqa: ANN001
    """An endless supply of reserved 127.N subnets from this worker's own block.

    Each N comes with its SIP sockets already bound; the agents get them when they bind, and what
    a test left unused is released after it (`_release_subnets`)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    block = list(worker_block(worker_id, workers))

    def supply() -> Iterator[int]:
        start = 0
        while True:  # round robin from after the last one handed out
            subnet = subnet_pool.reserve(block[start:] + block[:start])
            start = (block.index(subnet) + 1) % len(block)
            yield subnet

    return supply()


@pytest.fixture(autouse=True)
def _release_subnets(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test, free the reserved sockets its agents did not take."""
    yield
    if "subnet_pool" in request.fixturenames:
        request.getfixturevalue("subnet_pool").release_unused()


@pytest.fixture(scope="session")
def run_root(testrun_uid: str, worker_id: str) -> Path:
    path = ROOT / "captures" / f"pytest-{testrun_uid[:8]}" / worker_id
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def flow_runner(capture_tools: None, subnets: Iterator[int], run_root: Path, pytestconfig: pytest.Config):
    """Call `flow_runner(name, faults=...)` to play A.2.1 under a capture and get the RunOutcome."""
    from harness.session import captured_run
    from testcases.steps_junit import note_run

    media = pytestconfig.getoption("--media-seconds")

    def run(name: str, *, flow: str = "a2.1", faults: frozenset[str] = frozenset(), media_seconds: float = media):
        note_run(run_root / name)
        return captured_run(flow, run_root / name, media_seconds=media_seconds, faults=faults,
                            subnet=next(subnets), timeout=60.0)

    return run


@pytest.fixture(scope="session")
def sut_runner(capture_tools: None, subnets: Iterator[int], subnet_pool, run_root: Path,  # noqa: ANN001
               pytestconfig: pytest.Config):
    """Call `sut_runner(profile, name)` to play A.2.1 as a SUT profile says (harness/sut_run.py).

    The profile is moved to one of this worker's subnets first (`relocate=False` keeps its own
    addresses), whose pre-bound UDP sockets are released: the peers it starts bind them. A peer
    that is not installed fails the test with the package to install, never skips it."""
    from harness.capture.dumpcap import ToolMissing
    from harness.profile import Profile, load_profile, relocated
    from harness.sut_run import captured_sut_run
    from testcases.steps_junit import note_run

    media = pytestconfig.getoption("--media-seconds")

    def run(profile: Profile | Path | str, name: str, *, relocate: bool = True, media_seconds: float = media,
            **kwargs: object):
        loaded = profile if isinstance(profile, Profile) else load_profile(profile)
        subnet = next(subnets)
        subnet_pool.release_unused()  # Kamailio, baresip, linphonec bind these addresses themselves
        if relocate:
            loaded = relocated(loaded, subnet)
        note_run(run_root / name)
        try:
            return captured_sut_run(loaded, run_root / name, media_seconds=media_seconds, subnet=subnet,
                                    **kwargs)  # type: ignore[arg-type]
        except ToolMissing as exc:
            pytest.fail(str(exc), pytrace=False)

    return run


@pytest.fixture(scope="session")
def sut_profile(pytestconfig: pytest.Config):  # noqa: ANN201 - harness.profile.Profile | None
    """The --sut-profile, loaded (checked at configure time), or None when not given."""
    from harness.profile import load_profile

    path = pytestconfig.getoption("--sut-profile")
    return load_profile(path) if path is not None else None


@pytest.fixture(scope="module")
def a21_run(flow_runner, request: pytest.FixtureRequest):
    """One clean A.2.1 run shared by every test of a module (its capture named after the module)."""
    return flow_runner(f"{request.module.__name__.rsplit('.', 1)[-1]}-a2.1-clean")


@pytest.fixture(scope="session")
def netns_tools() -> None:
    """Fail (not skip) with what is missing when test hosts cannot be built."""
    import shutil

    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        pytest.fail(f"network namespaces need root, iproute2 and nftables (uid {os.geteuid()}, "
                    f"missing: {', '.join(missing) or 'none'})", pytrace=False)


@pytest.fixture(scope="session")
def netns_runner(capture_tools: None, netns_tools: None, run_root: Path, pytestconfig: pytest.Config):
    """Call `netns_runner(name, impairment)` to play A.2.1 with every role on its own test host
    (harness/agents/placement.py), captured on the bridge; the namespaces are gone when it returns."""
    from harness.session import captured_run
    from testcases.steps_junit import note_run

    media = pytestconfig.getoption("--media-seconds")

    def run(name: str, impairment=None, *, faults: frozenset[str] = frozenset(),  # noqa: ANN001
            media_seconds: float = media):
        note_run(run_root / name)
        return captured_run("a2.1", run_root / name, media_seconds=media_seconds, faults=faults,
                            placement="netns", impairment=impairment)

    return run
