"""One load run: reserve a subnet, capture it, play N instances, verify the capture per instance.

Artifacts in OUT: `<flow>.pcapng` (one capture of everything), `verdict.json` (the verifier's
many-instance result) and `load.json` (the load summary). The capture is stopped in `finally` and
verified also when the agents failed, like a single run.

With an external CS (`sut`, from a profile) the capture also takes the CS's and MRFP's hosts, the
verifier pins them and the profile's factory URI, and the CS must answer an OPTIONS before the first
instance starts: a silent SUT ends the run at once, with its address, the capture still written.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.agents.placement import reserve_loopback
from harness.agents.ua import WAIT
from harness.capture.dumpcap import Capture
from harness.flows import load_flow
from harness.load.runner import InstanceRecord, LoadRun, Progress
from harness.load.summary import many_instance_json, summarize
from harness.load.topology import ExternalCs, InstanceTopology, shared_roles
from harness.peers.probe import hostport, options_status
from harness.verify import BadInput, analyse_capture

AVOID = frozenset({77})  # 127.77/16 belongs to the Kamailio interop tests
PROBE_WAIT = 5.0  # seconds an external CS has to answer the OPTIONS before the load
PROBE_OCTET = 99  # 127.N.0.99 sends it: an address of the load's that no role has (one address, one role)


@dataclass
class LoadOutcome:
    pcap: Path
    verdict_path: Path
    summary_path: Path
    result: dict[str, Any]          # {"instances": [...], "summary": {...}} as the verifier judged
    summary: dict[str, Any]         # the load summary (also result["load"])
    records: list[InstanceRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        counts = self.result["summary"]
        return not self.problems and counts["failed"] == 0 and counts["passed"] == len(self.records)


def run_load(flow_id: str, out: Path, *, conferences: int, concurrency: int, rate: float | None = None,
             media_seconds: float = 1.0, instance_timeout: float = 60.0,
             progress: Callable[[Progress], None] | None = None, engine: str = "lean",
             sut: ExternalCs | None = None, sut_wait: float = WAIT) -> LoadOutcome:
    """`sut`: an external CS to load instead of the reference CS; `sut_wait` (its profile's
    external_wait) bounds each wait of an instance, at least WAIT."""
    flow = load_flow(flow_id)
    if flow.id != "a2.1":
        raise ValueError(f"load mode plays a2.1 only, not {flow_id}")
    out.mkdir(parents=True, exist_ok=True)
    pcap = out / f"{flow.id}.pcapng"
    start = secrets.randbelow(254)
    reservation = reserve_loopback(n for n in ((start + k) % 254 + 1 for k in range(254)) if n not in AVOID)
    base = InstanceTopology(subnet=reservation.subnet, sut=sut)
    problems: list[str] = []
    records: list[InstanceRecord] = []
    lag: dict[str, Any] = {}
    began = time.monotonic()
    with reservation.bound():
        capture = Capture(pcap, bpf=base.bpf)
        with capture:
            load = LoadRun(base.subnet, conferences, concurrency, rate, media_seconds, max(WAIT, sut_wait),
                           instance_timeout, progress, engine=engine, sut=sut)
            probe_wait = min(sut_wait, PROBE_WAIT)
            if sut is not None and options_status(sut.host, sut.port, probe_wait,
                                                  source=f"127.{base.subnet}.0.{PROBE_OCTET}") is None:
                problems.append(f"the external CS at {hostport(sut.host, sut.port)} did not answer an OPTIONS "
                                f"within {probe_wait:g} s: no instance started")
            else:
                try:
                    records = asyncio.run(load.run())
                except Exception as exc:  # the capture is still verified: it says how far the instances got
                    problems.append(f"load run aborted: {type(exc).__name__}: {exc}")
            lag = load.lag.report()
        if capture.failure:
            problems.append(capture.failure)
    elapsed = time.monotonic() - began
    try:
        analysis = analyse_capture(pcap, flow=flow.FLOW.name, roles=shared_roles(base), factory_uri=base.factory_uri)
    except BadInput as exc:  # nothing the verifier can split into instances: say what the agents saw
        failed = [f"instance {r.index}: {r.error}" for r in records if r.error]
        reasons = problems + failed[:3] + ([f"{len(failed) - 3} more instances failed"] if len(failed) > 3 else [])
        if not reasons:
            raise
        raise BadInput(f"{'; '.join(reasons)} (and the capture holds no instance to judge: {exc})") from exc
    result = many_instance_json(analysis)
    summary = summarize(analysis, records, elapsed, conferences=conferences, concurrency=concurrency, rate=rate,
                        engine=engine, cs=f"external {hostport(sut.host, sut.port)}" if sut else "reference",
                        event_loop_lag_ms=lag)
    result["load"] = summary
    verdict_path, summary_path = out / "verdict.json", out / "load.json"
    try:
        verdict_path.write_text(json.dumps(result, indent=2) + "\n")
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    except OSError as exc:
        problems.append(f"results not written to {out}: {exc.strerror or exc}")
    return LoadOutcome(pcap, verdict_path, summary_path, result, summary, records, problems)
