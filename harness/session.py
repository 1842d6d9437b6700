"""One captured run: agents play a flow on loopback while dumpcap records, then the verifier judges.

Shared by the CLI and the pytest fixtures so both produce the same artifacts:
`OUT/<flow>.pcapng`, `OUT/verdict.json`, `OUT/<flow>.annotated.pcapng` (a comment naming step and
verdict on every SIP frame) and `OUT/report.html` (verdict table, ladder, links to the three).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.flows import load_flow

if TYPE_CHECKING:
    from harness.agents.placement import Impairment, LoopbackReservation


@dataclass
class RunOutcome:
    """What a captured run left behind; `result` is judged from the pcap alone."""

    pcap: Path
    verdict_path: Path
    result: object
    analysis: object
    play_error: BaseException | None = None
    roles: dict[str, str] = field(default_factory=dict)
    placement: dict[str, object] = field(default_factory=dict)  # where the roles ran, link impairment stats
    retransmissions: dict[str, int] = field(default_factory=dict)  # step id -> retransmitted copies
    problems: list[str] = field(default_factory=list)  # the run itself went wrong: capture died, disk full
    report_path: Path | None = None      # OUT/report.html: verdict table, ladder, links (None: not written)
    annotated_path: Path | None = None   # OUT/<flow>.annotated.pcapng: step and verdict on every SIP frame


def captured_run(flow_id: str, out: Path, *, media_seconds: float = 2.0, faults: frozenset[str] = frozenset(),
                 timeout: float = 60.0, subnet: int | None = None, placement: str = "loopback",
                 impairment: Impairment | None = None, reservation: LoopbackReservation | None = None,
                 ) -> RunOutcome:
    """Play `flow_id` with harness agents under a real capture, then verify the capture.

    The pcap is always written and verified, also when the flow aborts: the verdict then says
    which steps have no evidence. Raises CaptureError/ToolMissing when no capture could be made.
    `placement` "netns" runs each role on its own test host, with `impairment` on every link
    (harness/agents/placement.py); the agents' waits and the flow bound then follow Timer B.
    """
    from harness.agents.errors import FlowError
    from harness.agents.placement import placed_run
    from harness.capture.dumpcap import Capture
    from harness.report.html import write_run_report
    from harness.stats import retransmissions_per_step
    from harness.verify import analyse_capture

    flow = load_flow(flow_id)
    out.mkdir(parents=True, exist_ok=True)
    pcap = out / f"{flow.id}.pcapng"
    play_error: BaseException | None = None
    with placed_run(placement=placement, impairment=impairment, subnet=subnet, reservation=reservation,
                    timeout=timeout) as where:
        topology = where.topology
        capture = Capture(pcap, **where.capture_options)
        with capture:
            try:
                report = flow.run_flow(topology, media_seconds=media_seconds, faults=faults,
                                       timeout=where.timeout, wait=where.wait)
                if getattr(report, "error", None):  # a peer went silent, a wait ran out: say which
                    play_error = FlowError(report.error)
            except Exception as exc:  # judged from the capture; the note says why the flow stopped
                play_error = exc
        problems = [capture.failure] if capture.failure else []
        placed = where.report()
    analysis = analyse_capture(pcap, flow=flow.FLOW.name, roles=topology.role_map(),
                               factory_uri=topology.factory_uri)
    result = analysis.result
    if play_error is not None:
        result.notes.append(f"flow aborted: {type(play_error).__name__}: {play_error}")
    result.notes += [f"capture: {problem}" for problem in problems]
    retrans = retransmissions_per_step(analysis)
    verdict_path = out / "verdict.json"
    try:
        verdict_path.write_text(json.dumps({**result.to_json(), "retransmissions": retrans}, indent=2) + "\n")
    except OSError as exc:  # e.g. the disk filled up: the verdict is still returned and printed
        problems.append(f"verdict not written to {verdict_path}: {exc.strerror or exc}")
    written = write_run_report(analysis, out, pcap, verdict_path)
    problems += written.problems
    return RunOutcome(pcap, verdict_path, result, analysis, play_error, topology.role_map(), placed, retrans,
                      problems, written.report, written.annotated)
