"""Wireshark-ready evidence: a pcapng copy of the capture with a comment on every SIP frame
naming its step and that step's verdict, e.g. `22~27 REFER UE-1→P-CSCF pass`.

Frames of messages that are no step of the flow (a 100 Trying, an intermediate NOTIFY, a REGISTER)
say so; in a many-instance capture each comment starts with the instance number (`#12 ...`).
Wireshark shows the comments in the packet list (`frame.comment`) and in Expert Info.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from harness.report.pcapng import read_packets, write_pcapng
from harness.verify.engine import Analysis, CaptureAnalysis
from harness.verify.model import Logical
from harness.verify.wire import WireMessage


def _label(lg: Logical) -> str:
    return (lg.method or "?") if lg.is_request else f"{lg.status} {lg.cseq_method or ''}".strip()


def _hop(analysis: Analysis, m: WireMessage) -> str:
    ev = analysis.evidence
    if ev is None:
        return f"{m.src_ep}→{m.dst_ep}"
    return f"{ev.role(m.src_ep)}→{ev.role(m.dst_ep)}"


def _copies(lg: Logical) -> list[tuple[WireMessage, str]]:
    return [(m, "") for m in lg.copies] + [(m, " (retransmission)") for m in lg.retransmissions]


def frame_comments(analysis: Analysis | CaptureAnalysis) -> dict[int, list[str]]:
    """frame number -> the comments for the SIP messages it carries."""
    out: dict[int, list[str]] = defaultdict(list)
    many = isinstance(analysis, CaptureAnalysis)
    for a in analysis.analyses if isinstance(analysis, CaptureAnalysis) else [analysis]:
        prefix = f"#{a.result.instance['index']} " if many and a.result.instance else ""
        _one(a, prefix, out)
    if isinstance(analysis, CaptureAnalysis):
        for lg in analysis.unassigned:
            for m, retrans in _copies(lg):
                out[m.frame].append(f"no A.2.1 instance: {_label(lg)} {m.src_ep}→{m.dst_ep}{retrans}")
    return out


def _one(a: Analysis, prefix: str, out: dict[int, list[str]]) -> None:
    ev, result = a.evidence, a.result
    if ev is None:
        reason = "different flow (checklist §8d)" if result.different_flow else "not judged"
        why = result.notes[0] if result.notes and not result.different_flow else ""
        seen: set[int] = set()
        for m in sorted(_messages(a), key=lambda m: (m.frame, m.index)):
            if (m.frame, m.index) not in seen:
                out[m.frame].append(f"{prefix}{reason}: {m.summary()}{' - ' + why if why else ''}")
                seen.add((m.frame, m.index))
        return
    bound: set[int] = set()
    for step in a.flow.steps:
        verdict = result.step(step.id).verdict
        for lg in ev.step_logicals(step):
            if id(lg) in bound:
                continue
            bound.add(id(lg))
            for m, retrans in _copies(lg):
                out[m.frame].append(f"{prefix}{step.id} {_label(lg)} {_hop(a, m)} {verdict}{retrans}")
    for lg in ev.model.logicals:
        if id(lg) not in bound:
            for m, retrans in _copies(lg):
                out[m.frame].append(f"{prefix}no A.2.1 step: {_label(lg)} {_hop(a, m)} (accepted extra message)"
                                    f"{retrans}")


def _messages(a: Analysis) -> list[WireMessage]:
    """The messages of an instance that has no evidence (another flow, ambiguous roles)."""
    return list(a.model.messages) if a.model is not None else []


def annotate(analysis: Analysis | CaptureAnalysis, capture: str | Path, out: str | Path) -> int:
    """Copy `capture` to `out` (pcapng) with the step comments; returns how many frames got one."""
    comments = frame_comments(analysis)
    count = 0

    def packets():  # noqa: ANN202 - a generator of pcapng.Packet
        nonlocal count
        for number, packet in enumerate(read_packets(capture), start=1):
            mine = comments.get(number)
            if mine:
                packet.comments = [*packet.comments, " | ".join(dict.fromkeys(mine))]
                count += 1
            yield packet

    write_pcapng(out, packets())
    return count
