"""One captured run: agents play a flow on loopback while dumpcap records, then the verifier judges.

Shared by the CLI and the pytest fixtures so both produce the same artifacts:
`OUT/<flow>.pcapng` and `OUT/verdict.json`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from harness.flows import load_flow


@dataclass
class RunOutcome:
    """What a captured run left behind; `result` is judged from the pcap alone."""

    pcap: Path
    verdict_path: Path
    result: object
    analysis: object
    play_error: BaseException | None = None
    roles: dict[str, str] = field(default_factory=dict)


def captured_run(flow_id: str, out: Path, *, media_seconds: float = 2.0, faults: frozenset[str] = frozenset(),
                 timeout: float = 60.0, subnet: int | None = None) -> RunOutcome:
    """Play `flow_id` with harness agents under a real capture, then verify the capture.

    The pcap is always written and verified, also when the flow aborts: the verdict then says
    which steps have no evidence. Raises CaptureError/ToolMissing when no capture could be made.
    """
    from harness.agents.topology import Topology, pick_subnet
    from harness.capture.dumpcap import Capture
    from harness.verify import analyse_capture

    flow = load_flow(flow_id)
    out.mkdir(parents=True, exist_ok=True)
    pcap = out / f"{flow.id}.pcapng"
    topology = Topology(subnet=subnet if subnet is not None else pick_subnet(secrets.randbelow(254)))
    play_error: BaseException | None = None
    with Capture(pcap, bpf=topology.bpf):
        try:
            flow.run_flow(topology, media_seconds=media_seconds, faults=faults, timeout=timeout)
        except Exception as exc:  # judged from the capture; the note says why the flow stopped
            play_error = exc
    analysis = analyse_capture(pcap, flow=flow.FLOW.name, roles=topology.role_map(),
                               factory_uri=topology.factory_uri)
    result = analysis.result
    if play_error is not None:
        result.notes.append(f"flow aborted: {type(play_error).__name__}: {play_error}")
    verdict_path = out / "verdict.json"
    verdict_path.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return RunOutcome(pcap, verdict_path, result, analysis, play_error, topology.role_map())
