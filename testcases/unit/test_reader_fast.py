"""The verifier's fast paths give exactly what the plain paths give (issue #3 point 8, speed):
WireMessage.from_text vs from_bytes, the pipe drain, the cached tone analysis, the JSON text a
worker renders, and the contiguous chunks of parallel.map_indices."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from harness.rtp.g711 import PCMU, ulaw_decode, ulaw_encode
from harness.verify.media import SILENT_DBFS, goertzel_amplitude, samples_of, tone_levels
from harness.verify.parallel import map_indices
from harness.verify.reader import _Drain
from harness.verify.verdict import CheckResult, FlowResult, StepResult
from harness.verify.wire import WireMessage

WHERE = {"frame": 7, "index": 0, "time": 1.5, "src": "10.0.0.1", "sport": 5060, "dst": "10.0.0.2", "dport": 5060,
         "transport": "UDP"}

TEXTS = [
    # the common shape: CRLF, a body framed by Content-Length
    "INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nv: SIP/2.0/UDP p;branch=z9hG4bK2, "
    "SIP/2.0/UDP q;branch=z9hG4bK3\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\n"
    "Content-Type: application/sdp\r\nContent-Length: 27\r\n\r\nv=0\r\no=a 1 1 IN IP4 1.2.3.4\r\n",
    # a response with bare LFs, a compact Content-Length shorter than the body, trailing blanks
    "SIP/2.0 200 OK\nCall-ID: a \t\nl: 3\nCSeq: 2 BYE\n\nabcdef",
    # a CR inside a line (no header), a name with blanks before the colon, a folded line
    "X\r\nA:b\rc\r\nD :  e \r\n Folded\r\n\r\n",
    # two Content-Length lines: the first one that is a number counts
    "SIP/2.0 180 Ringing\r\ncontent-length : x\r\nContent-Length: 1\r\nContent-Length: 0\r\n\r\nab",
    # no header section end, no colon, an empty name, an empty value
    "OPTIONS sip:x SIP/2.0\r\nnocolon\r\n:empty\r\nK: \r\n",
    # not ASCII: the bytes path (invalid UTF-8 kept as surrogates by the reader)
    "OPTIONS sip:\u00e9@x SIP/2.0\r\nTo: \udcff<sip:b@x>\r\nContent-Length: 2\r\n\r\n\u00e9",
    # a start line that looks like a Content-Length header
    "l: 2\r\nVia: SIP/2.0/UDP h\r\n\r\nxyz",
    "", "\r\n", "bad",
]


@pytest.mark.parametrize("text", TEXTS)
def test_from_text_reads_exactly_what_from_bytes_reads(text: str) -> None:
    fast = WireMessage.from_text(text, **WHERE)
    slow = WireMessage.from_bytes(text.encode("utf-8", "surrogateescape"), **WHERE)
    assert fast.__dict__ == slow.__dict__
    assert (fast.msg.start_line, fast.parse_error) == (slow.msg.start_line, slow.parse_error)


def test_from_text_indexes_headers_and_frames_the_body() -> None:
    m = WireMessage.from_text(TEXTS[0], **WHERE)
    assert m.vias == ["SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1", "SIP/2.0/UDP p;branch=z9hG4bK2",
                      "SIP/2.0/UDP q;branch=z9hG4bK3"]
    assert (m.call_id, m.cseq, m.from_tag, m.to_tag) == ("c1", (1, "INVITE"), "1", None)
    assert m.body == b"v=0\r\no=a 1 1 IN IP4 1.2.3.4" and m.wire_body_len == 29
    short = WireMessage.from_text(TEXTS[1], **WHERE)
    assert (short.status, short.call_id, short.body, short.wire_body_len) == (200, "a", b"abc", 6)


def test_drain_hands_over_everything_in_order() -> None:
    read_fd, write_fd = os.pipe()
    pieces = [bytes([i % 251]) * (i * 997 % 70000 + 1) for i in range(200)]

    def write() -> None:
        for piece in pieces:
            os.write(write_fd, piece)
        os.close(write_fd)

    writer = threading.Thread(target=write)
    writer.start()
    drain = _Drain(read_fd)
    got = []
    while (chunk := drain.take(10)):
        got.append(chunk)
    writer.join()
    drain.thread.join(5)
    os.close(read_fd)
    assert chunk == b"" and drain.error is None
    assert b"".join(got) == b"".join(pieces)


def test_drain_reports_silence_as_none() -> None:
    read_fd, write_fd = os.pipe()
    drain = _Drain(read_fd)
    assert drain.take(0.2) is None
    os.close(write_fd)
    assert drain.take(5) == b""
    drain.thread.join(5)
    os.close(read_fd)


def _reference_levels(payloads: list[bytes], freqs: tuple[float, ...]) -> dict[float, float]:
    """The analysis as it was before caching: window and phasor made anew per frequency."""
    samples = np.concatenate([ulaw_decode(p) for p in payloads if p]).astype(np.float64)
    out = {}
    for f in freqs:
        n = len(samples)
        window = np.hanning(n)
        phasor = np.exp(-2j * np.pi * f * np.arange(n) / 8000)
        amplitude = float(2.0 * abs(np.dot(samples * window, phasor)) / window.sum())
        out[f] = max(SILENT_DBFS, 20.0 * np.log10(amplitude / 32768.0)) if amplitude > 0 else SILENT_DBFS
    return out


@pytest.mark.parametrize("count", [10, 37])
def test_cached_tone_analysis_gives_the_same_levels(count: int) -> None:
    t = np.arange(160 * count) / 8000
    audio = 8000 * np.sin(2 * np.pi * 400 * t) + 3000 * np.sin(2 * np.pi * 1000 * t)
    data = ulaw_encode(audio.astype(np.int32))
    payloads = [data[i:i + 160] for i in range(0, len(data), 160)] + [b""]
    freqs = (400.0, 650.0, 1000.0)
    for _ in range(2):   # the second time from the caches
        assert tone_levels(payloads, PCMU, freqs) == pytest.approx(_reference_levels(payloads, freqs), abs=0.0)
    samples = samples_of(payloads, PCMU)
    assert goertzel_amplitude(samples, 400.0) > 10 * goertzel_amplitude(samples, 650.0)


def _result(verdict: str = "pass") -> FlowResult:
    steps = [StepResult("1", "one", [CheckResult("G1", verdict, "detail \u00e9", [3, 1, 3])])]  # type: ignore[arg-type]
    return FlowResult(steps, capture="c.pcap", instance={"index": 1})


def test_frozen_json_text_is_the_json_of_the_result() -> None:
    r = _result()
    plain = r.json_text()
    assert json.loads(plain) == r.to_json()
    r.freeze_json()
    assert r.json_text() == plain
    r.__dict__["_json_text"] = (r._fingerprint(), "stale")   # what a frozen text is used for
    assert r.json_text() == "stale"
    r.instance = {"index": 2}                                 # ... until the result changes
    assert json.loads(r.json_text())["instance"] == {"index": 2}
    failed = _result("fail")
    failed.freeze_json()
    assert json.loads(failed.json_text())["verdict"] == "fail"


def _square(i: int) -> int:
    return i * i


@pytest.mark.parametrize("count", [1, 50, 203])
def test_map_indices_keeps_the_order(count: int) -> None:
    assert map_indices(_square, count, workers=2) == [i * i for i in range(count)]


def test_rtp_index_built_while_reading_is_the_one_built_afterwards(tmp_path: Path) -> None:
    from harness.verify.engine import _RtpIndex
    from harness.verify.reader import read_capture
    from testcases.data.make_a21_pcap import write_many

    data = read_capture(write_many(tmp_path / "x3.pcap", 3))
    assert data.rtp and data.rtp_by_addr is not None
    early = _RtpIndex(data).rtp
    data.rtp_by_addr = None
    late = _RtpIndex(data).rtp
    assert dict(early) == dict(late)
    assert sum(map(len, early.values())) == 2 * len(data.rtp)
