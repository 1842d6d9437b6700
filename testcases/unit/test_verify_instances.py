"""Many A.2.1 instances in one capture: grouped by dialogs and conference URI, judged one by one,
summarised; `--json` prints {"instances": [...], "summary": {...}} (one instance: the single-flow shape)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from harness.report import render_capture
from harness.verify import CaptureResult, verify_capture
from testcases.data.frames import udp_frame
from testcases.data.make_a21_pcap import build_many, write, write_packets

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
SINGLE_KEYS = {"flow", "verdict", "steps", "capture", "roles", "notes"}


def _harness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def load(tmp_path_factory):
    """Six interleaved conferences; #3 sends two Refer-To, #5 REFERs the focus (§8d), plus a stray OPTIONS."""
    pkts = build_many(6, mutations={2: ("two-refer-to",), 4: ("refer-to-focus-replaces",)})
    stray = (b"OPTIONS sip:registrar@10.21.0.60 SIP/2.0\r\nVia: SIP/2.0/UDP 10.21.0.61:5060;branch=z9hG4bKopt1\r\n"
             b"Max-Forwards: 70\r\nFrom: <sip:mon@10.21.0.61>;tag=m1\r\nTo: <sip:registrar@10.21.0.60>\r\n"
             b"Call-ID: keepalive-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
    pkts.append((pkts[10][0] + 0.0001, udp_frame("10.21.0.61", 5060, "10.21.0.60", 5060, stray)))
    pkts.sort(key=lambda p: p[0])
    return write_packets(tmp_path_factory.mktemp("many") / "x6.pcap", pkts)


@pytest.fixture(scope="module")
def result(load) -> CaptureResult:
    got = verify_capture(load)
    assert isinstance(got, CaptureResult)
    return got


def test_each_instance_is_found_and_judged_on_its_own(result) -> None:
    assert [r.instance["index"] for r in result.instances] == [1, 2, 3, 4, 5, 6]
    assert [r.instance["conference"] for r in result.instances] == [f"sip:conf-{k}@10.21.0.40" for k in range(7, 13)]
    assert [r.verdict for r in result.instances] == ["pass", "pass", "fail", "pass", "inconclusive", "pass"]
    third = result.instances[2]
    assert {s.step for s in third.steps if s.verdict == "fail"} == {"22~27"}
    assert third.roles["UE-1"] == "10.31.0.3:5072" and third.instance["call_ids"][0].startswith("d12k2@")
    assert result.instances[4].different_flow and "§8d" in result.instances[4].different_flow


def test_instances_are_interleaved_in_time_yet_kept_apart(result) -> None:
    firsts = [r.instance["first_frame"] for r in result.instances]
    assert firsts == sorted(firsts) and firsts[1] < 100      # #2 starts long before #1 ends
    for r in result.instances:
        if not r.different_flow:
            assert len({r.roles["UE-1"], r.roles["UE-2"], r.roles["UE-3"]}) == 3


def test_summary(result) -> None:
    s = result.summary()
    assert (s["instances"], s["pass"], s["fail"], s["inconclusive"], s["different_flow"]) == (6, 4, 1, 1, 1)
    assert s["verdict"] == "fail" and s["failed_checks"] == {"22~27 REF-1": 1}
    assert any("belong to no instance: OPTIONS x1" in n for n in s["notes"])


def test_json_has_instances_in_the_single_flow_shape(load) -> None:
    proc = _harness("verify", str(load), "--json")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {"instances", "summary"} and len(data["instances"]) == 6
    for one in data["instances"]:
        assert set(one) >= SINGLE_KEYS and len(one["steps"]) == 20 and one["instance"]["index"]
    assert data["summary"]["fail"] == 1


def test_text_report_lists_instances_and_details_the_bad_ones(result) -> None:
    text = render_capture(result)
    assert text.startswith("A.2.1 verdict: FAIL") and "instances: 6 (4 pass, 1 fail, 1 inconclusive" in text
    head = text.split("\n\n")[1]
    rows = [line for line in head.splitlines() if line[:2].strip().isdigit() and " | " in line]
    assert len(rows) == 6 and "[22~27] REF-1" in rows[2]
    assert "=== instance #3 (sip:conf-9@10.21.0.40) ===" in text and "=== instance #1 " not in text


def test_role_override_picks_the_instances_of_that_ue(load) -> None:
    proc = _harness("verify", str(load), "--json", "--role", "UE-1=10.31.0.4")
    data = json.loads(proc.stdout)
    assert [one["instance"]["index"] for one in data["instances"]] == [4] and proc.returncode == 0


def test_a_single_instance_keeps_the_single_flow_shape(tmp_path) -> None:
    proc = _harness("verify", str(write(tmp_path / "one.pcap")), "--json")
    assert proc.returncode == 0 and set(json.loads(proc.stdout)) == SINGLE_KEYS
