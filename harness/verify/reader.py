"""Read a capture through pyshark, once, streamed, asking tshark only for the fields we use.

Why this shape (tshark 4.0, pyshark 0.6): pyshark's default PDML is ~20x a plain `tshark -T fields`
pass and its EK packet objects ~6x; even EK restricted to named fields costs tshark ~40% more than
`-T fields` (JSON formatting), and Python three times as much to decode. So pyshark stays the bridge
to tshark (FieldsCapture: pyshark builds the command line and owns the process: start, stderr,
exit, cleanup) but its packet parsing is bypassed: tshark prints only the named fields (`-T fields
-e ...`, one line per frame, several occurrences joined by RS 0x1e) into a plain pipe, which a
thread drains with blocking reads while this thread decodes the lines in batches, so tshark never
waits on Python and dissection and decoding run on two cores. pyshark's `-l` (flush per packet) is
left out: it costs a write per frame.

`-T fields` prints CR, LF and TAB inside a value as `\r`, `\n`, `\t` and leaves a backslash
alone, so a literal backslash-r in SIP text would read as CR; SIP practically never carries one.

Foreign captures: SIP is found by content on any port and over TCP with reassembly. tshark's SIP
heuristics already claim unregistered ports; a frame that holds SIP text but went to another
port's dissector (6000 is X11, 80 HTTP) marks its ports, and only then a second pass decodes those
ports as SIP (`-d`). Trying heuristics first everywhere would cost every RTP frame ~40% more. RTP and
RTCP are found by their heuristics, except in the split read of a large UDP capture, where tshark
dissects SIP only and harness/verify/mediascan.py reads the media headers from the file. The SDP and sipfrag dissectors are off: bodies are parsed here from the bytes tshark
hands over, which keeps every `a=` with its `m=` and every body with its message.

The SIP text comes from `sip.Request-Line`/`sip.Status-Line` plus `sip.msg_hdr`, which holds every
header in order and, in tshark 4.0, the body and anything after it in the same segment. tshark's TCP
desegmentation goes by "Content-Length" only: a body announced by the compact "l:" and cut over
segments ends at the first one; such a message is completed by a last, narrow pass over its
connection's payloads (`_complete_short_tcp`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import ipaddress
import os
import re
import tempfile
import threading
import time
from array import array
from collections import Counter
from collections.abc import Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pyshark
from pyshark.capture.capture import TSharkCrashException
from pyshark.tshark.tshark import get_tshark_version

from harness.sip.errors import SipParseError
from harness.sip.message import SipMessage
from harness.verify.errors import BadInput
from harness.verify.mediascan import scan
from harness.verify.pcapindex import CaptureIndex
from harness.verify.wire import CaptureData, RtcpPacket, RtpPacket, WireMessage, frame_body

# The last clause keeps frames that carry SIP text but went to another port's dissector (SIP on
# 6000 is X11 to tshark): their ports get a second, decode-as pass, only when there are any.
DISPLAY_FILTER = 'sip || rtp || rtcp || (!tcp.reassembled_in && frame matches "SIP/2[.]0")'
# The split read (no TCP by construction) asks tshark for SIP only: harness/verify/mediascan.py
# finds RTP and RTCP in the file itself.
SIP_FILTER = 'sip || frame matches "SIP/2[.]0"'
FIELDS = (
    "frame.number", "frame.time_epoch", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
    "udp.srcport", "udp.dstport", "tcp.srcport", "tcp.dstport", "tcp.stream", "icmp.type", "icmpv6.type",
    "sip.Request-Line", "sip.Status-Line", "sip.msg_hdr",
    "rtp.ssrc", "rtp.p_type", "rtp.seq", "rtp.timestamp", "rtp.marker", "rtcp.pt",
    # Last: MIX-1 decodes payloads. tshark prints it as plain hex (~2 bytes of text per byte, about
    # as much as the other fields of an RTP frame); it is kept as that text and decoded only for the
    # streams a check analyses.
    "rtp.payload",
)
PREFS = {"rtp.heuristic_rtp": "TRUE", "rtcp.heuristic_rtcp": "TRUE"}
_START_RE = re.compile(rb"SIP/2\.0 \d{3}|[A-Za-z]+ \S+ SIP/2\.0\r?\n")  # a payload that starts a message
DISABLED = ("sdp", "sipfrag")
RS = "\x1e"                # joins several occurrences of a field (never in SIP text)
PIPE_SIZE = 1 << 20        # tshark's stdout pipe (Linux default 64 KiB)
READ_SIZE = 1 << 22        # one read of the pipe, at most
READ_PAUSE = 0.01          # after a short read, let this much output gather first
START_TIMEOUT = 60.0       # seconds for tshark to start
IDLE_TIMEOUT = 300.0       # seconds without any output before tshark counts as hung
INDEX_MIN_BYTES = 1 << 20  # smaller captures: tshark prints payloads, no index is built
SPLIT_MIN_FRAMES = 20_000  # fewer frames: one tshark (two cost more to start than they save)
MAX_PARTS = 2              # tshark processes side by side; Python decoding takes another core
T = TypeVar("T")


class FieldsCapture(pyshark.FileCapture):
    """pyshark FileCapture printing only `fields` (`-T fields`); the process is read by `stream_frames`."""

    def __init__(self, path: str, fields: tuple[str, ...] = FIELDS, read_from: str | None = None,
                 **kwargs: Any) -> None:
        params = ["-E", "separator=/t", "-E", "occurrence=a", "-E", f"aggregator={RS}", "-E", "quote=n"]
        for name in fields:
            params += ["-e", name]
        for proto in DISABLED:
            params += ["--disable-protocol", proto]
        super().__init__(path, use_ek=True, keep_packets=False, custom_parameters=params, **kwargs)
        self.failure: str | None = None
        self.stdout_fd: int | None = None
        self.read_from = read_from   # what tshark reads instead of `path` (a FIFO fed one part of it)

    def _get_tshark_version(self) -> Any:
        """pyshark runs `tshark -v` for every capture object (0.3 s each); once per process is enough."""
        return _tshark_version(self.tshark_path)

    async def _get_tshark_process(self, packet_count: int | None = None, stdin: Any = None) -> Any:
        """pyshark's process, without `-l`, writing into a plain pipe (`stdout_fd`) that
        `stream_frames` drains with blocking reads: asyncio's pipe transport would wake the loop
        thread for every few kilobytes tshark writes, and each wake-up takes the GIL from the
        thread decoding the frames (a third of the read's CPU on a busy machine)."""
        self._verify_capture_parameters()
        parameters = [self._get_tshark_path(), "-n", "-T", "fields", *self.get_parameters(packet_count=packet_count)]
        if self.read_from is not None:
            parameters[parameters.index("-r") + 1] = self.read_from
        read_fd, write_fd = os.pipe()
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)   # Linux: room for ~0.1 s of output
        try:
            process = await asyncio.create_subprocess_exec(*parameters, stdout=write_fd,
                                                           stderr=asyncio.subprocess.PIPE, stdin=stdin)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self.stdout_fd = read_fd
        self._create_stderr_handling_task(process.stderr)
        self._created_new_process(parameters, process)
        return process

    async def _cleanup_subprocess(self, process: Any) -> None:
        """pyshark raises from its cleanup and then leaves the process listed (so close() and
        __del__ raise again); record the failure instead and always forget the process."""
        try:
            if self._eof_reached and process.returncode is None:
                # Let tshark exit by itself: it has written everything, only its exit status is missing.
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


def _call(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], timeout: float, what: str) -> T:
    """Run `coro` on the reader thread's loop and wait for it, at most `timeout` seconds."""
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise BadInput(f"tshark gave no output for {timeout:.0f} s while {what}") from None


class _Drain:
    """Reads a pipe to its end on its own thread (blocking reads, no GIL held while waiting) and
    hands the chunks over; when a read finds little, it waits a moment so that the next read
    takes a large piece (fewer wake-ups, each of which briefly takes the GIL)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.chunks: list[bytes] = []
        self.done = False
        self.error: OSError | None = None
        self.ready = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="tshark-stdout", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while True:
                chunk = os.read(self.fd, READ_SIZE)
                if not chunk:
                    break
                with self.ready:
                    self.chunks.append(chunk)
                    self.ready.notify()
                if len(chunk) < READ_SIZE // 16:
                    time.sleep(READ_PAUSE)
        except OSError as exc:
            self.error = exc
        finally:
            with self.ready:
                self.done = True
                self.ready.notify()

    def take(self, timeout: float) -> bytes | None:
        """Everything read so far (b"" at the end); None when nothing came for `timeout` s."""
        with self.ready:
            self.ready.wait_for(lambda: self.chunks or self.done, timeout)
            if not self.chunks:
                return b"" if self.done else None
            data = b"".join(self.chunks) if len(self.chunks) > 1 else self.chunks[0]
            self.chunks = []
            return data


class _Stream:
    """One tshark process writing field lines into a pipe that its own thread drains.

    Started at construction (so several can run side by side), read by `batches()`, stopped by
    `close()` in any case: tshark stopped and reaped, threads joined, the pipe closed.
    """

    def __init__(self, cap: FieldsCapture, loop: asyncio.AbstractEventLoop) -> None:
        self.cap = cap
        self.loop = loop   # the capture's own loop, driven by the reader thread
        self.thread = threading.Thread(target=self.loop.run_forever, name="tshark-reader", daemon=True)
        self.thread.start()
        self.process: Any = None
        self.drain: _Drain | None = None
        try:
            self.process = _call(self.loop, cap._get_tshark_process(), START_TIMEOUT, "starting")
            assert cap.stdout_fd is not None
            self.drain = _Drain(cap.stdout_fd)
        except BaseException:
            self.close()
            raise

    def batches(self) -> Iterator[list[list[str]]]:
        """Batches of frames (one value per field, "" when absent), as tshark writes them."""
        assert self.drain is not None
        rest = b""
        while True:
            chunk = self.drain.take(IDLE_TIMEOUT)
            if chunk is None:
                raise BadInput(f"tshark gave no output for {IDLE_TIMEOUT:.0f} s while reading")
            if not chunk:
                if self.drain.error is not None:
                    raise BadInput(f"reading tshark's output: {self.drain.error}")
                break
            data = rest + chunk if rest else chunk
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            if cut:
                yield [line.split("\t") for line in data[:cut].decode("utf-8", "surrogateescape").split("\n")[:-1]]
        if rest.strip():
            yield [rest.decode("utf-8", "surrogateescape").split("\t")]
        self.cap._eof_reached = True

    def close(self) -> None:
        """Idempotent."""
        cap, loop = self.cap, self.loop
        if loop.is_closed():
            return
        try:
            if self.process is not None:
                _call(loop, cap._cleanup_subprocess(self.process), 30, "stopping")
                self.process = None
            _call(loop, cap.close_async(), 30, "closing")
        finally:
            if self.drain is not None:
                self.drain.thread.join(30)   # tshark is gone: the pipe is at its end
            if cap.stdout_fd is not None and (self.drain is None or not self.drain.thread.is_alive()):
                os.close(cap.stdout_fd)
                cap.stdout_fd = None
            if not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
                self.thread.join(30)
                if not self.thread.is_alive():
                    loop.close()


def stream_frames(cap: FieldsCapture, loop: asyncio.AbstractEventLoop) -> Iterator[list[list[str]]]:
    """Batches of frames of one tshark run (see `_Stream`); tshark is stopped in `finally`.

    The pipe is drained by its own thread while the caller works on the previous batch (tshark
    never waits on Python; dissection and decoding run on two cores); pyshark's event loop runs
    on another thread for the process itself (start, stderr, exit).
    """
    stream = _Stream(cap, loop)
    try:
        yield from stream.batches()
    finally:
        stream.close()


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
    if not stream or not start_lines:
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
            if msg is None and len(messages) >= len(start_lines):
                break  # the head of the next PDU, which tshark shows again in a later frame
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


(F_NUMBER, F_TIME, F_IP_SRC, F_IP_DST, F_IP6_SRC, F_IP6_DST, F_UDP_SPORT, F_UDP_DPORT, F_TCP_SPORT, F_TCP_DPORT,
 F_TCP_STREAM, F_ICMP, F_ICMP6, F_REQUEST, F_STATUS, F_HDR, F_SSRC, F_PT, F_SEQ, F_TS, F_MARKER, F_RTCP,
 F_PAYLOAD) = range(23)
# The payloads that follow a TCP message tshark cut short (_complete_short_tcp).
SEGMENT_FIELDS = ("frame.number", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport",
                  "tcp.stream", "tcp.seq", "tcp.nxtseq", "tcp.payload")


def _unescape(text: str) -> str:
    """Undo `-T fields` escaping of CR, LF and TAB."""
    return text.replace("\\r", "\r").replace("\\n", "\n").replace("\\t", "\t") if "\\" in text else text


def _last(value: str) -> str:
    return value.rsplit(RS, 1)[-1] if RS in value else value


def _int(text: str, default: int = 0) -> int:
    if not text:
        return default
    try:
        return int(text, 16) if text[:2].lower() == "0x" else int(text)
    except ValueError:
        return 1 if text.lower() == "true" else default


def _add_frame(data: CaptureData, row: list[str], offset: int = 0, source: CaptureIndex | None = None,
               numbers: array | None = None) -> None:
    """One frame: an RTP/RTCP packet or the SIP message(s) it carries (ICMP quotes are skipped).
    numbers: tshark read a selection of the frames, frame n being the capture's numbers[n - 1] + 1;
    RTP and RTCP were read from the file then (mediascan), so any tshark found are left out."""
    if len(row) < F_PAYLOAD:
        return  # not a frame line (tshark printed nothing for it)
    if numbers is not None:
        if not row[F_HDR] and (row[F_SSRC] or row[F_RTCP]):
            return
        offset = numbers[int(row[F_NUMBER]) - 1] - int(row[F_NUMBER]) + 1
    payload = row[F_PAYLOAD] if len(row) > F_PAYLOAD else ""
    data.frames += 1
    if row[F_ICMP] or row[F_ICMP6]:
        return  # an ICMP error quoting a packet is not a packet that was sent
    if row[F_SSRC] and not row[F_HDR] and RS not in row[F_SSRC]:   # plain RTP, the bulk of a capture
        try:
            data.rtp.append(RtpPacket(int(row[F_NUMBER]) + offset, float(row[F_TIME]), _last(row[F_IP_SRC] or row[F_IP6_SRC]),
                                      int(row[F_UDP_SPORT]), _last(row[F_IP_DST] or row[F_IP6_DST]),
                                      int(row[F_UDP_DPORT]), int(row[F_SSRC], 0), int(row[F_PT]), int(row[F_SEQ]),
                                      int(row[F_TS]), row[F_MARKER] in ("1", "True"), payload, source))
            return
        except ValueError:
            pass  # odd values (RTP in a tunnel, over TCP): the careful path below
    frame = _int(row[F_NUMBER]) + offset
    time = float(row[F_TIME] or 0.0)
    src = _last(row[F_IP_SRC]) or _last(row[F_IP6_SRC]) or "?"
    dst = _last(row[F_IP_DST]) or _last(row[F_IP6_DST]) or "?"
    if row[F_UDP_SPORT]:
        transport, sport, dport = "UDP", _int(_last(row[F_UDP_SPORT])), _int(_last(row[F_UDP_DPORT]))
    else:
        transport, sport, dport = "TCP", _int(_last(row[F_TCP_SPORT])), _int(_last(row[F_TCP_DPORT]))
    if row[F_HDR]:
        if transport == "TCP":
            data.sip_streams.add(_int(_last(row[F_TCP_STREAM]), -1))
        if transport == "UDP":
            # One datagram, one message (split_messages' UDP case, without the bytes round trip).
            first = row[F_REQUEST] or row[F_STATUS]
            hdr = row[F_HDR]
            text = _unescape(first.split(RS, 1)[0] + "\r\n" + (hdr.split(RS, 1)[0] if RS in hdr else hdr))
            m = WireMessage.from_text(text, frame=frame, index=0, time=time, src=src, sport=sport, dst=dst,
                                      dport=dport, transport=transport)
            data.messages.append(m)
            return
        start_lines = [_unescape(v) for f in (F_REQUEST, F_STATUS) if row[f] for v in row[f].split(RS)]
        raws = split_messages(start_lines, [_unescape(v) for v in row[F_HDR].split(RS)], True)
        for i, raw in enumerate(raws):
            m = WireMessage.from_bytes(raw, frame=frame, index=i, time=time, src=src, sport=sport, dst=dst,
                                       dport=dport, transport=transport)
            data.messages.append(m)
    elif row[F_SSRC]:
        data.rtp.append(RtpPacket(frame, time, src, sport, dst, dport, _int(_last(row[F_SSRC])),
                                  _int(_last(row[F_PT])), _int(_last(row[F_SEQ])), _int(_last(row[F_TS])),
                                  bool(_int(_last(row[F_MARKER]))), _last(payload), source))
    elif row[F_RTCP]:
        pt = row[F_RTCP].split(RS)[0]
        data.rtcp.append(RtcpPacket(frame, time, src, sport, dst, dport, _int(pt) if pt else None))
    else:
        stream = _int(_last(row[F_TCP_STREAM]), -1) if transport == "TCP" else -1
        data.suspects.add((transport, sport, dport, stream))


def _add_rows(data: CaptureData, batch: list[list[str]], offset: int, source: CaptureIndex | None) -> None:
    """Frames of one batch, and the RTP index engine._RtpIndex would otherwise build afterwards."""
    done = len(data.rtp)
    for row in batch:
        _add_frame(data, row, offset, source)
    _index_rtp(data, data.rtp[done:])


def _index_rtp(data: CaptureData, rtp: list[RtpPacket]) -> None:
    """Each packet under its destination and its source address, in `rtp` order."""
    by_addr = data.rtp_by_addr
    assert by_addr is not None
    for p in rtp:
        for key in ((p.dst, p.dport), (p.src, p.sport)):
            packets = by_addr.get(key)
            if packets is None:
                by_addr[key] = [p]
            else:
                packets.append(p)


def _check_failure(path: str, data: CaptureData, cap: FieldsCapture) -> None:
    if cap.failure:
        error = (cap._last_error_line or cap.failure).removeprefix("tshark: ")
        if "cut short" in error and (data.messages or data.rtp):
            data.notes.append(f"capture truncated ({error}); verified the frames before the cut")
        else:
            raise BadInput(f"{path}: {error}")


def _capture(path: str, display_filter: str, decode_as: dict[str, str] | None = None,
             fields: tuple[str, ...] = FIELDS, read_from: str | None = None, media: bool = True
             ) -> tuple[FieldsCapture, asyncio.AbstractEventLoop]:
    """media=False: tshark's RTP/RTCP heuristics stay off (the split read finds media itself)."""
    loop = asyncio.new_event_loop()  # our own loop, driven by the reader thread
    cap = FieldsCapture(path, fields=fields, read_from=read_from, display_filter=display_filter,
                        override_prefs=PREFS if media else None, eventloop=loop, decode_as=decode_as)
    return cap, loop


def _pass(path: str, data: CaptureData, display_filter: str, decode_as: dict[str, str] | None = None,
          source: CaptureIndex | None = None) -> None:
    """One tshark over the whole file. With `source`, payloads are read from the file, not printed."""
    cap, loop = _capture(path, display_filter, decode_as, FIELDS[:F_PAYLOAD] if source else FIELDS)
    if data.rtp_by_addr is None:
        data.rtp_by_addr = {}
    for batch in stream_frames(cap, loop):
        _add_rows(data, batch, 0, source)
    _check_failure(path, data, cap)


class _Feeder:
    """Writes `pieces` (a capture file of its own) into a FIFO that one tshark reads. Never blocks
    anyone for good: `close()` unblocks a writer whose reader is gone."""

    def __init__(self, fifo: str, pieces: Iterable[bytes], name: str) -> None:
        self.fifo, self.pieces = fifo, pieces
        self.error: OSError | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with open(self.fifo, "wb", buffering=0) as out:   # blocks until tshark opens it
                for piece in self.pieces:
                    out.write(piece)
        except BrokenPipeError:
            pass   # tshark stopped reading; its own exit status tells why
        except OSError as exc:
            self.error = exc

    def close(self) -> None:
        if self.thread.is_alive():
            # A writer still waiting for its reader to open the FIFO: be that reader, then leave.
            with contextlib.suppress(OSError):
                fd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
                os.close(fd)
            self.thread.join(5)


def _split_pass(path: str, data: CaptureData, index: CaptureIndex, parts: int) -> None:
    """The first pass as `parts` tshark processes side by side, each fed, through a FIFO, the frames
    of a contiguous run that are not RTP or RTCP (mediascan.scan reads those from the file) and
    asked for SIP only. Part k+1 is scanned while part k's tshark already works; the parts' lines are
    decoded in frame order (the later parts' output waits in their drain threads' memory, so no
    tshark ever waits on Python)."""
    bounds = [index.frames * k // parts for k in range(parts + 1)]
    data.rtp_by_addr = {}
    streams: list[tuple[_Stream, FieldsCapture, _Feeder, array]] = []
    with tempfile.TemporaryDirectory(prefix="verify-parts-") as tmp:
        try:
            for k in range(parts):
                rtp, rtcp, others = scan(index, bounds[k], bounds[k + 1])
                _add_media(data, rtp, rtcp)
                fifo = os.path.join(tmp, f"part{k}.pcap")
                os.mkfifo(fifo, 0o600)
                feeder = _Feeder(fifo, index.records_of(others), f"capture-part-{k}")
                cap, loop = _capture(path, SIP_FILTER, fields=FIELDS[:F_PAYLOAD], read_from=fifo, media=False)
                try:
                    stream = _Stream(cap, loop)
                except BaseException:
                    feeder.close()
                    raise
                streams.append((stream, cap, feeder, others))
            for stream, cap, feeder, others in streams:
                for batch in stream.batches():
                    for row in batch:
                        _add_frame(data, row, source=index, numbers=others)
                stream.close()   # tshark reaped: its exit status is known
                if feeder.error is not None:
                    first = others[0] + 1 if others else "-"
                    raise BadInput(f"{path}: feeding tshark frames {first}..: {feeder.error}")
                _check_failure(path, data, cap)
        finally:
            for stream, _cap, feeder, _others in streams:
                stream.close()
                feeder.close()


def _add_media(data: CaptureData, rtp: list[RtpPacket], rtcp: list[RtcpPacket]) -> None:
    """RTP and RTCP read from the file, and the RTP index engine._RtpIndex would otherwise build."""
    data.rtp.extend(rtp)
    data.rtcp.extend(rtcp)
    data.frames += len(rtp) + len(rtcp)
    _index_rtp(data, rtp)


_SDP_LINE = re.compile(rb"^([cm])=([^\r\n]*)", re.M)


def sdp_low_endpoints(messages: Iterable[WireMessage]) -> frozenset[tuple[str, int]]:
    """(address, port) of every RTP and RTCP port below 1024 an SDP in `messages` names (m= port and
    the one above, RFC 3550 §11; c= at media level, else session level, RFC 4566 §5.7)."""
    found: set[tuple[str, int]] = set()
    for message in messages:
        raw = message.raw
        body = raw.find(b"\r\n\r\n")
        if body < 0 or b"\nm=" not in raw[body:]:
            continue
        session: str | None = None
        ports: list[int] = []
        addresses: list[str | None] = []   # each m= line's own c=, if any
        for kind, value in _SDP_LINE.findall(raw[body + 4:]):
            fields = value.decode("ascii", "replace").split()
            if kind == b"m":
                port = fields[1].split("/")[0] if len(fields) > 1 else ""
                ports.append(int(port) if port.isdigit() else 0)
                addresses.append(None)
            elif len(fields) == 3 and fields[0] == "IN":
                address = fields[2].split("/")[0]
                with contextlib.suppress(ValueError):
                    address = ipaddress.ip_address(address).compressed   # as tshark -n prints it
                if ports:
                    addresses[-1] = address
                else:
                    session = address
        for port, address in zip(ports, addresses, strict=True):
            where = address or session
            if where is not None and 0 < port < 1024:
                found.update({(where, port), (where, port + 1)})
    return frozenset(found)


def _add_named_low_media(data: CaptureData, index: CaptureIndex) -> None:
    """The split read's scan skips ports below 1024; where an SDP names such a port for media, as
    tshark's SDP dissector follows it, scan again for those (rare: one more pass over the index)."""
    named = sdp_low_endpoints(data.messages)
    if not named:
        return
    rtp, rtcp, _ = scan(index, named=named)
    low_rtp = [p for p in rtp if p.sport < 1024 or p.dport < 1024]
    low_rtcp = [q for q in rtcp if q.sport < 1024 or q.dport < 1024]
    if not low_rtp and not low_rtcp:
        return
    _add_media(data, low_rtp, low_rtcp)
    data.rtp.sort(key=_frame_of)
    data.rtcp.sort(key=_frame_of)
    for packets in (data.rtp_by_addr or {}).values():
        packets.sort(key=_frame_of)


def _frame_of(packet: RtpPacket | RtcpPacket) -> int:
    return packet.frame


def _read(path: str) -> CaptureData:
    data = CaptureData(path=path, messages=[], rtp=[], rtcp=[])
    index = CaptureIndex.build(path) if Path(path).stat().st_size >= INDEX_MIN_BYTES else None
    parts = min(os.cpu_count() or 1, MAX_PARTS)
    if index is not None and index.splittable and index.frames >= SPLIT_MIN_FRAMES and parts > 1:
        _split_pass(path, data, index, parts)
        _add_named_low_media(data, index)
    else:
        _pass(path, data, DISPLAY_FILTER, source=index)
    # SIP text in a UDP datagram, or in a TCP stream where nothing was decoded as SIP (the
    # segments of a reassembled SIP message carry SIP text too): decode those ports as SIP.
    ports = sorted({(t, p) for t, sp, dp, stream in data.suspects if stream not in data.sip_streams or t == "UDP"
                    for p in (sp, dp)})
    if ports:
        # SIP on ports another dissector owns: decode exactly those ports as SIP, then replace
        # whatever the first pass read on them.
        decode = {f"{t.lower()}.port=={p}": "sip" for t, p in ports}
        where = " || ".join(f"{t.lower()}.port=={p}" for t, p in ports)
        second = CaptureData(path=path, messages=[], rtp=[], rtcp=[])
        _pass(path, second, f"sip && ({where})", decode)
        taken = {(m.frame, m.index) for m in second.messages}
        data.messages = [m for m in data.messages if (m.frame, m.index) not in taken] + second.messages
        data.notes.append(f"SIP found on ports other dissectors claim ({', '.join(f'{t}/{p}' for t, p in ports)}): "
                          "decoded those ports as SIP")
    data.suspects = set()
    _complete_short_tcp(path, data)
    return data


def _missing(m: WireMessage) -> int:
    """Bytes a TCP message lacks of its Content-Length (0: whole, or no length to go by)."""
    if m.transport != "TCP":
        return 0
    _, length, rest = frame_body(m.raw)
    return max(0, (length or 0) - rest)


def _complete_short_tcp(path: str, data: CaptureData) -> None:
    """Complete the TCP messages tshark handed over short of their Content-Length: its SIP
    desegmentation reads "Content-Length" but not the compact "l" (RFC 3261 §7.3.3), so a body cut
    over segments after "l:" ends at the first segment, and the rest shows as a "Continuation" or as
    plain TCP. Only then, one more tshark reads the payloads of just those connections, and each
    short message takes the bytes that followed it on its connection, up to its length (never a
    payload that starts a new message)."""
    short = [k for k, m in enumerate(data.messages) if _missing(m)]
    if not short:
        return
    conns = {(m.src, m.sport, m.dst, m.dport) for m in (data.messages[k] for k in short)}

    def ip(addr: str, side: str) -> str:
        return f"{'ipv6' if ':' in addr else 'ip'}.{side}=={addr}"

    where = " || ".join(f"({ip(a, 'src')} && tcp.srcport=={sp} && {ip(b, 'dst')} && tcp.dstport=={dp})"
                        for a, sp, b, dp in sorted(conns))
    cap, loop = _capture(path, f"tcp.len > 0 && ({where})", fields=SEGMENT_FIELDS, media=False)
    # (src, sport, dst, dport) -> [(frame, stream, seq, next seq, payload)] in frame order
    segments: dict[tuple[str, int, str, int], list[tuple[int, int, int, int, bytes]]] = {}
    for batch in stream_frames(cap, loop):
        for row in batch:
            if len(row) < len(SEGMENT_FIELDS) or not row[10]:
                continue
            conn = (_last(row[1]) or _last(row[3]), _int(row[5]), _last(row[2]) or _last(row[4]), _int(row[6]))
            with contextlib.suppress(ValueError):
                segments.setdefault(conn, []).append((_int(row[0]), _int(row[7]), _int(row[8]), _int(row[9]),
                                                      bytes.fromhex(_last(row[10]).replace(":", ""))))
    _check_failure(path, data, cap)
    data.notes = list(dict.fromkeys(data.notes))  # (a truncated capture is noted once)
    completed = 0
    for k in short:
        m = data.messages[k]
        more = _following(segments.get((m.src, m.sport, m.dst, m.dport), []), m.frame, _missing(m))
        if more:
            data.messages[k] = WireMessage.from_bytes(m.raw + more, frame=m.frame, index=m.index, time=m.time,
                                                      src=m.src, sport=m.sport, dst=m.dst, dport=m.dport,
                                                      transport="TCP")
            completed += 1
    if completed:
        data.notes.append(f"{completed} TCP message(s) completed from the segments after them (tshark cut their "
                          "bodies at a segment boundary: it reassembles by Content-Length, not the compact l)")


def _following(segments: list[tuple[int, int, int, int, bytes]], frame: int, missing: int) -> bytes:
    """Up to `missing` bytes that follow, in sequence, the segment of `frame` on its TCP stream: a
    segment already seen (a retransmission, a frame captured twice) is skipped, a gap or a segment
    that starts a new message ends them."""
    mine = next((seg for seg in segments if seg[0] == frame), None)
    if mine is None:
        return b""
    _, stream, _, expected, _ = mine
    more = b""
    for number, seg_stream, seq, nxt, payload in segments:
        if number <= frame or seg_stream != stream or seq < expected:
            continue
        if seq > expected or _START_RE.match(payload):
            break
        more += payload
        expected = nxt
        if len(more) >= missing:
            break
    return more[:missing]


def read_capture(path: str | Path) -> CaptureData:
    """All SIP messages (every hop copy) and RTP/RTCP packets of a pcap/pcapng file.

    Raises BadInput for a missing, empty, non-capture or SIP-less file.
    """
    path = str(path)
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"{path}: no such file")
    if p.stat().st_size == 0:
        raise BadInput(f"{path}: empty file (0 bytes), not a capture")
    data = _read(path)
    if not data.messages:
        what = "no SIP, RTP or RTCP packets" if data.frames == 0 else "no SIP messages"
        raise BadInput(f"{path}: capture holds {what}; nothing to verify")
    data.messages.sort(key=lambda m: (m.time, m.frame, m.index))
    return data
