"""Load mode: N A.2.1 instances against the reference CS through the proxies, one capture, one
verdict per instance from the verifier's many-instance mode, a progress line and a summary."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.agents.topology import UES
from harness.load.runner import Progress
from harness.load.topology import PER_OCTET, InstanceTopology, ue_address
from harness.stats import percentiles


def test_every_instance_has_its_own_ues_and_shares_the_network() -> None:
    addresses = [ue_address(42, k, role) for k in range(1, 3 * PER_OCTET) for role in UES]
    assert len(set(addresses)) == len(addresses)
    one, two = InstanceTopology(subnet=42, instance=1), InstanceTopology(subnet=42, instance=2)
    assert one.ip("UE-1") == "127.42.1.1" and two.ip("UE-1") == "127.42.1.4"
    assert one.ip("CS") == two.ip("CS") == "127.42.0.4"
    assert one.outbound_route("UE-1") == two.outbound_route("UE-1")
    assert one.bpf == "net 127.42.0.0/16"
    with pytest.raises(ValueError):
        ue_address(42, 0, "UE-1")


def test_percentiles_are_nearest_rank() -> None:
    assert percentiles([]) == {}
    stats = percentiles([float(v) for v in range(1, 101)])
    assert (stats["min"], stats["p50"], stats["p90"], stats["p99"], stats["max"]) == (1, 50, 90, 99, 100)
    assert percentiles([3.0])["p99"] == 3.0


def test_progress_line() -> None:
    state = Progress(total=4, started=3, done=2, failed=1)
    assert "2/4 done, 1 running, 1 failed" in state.line()


@pytest.mark.flow
def test_load_five_conferences_two_at_a_time(tmp_path: Path, capture_tools: None) -> None:
    out = tmp_path / "load"
    proc = subprocess.run([sys.executable, "-m", "harness", "load", "a2.1", "--conferences", "5", "--concurrency", "2",
                           "--media-seconds", "0.5", "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
    data = json.loads(proc.stdout)
    assert len(data["instances"]) == 5
    assert data["summary"]["passed"] == 5 and data["summary"]["failed"] == 0
    assert {i["verdict"] for i in data["instances"]} == {"pass"}
    load = data["load"]
    assert load["instances_started"] == 5 and load["call_setup_ms"]["p50"] > 0 and load["engine"] == "lean"
    assert "total" in load["retransmissions"]
    lag = load["event_loop_lag_ms"]  # the harness's own loop was probed all along
    assert lag["probes"] > 0 and 0 <= lag["p50"] <= lag["p99"] <= lag["max"]
    # The progress line counted to the end and never ran more than --concurrency at once.
    assert "5/5 done, 0 running" in proc.stderr
    assert max(int(n) for n in re.findall(r"(\d+) running", proc.stderr)) <= 2
    assert (out / "a2.1.pcapng").stat().st_size > 0
    assert json.loads((out / "verdict.json").read_text())["summary"]["passed"] == 5


@pytest.mark.flow
def test_rate_spaces_the_starts(tmp_path: Path, capture_tools: None) -> None:
    from harness.load import run_load

    outcome = run_load("a2.1", tmp_path / "rate", conferences=3, concurrency=3, rate=2.0, media_seconds=0.3)
    starts = sorted(r.started for r in outcome.records if r.started is not None)
    assert len(starts) == 3
    assert all(b - a >= 0.45 for a, b in zip(starts, starts[1:], strict=False)), starts
    assert outcome.ok, outcome.summary


def test_bad_load_options_exit_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "load", "a2.1", "--conferences", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--conferences" in proc.stderr


@pytest.mark.flow
def test_reference_agents_engine_plays_the_same_load(tmp_path: Path, capture_tools: None) -> None:
    from harness.load import run_load

    outcome = run_load("a2.1", tmp_path / "agents", conferences=2, concurrency=2, media_seconds=0.3,
                       engine="agents")
    assert outcome.ok, outcome.summary
    assert outcome.result["summary"]["passed"] == 2


@pytest.mark.flow
def test_the_verifier_judges_what_the_lean_agents_send(tmp_path: Path, capture_tools: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A lean UE whose NOTIFY bodies are not message/sipfrag fails NOT-3 in every instance: the load's
    verdicts come from the capture, not from the agents."""
    from harness.load import run_load
    from harness.load.lean import ue as lean_ue

    monkeypatch.setattr(lean_ue, "SIPFRAG", b"text/plain")
    outcome = run_load("a2.1", tmp_path / "bad", conferences=2, concurrency=2, media_seconds=0.3)
    assert not outcome.ok
    summary = outcome.result["summary"]
    assert summary["failed"] == 2 and summary["passed"] == 0
    assert all(r.ok for r in outcome.records)  # the agents themselves saw nothing wrong
    failed = {c for c in summary["failed_checks"]}
    assert any("NOT-3" in c for c in failed), failed


def test_load_run_refuses_unknown_engine_and_media_off_for_agents() -> None:
    from harness.load.runner import LoadRun

    with pytest.raises(ValueError, match="engine"):
        LoadRun(1, 1, 1, engine="fast")
    with pytest.raises(ValueError, match="lean engine only"):
        LoadRun(1, 1, 1, engine="agents", media=False)


@pytest.mark.flow
def test_a_join_the_lean_ue_cannot_use_is_still_reported_by_its_final_notify(
        tmp_path: Path, capture_tools: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2xx to the join INVITE without Contact (no dialog can be built from it): the join step fails
    at once (not after its wait) and the transferee still sends its final NOTIFY, with 500."""
    from harness.load import run_load
    from harness.load.lean import cs as lean_cs

    answer = lean_cs.LeanCs._answer

    def no_contact_for_joins(self, invite, participant, port, offered, pt):  # type: ignore[no-untyped-def]
        if participant.uri.split(":", 1)[1].startswith("conf-"):
            participant.contact = b""  # the 200 goes out with an empty Contact: not a usable target
        answer(self, invite, participant, port, offered, pt)

    monkeypatch.setattr(lean_cs.LeanCs, "_answer", no_contact_for_joins)
    outcome = run_load("a2.1", tmp_path / "nocontact", conferences=1, concurrency=1, media_seconds=0.3,
                       instance_timeout=30.0)
    record, = outcome.records
    assert record.error is not None and "failed with 500" in record.error, record.error  # not a timeout
    assert record.ended is not None and record.started is not None and record.ended - record.started < 20
    assert not outcome.ok
    assert b"SIP/2.0 500 Server Internal Error" in outcome.pcap.read_bytes()  # the final NOTIFY's sipfrag
