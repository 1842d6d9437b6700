"""JUnit XML per step and --prune-passed (testcases/steps_junit.py), through real pytest sessions.

Each session runs in a subprocess and plays whole flows, so there are only two: test_a2_1.py's step
tests without xdist, and a small suite with a clean and a faulty run on two xdist workers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.agents.faults import FAULTS
from harness.flows.a2_1.steps import FLOW
from harness.report.table import step_reason
from harness.verify.verdict import CheckResult, StepResult
from testcases import steps_junit

ROOT = Path(__file__).resolve().parents[1]
FAULT = "ue1-two-refer-to"  # UE-1's REFER to UE-2 carries two Refer-To: step 22~27 fails REF-1


def _pytest(*args: str) -> subprocess.CompletedProcess[str]:
    """A pytest session of its own (not one of this session's xdist workers: no PYTEST_* variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def _cases(xml: Path) -> list[tuple[ET.Element, dict[str, str]]]:
    root = ET.parse(xml).getroot()
    return [(case, {p.get("name"): p.get("value") for p in case.iterfind("properties/property")})
            for case in root.iter("testcase")]


@pytest.mark.flow
def test_a21_step_tests_are_junit_testcases_named_by_step(tmp_path: Path) -> None:
    xml = tmp_path / "a21.xml"
    proc = _pytest("testcases/test_a2_1.py", "-k", "test_step", "-n", "0", f"--junitxml={xml}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cases = _cases(xml)
    assert [case.get("name") for case, _ in cases] == [f"A.2.1 step {s.id}" for s in FLOW.steps]
    for case, props in cases:
        assert case.get("classname") == "testcases.test_a2_1.test_step", case.attrib
        assert case.find("failure") is None and case.find("error") is None, ET.tostring(case)
        assert props["flow"] == "A.2.1" and props["verdict"] == "pass", props
        assert props["nodeid"] == f"testcases/test_a2_1.py::test_step[{props['step']}]"
        capture = Path(props["capture"])
        assert capture.is_file() and capture.suffix == ".pcapng", props
        assert (ROOT / "captures") in capture.parents
        assert Path(props["verdict_json"]).is_file(), props
        for name in ("report", "annotated"):  # recorded only when the run wrote them
            assert name not in props or Path(props[name]).is_file(), props


SELFTEST = '''
import pytest

from testcases.steps_junit import record_step

STEPS = ["1", "22~27", "53~58"]


@pytest.fixture(scope="module")
def clean(flow_runner):
    return flow_runner("selftest-clean", media_seconds=0.5)


@pytest.fixture(scope="module")
def faulty(flow_runner):
    return flow_runner("selftest-faulty", faults=frozenset({"FAULT"}), media_seconds=0.5)


@pytest.mark.xdist_group("clean")
@pytest.mark.parametrize("step_id", STEPS)
def test_clean_step(clean, step_id):
    assert record_step(clean, step_id).verdict == "pass"


@pytest.mark.xdist_group("faulty")
@pytest.mark.parametrize("step_id", STEPS)
def test_faulty_step(faulty, step_id):
    assert record_step(faulty, step_id).verdict == "pass"
'''.replace("FAULT", FAULT)


@pytest.fixture
def selftest_dir() -> Path:
    """A test file inside the repository (under the git-ignored captures/), so the root conftest.py,
    its fixtures and plugins apply to it as to any test of the tree; removed afterwards."""
    directory = ROOT / "captures" / f"junit-selftest-{uuid.uuid4().hex[:8]}"
    directory.mkdir(parents=True)
    (directory / "test_selftest_steps.py").write_text(SELFTEST)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _expected_reason(verdict_json: Path, step_id: str) -> str:
    """step_reason over the verifier's verdict.json (a JSON `fail` is a failed MUST: SHOULDs warn)."""
    step = next(s for s in json.loads(verdict_json.read_text())["steps"] if s["step"] == step_id)
    checks = [CheckResult(c["id"], c["verdict"], c["detail"], c["frames"]) for c in step["checks"]]
    return step_reason(StepResult(step_id, "", checks))


@pytest.mark.flow
def test_failed_step_carries_the_verifiers_reason_and_prune_keeps_only_its_run(selftest_dir: Path,
                                                                                tmp_path: Path) -> None:
    xml = tmp_path / "selftest.xml"
    proc = _pytest(str(selftest_dir / "test_selftest_steps.py"), "-n", "2", "--dist", "loadgroup",
                   "--prune-passed", f"--junitxml={xml}")
    out = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 1, out  # exactly the faulty run's 22~27 fails
    cases = {(case.get("classname").rsplit(".", 1)[-1], case.get("name")): (case, props)
             for case, props in _cases(xml)}
    assert sorted(cases) == sorted((f"test_{kind}_step", f"A.2.1 step {s}")
                                   for kind in ("clean", "faulty") for s in ("1", "22~27", "53~58")), out

    case, props = cases[("test_faulty_step", "A.2.1 step 22~27")]
    failure = case.find("failure")
    assert failure is not None and props["verdict"] == "fail", ET.tostring(case)
    verdict_json = Path(props["verdict_json"])
    assert verdict_json.is_file(), "the failed test's run must be kept"
    assert failure.get("message") == _expected_reason(verdict_json, "22~27") == props["reason"]
    assert failure.get("message").startswith(FAULTS[FAULT].requirement), failure.get("message")
    assert "assert 'fail' == 'pass'" in (failure.text or ""), failure.text  # the traceback is untouched
    failed = [key for key, (c, _) in cases.items() if c.find("failure") is not None or c.find("error") is not None]
    assert failed == [("test_faulty_step", "A.2.1 step 22~27")], out

    faulty_run = Path(props["capture"]).parent
    clean_run = Path(cases[("test_clean_step", "A.2.1 step 1")][1]["capture"]).parent
    assert faulty_run.name == "selftest-faulty" and clean_run.name == "selftest-clean"
    assert (faulty_run / "a2.1.pcapng").is_file(), sorted(faulty_run.parent.iterdir())
    assert not clean_run.exists(), f"{clean_run} should have been pruned"
    assert "--prune-passed: 1 run directory of passed tests removed, 1 kept (used by a failed test)" in proc.stdout
    assert f"kept {faulty_run}" in proc.stdout, proc.stdout[-2000:]


def test_rewrite_renames_only_step_testcases_and_is_idempotent(tmp_path: Path) -> None:
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="2">'
        '<testcase classname="testcases.test_x" name="test_step[2]" time="0.1"><properties>'
        '<property name="flow" value="A.2.1" /><property name="step" value="2" />'
        '<property name="verdict" value="fail" /><property name="reason" value="HOLD-1: sendrecv" />'
        '</properties><failure message="AssertionError: x">trace</failure></testcase>'
        '<testcase classname="testcases.test_x" name="test_other" time="0.1">'
        '<failure message="keep me">t</failure></testcase></testsuite></testsuites>')
    assert steps_junit.rewrite_junit_xml(xml) == 1
    once = xml.read_text()
    assert steps_junit.rewrite_junit_xml(xml) == 1 and xml.read_text() == once
    assert once.startswith('<?xml version="1.0" encoding="utf-8"?><testsuites>')
    step, other = ET.parse(xml).getroot().iter("testcase")
    assert (step.get("classname"), step.get("name")) == ("testcases.test_x.test_step", "A.2.1 step 2")
    assert step.find("failure").get("message") == "HOLD-1: sendrecv" and step.find("failure").text == "trace"
    assert (other.get("classname"), other.get("name")) == ("testcases.test_x", "test_other")
    assert other.find("failure").get("message") == "keep me"


def test_prune_never_deletes_outside_captures(tmp_path: Path) -> None:
    outside = tmp_path / "run"
    outside.mkdir()
    (outside / "a2.1.pcapng").write_bytes(b"")
    book = steps_junit._Runs()
    book.used = {outside.resolve(), steps_junit.CAPTURES.resolve()}
    steps_junit._prune(book)
    assert outside.is_dir() and steps_junit.CAPTURES.is_dir()
    assert book.pruned == [] and book.kept == []
