"""A large capture read by two tshark processes side by side (each fed half of the frames through a
FIFO) gives exactly what one tshark over the whole file gives, payloads read from the file give
the bytes tshark prints, and captures that cannot be split are read whole (issue #3 point 8)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from harness.flows.a2_1.steps import FLOW
from harness.report.json import render_json
from harness.verify import reader
from harness.verify.engine import analyse
from harness.verify.pcapindex import CaptureIndex
from testcases.data import make_a21_pcap
from testcases.data.make_a21_pcap import write_many

INSTANCES = 12   # ~3,600 frames: small enough for a unit test, the thresholds are lowered below


@pytest.fixture(scope="module")
def load_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_many(tmp_path_factory.mktemp("split") / "many.pcap", INSTANCES)


def _read(path: Path, monkeypatch: pytest.MonkeyPatch, *, parts: int, index: bool):
    monkeypatch.setattr(reader, "MAX_PARTS", parts)
    monkeypatch.setattr(reader, "SPLIT_MIN_FRAMES", 100)
    monkeypatch.setattr(reader, "INDEX_MIN_BYTES", 0 if index else 1 << 62)
    return reader.read_capture(path)


def _shape(data) -> tuple:  # noqa: ANN001
    messages = [(m.frame, m.index, m.time, m.src, m.sport, m.dst, m.dport, m.raw) for m in data.messages]
    rtp = [(p.frame, p.time, p.src, p.sport, p.dst, p.dport, p.ssrc, p.pt, p.seq, p.timestamp, p.marker, p.payload)
           for p in data.rtp]
    rtcp = [(q.frame, q.src, q.dst, q.pt) for q in data.rtcp]
    by_addr = {k: [p.frame for p in v] for k, v in (data.rtp_by_addr or {}).items()}
    return messages, rtp, rtcp, by_addr, data.frames, data.notes


def test_split_read_equals_whole_read(load_capture: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = _read(load_capture, monkeypatch, parts=1, index=False)      # tshark prints the payloads
    assert whole.rtp and all(p.source is None and p.payload for p in whole.rtp)
    split = _read(load_capture, monkeypatch, parts=2, index=True)       # two tsharks, payloads from the file
    assert split.rtp and all(p.source is not None for p in split.rtp)
    assert _shape(split) == _shape(whole)
    three = _read(load_capture, monkeypatch, parts=3, index=True)
    assert _shape(three) == _shape(whole)


def test_split_read_gives_the_same_verdicts(load_capture: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def verdicts(parts: int, index: bool) -> dict:
        monkeypatch.setattr(reader, "MAX_PARTS", parts)
        monkeypatch.setattr(reader, "SPLIT_MIN_FRAMES", 100)
        monkeypatch.setattr(reader, "INDEX_MIN_BYTES", 0 if index else 1 << 62)
        return json.loads(render_json(analyse(load_capture, FLOW, evidence=False).result))

    whole, split = verdicts(1, False), verdicts(2, True)
    assert whole["summary"]["instances"] == INSTANCES and whole["summary"]["pass"] == INSTANCES
    assert split == whole


def test_split_happens_only_when_every_frame_stands_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TCP needs stream reassembly across frames: such a capture is read by one tshark."""
    tcp = write_many(tmp_path / "tcp.pcapng", 3, transport="TCP")
    index = CaptureIndex.build(tcp)
    assert index is not None and not index.splittable and "TCP" in (index.why_not or "")
    index.close()
    started: list[int] = []
    original = reader._split_pass
    monkeypatch.setattr(reader, "_split_pass", lambda *a: started.append(1) or original(*a))
    data = _read(tcp, monkeypatch, parts=2, index=True)
    assert not started and data.messages
    udp = write_many(tmp_path / "udp.pcapng", 3)
    _read(udp, monkeypatch, parts=2, index=True)
    assert started == [1]


def test_tshark_failing_on_a_part_is_a_clear_error(load_capture: Path, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    """A part tshark cannot read (here: its file header destroyed) fails the read with tshark's own
    words, and nothing is left running (the feeders and tsharks are stopped in `finally`)."""
    index = CaptureIndex.build(load_capture)
    assert index is not None
    original = CaptureIndex.records_of

    def broken(self: CaptureIndex, frames):  # noqa: ANN001, ANN202
        pieces = original(self, frames)
        if frames[0]:
            next(pieces)
            yield b"\0" * 24   # not a capture file header
        yield from pieces

    monkeypatch.setattr(CaptureIndex, "records_of", broken)
    with pytest.raises(reader.BadInput) as info:
        _read(load_capture, monkeypatch, parts=2, index=True)
    assert str(load_capture) in info.value.reason
    index.close()


def test_split_read_finds_rtp_on_low_ports_an_sdp_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Media on a port below 1024 is RTP when an SDP names that port (tshark follows the SDP, RFC 4566
    §5.14); the split read, which skips well-known ports in its scan, must find it too."""
    nth = make_a21_pcap.Ident.nth

    def low_mrfp(k: int) -> make_a21_pcap.Ident:
        ident = nth(k)
        base = 900 + 6 * k if k < 3 else ident.mrfp_ports[0]
        return dataclasses.replace(ident, mrfp_ports=(base, base + 2, base + 4))

    monkeypatch.setattr(make_a21_pcap.Ident, "nth", staticmethod(low_mrfp))
    path = write_many(tmp_path / "low.pcap", 6)
    whole = _read(path, monkeypatch, parts=1, index=False)
    assert any(p.sport < 1024 or p.dport < 1024 for p in whole.rtp)   # what tshark decodes
    split = _read(path, monkeypatch, parts=2, index=True)
    assert _shape(split) == _shape(whole)
