"""Wireshark-ready evidence: `verify --annotate OUT.pcapng` comments every SIP frame with its step
and verdict, and tshark reads the comments back."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.report.pcapng import read_packets, write_pcapng
from testcases.data.make_a21_pcap import write, write_many

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")


def _comments(path: Path) -> dict[int, str]:
    out = subprocess.run(["tshark", "-r", str(path), "-Y", "frame.comment", "-T", "fields", "-e", "frame.number",
                          "-e", "frame.comment"], capture_output=True, text=True, timeout=120, check=True).stdout
    return {int(n): c for n, _, c in (line.partition("\t") for line in out.splitlines() if line)}


def _sip_frames(path: Path) -> set[int]:
    out = subprocess.run(["tshark", "-r", str(path), "-Y", "sip", "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return {int(n) for n in out.split()}


def _annotate(capture: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "verify", str(capture), "--annotate", str(out)],
                          capture_output=True, text=True, timeout=180)


def test_every_sip_frame_names_its_step_and_verdict(tmp_path) -> None:
    capture = write(tmp_path / "m.pcap", mutations=("two-refer-to", "provisional-responses", "intermediate-notify"))
    out = tmp_path / "m-annotated.pcapng"
    proc = _annotate(capture, out)
    assert proc.returncode == 1 and "annotated" in proc.stderr
    comments = _comments(out)
    assert set(comments) == _sip_frames(out) == _sip_frames(capture)
    values = set(comments.values())
    assert "22~27 REFER UE-1→P-CSCF fail" in values and "22~27 202 REFER P-CSCF→UE-1 fail" in values
    assert "1 INVITE UE-1→P-CSCF pass" in values and "78~83 BYE S-CSCF→UE-3 pass" in values
    assert "1 100 INVITE UE-2→S-CSCF pass" in values                       # hop-local 100 Trying of step 1
    assert "no A.2.1 step: NOTIFY UE-3→S-CSCF (accepted extra message)" in values   # the 180 NOTIFY
    assert len(list(read_packets(out))) == len(list(read_packets(capture)))   # every frame copied


def test_retransmissions_and_instances_are_named(tmp_path) -> None:
    capture = write(tmp_path / "r.pcap", mutations=("retransmissions",))
    out = tmp_path / "r.pcapng"
    assert _annotate(capture, out).returncode == 0
    assert "53~58 REFER UE-1→P-CSCF pass (retransmission)" in set(_comments(out).values())
    many = write_many(tmp_path / "x3.pcapng", 3)
    out3 = tmp_path / "x3-annotated.pcapng"
    assert _annotate(many, out3).returncode == 0
    comments = _comments(out3)
    assert set(comments) == _sip_frames(many)
    assert {c.split(" ", 1)[0] for c in comments.values()} == {"#1", "#2", "#3"}


def test_pcapng_writer_keeps_packets_times_and_existing_comments(tmp_path) -> None:
    capture = write(tmp_path / "g.pcapng")
    packets = list(read_packets(capture))
    packets[0].comments = ["first"]
    out = tmp_path / "copy.pcapng"
    assert write_pcapng(out, packets) == len(packets)
    again = list(read_packets(out))
    assert [(p.data, p.ts_ns) for p in again] == [(p.data, p.ts_ns) for p in packets]
    assert again[0].comments == ["first"] and _comments(out) == {1: "first"}
