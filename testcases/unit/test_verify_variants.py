"""Checklist §8 paths: join rejected or declined, REFER rejected, Refer-Sub: false, REFER in and out
of a dialog, and the REFER-to-focus flow (§8d) reported once as a different flow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.report import render_table
from harness.verify import FlowResult, verify_capture
from testcases.data.make_a21_pcap import write

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
NAMES = ("join-rejected-486", "join-rejected-503-bye", "join-declined-603", "refer-to-focus-replaces",
         "refer-sub-false", "refer-rejected", "refer-out-of-dialog")


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    out = tmp_path_factory.mktemp("variants")
    return {name: write(out / f"{name}.pcap", mutations=(name,)) for name in NAMES}


@pytest.fixture(scope="module")
def results(paths) -> dict[str, FlowResult]:
    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(paths, pool.map(verify_capture, paths.values()), strict=True))


def _verdicts(result: FlowResult) -> dict[str, str]:
    return {s.step: s.verdict for s in result.steps if s.verdict != "pass"}


def _check(result: FlowResult, step: str, check_id: str):  # noqa: ANN202
    return next(c for c in result.step(step).checks if c.id == check_id)


def test_join_rejected_ue1_keeps_the_held_call(results) -> None:
    result = results["join-rejected-486"]
    assert _verdicts(result) == {"36": "inconclusive", "37~40": "inconclusive"}
    join3 = _check(result, "37~40", "JOIN-3")
    assert "rejected UE-2's join INVITE" in join3.detail and "486 Busy Here" in join3.detail and join3.frames
    assert _check(result, "41~46", "NOT-4").verdict == "pass"            # 486 sipfrag, terminated;noresource
    bye = result.step("47~52")
    assert bye.verdict == "pass" and "UE-1 keeping the held call with UE-2 is expected" in bye.notes[0]
    assert all(c.verdict == "pass" for c in bye.checks)
    assert any("join failed" in n for n in result.notes)


def test_bye_after_a_failed_join_is_a_warning_not_a_failure(results) -> None:
    result = results["join-rejected-503-bye"]
    assert _verdicts(result) == {"36": "inconclusive", "37~40": "inconclusive"}
    bye1 = _check(result, "47~52", "BYE-1")
    assert bye1.verdict == "warn" and "503" in bye1.detail and "recoverable" in bye1.detail


def test_join_declined_with_603_no_invite_expected(results) -> None:
    result = results["join-declined-603"]
    assert _verdicts(result) == {"34~35": "inconclusive", "36": "inconclusive", "37~40": "inconclusive"}
    assert "603" in result.step("34~35").notes[0] and "sent no INVITE to the CS" in result.step("34~35").notes[0]
    not4 = _check(result, "41~46", "NOT-4")
    assert not4.verdict == "warn" and "603" in not4.detail          # reason=rejected allowed after 603


def test_refer_sub_false_expects_no_notify(results) -> None:
    result = results["refer-sub-false"]
    assert result.verdict == "pass"
    for step in ("28~33", "41~46"):
        assert "Refer-Sub: false" in result.step(step).notes[0]
    assert _check(result, "59~64", "NOT-3").level == "MUST"          # UE-3 still subscribes normally


def test_refer_rejected_later_steps_say_why(results) -> None:
    result = results["refer-rejected"]
    assert _check(result, "22~27", "REF-5").verdict == "fail"
    for step in ("28~33", "34~35", "36", "37~40", "41~46"):
        assert result.step(step).verdict == "inconclusive"
        assert "was rejected with 603" in result.step(step).notes[0]


def test_out_of_dialog_refer_passes_with_target_dialog_warning(results) -> None:
    result = results["refer-out-of-dialog"]
    assert result.verdict == "pass"
    dlg = _check(result, "22~27", "DLG-1")
    assert dlg.verdict == "warn" and "Target-Dialog" in dlg.detail


def test_refer_to_focus_is_one_clear_different_flow(results, paths) -> None:
    result = results["refer-to-focus-replaces"]
    assert result.verdict == "inconclusive" and result.different_flow
    assert "checklist §8d" in result.different_flow and "Replaces" in result.different_flow
    assert not any(c.verdict == "fail" for s in result.steps for c in s.checks)
    text = render_table(result)
    assert text.startswith("A.2.1 verdict: DIFFERENT FLOW") and " | " not in text
    proc = subprocess.run([sys.executable, "-m", "harness", "verify", str(paths["refer-to-focus-replaces"]), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["verdict"] == "inconclusive" and "different flow" in data["different_flow"]


def test_capture_at_one_node_names_the_entry_point_and_accepts_ue1_by_its_via(tmp_path) -> None:
    """A capture taken at the S-CSCF only (independent generator): UE-1's own copies are missing, so the
    element forwarding them stands for UE-1 (said in the notes), the next proxy is the S-CSCF, Route is
    compared with the route set minus the hop already passed, and `--role UE-1=` accepts UE-1's own
    address, seen only in the bottom Via."""
    from testcases.data.indie_a21 import Cfg
    from testcases.data.indie_a21 import write as write_indie

    path = write_indie(tmp_path / "s-cscf.pcap", Cfg(capture_at=("S-CSCF",)))
    for roles in (None, {"UE-1": "10.77.0.1:5060"}):
        result = verify_capture(path, roles=roles)
        assert isinstance(result, FlowResult)
        assert result.roles["UE-1"] == "10.77.0.11:5060" and result.roles["S-CSCF"] == "10.77.0.12:5060"
        assert "P-CSCF" not in result.roles
        assert any("UE-1's own copies are not in the capture" in n for n in result.notes)
        for step in ("16~21", "22~27", "47~52", "53~58", "78~83"):
            assert result.step(step).verdict == "pass", step
        assert "minus the 1 route(s)" in _check(result, "22~27", "DLG-1").detail
