"""What a captured run leaves next to its capture (harness/session.py): report.html with the
verdict table and the ladder, the annotated pcapng, verdict.json; and `run` naming the report."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.report.pcapng import read_packets
from testcases.unit.test_html_report import COLUMNS, STEP_IDS, Page, sip_messages

pytestmark = pytest.mark.flow


@pytest.fixture(scope="module")
def run(flow_runner):  # noqa: ANN001, ANN201 - conftest's RunOutcome
    return flow_runner("report-files-a2.1")


def test_run_leaves_report_and_annotated_capture(run) -> None:  # noqa: ANN001
    out = run.pcap.parent
    assert run.problems == [], run.problems
    assert run.report_path == out / "report.html" and run.report_path.is_file()
    assert run.annotated_path == out / "a2.1.annotated.pcapng" and run.annotated_path.is_file()
    assert run.verdict_path == out / "verdict.json" and run.verdict_path.is_file()
    sip = sip_messages(run.pcap)
    commented = [n for n, p in enumerate(read_packets(run.annotated_path), start=1) if p.comments]
    assert commented == sorted(sip)   # every SIP frame, and only those, names its step
    assert len(list(read_packets(run.annotated_path))) == len(list(read_packets(run.pcap)))


def test_report_shows_the_verdicts_and_the_whole_ladder(run) -> None:  # noqa: ANN001
    text = run.report_path.read_text()
    page = Page(text)
    assert [g["data-role"] for g in page.groups("col")] == COLUMNS
    msgs = page.groups("msg")
    assert sorted(int(g["data-frame"]) for g in msgs) == sorted(sip_messages(run.pcap))
    on_arrows = {s for cls in ("msg", "rtp", "internal") for g in page.groups(cls) for s in g["data-step"].split()}
    assert on_arrows == set(STEP_IDS)
    verdicts = {s.step: s.verdict for s in run.result.steps}
    for g in msgs:   # each arrow carries its step's verdict
        assert g["data-verdict"] == (verdicts[g["data-step"]] if g["data-step"] else "")
    rows = {a["data-step"]: a["data-verdict"] for tag, a in page.elements if tag == "tr" and "data-step" in a}
    assert rows == verdicts
    hrefs = {a["href"] for tag, a in page.elements if tag == "a" and not a["href"].startswith("#")}
    assert hrefs == {"a2.1.pcapng", "a2.1.annotated.pcapng", "verdict.json"}
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)


def test_cli_run_prints_the_report_path(tmp_path: Path, capture_tools: None) -> None:
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "a2.1", "--no-ladder", "--media-seconds", "0.5",
                           "--out", str(out)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert f"report: {out / 'report.html'}" in proc.stderr.splitlines()
    assert f"annotated capture: {out / 'a2.1.annotated.pcapng'}" in proc.stderr.splitlines()
    assert len(Page((out / "report.html").read_text()).groups("msg")) == len(sip_messages(out / "a2.1.pcapng"))
