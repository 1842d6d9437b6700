"""A.2.1 on loopback (no capture): the media each UE receives, analysed by harness.verify.media, shows
the N-1 mix in the clean run and each media fault actually committed; RTCP flows, also while held."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from harness.agents.topology import Topology
from harness.flows.a2_1.play import LegAudio, PlayReport, play
from harness.rtp.g711 import PCMA, PCMU
from harness.rtp.rtcp import RR, SR
from harness.verify.media import detect_tones

TONES = {"UE-1": 400.0, "UE-2": 650.0, "UE-3": 1000.0}
FREQS = tuple(TONES.values())
RUNS = ("clean", "mrfp-echo", "mrfp-silence", "ue2-wrong-payload-type", "ue3-rtp-to-stale-address")


@pytest.fixture(scope="module")
def runs(subnets: Iterator[int]) -> dict[str, tuple[Topology, PlayReport]]:
    topologies = {name: Topology(next(subnets)) for name in RUNS}

    async def main() -> list[PlayReport]:
        return await asyncio.gather(*(
            play(t, media_seconds=0.6, faults=frozenset() if name == "clean" else frozenset({name}),
                 timeout=20.0, rtcp_interval=0.25)
            for name, t in topologies.items()))

    reports = asyncio.run(main())
    return {name: (topologies[name], report) for name, report in zip(RUNS, reports, strict=True)}


def _conference_leg(topology: Topology, report: PlayReport, role: str) -> LegAudio:
    peer = topology.factory_uri if role == "UE-1" else None
    for key, audio in report.audio.items():
        if key.startswith(f"{role} <-> ") and (key.endswith(peer) if peer else "conf-" in key):
            return audio
    raise AssertionError(f"no conference leg for {role} in {sorted(report.audio)}")


def _heard(audio: LegAudio) -> set[float]:
    """Tones in the steady state (the last frames, before the agents stop one by one)."""
    window = audio.tail[-15:-5]
    pts = {pt for pt, _ in window}
    assert len(pts) == 1, pts
    return detect_tones([payload for _, payload in window], pts.pop(), FREQS)


@pytest.mark.parametrize("name", RUNS)
def test_every_run_completes(runs: dict[str, tuple[Topology, PlayReport]], name: str) -> None:
    _, report = runs[name]
    assert report.ok and all(s.status == "done" for s in report.steps), report.summary()


def test_clean_run_each_ue_hears_the_others_not_itself(runs: dict[str, tuple[Topology, PlayReport]]) -> None:
    topology, report = runs["clean"]
    for role, tone in TONES.items():
        assert _heard(_conference_leg(topology, report, role)) == set(FREQS) - {tone}, role


def test_rtcp_flows_on_every_leg_and_continues_while_held(runs: dict[str, tuple[Topology, PlayReport]]) -> None:
    topology, report = runs["clean"]
    held_at_ue1 = report.audio[f"UE-1 <-> {topology.user_uri('UE-2')}"]
    assert RR in held_at_ue1.rtcp_types  # UE-2 receives only after the hold, so it reports with RRs
    assert SR in report.audio[f"UE-2 <-> {topology.user_uri('UE-1')}"].rtcp_types  # UE-1 still sends
    for key, counters in report.media.items():
        assert counters["rtcp_sent"] > 0 and counters["rtcp_received"] > 0, key


def test_mrfp_echo_sends_each_ue_its_own_voice(runs: dict[str, tuple[Topology, PlayReport]]) -> None:
    topology, report = runs["mrfp-echo"]
    for role in TONES:
        assert _heard(_conference_leg(topology, report, role)) == set(FREQS), role


def test_mrfp_silence_sends_nothing_audible(runs: dict[str, tuple[Topology, PlayReport]]) -> None:
    topology, report = runs["mrfp-silence"]
    for role in TONES:
        assert _heard(_conference_leg(topology, report, role)) == set(), role


def test_ue2_sends_pt8_to_the_mrfp_only(runs: dict[str, tuple[Topology, PlayReport]]) -> None:
    topology, report = runs["ue2-wrong-payload-type"]
    assert report.audio[f"MRFP <-> {topology.user_uri('UE-2')}"].payload_types == {PCMA}
    assert report.audio[f"UE-1 <-> {topology.user_uri('UE-2')}"].payload_types == {PCMU}  # D12 unaffected
    assert report.audio[f"MRFP <-> {topology.user_uri('UE-1')}"].payload_types == {PCMU}
    assert _heard(_conference_leg(topology, report, "UE-1")) == {650.0, 1000.0}  # the MRFP still decodes it


def test_ue3_conference_rtp_goes_to_ue1s_old_leg(runs: dict[str, tuple[Topology, PlayReport]]) -> None:
    topology, report = runs["ue3-rtp-to-stale-address"]
    d13_at_ue1 = report.audio[f"UE-1 <-> {topology.user_uri('UE-3')}"]
    ue3_ports = {port for ip, port in d13_at_ue1.sources if ip == topology.ip("UE-3")}
    assert len(ue3_ports) == 2  # its D13 port, and its conference port
    assert report.media[f"MRFP <-> {topology.user_uri('UE-3')}"]["received"] == 0
    assert _heard(_conference_leg(topology, report, "UE-1")) == {650.0}  # nobody hears UE-3 in the mix
