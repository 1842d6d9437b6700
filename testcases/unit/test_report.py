"""Reports: the table names the failing step, id, detail and frames; the ladder shows each hop."""

from __future__ import annotations

import json
import shutil

import pytest

from harness.report import render_json, render_ladder, render_table
from harness.verify import analyse_capture
from testcases.data.make_a21_pcap import write

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    return analyse_capture(write(tmp_path_factory.mktemp("r") / "m.pcap", mutations=("two-refer-to",)))


def test_table_rows_and_failure_block(analysis) -> None:
    text = render_table(analysis.result)
    assert text.startswith("A.2.1 verdict: FAIL")
    rows = [line for line in text.splitlines() if " | " in line]
    assert len(rows) == 1 + 20 and rows[1].split(" | ")[0].strip() == "1"
    row = next(r for r in rows if r.startswith("22~27"))
    assert "| fail " in row and "REF-1" in row
    block = text.split("Failing checks:")[1]
    assert "[22~27] REF-1 FAIL (MUST)" in block and "2 Refer-To values" in block and "frames: " in block


def test_ladder_one_line_per_hop_with_steps(analysis) -> None:
    text = render_ladder(analysis)
    refer_lines = [line for line in text.splitlines() if " REFER (CSeq 3)" in line]
    assert len(refer_lines) == 3
    assert "UE-1     -> P-CSCF" in refer_lines[0] and "S-CSCF   -> UE-2" in refer_lines[2]
    assert all(line.endswith("[22~27]") and "Refer-To: <sip:conf-7@10.21.0.40;method=INVITE>" in line
               for line in refer_lines)
    assert "isfocus" in next(line for line in text.splitlines() if "[16~21]" in line and " 200 " in line)
    assert "RTP flows:" in text and "MRFP" in text


def test_json_report(analysis) -> None:
    data = json.loads(render_json(analysis.result))
    assert data["verdict"] == "fail" and len(data["steps"]) == 20
