"""Self-contained HTML pages: the ladder of a capture, and the run report (verdict table, ladder,
links to the capture files). Inline SVG, CSS and script; no external URL, so the file opens
anywhere, offline, as an attachment to a bug report.

    render_ladder_html(analysis) -> str
    render_report_html(analysis, pcap=..., annotated=..., verdict_json=...) -> str
    write_run_report(analysis, out, pcap, verdict_json) -> RunReport   (report.html + annotated pcapng)

Every piece of capture text reaches the page either HTML-escaped or inside a JSON blob whose `<`,
`>` and `&` are \\u-escaped, and the details panel fills itself with textContent only: a header
value such as `</script><b>` stays text.

A capture with several A.2.1 instances gets one ladder section per instance, the failing ones
first, at most MAX_INSTANCES of them (a note says how many were left out).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from urllib.parse import quote

from harness.report.html_ladder import Ladder, build_ladder, ladder_data, render_svg
from harness.report.table import step_reason
from harness.verify.engine import Analysis, CaptureAnalysis
from harness.verify.verdict import FlowResult

MAX_INSTANCES = 12

CSS = """
:root { --pass:#2e7d32; --fail:#c62828; --inconclusive:#b26a00; --warn:#8d6e00; --none:#8a8a8a; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d1d1d;
       background: #fafafa; }
header.page { padding: 12px 20px; background: #263238; color: #fff; }
header.page h1 { margin: 0 0 4px; font-size: 20px; }
header.page .meta { font-size: 12px; color: #cfd8dc; word-break: break-all; }
main { padding: 12px 20px 40px; }
h2 { font-size: 17px; margin: 22px 0 8px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-weight: 600;
         font-size: 12px; text-transform: uppercase; background: var(--none); }
.badge.pass { background: var(--pass); } .badge.fail { background: var(--fail); }
.badge.inconclusive { background: var(--inconclusive); } .badge.warn { background: var(--warn); }
table.verdicts { border-collapse: collapse; background: #fff; width: 100%; }
table.verdicts th, table.verdicts td { border: 1px solid #ddd; padding: 4px 8px; text-align: left;
                                       vertical-align: top; font-size: 13px; }
table.verdicts th { background: #eceff1; }
table.verdicts td.reason { max-width: 700px; }
table.verdicts details summary { cursor: pointer; color: #455a64; }
table.verdicts ul { margin: 4px 0; padding-left: 18px; }
ul.links li, ul.notes li { margin: 2px 0; word-break: break-all; }
.legend span { margin-right: 14px; font-size: 12px; }
.legend i { display: inline-block; width: 22px; height: 3px; vertical-align: middle; margin-right: 4px; }
section.ladder-section { margin-top: 10px; }
.ladder-wrap { display: flex; gap: 10px; align-items: stretch; }
.ladder-box { flex: 1 1 auto; overflow: auto; max-height: 82vh; background: #fff; border: 1px solid #ccc; }
aside.details { flex: 0 0 380px; max-height: 82vh; overflow: auto; background: #fff; border: 1px solid #ccc;
                padding: 8px 10px; font-size: 13px; }
aside.details h3 { font-size: 14px; margin: 0 0 6px; }
aside.details pre { white-space: pre-wrap; word-break: break-all; font: 12px/1.35 ui-monospace, Menlo,
                    Consolas, monospace; background: #f5f5f5; padding: 6px; border: 1px solid #e0e0e0; }
aside.details ul { padding-left: 18px; margin: 4px 0; }
aside.details li.fail { color: var(--fail); } aside.details li.inconclusive { color: var(--inconclusive); }
aside.details li.warn { color: var(--warn); }
svg.ladder { display: block; font: 11px ui-monospace, Menlo, Consolas, monospace; }
svg.ladder .life { stroke: #b0bec5; stroke-width: 1; stroke-dasharray: 3 3; }
svg.ladder .head-bg { fill: #fff; opacity: .96; }
svg.ladder g.col rect { fill: #eceff1; stroke: #90a4ae; }
svg.ladder g.col .role { font: 600 13px system-ui, sans-serif; text-anchor: middle; fill: #263238; }
svg.ladder g.col .addr { font-size: 9.5px; text-anchor: middle; fill: #546e7a; }
svg.ladder .gutter { fill: #78909c; font-size: 10px; }
svg.ladder .time { fill: #607d8b; font-size: 10.5px; }
svg.ladder .label { fill: #212121; }
svg.ladder .step { font-weight: 600; }
svg.ladder .arrow { stroke-width: 1.6; fill: none; }
svg.ladder .arrow.dashed { stroke-dasharray: 5 3; }
svg.ladder .arrow.media { stroke-width: 4; stroke-dasharray: 2 3; opacity: .75; }
svg.ladder .hit { fill: transparent; }
svg.ladder .band { fill: #fdecea; }
svg.ladder g[data-verdict="inconclusive"] .band { fill: #fff4e0; }
svg.ladder g.msg, svg.ladder g.rtp, svg.ladder g.internal { cursor: pointer; }
svg.ladder g:hover .hit, svg.ladder g:focus .hit { fill: #e3f2fd; }
svg.ladder g.sel .hit { fill: #bbdefb; }
svg.ladder g[data-verdict="pass"] .arrow, svg.ladder .arrowhead.pass { stroke: var(--pass); fill: var(--pass); }
svg.ladder g[data-verdict="fail"] .arrow, svg.ladder .arrowhead.fail { stroke: var(--fail); fill: var(--fail); }
svg.ladder g[data-verdict="inconclusive"] .arrow, svg.ladder .arrowhead.inconclusive
  { stroke: var(--inconclusive); fill: var(--inconclusive); }
svg.ladder g[data-verdict="warn"] .arrow, svg.ladder .arrowhead.warn { stroke: var(--warn); fill: var(--warn); }
svg.ladder g[data-verdict=""] .arrow, svg.ladder .arrowhead.none { stroke: var(--none); fill: var(--none); }
svg.ladder g[data-verdict="pass"] .step { fill: var(--pass); }
svg.ladder g[data-verdict="fail"] .step { fill: var(--fail); }
svg.ladder g[data-verdict="inconclusive"] .step { fill: var(--inconclusive); }
svg.ladder g.arrow path, svg.ladder .arrow { fill: none; }
svg.ladder .arrowhead path { stroke: none; }
"""

# The details panel: click an arrow (or open the page at #frame=N) to see the message and the
# checks that used its frame. Text is only ever set through textContent.
SCRIPT = r"""
(function () {
  "use strict";
  var DATA = {};
  function dataOf(svg) {
    if (!DATA[svg.id]) { DATA[svg.id] = JSON.parse(document.getElementById(svg.getAttribute("data-src")).textContent); }
    return DATA[svg.id];
  }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  }
  function fmt(t) { return (t >= 0 ? "+" : "") + Number(t).toFixed(3) + " s"; }
  function show(svg, g) {
    var d = dataOf(svg), row = d.rows[Number(g.getAttribute("data-key"))];
    var panel = document.getElementById(svg.getAttribute("data-panel"));
    document.querySelectorAll("svg.ladder g.sel").forEach(function (x) { x.classList.remove("sel"); });
    g.classList.add("sel");
    panel.textContent = "";
    var head = row.kind === "msg" ? "#" + row.frame + "  " + fmt(row.t) + "  " + row.src + " → " + row.dst
             : row.kind === "rtp" ? "RTP " + row.src + " → " + row.dst + "  " + fmt(row.t) + " … " + fmt(row.until)
             : "step " + row.step + "  " + row.src + " → " + row.dst;
    panel.appendChild(el("h3", head));
    panel.appendChild(el("div", row.summary));
    if (row.from) { panel.appendChild(el("div", row.from + " → " + row.to + " (" + row.transport + ")")); }
    if (row.retransmission) { panel.appendChild(el("div", "retransmission (the same message again on this hop)")); }
    var step = el("div");
    if (row.step) {
      step.appendChild(el("b", "step " + row.step + " "));
      var b = el("span", row.verdict || "-", "badge " + (row.verdict || ""));
      step.appendChild(b);
      if (row.title) { step.appendChild(el("div", row.title)); }
    } else {
      step.appendChild(el("i", row.note || "bound to no step"));
    }
    panel.appendChild(step);
    if (row.kind === "rtp") {
      panel.appendChild(el("div", row.packets + " packets, SSRC " + row.ssrc.join(", ") + ", PT " + row.pt.join("/") +
                                  ", frames " + row.frames[0] + "–" + row.frames[1]));
      var ul0 = el("ul"); row.streams.forEach(function (s) { ul0.appendChild(el("li", s)); }); panel.appendChild(ul0);
      if (row.used_frames.length) { panel.appendChild(el("div", "frames the checks used: " + row.used_frames.join(", "))); }
    }
    panel.appendChild(el("h3", "checks that used " + (row.kind === "internal" ? "this step" : "it") +
                               " (" + row.checks.length + ")"));
    var ul = el("ul", null, "checks");
    row.checks.forEach(function (k) {
      var c = d.checks[k];
      ul.appendChild(el("li", "[" + c[0] + "] " + c[1] + " " + c[2] + " (" + c[3] + "): " + c[4], c[2]));
    });
    if (!row.checks.length) { ul.appendChild(el("li", "none")); }
    panel.appendChild(ul);
    if (row.text) { panel.appendChild(el("h3", "message")); panel.appendChild(el("pre", row.text, "raw")); }
  }
  function findFrame(frame) {
    var g = document.querySelector('svg.ladder g.msg[data-frame="' + frame + '"]');
    if (g) { return g; }
    var svgs = document.querySelectorAll("svg.ladder");
    for (var i = 0; i < svgs.length; i++) {
      var rows = dataOf(svgs[i]).rows;
      for (var k = 0; k < rows.length; k++) {
        var r = rows[k];
        if (r.kind === "rtp" && r.frames[0] <= frame && frame <= r.frames[1]) {
          return svgs[i].querySelector('g[data-key="' + k + '"]');
        }
      }
    }
    return null;
  }
  function fromHash() {
    var m = /^#frame=(\d+)$/.exec(location.hash);
    if (!m) { return; }
    var g = findFrame(Number(m[1]));
    if (g) { show(g.ownerSVGElement, g); reveal(g); }
  }
  function reveal(g) {   // the ladder box to the top of the window, the row to the middle of the box
    var svg = g.ownerSVGElement, box = svg.parentNode;
    var y = Number(svg.getAttribute("data-head")) + Number(svg.getAttribute("data-pitch")) *
            (Number(g.getAttribute("data-key")) + 1);
    box.scrollTop = Math.max(0, y - box.clientHeight / 2);
    window.scrollTo(0, box.getBoundingClientRect().top + window.pageYOffset - 8);
  }
  document.querySelectorAll("svg.ladder").forEach(function (svg) {
    svg.addEventListener("click", function (ev) {
      var g = ev.target.closest("g.msg, g.rtp, g.internal");
      if (!g) { return; }
      show(svg, g);
      if (g.hasAttribute("data-frame") && history.replaceState) {
        history.replaceState(null, "", "#frame=" + g.getAttribute("data-frame"));
      }
    });
    svg.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" && ev.target.closest) {
        var g = ev.target.closest("g.msg, g.rtp, g.internal");
        if (g) { show(svg, g); }
      }
    });
    var box = svg.parentNode, head = svg.querySelector("g.ladder-head");
    box.addEventListener("scroll", function () {   // column headers stay in view
      head.setAttribute("transform", "translate(0," + box.scrollTop + ")");
    });
  });
  window.addEventListener("hashchange", fromHash);
  fromHash();
  document.documentElement.setAttribute("data-ready", "1");
})();
"""

LEGEND = ('<div class="legend"><span><i style="background:var(--pass)"></i>step passed</span>'
          '<span><i style="background:var(--fail)"></i>step failed</span>'
          '<span><i style="background:var(--inconclusive)"></i>inconclusive</span>'
          '<span><i style="background:var(--none)"></i>no step</span>'
          "<span>dashed: retransmission or a step off the wire · thick dotted: RTP summed per phase · "
          "click an arrow for the message and its checks</span></div>")


def _json_blob(data: object, blob_id: str) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{escape(blob_id)}">{text}</script>'


def _page(title: str, header: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f'<header class="page">{header}</header><main>{body}</main>'
            f"<script>{SCRIPT}</script></body></html>\n")


def _badge(verdict: str) -> str:
    return f'<span class="badge {escape(verdict)}">{escape(verdict or "-")}</span>'


def _instances(analysis: Analysis | CaptureAnalysis) -> tuple[list[Analysis], list[str]]:
    """The instances to draw (failing first) and a note on those left out."""
    if isinstance(analysis, Analysis):
        return [analysis], []
    order = sorted(analysis.analyses, key=lambda a: (a.result.verdict == "pass", _index(a)))
    drawn = sorted(order[:MAX_INSTANCES], key=_index)
    notes = []
    if len(order) > MAX_INSTANCES:
        notes.append(f"ladders of {MAX_INSTANCES} of {len(order)} instances drawn (those that did not pass first); "
                     "the verdict table covers them all")
    return drawn, notes


def _index(a: Analysis) -> int:
    return int((a.result.instance or {}).get("index") or 0)


def _ladder_sections(analysis: Analysis | CaptureAnalysis) -> str:
    drawn, notes = _instances(analysis)
    parts = [LEGEND]
    parts += [f'<p class="note">{escape(n)}</p>' for n in notes]
    many = isinstance(analysis, CaptureAnalysis)
    for n, one in enumerate(drawn, start=1):
        suffix = "" if n == 1 else f"-{n}"
        ladder = build_ladder(one)
        title = ""
        if many:
            info = one.result.instance or {}
            title = (f"<h3>instance #{escape(str(info.get('index')))} {_badge(one.result.verdict)} "
                     f"{escape(str(info.get('conference') or ''))}</h3>")
        parts.append(_section(ladder, f"ladder{suffix}", title))
    return "".join(parts)


def _section(ladder: Ladder, svg_id: str, title: str) -> str:
    data_id, panel_id = f"{svg_id}-data", f"{svg_id}-details"
    svg = render_svg(ladder, svg_id, data_id, panel_id)
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in ladder.notes)
    counts = (f"{sum(r.kind == 'msg' for r in ladder.rows)} SIP messages, "
              f"{sum(r.info.get('packets', 0) for r in ladder.rows)} RTP packets in "
              f"{sum(r.kind == 'rtp' for r in ladder.rows)} summaries, {len(ladder.columns)} columns")
    return (f'<section class="ladder-section">{title}<p class="counts">{escape(counts)}</p>{notes}'
            f'<div class="ladder-wrap"><div class="ladder-box">{svg}</div>'
            f'<aside class="details" id="{panel_id}"><h3>details</h3><p>Click an arrow to see the message '
            f"text and the checks that used it.</p></aside></div>{_json_blob(ladder_data(ladder), data_id)}</section>")


def _header(analysis: Analysis | CaptureAnalysis, what: str) -> str:
    result = analysis.result
    verdict = result.verdict
    return (f"<h1>{escape(result.flow)} {escape(what)} {_badge(verdict)}</h1>"
            f'<div class="meta">capture: {escape(str(result.capture))}</div>')


def _roles(result: FlowResult) -> str:
    if not result.roles:
        return ""
    rows = "".join(f"<tr><td>{escape(r)}</td><td>{escape(a)}</td></tr>" for r, a in result.roles.items())
    return f'<h2>Roles</h2><table class="verdicts"><tr><th>role</th><th>address</th></tr>{rows}</table>'


def render_ladder_html(analysis: Analysis | CaptureAnalysis) -> str:
    """One self-contained page: the ladder (one per instance) with its details panel."""
    body = _ladder_sections(analysis)
    if isinstance(analysis, Analysis):
        body = _notes(analysis.result.notes) + body
    return _page(f"{analysis.result.flow} ladder", _header(analysis, "ladder"), body)


def _notes(notes: list[str]) -> str:
    if not notes:
        return ""
    return "<h2>Notes</h2><ul class=\"notes\">" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>"


def _frame_links(frames: list[int], limit: int = 12) -> str:
    unique = sorted(set(frames))
    shown = [f'<a href="#frame={f}">{f}</a>' for f in unique[:limit]]
    more = len(unique) - limit
    return ", ".join(shown) + (f" … (+{more})" if more > 0 else "")


def _verdict_table(result: FlowResult) -> str:
    if result.different_flow:
        return f"<p><b>different flow:</b> {escape(result.different_flow)}</p>"
    rows = []
    for step in result.steps:
        reason = step_reason(step) or "; ".join(step.notes)
        frames = [f for c in step.checks if c.verdict in ("fail", "inconclusive", "warn") for f in c.frames] or \
            [f for c in step.checks for f in c.frames]
        checks = "".join(
            f'<li class="{escape(c.verdict)}">{escape(c.id)} {_badge(c.verdict)} ({escape(c.level)}) '
            f"{escape(c.detail)}{' — frames ' + _frame_links(c.frames) if c.frames else ''}</li>"
            for c in step.checks)
        rows.append(f'<tr data-step="{escape(step.step)}" data-verdict="{escape(step.verdict)}">'
                    f"<td>{escape(step.step)}</td><td>{_badge(step.verdict)}</td>"
                    f'<td class="reason">{escape(reason)}<details><summary>{len(step.checks)} checks · '
                    f"{escape(step.title)}</summary><ul>{checks}</ul></details></td>"
                    f"<td>{_frame_links(frames)}</td></tr>")
    return ('<table class="verdicts"><tr><th>step</th><th>verdict</th><th>reason</th><th>frames</th></tr>'
            + "".join(rows) + "</table>")


def _href(path: Path, base: Path | None) -> str:
    target = os.path.relpath(path, base) if base is not None else path.name
    return quote(str(target).replace(os.sep, "/"))


def render_report_html(analysis: Analysis | CaptureAnalysis, *, pcap: Path, annotated: Path | None,
                       verdict_json: Path | None, base: Path | None = None) -> str:
    """The run report: verdict table(s) with reasons and frame links, the ladder, the files.

    Links are relative: to `base` (the report's directory) when given, else by file name, for a
    report written next to its capture."""
    links = [f'<li><a href="{_href(pcap, base)}">{escape(pcap.name)}</a> — the capture (pcapng)</li>']
    if annotated is not None:
        links.append(f'<li><a href="{_href(annotated, base)}">{escape(annotated.name)}</a> — the capture with '
                     "a comment naming step and verdict on every SIP frame (Wireshark: frame.comment)</li>")
    if verdict_json is not None:
        links.append(f'<li><a href="{_href(verdict_json, base)}">{escape(verdict_json.name)}</a> — the verdict '
                     "as JSON</li>")
    body = [f'<h2>Files</h2><ul class="links">{"".join(links)}</ul>']
    result = analysis.result
    if isinstance(analysis, CaptureAnalysis):
        s = result.summary()  # type: ignore[union-attr]
        body.append(f"<h2>Instances</h2><p>{s['instances']} instances: {s['pass']} pass, {s['fail']} fail, "
                    f"{s['inconclusive']} inconclusive</p>")
        rows = []
        for r in result.instances:  # type: ignore[union-attr]
            info = r.instance or {}
            failed = [st for st in r.steps if st.verdict != "pass"]
            reason = f"[{failed[0].step}] {step_reason(failed[0])}" if failed else ""
            rows.append(f"<tr><td>{escape(str(info.get('index')))}</td><td>{_badge(r.verdict)}</td>"
                        f"<td>{escape(str(info.get('conference') or '-'))}</td>"
                        f"<td>{escape(r.different_flow or reason)}</td></tr>")
        body.append('<table class="verdicts"><tr><th>#</th><th>verdict</th><th>conference</th><th>reason</th></tr>'
                    + "".join(rows) + "</table>")
        drawn, _ = _instances(analysis)
        for one in drawn:
            if one.result.verdict != "pass":
                body.append(f"<h2>Instance #{escape(str((one.result.instance or {}).get('index')))}</h2>"
                            + _verdict_table(one.result))
        body.append(_notes(result.notes))
    else:
        body.append("<h2>Verdict per step</h2>" + _verdict_table(result))  # type: ignore[arg-type]
    body.append("<h2>Ladder</h2>" + _ladder_sections(analysis))
    if isinstance(analysis, Analysis):
        body.append(_roles(analysis.result) + _notes(analysis.result.notes))
    return _page(f"{result.flow} report: {result.verdict}", _header(analysis, "report"), "".join(body))


@dataclass
class RunReport:
    """What write_run_report left next to the capture; problems say what could not be written."""

    report: Path | None = None
    annotated: Path | None = None
    problems: list[str] = field(default_factory=list)


def write_run_report(analysis: Analysis | CaptureAnalysis, out: Path, pcap: Path,
                     verdict_json: Path | None) -> RunReport:
    """Write OUT/<capture stem>.annotated.pcapng and OUT/report.html. Never raises: what could not
    be written is a problem line (the verdict stands without its report)."""
    from harness.report.annotate import annotate

    done = RunReport()
    annotated = out / f"{pcap.name.removesuffix('.pcapng').removesuffix('.pcap')}.annotated.pcapng"
    try:
        annotate(analysis, pcap, annotated)
        done.annotated = annotated
    except (OSError, ValueError) as exc:
        done.problems.append(f"annotated capture not written to {annotated}: {_why(exc)}")
        _remove(annotated)
    report = out / "report.html"
    try:
        text = render_report_html(analysis, pcap=pcap, annotated=done.annotated,
                                  verdict_json=verdict_json if verdict_json is not None and verdict_json.exists()
                                  else None, base=out)
        report.write_text(text, encoding="utf-8")
        done.report = report
    except Exception as exc:  # a report bug or a full disk must not cost the run its verdict
        done.problems.append(f"report not written to {report}: {_why(exc)}")
        _remove(report)
    return done


def _remove(path: Path) -> None:
    """A half-written file would look like a whole one to whoever opens it later."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"
