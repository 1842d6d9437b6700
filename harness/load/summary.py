"""The load summary: instances passed/failed (from the verifier), failures per step, setup latency
percentiles (call setup from the capture, conference setup from the agents), retransmissions, and
how late the harness's own event loop ran (harness/load/lag.py: its overload, not the SUT's)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from harness.load.lag import STEADY
from harness.load.runner import InstanceRecord
from harness.stats import call_setup_latency, percentiles, retransmissions_per_step, total_retransmissions
from harness.verify import CaptureResult


def _instances(analysis: Any) -> list[Any]:
    return list(getattr(analysis, "analyses", None) or [analysis])


def many_instance_json(analysis: Any) -> dict[str, Any]:
    """The verifier's many-instance JSON, also for a capture that holds one instance; the summary
    always counts `passed` and `failed` instances."""
    result = analysis.result
    if not isinstance(result, CaptureResult):
        result = CaptureResult([result], capture=result.capture, flow=result.flow)
    data = result.to_json()
    summary = data["summary"]
    verdicts = Counter(r.verdict for r in result.instances)
    summary.setdefault("passed", verdicts["pass"])
    summary.setdefault("failed", len(result.instances) - verdicts["pass"])
    return data


def _ms(stats: dict[str, float]) -> dict[str, float]:
    return {k: round(v * 1000, 1) for k, v in stats.items()}


def summarize(analysis: Any, records: list[InstanceRecord], elapsed: float, **params: Any) -> dict[str, Any]:
    results = [one.result for one in _instances(analysis)]
    steps: dict[str, Counter[str]] = {}
    for result in results:
        for step in result.steps:
            if step.verdict != "pass":
                steps.setdefault(step.step, Counter())[step.verdict] += 1
    verdicts = Counter(r.verdict for r in results)
    setup = [v for v in (call_setup_latency(one) for one in _instances(analysis)) if v is not None]
    conference = [v for v in (r.span("1", "78~83") for r in records) if v is not None]
    return {
        **params,
        "instances_started": len(records),
        "instances_judged": len(results),
        "passed": verdicts["pass"],
        "failed": len(results) - verdicts["pass"],
        "agent_errors": {r.index: r.error for r in records if r.error},
        "step_failures": {step: dict(c) for step, c in steps.items()},
        "call_setup_ms": _ms(percentiles(setup)),
        "flow_duration_ms": _ms(percentiles(conference)),
        "retransmissions": {"total": total_retransmissions(analysis),
                            "per_step": {k: v for k, v in retransmissions_per_step(analysis).items() if v}},
        "elapsed_s": round(elapsed, 2),
        "instances_per_s": round(len(records) / elapsed, 3) if elapsed > 0 else None,
    }


def render(summary: dict[str, Any]) -> str:
    """Human-readable lines for the terminal."""
    lines = [f"load: {summary['instances_judged']} instances judged ({summary['instances_started']} started): "
             f"{summary['passed']} passed, {summary['failed']} failed in {summary['elapsed_s']} s "
             f"({summary['instances_per_s']} instances/s, {summary.get('engine', 'lean')} engine, "
             f"{summary.get('cs', 'reference')} CS)"]
    if summary["step_failures"]:
        lines.append("failures per step: " + ", ".join(
            f"{step} " + "/".join(f"{n} {verdict}" for verdict, n in counts.items())
            for step, counts in summary["step_failures"].items()))
    for key, title in (("call_setup_ms", "call setup (INVITE -> 200, capture)"),
                       ("flow_duration_ms", "whole flow (step 1 -> 78~83, agents)")):
        stats = summary[key]
        if stats:
            lines.append(f"{title}: " + " ".join(f"{k} {v:g} ms" for k, v in stats.items()))
    retrans = summary["retransmissions"]
    lines.append(f"retransmissions: {retrans['total']}" + (
        " (" + " ".join(f"{k}:{v}" for k, v in retrans["per_step"].items()) + ")" if retrans["per_step"] else ""))
    lag = summary.get("event_loop_lag_ms") or {}
    if lag.get("probes"):
        lines.append("harness event loop late: " + " ".join(f"{k} {lag[k]:g} ms" for k in ("p50", "p99", "max"))
                     + (f"; starts held {lag['starts_held_s']:g} s for it to catch up" if lag.get("starts_held_s") else ""))
    if lag.get("overloaded"):
        lines.append(f"warning: the harness was overloaded: its event loop ran {lag['max']:g} ms late "
                     f"({lag['late_probes']} of {lag['probes']} probes {STEADY * 1000:.0f} ms or more); "
                     "retransmissions and timeouts in this run may be the harness's, not the SUT's: "
                     "lower --concurrency or --rate")
    for index, error in summary["agent_errors"].items():
        lines.append(f"instance {index}: {error}")
    return "\n".join(lines)
