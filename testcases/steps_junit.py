"""pytest plugin: JUnit XML with one testcase per step, and pruning of passed runs' captures.

Registered by the root conftest.py (`pytest_plugins`). A per-step test calls `record_step(outcome,
step_id)` before asserting; it records on the running test, as user properties (which travel from
xdist workers to the controller):

    flow, step, verdict, reason    e.g. "A.2.1", "22~27", "fail", "REF-1: exactly one Refer-To ..."
    capture, verdict_json          the run's pcapng and verdict.json
    report, annotated              OUT/report.html and the annotated pcapng, when the run wrote them
    nodeid                         the pytest id, to rerun the test

With --junitxml, once pytest has written the file (a trylast pytest_sessionfinish in the controller,
after junitxml's own plain one), each testcase that has `flow` and `step` properties is renamed
`<flow> step <step>` (e.g. `A.2.1 step 22~27`), and its classname becomes module + test function
(`testcases.test_a2_1.test_step`, `testcases.test_interop_kamailio.test_udp_md5_step`): CI tools show
package `testcases.test_a2_1`, class `test_step`, test `A.2.1 step 22~27`, one class per judged run,
so the same step of different runs (harness agents, baresip, Kamailio over UDP or TCP) stays apart.
When the verifier did not pass the step, the `message` of its <failure> is the verifier's reason (the
reason column of the verdict table); the failure text (assertion and details) is left as it is.

--prune-passed: every run directory a test used (created through the runner fixtures, or an outcome
among its fixtures, or its `capture` property) is deleted at the end of the session unless a test that
used it failed or errored (skips and expected failures do not keep it). Each xdist worker prunes its own
runs; only directories strictly inside captures/ are ever deleted.
"""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from contextvars import ContextVar
from pathlib import Path

import pytest

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
STEP_PROPERTIES = ("flow", "step", "verdict", "reason", "capture", "verdict_json", "report", "annotated", "nodeid")

# The test being run (its setup, call and teardown), so that helpers need no `request` argument.
_current: ContextVar[pytest.Item | None] = ContextVar("steps_junit_current_item", default=None)
_RUNS = pytest.StashKey[set[Path]]()  # run directories a test's fixtures and body created


def note_run(directory: Path) -> None:
    """Tell the plugin that the running test uses the run directory `directory` (runner fixtures)."""
    item = _current.get()
    if item is not None:
        item.stash.setdefault(_RUNS, set()).add(Path(directory).resolve())


def step_properties(outcome, step_id: str, nodeid: str = "") -> list[tuple[str, str]]:  # noqa: ANN001
    """The JUnit properties of `step_id` of a run's outcome (RunOutcome, SutOutcome)."""
    from harness.report.table import step_reason

    result = outcome.result
    props = [("flow", str(getattr(result, "flow", "A.2.1"))), ("step", step_id)]
    step = next((s for s in getattr(result, "steps", ()) if s.step == step_id), None)
    if step is not None:
        props += [("verdict", step.verdict), ("reason", step_reason(step) or "; ".join(step.notes))]
    props.append(("capture", str(outcome.pcap)))
    verdict_path = getattr(outcome, "verdict_path", None)
    if verdict_path is not None:
        props.append(("verdict_json", str(verdict_path)))
    for name, attr in (("report", "report_path"), ("annotated", "annotated_path")):
        path = getattr(outcome, attr, None)
        if path is not None and Path(path).exists():
            props.append((name, str(path)))
    if nodeid:
        props.append(("nodeid", nodeid))
    return props


def record_step(outcome, step_id: str):  # noqa: ANN001, ANN201 - StepResult | None
    """Record step `step_id` of `outcome` on the running test (see the module doc) and return its
    StepResult (None when the verdict has no such step, e.g. a many-instance capture). Call it before
    asserting; a second call in the same test replaces the first one's properties."""
    item = _current.get()
    if item is not None:
        props = step_properties(outcome, step_id, item.nodeid)
        item.user_properties[:] = [p for p in item.user_properties if p[0] not in STEP_PROPERTIES] + props
        note_run(Path(outcome.pcap).parent)
    return next((s for s in getattr(outcome.result, "steps", ()) if s.step == step_id), None)


def rewrite_junit_xml(path: Path) -> int:
    """Name each per-step testcase `<flow> step <step>` and give its failure the verifier's reason.
    Everything else in the file is left as it is. Returns how many testcases were renamed."""
    tree = ET.parse(path)
    renamed = 0
    for case in tree.iter("testcase"):
        props = {p.get("name"): p.get("value") or "" for p in case.iterfind("properties/property")}
        if not props.get("flow") or not props.get("step"):
            continue
        name = f"{props['flow']} step {props['step']}"
        if case.get("name") != name:  # not rewritten yet
            function = case.get("name", "").split("[", 1)[0]
            classname = case.get("classname", "")
            case.set("classname", f"{classname}.{function}" if classname and function else classname or function)
            case.set("name", name)
        renamed += 1
        if props.get("verdict", "pass") != "pass" and props.get("reason"):
            for failure in case.iterfind("failure"):
                failure.set("message", props["reason"])
    # The declaration exactly as junitxml writes it, then the tree.
    path.write_text('<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(tree.getroot(), encoding="unicode"),
                    encoding="utf-8")
    return renamed


def _runs_of(item: pytest.Item, report: pytest.TestReport) -> set[Path]:
    runs = set(item.stash.get(_RUNS, set()))
    for value in getattr(item, "funcargs", {}).values():
        pcap = getattr(value, "pcap", None)
        if isinstance(pcap, Path):
            runs.add(pcap.parent.resolve())
    runs |= {Path(value).parent.resolve() for name, value in report.user_properties if name == "capture"}
    return runs


class _Runs:
    """This process's bookkeeping: which run directories tests used, and which a failing test used."""

    def __init__(self) -> None:
        self.used: set[Path] = set()
        self.failed: set[Path] = set()
        self.pruned: list[str] = []
        self.kept: list[str] = []


_BOOK = pytest.StashKey[_Runs]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_BOOK] = _Runs()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):  # noqa: ANN201
    token = _current.set(item)
    try:
        return (yield)
    finally:
        _current.reset(token)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    if not item.config.getoption("--prune-passed", default=False):
        return report
    book = item.config.stash[_BOOK]
    runs = _runs_of(item, report)
    book.used |= runs
    if report.failed:
        book.failed |= runs
    return report


def _inside_captures(path: Path) -> bool:
    root = CAPTURES.resolve()
    return path != root and root in path.parents


def _prune(book: _Runs) -> None:
    for run in sorted(book.used):
        if not _inside_captures(run) or not run.is_dir():
            continue
        if run in book.failed:
            book.kept.append(str(run))
            continue
        shutil.rmtree(run, ignore_errors=True)
        book.pruned.append(str(run))
        parent = run.parent  # captures/pytest-<uid>/<worker>/ and above, once empty
        while _inside_captures(parent):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    book = config.stash[_BOOK]
    if config.getoption("--prune-passed", default=False) and exitstatus not in (
            pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR):
        _prune(book)
    if hasattr(config, "workerinput"):  # xdist worker: tell the controller; junitxml runs there
        config.workeroutput["steps_junit"] = {"pruned": book.pruned, "kept": book.kept}
        return
    xmlpath = config.option.xmlpath
    if xmlpath:  # the same path junitxml's LogXML wrote (it runs before this trylast hook)
        path = Path(os.path.normpath(os.path.abspath(os.path.expanduser(os.path.expandvars(xmlpath)))))
        if path.exists():
            rewrite_junit_xml(path)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # noqa: ANN001 - xdist controller: a worker finished
    out = getattr(node, "workeroutput", {}).get("steps_junit")
    if out:
        book = node.config.stash[_BOOK]
        book.pruned += out["pruned"]
        book.kept += out["kept"]


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:  # noqa: ANN001
    if not config.getoption("--prune-passed", default=False) or hasattr(config, "workerinput"):
        return
    book = config.stash[_BOOK]
    terminalreporter.write_line(f"--prune-passed: {len(book.pruned)} run director"
                                f"{'y' if len(book.pruned) == 1 else 'ies'} of passed tests removed, "
                                f"{len(book.kept)} kept (used by a failed test)")
    for kept in sorted(book.kept):
        terminalreporter.write_line(f"  kept {kept}")
