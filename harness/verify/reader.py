"""Read a capture through pyshark, once, streamed, asking tshark only for the fields we use.

Why this shape (measured with pyshark 0.6 / tshark 4.0 on 20,000 RTP packets): PDML (pyshark's
default) ~75 s, EK with whole protocols (`-J`) 3.6 s, EK restricted to named fields (`-e`) 2.1 s.
pyshark's own EK packet builder needs nested protocol objects, which tshark does not produce with
`-e`, so `FieldsCapture` keeps pyshark's process handling and stream reader and only swaps the
per-line parser for a flat dict.

The SIP text comes from `sip.Request-Line`/`sip.Status-Line` plus `sip.msg_hdr`, which holds every
header in order and, in tshark 4.0, the body and anything after it in the same segment. tshark's
SDP/sipfrag fields arrive as flat lists that lose which `a=` belongs to which `m=` (and which message,
when a TCP segment carries two), so bodies are parsed here from the bytes tshark handed over.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pyshark
from pyshark.capture.capture import TSharkCrashException
from pyshark.tshark.output_parser.tshark_ek import TsharkEkJsonParser
from pyshark.tshark.tshark import get_tshark_version

from harness.sip.errors import SipParseError
from harness.sip.message import SipMessage
from harness.verify.errors import BadInput
from harness.verify.wire import CaptureData, RtcpPacket, RtpPacket, WireMessage, frame_body

DISPLAY_FILTER = "sip || rtp || rtcp"
FIELDS = (
    "frame.number", "frame.time_epoch", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
    "udp.srcport", "udp.dstport", "tcp.srcport", "tcp.dstport", "icmp.type", "icmpv6.type",
    "sip.Request-Line", "sip.Status-Line", "sip.msg_hdr",
    "rtp.ssrc", "rtp.p_type", "rtp.seq", "rtp.timestamp", "rtp.marker", "rtcp.pt",
)
PREFS = {"rtp.heuristic_rtp": "TRUE", "rtcp.heuristic_rtcp": "TRUE"}


class _FlatEkParser(TsharkEkJsonParser):
    """`-T ek -e ...` lines are flat: {"layers": {"frame_number": ["1"], ...}}."""

    def _parse_single_packet(self, packet: bytes) -> dict[str, list[Any]]:
        layers = json.loads(packet).get("layers", {})
        return {k: v if isinstance(v, list) else [v] for k, v in layers.items()}


class FieldsCapture(pyshark.FileCapture):
    """pyshark FileCapture in EK mode restricted to `fields`, yielding one flat dict per frame."""

    def __init__(self, path: str, fields: tuple[str, ...] = FIELDS, **kwargs: Any) -> None:
        params: list[str] = []
        for name in fields:
            params += ["-e", name]
        super().__init__(path, use_ek=True, keep_packets=False, custom_parameters=params, **kwargs)

        self.failure: str | None = None

    def _get_tshark_version(self) -> Any:
        """pyshark runs `tshark -v` for every capture object (0.3 s each); once per process is enough."""
        return _tshark_version(self.tshark_path)

    def _setup_tshark_output_parser(self) -> _FlatEkParser:
        return _FlatEkParser()

    async def _cleanup_subprocess(self, process: Any) -> None:
        """pyshark raises from its cleanup and then leaves the process listed (so close() and
        __del__ raise again); record the failure instead and always forget the process."""
        try:
            if self._eof_reached and process.returncode is None:
                # Let tshark exit by itself: pyshark's kill() polls the pid and races asyncio's
                # child watcher ("Unknown child process pid ..., will report returncode 255").
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(process.wait(), 10)
            await super()._cleanup_subprocess(process)
        except TSharkCrashException as exc:
            self.failure = str(exc)
        finally:
            self._running_processes.discard(process)


@functools.lru_cache(maxsize=4)
def _tshark_version(tshark_path: str | None) -> Any:
    return get_tshark_version(tshark_path)


def _last(fields: dict[str, list[Any]], name: str) -> str | None:
    values = fields.get(name.replace(".", "_"))
    return str(values[-1]) if values else None


def _all(fields: dict[str, list[Any]], name: str) -> list[str]:
    return [str(v) for v in fields.get(name.replace(".", "_"), []) if v is not None]


def _int(text: str | None, default: int = 0) -> int:
    if text is None:
        return default
    try:
        return int(text, 0) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return 1 if text.lower() == "true" else default


def split_messages(start_lines: list[str], headers: list[str], stream: bool) -> list[bytes]:
    """Rebuild the raw messages of one frame from tshark's start lines and `sip.msg_hdr` values.

    The first `msg_hdr` runs to the end of the frame's SIP data, so the frame's text is
    first-start-line + CRLF + msg_hdr[0]; which start line is first is found by trying each one.
    On UDP a datagram holds one message (RFC 3261 §18.3: extra bytes are the peer's fault and stay
    in the message for G8 to judge); on TCP messages are framed by Content-Length.
    """
    if not headers:
        return []
    text = headers[0]
    candidates = list(dict.fromkeys(start_lines)) or [""]
    if not stream or len(start_lines) <= 1:
        return [(candidates[0] + "\r\n" + text).encode("utf-8", "surrogateescape")]
    want = Counter(start_lines)
    best: list[bytes] = []
    for first in candidates:
        data = (first + "\r\n" + text).encode("utf-8", "surrogateescape")
        messages: list[bytes] = []
        while data.strip(b"\r\n"):
            data = data.lstrip(b"\r\n")
            try:
                msg, used = SipMessage.parse_stream(data)
            except SipParseError:
                msg, used = None, 0
            if msg is None:
                start, length, rest = frame_body(data)
                used = start + min(length or rest, rest)
                if used <= 0:
                    break
            messages.append(data[:used])
            data = data[used:]
        seen = Counter(m.split(b"\r\n", 1)[0].decode("utf-8", "replace") for m in messages)
        if seen == want:
            return messages
        if not best:
            best = messages
    return best


def _frame_messages(fields: dict[str, list[Any]], frame: int, time: float, where: dict[str, Any]) -> list[WireMessage]:
    start_lines = _all(fields, "sip.Request-Line") + _all(fields, "sip.Status-Line")
    raws = split_messages(start_lines, _all(fields, "sip.msg_hdr"), where["transport"] == "TCP")
    return [WireMessage.from_bytes(raw, frame=frame, index=i, time=time, **where) for i, raw in enumerate(raws)]


def _read(path: str) -> CaptureData:
    data = CaptureData(path=path, messages=[], rtp=[], rtcp=[])
    loop = asyncio.new_event_loop()  # our own loop: never a closed or foreign current loop
    cap = FieldsCapture(path, display_filter=DISPLAY_FILTER, override_prefs=PREFS, eventloop=loop)
    try:
        for fields in cap:
            _add_frame(data, fields)
    finally:
        try:
            cap.close()
        finally:
            loop.close()
    if cap.failure:
        error = (cap._last_error_line or cap.failure).removeprefix("tshark: ")
        if "cut short" in error and (data.messages or data.rtp):
            data.notes.append(f"capture truncated ({error}); verified the frames before the cut")
        else:
            raise BadInput(f"{path}: {error}")
    return data


def _add_frame(data: CaptureData, fields: dict[str, list[Any]]) -> None:
    data.frames += 1
    if fields.get("icmp_type") or fields.get("icmpv6_type"):
        return  # an ICMP error quoting a packet is not a packet that was sent
    frame = _int(_last(fields, "frame.number"))
    time = float(_last(fields, "frame.time_epoch") or 0.0)
    src = _last(fields, "ip.src") or _last(fields, "ipv6.src") or "?"
    dst = _last(fields, "ip.dst") or _last(fields, "ipv6.dst") or "?"
    if fields.get("udp_srcport"):
        transport, sport, dport = "UDP", _last(fields, "udp.srcport"), _last(fields, "udp.dstport")
    else:
        transport, sport, dport = "TCP", _last(fields, "tcp.srcport"), _last(fields, "tcp.dstport")
    where = {"src": src, "sport": _int(sport), "dst": dst, "dport": _int(dport), "transport": transport}
    if fields.get("sip_msg_hdr"):
        data.messages.extend(_frame_messages(fields, frame, time, where))
    elif fields.get("rtp_ssrc"):
        data.rtp.append(RtpPacket(frame, time, src, _int(sport), dst, _int(dport),
                                  _int(_last(fields, "rtp.ssrc")), _int(_last(fields, "rtp.p_type")),
                                  _int(_last(fields, "rtp.seq")), _int(_last(fields, "rtp.timestamp")),
                                  bool(_int(_last(fields, "rtp.marker")))))
    elif fields.get("rtcp_pt"):
        data.rtcp.append(RtcpPacket(frame, time, src, _int(sport), dst, _int(dport),
                                    _int(_all(fields, "rtcp.pt")[0]) if _all(fields, "rtcp.pt") else None))


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def read_capture(path: str | Path) -> CaptureData:
    """All SIP messages (every hop copy) and RTP/RTCP packets of a pcap/pcapng file.

    Raises BadInput for a missing, empty, non-capture or SIP-less file. pyshark runs its own event
    loop, so inside a running loop the read happens on a worker thread.
    """
    path = str(path)
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"{path}: no such file")
    if p.stat().st_size == 0:
        raise BadInput(f"{path}: empty file (0 bytes), not a capture")
    if _in_loop():
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["data"] = _read(path)
            except BaseException as exc:  # handed back to the caller's thread
                box["error"] = exc

        worker = threading.Thread(target=work, name="verify-reader")
        worker.start()
        worker.join()
        if "error" in box:
            raise box["error"]
        data: CaptureData = box["data"]
    else:
        data = _read(path)
    if not data.messages:
        what = "no SIP, RTP or RTCP packets" if data.frames == 0 else "no SIP messages"
        raise BadInput(f"{path}: capture holds {what}; nothing to verify")
    data.messages.sort(key=lambda m: (m.time, m.frame, m.index))
    return data
