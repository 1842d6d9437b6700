"""The HTML ladder and run report (harness/report/html.py), without a browser: the markup contract
(one g.msg per SIP message copy, one g.col per role, step and verdict on the right arrows), that
the page is self-contained and that capture text cannot break out of it. The counts come from
tshark on the same capture, not from the verifier the page is drawn from."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from harness.report import html as report_html
from harness.report.html import render_ladder_html, render_report_html, write_run_report
from harness.verify import analyse_capture
from testcases.data.make_a21_pcap import build, write, write_many, write_packets

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")

THIRDPARTY = Path(__file__).resolve().parents[1] / "data" / "thirdparty"
COLUMNS = ["UE-1", "P-CSCF", "S-CSCF", "CS", "MRFP", "UE-2", "UE-3"]
STEP_IDS = ["1", "2", "3~11", "12~14", "15", "16~21", "22~27", "28~33", "34~35", "36", "37~40", "41~46",
            "47~52", "53~58", "59~64", "65~66", "67", "68~71", "72~77", "78~83"]


class Page(HTMLParser):
    """Every element's tag and attributes, the text of each <script>, the <svg> ids."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[tuple[dict[str, str], str]] = []
        self._script: dict[str, str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.elements.append((tag, a))
        if tag == "script":
            self._script = a
            self.scripts.append((a, ""))

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            a, text = self.scripts[-1]
            self.scripts[-1] = (a, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None

    def groups(self, cls: str) -> list[dict[str, str]]:
        return [a for tag, a in self.elements if tag == "g" and cls in a.get("class", "").split()]

    def blob(self, blob_id: str) -> dict:
        return json.loads(next(text for a, text in self.scripts if a.get("id") == blob_id))


def sip_messages(path: Path) -> dict[int, tuple[str, str]]:
    """frame -> (method or status, CSeq method) for every SIP frame, by tshark."""
    out = subprocess.run(["tshark", "-r", str(path), "-Y", "sip", "-T", "fields", "-E", "separator=\t",
                          "-e", "frame.number", "-e", "sip.Method", "-e", "sip.Status-Code", "-e", "sip.CSeq.method"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    rows = {}
    for line in out.splitlines():
        number, method, status, cseq = (line.split("\t") + ["", "", "", ""])[:4]
        rows[int(number)] = (method or status, cseq)
    return rows


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Page]:
    pcap = write(tmp_path_factory.mktemp("golden") / "a21.pcap")
    return pcap, Page(render_ladder_html(analyse_capture(pcap)))


def test_one_arrow_per_sip_message_and_one_column_per_role(golden) -> None:
    pcap, page = golden
    sip = sip_messages(pcap)
    msgs = page.groups("msg")
    assert len(msgs) == len(sip) > 90
    assert sorted(int(g["data-frame"]) for g in msgs) == sorted(sip)   # UDP: one message per frame
    assert [g["data-role"] for g in page.groups("col")] == COLUMNS
    assert [a.get("id") for tag, a in page.elements if tag == "svg"] == ["ladder"]


def test_every_step_is_on_the_arrows_of_its_messages(golden) -> None:
    pcap, page = golden
    sip = sip_messages(pcap)
    steps = {s for cls in ("msg", "rtp", "internal") for g in page.groups(cls) for s in g["data-step"].split()}
    assert steps == set(STEP_IDS)
    by_frame = {int(g["data-frame"]): g["data-step"] for g in page.groups("msg")}
    for frame, (what, cseq) in sip.items():
        step = by_frame[frame]
        if cseq == "REFER":
            assert step in ("22~27", "53~58"), (frame, what)
        elif cseq == "BYE":
            assert step in ("47~52", "78~83"), (frame, what)
        elif cseq == "NOTIFY" and step:   # an intermediate NOTIFY may be bound to no step
            assert step in ("28~33", "41~46", "59~64", "72~77"), (frame, what)
    # off-the-wire steps are drawn CS -> MRFP
    internal = page.groups("internal")
    assert sorted(g["data-step"] for g in internal) == ["15", "36", "67"]
    assert all(g["data-verdict"] == "pass" for g in page.groups("msg") if g["data-step"])
    assert {g["data-verdict"] for g in page.groups("msg") if not g["data-step"]} <= {""}
    rtp = page.groups("rtp")
    assert rtp and len(rtp) < 60   # summarised per phase, not one arrow per packet


def test_a_failing_step_colours_its_arrows(tmp_path: Path) -> None:
    pcap = write(tmp_path / "m.pcap", mutations=("two-refer-to",))
    page = Page(render_ladder_html(analyse_capture(pcap)))
    msgs = page.groups("msg")
    refer = [g for g in msgs if g["data-step"] == "22~27"]
    assert refer and {g["data-verdict"] for g in refer} == {"fail"}
    assert {g["data-verdict"] for g in msgs if g["data-step"] == "53~58"} == {"pass"}
    data = page.blob("ladder-data")
    row = data["rows"][int(refer[0]["data-key"])]
    used = [data["checks"][k] for k in row["checks"]]
    assert any(c[1] == "REF-1" and c[2] == "fail" for c in used)   # the checks that used this frame
    assert "REFER sip:" in row["text"]


def test_report_has_the_verdict_table_and_relative_links(tmp_path: Path) -> None:
    pcap = write(tmp_path / "m.pcapng", mutations=("notify-no-event",))
    analysis = analyse_capture(pcap)
    done = write_run_report(analysis, tmp_path, pcap, None)
    assert done.problems == [] and done.report == tmp_path / "report.html"
    assert done.annotated == tmp_path / "m.annotated.pcapng" and done.annotated.stat().st_size > pcap.stat().st_size
    page = Page(done.report.read_text())
    rows = {a["data-step"]: a["data-verdict"] for tag, a in page.elements if tag == "tr" and "data-step" in a}
    assert list(rows) == STEP_IDS and rows["28~33"] == "fail" and rows["1"] == "pass"
    hrefs = [a["href"] for tag, a in page.elements if tag == "a"]
    assert "m.pcapng" in hrefs and "m.annotated.pcapng" in hrefs
    assert all((tmp_path / h).exists() for h in hrefs if not h.startswith("#"))
    assert any(h.startswith("#frame=") for h in hrefs)


def test_page_is_self_contained(golden, tmp_path: Path) -> None:
    _, page = golden
    report = Page(render_report_html(analyse_capture(golden[0]), pcap=golden[0], annotated=None, verdict_json=None))
    for p in (page, report):
        for tag, a in p.elements:
            for attr in ("src", "href", "xlink:href", "action"):
                value = a.get(attr, "")
                assert not re.match(r"^\s*(https?:)?//", value), (tag, attr, value)
            assert tag not in ("link", "iframe", "img", "object", "embed")


def _hostile(pkts: list[tuple[float, bytes]], header: bytes) -> list[tuple[float, bytes]]:
    """Insert a header line after the start line of the first SIP message."""
    out = []
    done = False
    for t, data in pkts:
        frame = Ether(data)
        if not done and frame.haslayer(UDP) and frame[UDP].dport == 5060:
            load = bytes(frame[UDP].payload)
            head, _, rest = load.partition(b"\r\n")
            ip = frame[IP]
            rebuilt = Ether(src=frame.src, dst=frame.dst) / IP(src=ip.src, dst=ip.dst) / \
                UDP(sport=frame[UDP].sport, dport=5060) / Raw(head + b"\r\n" + header + b"\r\n" + rest)
            out.append((t, bytes(rebuilt)))
            done = True
        else:
            out.append((t, data))
    assert done
    return out


def test_message_text_cannot_break_out_of_the_page(tmp_path: Path) -> None:
    evil = b"Subject: </script><b>pwned</b><script>alert(1)</script> & <svg onload=alert(2)>"
    pcap = write_packets(tmp_path / "evil.pcap", _hostile(build(), evil))
    text = render_ladder_html(analyse_capture(pcap))
    assert "<b>pwned" not in text and "</script><b>" not in text and "<svg onload" not in text
    page = Page(text)
    assert [a.get("id") for a, _ in page.scripts] == ["ladder-data", None]   # nothing new started
    rows = page.blob("ladder-data")["rows"]
    assert any(evil.decode() in r.get("text", "") for r in rows)   # the text itself is kept, as data


def test_many_instances_get_one_ladder_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pcap = write_many(tmp_path / "x3.pcapng", 3, mutations={1: ("two-refer-to",)})
    analysis = analyse_capture(pcap)
    page = Page(render_report_html(analysis, pcap=pcap, annotated=None, verdict_json=None))
    assert [a["id"] for tag, a in page.elements if tag == "svg"] == ["ladder", "ladder-2", "ladder-3"]
    assert len(page.groups("msg")) == len(sip_messages(pcap))
    assert len(page.groups("col")) == 3 * len(COLUMNS)
    monkeypatch.setattr(report_html, "MAX_INSTANCES", 1)
    text = render_ladder_html(analysis)
    one = Page(text)
    assert [a["id"] for tag, a in one.elements if tag == "svg"] == ["ladder"]
    assert "ladders of 1 of 3 instances drawn" in text
    assert "fail" in {g["data-verdict"] for g in one.groups("msg")}   # the failing instance comes first


@pytest.mark.parametrize("name", sorted(p.name for p in THIRDPARTY.glob("*.pcap")))
def test_foreign_captures_draw(name: str) -> None:
    pcap = THIRDPARTY / name
    page = Page(render_ladder_html(analyse_capture(pcap)))
    msgs = page.groups("msg")
    assert sorted(int(g["data-frame"]) for g in msgs) == sorted(sip_messages(pcap))
    roles = [g["data-role"] for g in page.groups("col")]
    assert len(roles) == len(set(roles)) >= 2 and "UE-1" in roles


def test_report_problems_are_notes_not_exceptions(tmp_path: Path) -> None:
    pcap = write(tmp_path / "a.pcap")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    done = write_run_report(analyse_capture(pcap), blocker, pcap, None)
    assert done.report is None and done.annotated is None
    assert len(done.problems) == 2 and all(str(blocker) in p for p in done.problems)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "ladder", *args], capture_output=True, text=True,
                          timeout=180)


def test_cli_ladder_writes_the_page(tmp_path: Path) -> None:
    pcap = write(tmp_path / "m.pcap", mutations=("two-refer-to",))
    out = tmp_path / "ladder.html"
    proc = _cli(str(pcap), "-o", str(out))
    assert proc.returncode == 0, proc.stderr   # written, even though the flow failed
    assert len(Page(out.read_text()).groups("msg")) == len(sip_messages(pcap))
    pinned = _cli(str(pcap), "-o", str(out), "--role", "UE-1=10.21.0.10:5060")
    assert pinned.returncode == 0, pinned.stderr


@pytest.mark.parametrize("content", [None, b"", b"not a capture\n" * 20])
def test_cli_ladder_bad_input_exits_2(tmp_path: Path, content: bytes | None) -> None:
    pcap = tmp_path / "in.pcap"
    if content is not None:
        pcap.write_bytes(content)
    out = tmp_path / "ladder.html"
    proc = _cli(str(pcap), "-o", str(out))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "in.pcap" in lines[0] and lines[0].startswith("error:")
    assert not out.exists()


def _sip_count(path: Path) -> int:
    """SIP messages by tshark, also several in one TCP segment (one CSeq each)."""
    out = subprocess.run(["tshark", "-r", str(path), "-Y", "sip", "-T", "fields", "-E", "aggregator=|",
                          "-e", "sip.CSeq.method"], capture_output=True, text=True, timeout=120, check=True).stdout
    return sum(len(line.split("|")) for line in out.splitlines() if line)


@pytest.mark.parametrize(("options", "columns"), [
    ({"ipv6": True}, COLUMNS),
    ({"transport": "TCP"}, COLUMNS),
    ({"proxies": False}, ["UE-1", "CS", "MRFP", "UE-2", "UE-3"]),
    ({"mutations": ("refer-to-focus-replaces",)}, None),     # another flow: drawn, no step bound
    ({"mutations": ("join-declined-603",)}, COLUMNS),
    ({"mutations": ("retransmissions",)}, COLUMNS),
])
def test_variants_draw_every_message(tmp_path: Path, options: dict, columns: list[str] | None) -> None:
    pcap = write(tmp_path / "v.pcap", **options)
    page = Page(render_ladder_html(analyse_capture(pcap)))
    msgs = page.groups("msg")
    assert len(msgs) == _sip_count(pcap)
    assert {int(g["data-frame"]) for g in msgs} <= set(sip_messages(pcap))
    roles = [g["data-role"] for g in page.groups("col")]
    if columns is not None:
        assert roles == columns
    else:
        assert {g["data-step"] for g in msgs} == {""} and len(roles) >= 3
    if options.get("mutations") == ("retransmissions",):
        rows = page.blob("ladder-data")["rows"]
        again = [r for r in rows if r.get("retransmission")]
        assert again and all(r["step"] for r in again)   # drawn (dashed) under the step of their message
