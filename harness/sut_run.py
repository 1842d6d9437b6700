"""One captured run from a SUT profile: peers started, the harness plays its roles, the capture judged.

The profile decides everything the embedded run fixes: who plays each role (agent or external, and
which external peers the harness starts itself), addresses, ports, transports, users, the factory
URI, timers. The capture filter covers every role's host; the verifier is told each role's address
from the profile, so external roles are judged from the capture like any other.

Artifacts in OUT: `a2.1.pcapng`, `verdict.json`, and every started peer's config and log (Kamailio's
rendered .cfg and .log, baresip's config directory and log, linphonec's rc and logs).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from harness.agents.sut import SutTopology
from harness.agents.topology import pick_subnet
from harness.capture.dumpcap import Capture
from harness.flows.a2_1.external import SutReport, run_sut
from harness.flows.a2_1.steps import FLOW as A21
from harness.peers.launch import launched_peers
from harness.profile import Profile
from harness.report.html import write_run_report
from harness.session import RunOutcome
from harness.stats import retransmissions_per_step
from harness.verify import BadInput, analyse_capture
from harness.verify.engine import Analysis, CaptureAnalysis
from harness.verify.verdict import CheckResult, FlowResult, StepResult

FLOW = "A.2.1"


class FlowAborted(RuntimeError):
    """The choreography stopped early; the message says which role waited for what."""


@dataclass
class SutOutcome(RunOutcome):
    """RunOutcome plus what the harness itself saw (for logs and tests; the verdict never reads it)."""

    report: SutReport | None = None
    topology: SutTopology | None = None


def captured_sut_run(profile: Profile, out: Path, *, media_seconds: float = 2.0,
                     faults: frozenset[str] = frozenset(), timeout: float | None = None,
                     subnet: int | None = None) -> SutOutcome:
    """Play A.2.1 as `profile` says under a capture of every role's host, then verify the capture.

    The pcap is always written and verified when the flow aborts. A peer that is not installed
    (ToolMissing, naming the package) or does not start (PeerError, with its log tail)
    propagates: there is no run to judge."""
    topology = SutTopology(subnet=subnet if subnet is not None else pick_subnet(secrets.randbelow(254)),
                           profile=profile)
    timeout = timeout if timeout is not None else profile.timers.flow_timeout
    out.mkdir(parents=True, exist_ok=True)
    pcap = out / "a2.1.pcapng"
    play_error: BaseException | None = None
    report: SutReport | None = None
    # The peers start before the capture and stop after it: their readiness probes and the BYEs
    # they send when stopped to agents already gone are not part of the flow.
    with launched_peers(topology, out), Capture(pcap, bpf=topology.bpf):
        try:
            report = run_sut(topology, media_seconds=media_seconds, faults=faults, timeout=timeout)
        except Exception as exc:  # judged from the capture; the note says why the flow stopped
            play_error = exc
    if play_error is not None:
        aborted = f"{type(play_error).__name__}: {play_error}"
    elif report is not None and report.error is not None:
        aborted, play_error = report.error, FlowAborted(report.error)
    analysis = judge(pcap, topology, play_error)
    result = analysis.result
    result.notes.extend(run_notes(profile, report))
    if play_error is not None:
        result.notes.append(f"flow aborted: {aborted}")
    retrans = retransmissions_per_step(analysis)
    verdict_path = out / "verdict.json"
    verdict_path.write_text(json.dumps({**result.to_json(), "retransmissions": retrans}, indent=2) + "\n")
    written = write_run_report(analysis, out, pcap, verdict_path)
    return SutOutcome(pcap=pcap, verdict_path=verdict_path, result=result, analysis=analysis,
                      play_error=play_error, roles=topology.role_map(), retransmissions=retrans,
                      problems=written.problems, report_path=written.report, annotated_path=written.annotated,
                      report=report, topology=topology)


def judge(pcap: Path, topology: SutTopology, play_error: BaseException | None) -> Analysis | CaptureAnalysis:
    """The verifier's analysis of the capture. A capture with no SIP at all (an external UE-1 that
    never sent its first INVITE) still gets a verdict: every step inconclusive, saying why."""
    try:
        return analyse_capture(pcap, flow=FLOW, roles=topology.role_map(), factory_uri=topology.factory_uri)
    except BadInput as exc:
        if play_error is None:
            raise
        why = f"no evidence: {exc}"
        steps = [StepResult(s.id, s.title, [CheckResult("EVIDENCE", "inconclusive", why, [], "INFO")])
                 for s in A21.steps]
        return Analysis(A21, None, FlowResult(steps=steps, flow=FLOW, capture=str(pcap), roles=topology.role_map()))


def run_notes(profile: Profile, report: SutReport | None) -> list[str]:
    """What the verdict should say about the set-up: the profile, external roles, registrations."""
    notes = [f"SUT profile {profile.name} ({profile.source})"]
    external = profile.external_roles
    if external:
        who = ", ".join(f"{r} ({profile.role(r).launch or 'not started by the harness'})" for r in external)
        notes.append(f"external roles, judged from the capture only: {who}")
    if report is not None:
        for role, attempts in report.registrations.items():
            steps = " -> ".join(f"{a.status}" + (f" ({a.algorithm})" if a.algorithm else "") for a in attempts)
            notes.append(f"{role} REGISTER: {steps}")
    return notes
