"""The ladder of one A.2.1 instance as an SVG sequence diagram, plus the data its page script shows.

Theory of operation: every SIP message copy of the capture (one per hop, retransmissions too) is a
row, in capture order (frame, then position in the frame), drawn as an arrow between the columns
of its sender and receiver, coloured by the verdict of the step the verifier bound it to. RTP is
not drawn per packet: between two SIP bursts (a gap of PHASE_GAP seconds or more) the packets of
the burst before are summed per direction into one `g.rtp` row. Steps with no message of their own
(15, 36, 67: the CS allocates resources at the MRFP, judged from the MRFP's RTP) get a dashed
`g.internal` arrow CS -> MRFP right after the message that triggers them.

Markup contract (tests and the browser test count these):
  <svg id="ladder" class="ladder">      (ids ladder-2, ladder-3, ... for more instances)
  <g class="col" data-role="UE-1">       one per column (role, or the address when no role fits)
  <g class="msg" data-step="22~27" data-verdict="pass" data-frame="123" data-key="7">
                                         one per SIP message copy; data-step/-verdict empty when
                                         the message is bound to no step
  <g class="rtp" data-step="36 37~40" data-verdict="pass" data-frame="229">   RTP per phase
  <g class="internal" data-step="15" data-verdict="pass">                    steps off the wire
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from html import escape
from typing import Any

from harness.report.ladder import _summary
from harness.verify.engine import Analysis
from harness.verify.model import Logical
from harness.verify.roles import ROLES, split_addr
from harness.verify.wire import RtpPacket, WireMessage, endpoint

COLUMN_ORDER = ("UE-1", "P-CSCF", "S-CSCF", "CS", "MRFP", "UE-2", "UE-3")
PHASE_GAP = 0.1          # seconds without SIP that end a signalling burst (media flows in between)
MAX_ROWS = 5000          # message rows drawn per ladder; more are listed as left out
RAW_LIMIT = 16000        # characters of message text kept for the details panel

LEFT, COL_W, RIGHT, HEAD, PITCH = 122, 136, 96, 50, 22
VERDICTS = ("pass", "fail", "inconclusive", "warn")
_RANK = {"fail": 3, "inconclusive": 2, "warn": 1, "pass": 0}


@dataclass
class Row:
    kind: str                 # "msg", "rtp" or "internal"
    key: tuple[int, int, int]
    time: float
    src: str                  # column labels
    dst: str
    label: str
    steps: list[str] = field(default_factory=list)
    verdict: str = ""
    frame: int | None = None
    dashed: bool = False
    info: dict[str, Any] = field(default_factory=dict)   # what the details panel shows


@dataclass
class Ladder:
    """What one SVG draws; `data` goes to the page as JSON for the details panel."""

    columns: list[tuple[str, str]]            # (label, address or note)
    rows: list[Row]
    checks: list[list[Any]]                   # [step, id, verdict, level, detail, frames]
    notes: list[str]
    t0: float


def _worst(verdicts: list[str]) -> str:
    known = [v for v in verdicts if v]
    return max(known, key=lambda v: _RANK.get(v, 0)) if known else ""


def _label(m: WireMessage) -> str:
    if m.is_request:
        return f"{m.method} ({m.cseq_num})" if m.cseq_num is not None else str(m.method)
    reason = (m.reason or "").strip()
    return f"{m.status} {reason}"[:40] + (f" ({m.cseq_method})" if m.cseq_method else "")


class _Columns:
    """Column of an address: the verifier's role, else the address (SIP) or the IP (media) of it."""

    def __init__(self, analysis: Analysis) -> None:
        self.ev = analysis.evidence
        self.by_ip: dict[str, set[str]] = defaultdict(set)
        self.proxies: set[str] = set()
        if self.ev is not None:
            nodes = self.ev.roles.nodes
            self.proxies = {nodes.find(ep) for ep in nodes.intermediates(self.ev.model)}
        self.note: dict[str, str] = {}
        roles = analysis.result.roles
        for role, addr in roles.items():
            self.note[role] = addr.split(",")[0].strip()

    def sip(self, ep: str) -> str:
        label = self.ev.role(ep) if self.ev is not None else ep
        self.by_ip[ep.rsplit(":", 1)[0]].add(label)
        if label not in ROLES and label not in self.note:
            proxy = self.ev is not None and self.ev.roles.nodes.find(ep) in self.proxies
            self.note[label] = "proxy (Via/Record-Route)" if proxy else ""
        return label

    def media(self, ip: str, port: int) -> str:
        ep = endpoint(ip, port)
        label = self.ev.role(ep) if self.ev is not None else ep
        if label in ROLES:
            return label
        if self.ev is not None:   # a media-only role (MRFP) named by its bare address, IPv6 too
            for role, addr in self.ev.roles.media.items():
                if ip in (addr, addr.strip("[]"), split_addr(addr)[0].strip("[]")):
                    return role
        owners = self.by_ip.get(endpoint(ip, 0).rsplit(":", 1)[0], set())
        if len(owners) == 1:
            return next(iter(owners))
        label = endpoint(ip, 0).rsplit(":", 1)[0]
        self.note.setdefault(label, "media")
        return label


def build_ladder(analysis: Analysis) -> Ladder:
    """Rows, columns and check index of one instance (no evidence: addresses, no steps)."""
    ev, result = analysis.evidence, analysis.result
    cols = _Columns(analysis)
    checks: list[list[Any]] = []
    by_frame: dict[int, list[int]] = defaultdict(list)
    for step in result.steps:
        for c in step.checks:
            for f in dict.fromkeys(c.frames):
                by_frame[f].append(len(checks))
            checks.append([step.step, c.id, c.verdict, c.level, c.detail, list(c.frames)])
    step_of: dict[int, str] = {}
    titles = {s.id: s.title for s in analysis.flow.steps}
    if ev is not None:
        for step in analysis.flow.steps:
            for lg in ev.step_logicals(step):
                step_of.setdefault(id(lg), step.id)
    verdict_of = {s.step: s.verdict for s in result.steps}
    notes: list[str] = []

    # --- SIP: one row per copy --------------------------------------------------------------
    copies: list[tuple[WireMessage, Logical | None, bool]] = []
    model = ev.model if ev is not None else analysis.model
    if model is not None:
        for lg in model.logicals:
            for m in lg.copies:
                copies.append((m, lg, False))
            for m in lg.retransmissions:
                copies.append((m, lg, True))
        seen = {(m.frame, m.index) for m, _, _ in copies}
        copies += [(m, None, False) for m in model.messages if (m.frame, m.index) not in seen]
    copies.sort(key=lambda c: (c[0].frame, c[0].index))
    if len(copies) > MAX_ROWS:
        notes.append(f"only the first {MAX_ROWS} of {len(copies)} SIP messages are drawn")
        copies = copies[:MAX_ROWS]
    t0 = min((m.time for m, _, _ in copies), default=0.0)
    rtp: list[RtpPacket] = list(ev.data.rtp) if ev is not None else []
    if rtp:
        t0 = min(t0, rtp[0].time) if copies else rtp[0].time
    rows: list[Row] = []
    last_of_step: dict[str, tuple[int, int, float]] = {}
    first_of_step: dict[str, tuple[int, int, float]] = {}
    for m, lg, retrans in copies:
        step = step_of.get(id(lg), "") if lg is not None else ""
        src, dst = cols.sip(m.src_ep), cols.sip(m.dst_ep)
        used = by_frame.get(m.frame, [])
        info = {"t": round(m.time - t0, 6), "frame": m.frame, "src": src, "dst": dst, "from": m.src_ep,
                "to": m.dst_ep, "transport": m.transport, "summary": _summary(m),
                "step": step, "title": titles.get(step, ""), "retransmission": retrans,
                "checks": used, "text": _text(m)}
        if lg is None:
            info["note"] = "not grouped into a logical message"
        elif not step:
            info["note"] = "bound to no step of the flow (accepted extra message)" if ev is not None else \
                "not judged: " + (result.different_flow or "; ".join(result.notes[:1]) or "no evidence")
        key = (m.frame, m.index, 0)
        rows.append(Row("msg", key, m.time, src, dst, _label(m), [step] if step else [],
                        verdict_of.get(step, "") if step else "", m.frame, retrans, info))
        if step:
            here = (m.frame, m.index, m.time)
            last_of_step[step] = max(last_of_step.get(step, here), here)
            first_of_step.setdefault(step, here)

    # --- steps with no message of their own: CS -> MRFP, after what triggers them ---------------
    if ev is not None:
        steps = list(analysis.flow.steps)
        for i, step in enumerate(steps):
            if step.messages:
                continue
            before = next((last_of_step[s.id] for s in reversed(steps[:i]) if s.id in last_of_step), None)
            after = next((first_of_step[s.id] for s in steps[i + 1:] if s.id in first_of_step), None)
            if before is not None:
                key, t = (before[0], before[1], 1), before[2]
            elif after is not None:
                key, t = (after[0], after[1], -1), after[2]
            else:
                key, t = (1 << 40, 0, 1), t0
            a, b = step.actors
            used = [k for k, c in enumerate(checks) if c[0] == step.id]
            info = {"t": round(t - t0, 6), "src": a, "dst": b, "step": step.id, "title": step.title,
                    "summary": f"{step.id}: {a} -> {b}, not on the wire; judged from the media the capture shows",
                    "checks": used}
            rows.append(Row("internal", key, t, a, b,
                            f"{step.id} resources", [step.id], verdict_of.get(step.id, ""), None,
                            True, info))

    rows.sort(key=lambda r: r.key)
    rows = _with_rtp(rows, rtp, cols, t0, checks, by_frame, verdict_of)
    columns = _order_columns(rows, cols)
    return Ladder(columns, rows, checks, notes, t0)


def _text(m: WireMessage) -> str:
    text = m.raw.decode("utf-8", "replace") if m.raw else m.start_line
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT] + f"\n... ({len(text) - RAW_LIMIT} more characters)"


def _with_rtp(rows: list[Row], rtp: list[RtpPacket], cols: _Columns, t0: float, checks: list[list[Any]],
              by_frame: dict[int, list[int]], verdict_of: dict[str, str]) -> list[Row]:
    """Insert one `rtp` row per direction per phase: the packets since the previous summary,
    placed before the first SIP message that follows a quiet gap (or at the end)."""
    if not rtp:
        return rows
    out: list[Row] = []
    i = 0
    last_sip: float | None = None
    for row in rows:
        if row.kind == "msg":
            if last_sip is None or row.time - last_sip >= PHASE_GAP:
                pending = []
                while i < len(rtp) and rtp[i].time < row.time:
                    pending.append(rtp[i])
                    i += 1
                out += _rtp_rows(pending, cols, t0, checks, by_frame, verdict_of, row.key)
            last_sip = row.time
        out.append(row)
    out += _rtp_rows(rtp[i:], cols, t0, checks, by_frame, verdict_of, (1 << 41, 0, 0))
    return out


def _rtp_rows(packets: list[RtpPacket], cols: _Columns, t0: float, checks: list[list[Any]],
              by_frame: dict[int, list[int]], verdict_of: dict[str, str], key: tuple[int, int, int]) -> list[Row]:
    flows: dict[tuple[str, str], list[RtpPacket]] = defaultdict(list)
    for p in packets:
        flows[(cols.media(p.src, p.sport), cols.media(p.dst, p.dport))].append(p)
    out = []
    for (src, dst), ps in sorted(flows.items(), key=lambda kv: kv[1][0].frame):
        frames = [p.frame for p in ps]
        used = sorted({k for f in frames for k in by_frame.get(f, ())})
        steps = list(dict.fromkeys(checks[k][0] for k in used))
        streams = sorted({f"{endpoint(p.src, p.sport)} → {endpoint(p.dst, p.dport)}" for p in ps})
        pts = sorted({p.pt for p in ps})
        ssrcs = sorted({f"0x{p.ssrc:08x}" for p in ps})
        first, last = ps[0].time - t0, ps[-1].time - t0
        info = {"t": round(first, 6), "frame": frames[0], "src": src, "dst": dst, "packets": len(ps),
                "until": round(last, 6), "streams": streams, "ssrc": ssrcs, "pt": pts,
                "frames": [frames[0], frames[-1]], "used_frames": sorted({f for k in used for f in checks[k][5]}
                                                                         & set(frames)),
                "summary": f"RTP {src} → {dst}: {len(ps)} packets, {len(streams)} stream(s), PT "
                           f"{'/'.join(map(str, pts))}, {first:+.3f}..{last:+.3f} s", "checks": used,
                "step": " ".join(steps)}
        out.append(Row("rtp", key, ps[0].time, src, dst,
                       f"RTP {len(ps)} pkt{'s' if len(ps) > 1 else ''} · {last - first:.2f} s",
                       steps, _worst([verdict_of.get(s, "") for s in steps]), frames[0], False, info))
    return out


def _order_columns(rows: list[Row], cols: _Columns) -> list[tuple[str, str]]:
    used: dict[str, None] = {}
    for r in rows:
        used.setdefault(r.src)
        used.setdefault(r.dst)
    ordered = [c for c in COLUMN_ORDER if c in used] + [c for c in used if c not in COLUMN_ORDER]
    return [(c, cols.note.get(c, "")) for c in ordered]


# --- SVG -------------------------------------------------------------------------------------

def _fit(text: str, width: float, char: float = 6.3) -> str:
    n = max(4, int(width / char))
    return text if len(text) <= n else text[: n - 1] + "…"


def render_svg(ladder: Ladder, svg_id: str, data_id: str, panel_id: str = "") -> str:
    xs = {label: LEFT + COL_W * i + COL_W / 2 for i, (label, _) in enumerate(ladder.columns)}
    width = LEFT + COL_W * max(1, len(ladder.columns)) + RIGHT
    height = HEAD + PITCH * (len(ladder.rows) + 1)
    out = [f'<svg id="{escape(svg_id)}" class="ladder" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" data-src="{escape(data_id)}" '
           f'data-panel="{escape(panel_id)}" data-head="{HEAD}" data-pitch="{PITCH}" role="img" '
           f'aria-label="ladder diagram">']
    out.append("<defs>" + "".join(
        f'<marker id="{svg_id}-arrow-{v or "none"}" class="arrowhead {v or "none"}" viewBox="0 0 10 10" refX="9" '
        f'refY="5" markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/>'
        f"</marker>" for v in (*VERDICTS, "")) + "</defs>")
    for label, _ in ladder.columns:
        x = xs[label]
        out.append(f'<line class="life" x1="{x:.0f}" y1="{HEAD}" x2="{x:.0f}" y2="{height}"/>')
    for k, row in enumerate(ladder.rows):
        out.append(_row_svg(row, k, xs, HEAD + PITCH * (k + 1), svg_id, ladder.t0))
    # Column headers last (on top), in a group the page script keeps at the top while scrolling.
    out.append(f'<g class="ladder-head"><rect class="head-bg" x="0" y="0" width="{width}" height="{HEAD - 4}"/>')
    out.append(f'<text class="gutter" x="8" y="{HEAD - 12}">time (s) · frame</text>'
               f'<text class="gutter" x="{width - RIGHT + 8}" y="{HEAD - 12}">step</text>')
    for label, note in ladder.columns:
        x = xs[label]
        out.append(f'<g class="col" data-role="{escape(label)}"><rect x="{x - COL_W / 2 + 6:.0f}" y="4" '
                   f'width="{COL_W - 12}" height="{HEAD - 12}" rx="5"/><text class="role" x="{x:.0f}" y="22">'
                   f'{escape(_fit(label, COL_W - 16, 7.5))}</text><text class="addr" x="{x:.0f}" y="37">'
                   f'{escape(_fit(note, COL_W - 16, 5.6))}</text><title>{escape(label)} {escape(note)}</title></g>')
    out.append("</g></svg>")
    return "".join(out)


def _row_svg(row: Row, k: int, xs: dict[str, float], y: float, svg_id: str, t0: float) -> str:
    x1, x2 = xs[row.src], xs[row.dst]
    verdict = row.verdict
    step = " ".join(row.steps)
    attrs = (f'class="{row.kind}" data-step="{escape(step)}" data-verdict="{escape(verdict)}" data-key="{k}"'
             + (f' data-frame="{row.frame}"' if row.frame is not None else "") + ' tabindex="0"')
    parts = [f"<g {attrs}>"]
    left = f"{row.time - t0:+.3f}" + (f"  #{row.frame}" if row.frame is not None and row.kind == "msg" else "")
    if verdict in ("fail", "inconclusive"):
        parts.append(f'<rect class="band" x="0" y="{y - PITCH + 4}" width="{LEFT + COL_W * len(xs) + RIGHT}" '
                     f'height="{PITCH}"/>')
    parts.append(f'<rect class="hit" x="0" y="{y - PITCH + 4}" width="{LEFT + COL_W * len(xs) + RIGHT}" '
                 f'height="{PITCH}"/>')
    parts.append(f'<text class="time" x="8" y="{y - 2}">{escape(left)}</text>')
    marker = f"url(#{svg_id}-arrow-{verdict or 'none'})"
    cls = "arrow" + (" dashed" if row.dashed else "") + (" media" if row.kind == "rtp" else "")
    if x1 == x2:   # both ends in one column (an address that serves two roles): a small loop
        parts.append(f'<path class="{cls}" d="M{x1:.0f},{y - 9} h26 v8 h-24" marker-end="{marker}" fill="none"/>')
        lx, span = x1 + 30, COL_W - 34
        anchor = "start"
    else:
        d = 1 if x2 > x1 else -1
        parts.append(f'<line class="{cls}" x1="{x1 + 3 * d:.0f}" y1="{y}" x2="{x2 - 3 * d:.0f}" y2="{y}" '
                     f'marker-end="{marker}"/>')
        lx, span, anchor = (x1 + x2) / 2, abs(x2 - x1) - 12, "middle"
    parts.append(f'<text class="label" x="{lx:.0f}" y="{y - 5}" text-anchor="{anchor}">'
                 f"{escape(_fit(row.label, span))}</text>")
    if step:
        right = LEFT + COL_W * len(xs) + 8
        parts.append(f'<text class="step" x="{right}" y="{y - 2}">{escape(_fit(step, RIGHT - 10, 6.8))}</text>')
    summary = row.info.get("summary", row.label)
    parts.append(f"<title>{escape(summary)}{' [' + escape(step) + ' ' + escape(verdict) + ']' if step else ''}"
                 "</title></g>")
    return "".join(parts)


def ladder_data(ladder: Ladder) -> dict[str, Any]:
    return {"rows": [dict(r.info, kind=r.kind, verdict=r.verdict) for r in ladder.rows], "checks": ladder.checks}
