"""A.2.1 end to end: the hand-made golden capture passes every step; each mutation fails exactly
its step with its requirement id; allowed variants pass; third-party captures verify without errors."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.flows.a2_1.steps import STEPS
from harness.verify import BadInput, FlowResult, verify_capture
from testcases.data.make_a21_pcap import MUTATIONS, write

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
SHARED = Path("/work/shared/captures")
SHARED_FILES = ["baresip-transferee.pcap", "baresip-transferee-via-kamailio-digest.pcap",
                "baresip-transfer-target-unreachable.pcap", "linphonec-transferee.pcap",
                "sipp-transferee-via-kamailio.pcap"]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, FlowResult]:
    """Every generated capture verified once (tshark runs are the cost: three at a time)."""
    out = tmp_path_factory.mktemp("a21")
    jobs = {"golden": write(out / "golden.pcap"), "direct": write(out / "direct.pcap", proxies=False)}
    jobs.update({name: write(out / f"{name}.pcap", mutations=(name,)) for name in MUTATIONS})
    with ThreadPoolExecutor(max_workers=3) as pool:
        done = dict(zip(jobs, pool.map(verify_capture, jobs.values()), strict=True))
    return done


def _failing(result: FlowResult) -> dict[str, list[str]]:
    return {s.step: [c.id for c in s.checks if c.verdict == "fail"] for s in result.steps if s.verdict == "fail"}


@pytest.mark.parametrize("name", ["golden", "direct"])
def test_correct_flow_passes_every_step(results, name: str) -> None:
    result = results[name]
    assert [s.step for s in result.steps] == [s.id for s in STEPS]
    assert result.verdict == "pass", {s.step: s.checks for s in result.steps if s.verdict != "pass"}
    # only the SHOULD on NOTIFY pacing (RFC 3515 §3.10) is short of perfect
    assert {c.id for s in result.steps for c in s.checks if c.verdict != "pass"} == {"NOT-6"}


@pytest.mark.parametrize("name", [n for n, (step, _) in MUTATIONS.items() if step])
def test_mutation_fails_exactly_its_step(results, name: str) -> None:
    step, check_id = MUTATIONS[name]
    result = results[name]
    failing = _failing(result)
    assert list(failing) == [step], failing
    assert check_id in failing[step]
    check = next(c for c in result.step(step).checks if c.id == check_id)
    assert check.frames and "frame" in check.detail
    allowed_inconclusive = {"refer-rejected": {"28~33", "34~35", "36", "37~40", "41~46"}}.get(name, set())
    assert {s.step for s in result.steps if s.verdict == "inconclusive"} == allowed_inconclusive


@pytest.mark.parametrize("name", [n for n, (step, _) in MUTATIONS.items() if not step])
def test_allowed_variant_passes(results, name: str) -> None:
    assert results[name].verdict == "pass", _failing(results[name])


def test_every_must_id_has_a_mutation_that_fails_it(results) -> None:
    """The proof that each check can fail: every MUST-level id the verifier judges on the golden
    capture is the expected failure of at least one mutation (run above)."""
    judged = {c.id for s in results["golden"].steps for c in s.checks if c.level == "MUST"}
    proven = {check for step, check in MUTATIONS.values() if step}
    assert judged - proven == set()
    assert len(judged) >= 30


def test_failure_detail_says_expected_seen_and_frame(results) -> None:
    for name in ("proxy-no-mf-decrement", "proxy-two-vias", "proxy-changes-callid", "bye-cseq-lower"):
        step, check_id = MUTATIONS[name]
        check = next(c for c in results[name].step(step).checks if c.id == check_id)
        assert "frame" in check.detail and ("expected" in check.detail or "changed" in check.detail), check.detail


def test_should_rows_warn_but_do_not_fail(results) -> None:
    warned = {name: {c.id for s in results[name].steps for c in s.checks if c.verdict == "warn"} - {"NOT-6"}
              for name in ("hold-c-zero", "refer-to-factory", "no-allow-events")}
    assert warned == {"hold-c-zero": {"HOLD-1"}, "refer-to-factory": {"REF-2"}, "no-allow-events": {"CONF-4"}}


def test_json_shape(results) -> None:
    data = json.loads(json.dumps(results["ue2-rtp-during-hold"].to_json()))
    assert data["flow"] == "A.2.1" and data["verdict"] == "fail"
    step2 = next(s for s in data["steps"] if s["step"] == "2")
    assert step2["verdict"] == "fail"
    hold2 = next(c for c in step2["checks"] if c["id"] == "HOLD-2")
    assert set(hold2) == {"id", "verdict", "detail", "frames"} and hold2["frames"]
    assert set(data) == {"flow", "verdict", "steps", "capture", "roles", "notes"}


@pytest.mark.parametrize("name", SHARED_FILES)
def test_third_party_captures_verify_without_exceptions(name: str) -> None:
    path = SHARED / name
    if not path.exists():
        pytest.skip("shared captures not present")
    result = verify_capture(path)
    assert result.roles["UE-1"] == "127.0.0.1:5080"
    assert not any("checker error" in c.detail for s in result.steps for c in s.checks)
    assert result.step("22~27").verdict != "inconclusive" or result.step("22~27").checks
    assert result.step("53~58").verdict == "inconclusive"  # no UE-3 in a plain transfer
    if name == "linphonec-transferee.pcap":
        not4 = next(c for c in result.step("41~46").checks if c.id == "NOT-4")
        assert not4.verdict == "fail" and "reason=reason=noresource" in not4.detail and not4.frames == [17]


def test_factory_uri_option(tmp_path) -> None:
    path = write(tmp_path / "g.pcap")
    good = verify_capture(path, factory_uri="sip:conference-factory@10.21.0.40")
    assert good.step("12~14").verdict == "pass"
    bad = verify_capture(path, factory_uri="sip:other-factory@10.21.0.40")
    conf1 = next(c for c in bad.step("12~14").checks if c.id == "CONF-1")
    assert conf1.verdict == "fail" and "other-factory" in conf1.detail


def test_unreadable_and_empty_files(tmp_path) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"\x00\x01garbage" * 10)
    for path in (empty, junk, tmp_path / "missing.pcap"):
        with pytest.raises(BadInput):
            verify_capture(path)
    with pytest.raises(BadInput, match="unknown flow"):
        verify_capture(write(tmp_path / "g.pcap"), flow="A.9.9")
