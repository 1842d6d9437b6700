"""Run every check of every step of a flow over one capture, per A.2.1 instance.

read (tshark, streamed) -> one model of all hop copies -> instances (harness/verify/instances.py)
-> per instance: another flow? (flowkind.py) -> roles -> evidence per step (a21.py) -> checks.
"""

from __future__ import annotations

import gc
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import TypeVar

from harness.flows.step import Flow, Step
from harness.verify.a21 import Evidence, bind
from harness.verify.checks import REGISTRY
from harness.verify.errors import BadInput
from harness.verify.flowkind import other_flow
from harness.verify.instances import split_instances
from harness.verify.model import Logical, Model
from harness.verify.parallel import map_indices
from harness.verify.reader import read_capture
from harness.verify.roles import infer_roles, parse_role_overrides, split_addr
from harness.verify.verdict import RESULT_WIRE, CaptureResult, CheckResult, FlowResult, StepResult
from harness.verify.wire import CaptureData, RtcpPacket, RtpPacket

P = TypeVar("P", RtpPacket, RtcpPacket)


def _retransmissions(ev: Evidence, step: Step) -> str | None:
    """"3 retransmissions (not new messages): REFER x2 on UE-1->P-CSCF (frames 301, 402), ..."."""
    parts = []
    total = 0
    transports: set[str] = set()
    for lg in ev.step_logicals(step):
        if not lg.retransmissions:
            continue
        by_hop: dict[tuple[str, str], list[int]] = defaultdict(list)
        for m in lg.retransmissions:
            transports.add(m.transport)
            by_hop[(m.src_ep, m.dst_ep)].append(m.frame)
        for (src, dst), frames in by_hop.items():
            total += len(frames)
            head = lg.method if lg.is_request else str(lg.status)
            label = "frames" if len(frames) > 1 else "frame"
            parts.append(f"{head} x{len(frames)} on {ev.role(src)}->{ev.role(dst)} ({label} "
                         f"{', '.join(map(str, frames))})")
    if not total:
        return None
    return f"{total} {'/'.join(sorted(transports))} retransmission{'s' if total > 1 else ''} (same message again, " \
        "not new steps): " + "; ".join(parts)


ABSENT_FAILS = frozenset({"NOT-1", "NOT-2", "NOT-3", "NOT-4", "NOT-5"})


def run_checks(ev: Evidence, flow: Flow) -> list[StepResult]:
    results = []
    for step in flow.steps:
        checks: list[CheckResult] = []
        notes: list[str] = []
        subject, _ = ev.subject(step)
        expected = ev.absent_reason(step) if subject is None else None
        if expected is not None:
            verdict, why, frames = expected
            # A required message that is absent fails the step's own MUST rows (NOT-1..5 for a NOTIFY);
            # the per-message G rows have nothing to judge.
            checks = [CheckResult(check_id, "fail", why, frames, "MUST") if verdict == "fail"
                      and check_id in ABSENT_FAILS else
                      CheckResult(check_id, "inconclusive" if verdict == "fail" else verdict, why, frames, "INFO")
                      for check_id in step.checks]
            notes.append(why)
        for check_id in step.checks if expected is None else ():
            fn = REGISTRY.get(check_id)
            if fn is None:
                checks.append(CheckResult(check_id, "inconclusive", f"no check implements {check_id}", [], "INFO"))
                continue
            try:
                checks.append(fn(ev, step))
            except Exception as exc:  # a checker bug must not hide the other verdicts
                checks.append(CheckResult(check_id, "inconclusive",
                                          f"checker error: {type(exc).__name__}: {exc}", [], "MUST"))
        retrans = _retransmissions(ev, step)
        if retrans:
            notes.append(retrans)
        results.append(StepResult(step.id, step.title, checks, notes=notes))
    return results


@dataclass
class Analysis:
    """A verdict plus the evidence behind it (what the ladder report draws); `evidence` is None
    when the capture holds another flow and no step was bound."""

    flow: Flow
    evidence: Evidence | None
    result: FlowResult
    model: Model | None = None   # the instance's messages, also when no evidence was bound


@dataclass
class CaptureAnalysis:
    """Several instances in one capture: one Analysis each, and the combined result."""

    flow: Flow
    analyses: list[Analysis]
    result: CaptureResult
    data: CaptureData
    unassigned: list[Logical] = field(default_factory=list)


def _different(flow: Flow, data: CaptureData, why: str, frames: list[int]) -> FlowResult:
    short = "not judged: the capture holds a different flow (see different_flow)"
    steps = [StepResult(s.id, s.title, [CheckResult("FLOW", "inconclusive", short, frames, "INFO")]) for s in flow.steps]
    return FlowResult(steps=steps, flow=flow.name, capture=data.path, notes=list(data.notes), different_flow=why)


def analyse_instance(data: CaptureData, model: Model, flow: Flow, overrides: dict[str, str],
                     factory_uri: str | None = None) -> Analysis:
    """One instance: another flow, or roles, evidence and every check of every step."""
    other = other_flow(model)
    if other is not None:
        return Analysis(flow, None, _different(flow, data, *other), model)
    inferred = infer_roles(model, overrides, factory_uri)
    ev = bind(data, model, inferred, factory_uri)
    steps = run_checks(ev, flow)
    notes = [*data.notes, *inferred.notes]
    retrans = sum(len(lg.retransmissions) for lg in model.logicals)
    notes.append(f"{len(model.messages)} SIP messages = {len(model.logicals)} logical messages "
                 f"({retrans} retransmissions), {len(data.rtp)} RTP packets")
    for name, branch in ev.branches.items():
        extra = len(branch.notifies) - len({id(n) for n in (branch.first_notify, branch.final_notify) if n})
        if extra > 0:
            notes.append(f"{name}: {extra} intermediate NOTIFY(s) accepted (not bound to a step)")
        status = branch.final_status
        if status is not None and status >= 300:
            notes.append(f"{name}: the join failed (final NOTIFY reports {status}); checklist §8g")
    result = FlowResult(steps=steps, flow=flow.name, capture=data.path, roles=inferred.as_dict(), notes=notes)
    return Analysis(flow, ev, result, model)


def analyse(path: str | Path, flow: Flow, roles: dict[str, str] | list[str] | None = None,
            factory_uri: str | None = None, evidence: bool = True) -> Analysis | CaptureAnalysis:
    """The single-flow Analysis when the capture holds one instance, else a CaptureAnalysis.

    evidence=False: only the verdicts are wanted (no ladder, no annotation), so many instances may
    be judged in forked workers and come back without their Evidence.
    """
    # A load capture makes millions of small objects and no cycles worth collecting: the cyclic
    # GC would rescan them all again and again (~25% of the run).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _analyse(path, flow, roles, factory_uri, evidence)
    finally:
        if collecting:
            gc.enable()


def _analyse(path: str | Path, flow: Flow, roles: dict[str, str] | list[str] | None,
             factory_uri: str | None, evidence: bool) -> Analysis | CaptureAnalysis:
    data = read_capture(path)
    model = Model(data.messages)
    overrides = parse_role_overrides(roles)
    split = split_instances(model, factory_uri)
    if len(split.instances) <= 1:
        return analyse_instance(data, model, flow, overrides, factory_uri)
    return _analyse_many(data, model, split.instances, split.conference, split.leftover, flow, overrides,
                         factory_uri, evidence)


def _analyse_many(data: CaptureData, model: Model, instances: list[set[str | None]], conferences: list[str | None],
                  leftover: set[str | None], flow: Flow, overrides: dict[str, str],
                  factory_uri: str | None, evidence: bool = True) -> CaptureAnalysis:
    rtp = _RtpIndex(data)

    def one(k: int) -> Analysis | None:
        call_ids = instances[k]
        sub = model.subset(call_ids)
        if "UE-1" in overrides and not _has(sub, overrides["UE-1"]):
            return None
        part = rtp.view(data, sub)
        try:
            analysis = analyse_instance(part, sub, flow, overrides, factory_uri)
        except BadInput as exc:   # one ambiguous instance must not hide the others
            steps = [StepResult(s.id, s.title, [CheckResult("ROLES", "inconclusive", exc.reason, [], "INFO")])
                     for s in flow.steps]
            analysis = Analysis(flow, None, FlowResult(steps, flow.name, data.path, notes=[exc.reason]), sub)
        analysis.result.instance = {"index": k + 1, "conference": conferences[k],
                                    "call_ids": sorted(map(str, call_ids)),
                                    "first_frame": sub.messages[0].frame if sub.messages else None}
        return analysis

    def verdict(k: int) -> FlowResult | None:
        analysis = one(k)
        if analysis is None:
            return None
        analysis.result.freeze_json()   # rendered on the worker's core, not by the parent afterwards
        return analysis.result

    if evidence:
        found = [one(k) for k in range(len(instances))]
    else:   # verdicts only: every core can work on them
        found = [None if r is None else Analysis(flow, None, r)
                 for r in map_indices(verdict, len(instances), wire=RESULT_WIRE)]
    analyses = [a for a in found if a is not None]
    skipped = len(found) - len(analyses)
    if not analyses:
        raise BadInput(f"--role UE-1={overrides.get('UE-1')}: no A.2.1 instance in the capture has that address")
    notes = list(data.notes)
    notes.append(f"{len(instances)} A.2.1 instances found (grouped by dialogs and conference URI)")
    if skipped:
        notes.append(f"{skipped} instances left out: their UE-1 is not --role UE-1={overrides['UE-1']}")
    unassigned = [lg for lg in model.logicals if lg.call_id in leftover]
    if unassigned:
        kinds = Counter(lg.method or str(lg.status) for lg in unassigned if lg.is_request)
        count = sum(len(lg.copies) for lg in unassigned)
        notes.append(f"{len(leftover)} Call-ID{'s' if len(leftover) > 1 else ''} ({count} message"
                     f"{'s' if count > 1 else ''}) belong to no instance: "
                     f"{', '.join(f'{k} x{n}' for k, n in sorted(kinds.items()))}")
    result = CaptureResult([a.result for a in analyses], capture=data.path, notes=notes, flow=flow.name)
    return CaptureAnalysis(flow, analyses, result, data, unassigned)


def _has(model: Model, addr: str) -> bool:
    host, port = split_addr(addr)
    return any(ep.rsplit(":", 1)[0] == host and (not port or ep.rsplit(":", 1)[1] == port)
               for ep in model.endpoints())


class _RtpIndex:
    """RTP/RTCP by address, so each instance gets the packets to or from the media addresses its
    SDPs name (RTCP on port + 1) in time linear in the capture, not in instances x packets."""

    def __init__(self, data: CaptureData) -> None:
        self.rtp: dict[tuple[str, int], list[RtpPacket]] = defaultdict(list)
        self.rtcp: dict[tuple[str, int], list[RtcpPacket]] = defaultdict(list)
        if data.rtp_by_addr is not None:   # the reader built it while tshark was reading
            self.rtp.update(data.rtp_by_addr)
        else:
            for p in data.rtp:
                self.rtp[(p.dst, p.dport)].append(p)
                self.rtp[(p.src, p.sport)].append(p)
        for q in data.rtcp:
            self.rtcp[(q.dst, q.dport)].append(q)
            self.rtcp[(q.src, q.sport)].append(q)

    def view(self, data: CaptureData, model: Model) -> CaptureData:
        addrs: set[tuple[str, int]] = set()
        seen: set[int] = set()   # hop copies and retransmissions share one SdpView
        for m in model.messages:
            sdp = m.sdp
            if sdp is not None and id(sdp) not in seen:
                seen.add(id(sdp))
                for i in range(len(sdp.media)):
                    addr = sdp.address(i)
                    if addr is not None:
                        addrs |= {addr, (addr[0], addr[1] + 1)}
        return CaptureData(path=data.path, messages=model.messages, rtp=_gather(self.rtp, addrs),
                           rtcp=_gather(self.rtcp, addrs), frames=data.frames, notes=list(data.notes))


_WHEN = attrgetter("time", "frame")   # capture order of RTP/RTCP packets


def _gather(by_addr: dict[tuple[str, int], list[P]], addrs: set[tuple[str, int]]) -> list[P]:
    """The packets to or from any of `addrs`, each once (a packet between two of them is listed
    under both), in capture order: C loops for the ~200 packets of an instance."""
    packets = list(chain.from_iterable(by_addr.get(a, ()) for a in addrs))
    unique = dict(zip(map(id, packets), packets, strict=True))   # by identity: a packet's hash is of every field
    return sorted(unique.values(), key=_WHEN)


def verify(path: str | Path, flow: Flow, roles: dict[str, str] | list[str] | None = None,
           factory_uri: str | None = None) -> FlowResult | CaptureResult:
    return analyse(path, flow, roles, factory_uri).result


__all__ = ["Analysis", "CaptureAnalysis", "analyse", "analyse_instance", "run_checks", "verify"]
