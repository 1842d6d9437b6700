"""A text ladder: one line per logical message per hop, by time, with roles and the step it proves.

    +0.337  #42   UE-1    -> P-CSCF  INVITE (CSeq 2) sdp sendonly                      [2]

Retransmissions are marked; RTP is summarised per flow at the end, not per packet.
"""

from __future__ import annotations

from collections import defaultdict

from harness.verify.a21 import sub_state
from harness.verify.engine import Analysis
from harness.verify.model import Logical
from harness.verify.wire import WireMessage, endpoint


def _summary(m: WireMessage) -> str:
    cseq = f"(CSeq {m.cseq_num}{'' if m.is_request else ' ' + str(m.cseq_method)})"
    if m.is_request:
        text = f"{m.method} {cseq}"
        if m.method in ("INVITE", "BYE", "ACK") and m.to_tag is None:
            text = f"{m.method} {m.uri} {cseq}"
        if m.method == "REFER":
            text += f" Refer-To: {m.get('Refer-To')}"
        if m.method == "NOTIFY":
            state = sub_state(m)
            frag = m.sipfrag_lines[0] if m.sipfrag_lines else ""
            text += f" {state or m.get('Subscription-State') or '-'} [{frag}]"
    else:
        text = f"{m.status} {m.reason} {cseq}"
        contact = m.get("Contact")
        if contact and "isfocus" in contact:
            text += f" Contact: {contact}"
    if m.sdp is not None:
        addr = m.sdp.address()
        text += f" sdp {m.sdp.direction()}" + (f" {endpoint(*addr)}" if addr else "")
    return text


def render_ladder(analysis: Analysis, width: int = 8) -> str:
    ev = analysis.evidence
    if ev is None:
        return f"{analysis.result.flow} ladder: {analysis.result.capture}: no steps bound ({analysis.result.verdict})\n"
    step_of: dict[int, str] = {}
    for step in analysis.flow.steps:
        for lg in ev.step_logicals(step):
            step_of.setdefault(id(lg), step.id)
    rows: list[tuple[float, int, int, str]] = []
    t0 = min(m.time for m in ev.data.messages)
    for lg in ev.model.logicals:
        for m in lg.copies + lg.retransmissions:
            rows.append((m.time, m.frame, m.index, _row(ev, lg, m, t0, step_of, width)))
    lines = [f"{analysis.result.flow} ladder: {analysis.result.capture}"]
    lines += [row for *_, row in sorted(rows)]
    lines += _rtp_flows(analysis, t0, width)
    return "\n".join(lines) + "\n"


def _row(ev: object, lg: Logical, m: WireMessage, t0: float, step_of: dict[int, str], width: int) -> str:
    src, dst = ev.role(m.src_ep), ev.role(m.dst_ep)  # type: ignore[attr-defined]
    retrans = " (retransmission)" if m in lg.retransmissions else ""
    step = f"[{step_of[id(lg)]}]" if id(lg) in step_of else ""
    return (f"{m.time - t0:+9.3f}  #{m.frame:<5} {src:<{width}} -> {dst:<{width}} "
            f"{_summary(m)}{retrans}  {step}").rstrip()


def _rtp_flows(analysis: Analysis, t0: float, width: int) -> list[str]:
    ev = analysis.evidence
    flows: dict[tuple[str, int, str, int], list[float]] = defaultdict(list)
    for p in ev.data.rtp:
        flows[(p.src, p.sport, p.dst, p.dport)].append(p.time)
    if not flows:
        return ["", "RTP: none in the capture"]
    out = ["", "RTP flows:"]
    for (src, sport, dst, dport), times in sorted(flows.items(), key=lambda kv: min(kv[1])):
        a, b = endpoint(src, sport), endpoint(dst, dport)
        out.append(f"  {min(times) - t0:+9.3f}..{max(times) - t0:+.3f}  {ev.role(a):<{width}} -> "
                   f"{ev.role(b):<{width}} {a} -> {b}  {len(times)} packets")
    return out
