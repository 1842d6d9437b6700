"""What the capture shows: SIP messages as seen on one hop, RTP/RTCP packets, and lenient views of
their bodies (SDP, sipfrag).

A verifier must describe malformed traffic, not choke on it, so a message that the strict codec
(`SipMessage.parse`) rejects is re-read leniently and keeps the codec's complaint in `parse_error`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from harness.sip.errors import SipParseError
from harness.sip.headers import NameAddr, Via, parse_cseq
from harness.sip.message import Header, SipMessage, canonical_name

_STATUS_RE = re.compile(r"SIP/(\S+)\s+(\d{3})(?:\s(.*))?$", re.I)


def frame_body(data: bytes) -> tuple[int, int | None, int]:
    """(offset of the body, Content-Length or None, bytes after the header section)."""
    end = data.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end, sep = data.find(b"\n\n"), 2
    if end < 0:
        return len(data), None, 0
    start = end + sep
    length = None
    match = re.search(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*\r?$", data[:end + 2], re.I | re.M)
    if match:
        length = int(match.group(1))
    return start, length, len(data) - start


def endpoint(ip: str, port: int) -> str:
    """`ip:port`, with IPv6 addresses in brackets so the port stays unambiguous."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def lenient_parse(data: bytes) -> SipMessage:
    """Start line and header lines as they are, for messages the strict codec refused."""
    head_end, length, rest = frame_body(data)
    head = data[:head_end].decode("utf-8", "replace")
    body = data[head_end:]
    if length is not None and length < len(body):
        body = body[:length]
    lines = [line.rstrip("\r") for line in head.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    start = lines[0] if lines else ""
    msg = SipMessage()
    match = _STATUS_RE.match(start)
    if match:
        msg.status = int(match.group(2))
        msg.reason = match.group(3) or ""
    else:
        parts = start.split(" ")
        msg.method = parts[0] if parts and parts[0] else "?"
        msg.uri = parts[1] if len(parts) > 1 else ""
    headers: list[Header] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            last = headers[-1]
            headers[-1] = Header(last.name, last.value + "\r\n" + line, last.sep)
            continue
        name, colon, value = line.partition(":")
        if not colon:
            continue
        headers.append(Header(name.strip(), value.strip(" \t"), ":" + (" " if value.startswith(" ") else "")))
    msg.headers = headers
    msg.body = body
    return msg


@dataclass(frozen=True, slots=True)
class SdpMedia:
    kind: str
    port: int
    proto: str
    fmts: tuple[str, ...]
    connection: str | None
    attrs: tuple[str, ...]


def _media(fields: list[str], conn: list[str | None], attrs: list[str]) -> SdpMedia:
    port = fields[1].split("/")[0] if len(fields) > 1 else "0"
    return SdpMedia(fields[0] if fields else "", int(port) if port.isdigit() else 0,
                    fields[2] if len(fields) > 2 else "", tuple(fields[3:]), conn[0], tuple(attrs))


@dataclass(frozen=True, slots=True)
class SdpView:
    """Just what the checks read from an SDP body; tolerant of missing lines."""

    origin: tuple[str, ...] | None
    connection: str | None
    session_attrs: tuple[str, ...]
    media: tuple[SdpMedia, ...]
    text: str

    @classmethod
    def parse(cls, body: bytes) -> SdpView | None:
        """None when the body has neither o= nor m= (not SDP at all)."""
        text = body.decode("utf-8", "replace")
        origin: tuple[str, ...] | None = None
        connection: str | None = None
        session_attrs: list[str] = []
        media: list[tuple[list[str], list[str | None], list[str]]] = []   # (m= fields, [c=], a= lines)
        for raw in text.splitlines():
            line = raw.strip()
            if len(line) < 2 or line[1] != "=":
                continue
            kind, value = line[0], line[2:].strip()
            if kind == "o":
                origin = tuple(value.split())
            elif kind == "c":
                addr = value.split()[-1].split("/")[0] if value.split() else None
                if media:
                    media[-1][1][0] = addr
                else:
                    connection = addr
            elif kind == "m":
                media.append((value.split(), [None], []))
            elif kind == "a":
                (media[-1][2] if media else session_attrs).append(value)
        if origin is None and not media:
            return None
        return cls(origin, connection, tuple(session_attrs), tuple(_media(*m) for m in media), text)

    @property
    def version(self) -> int | None:
        if self.origin and len(self.origin) >= 3 and self.origin[2].isdigit():
            return int(self.origin[2])
        return None

    @property
    def session_id(self) -> str | None:
        return self.origin[1] if self.origin and len(self.origin) >= 2 else None

    def direction(self, index: int = 0) -> str:
        """Media-level direction beats session-level; sendrecv by default (RFC 4566 §6)."""
        names = ("sendrecv", "sendonly", "recvonly", "inactive")
        if index < len(self.media):
            for attr in self.media[index].attrs:
                if attr in names:
                    return attr
        for attr in self.session_attrs:
            if attr in names:
                return attr
        return "sendrecv"

    def address(self, index: int = 0) -> tuple[str, int] | None:
        """(connection address, port) of media stream `index`, media-level c= beating session-level."""
        if index >= len(self.media):
            return None
        m = self.media[index]
        addr = m.connection or self.connection
        return (addr, m.port) if addr else None

    def rtpmap(self, index: int = 0) -> dict[str, str]:
        if index >= len(self.media):
            return {}
        out: dict[str, str] = {}
        for attr in self.media[index].attrs:
            if attr.startswith("rtpmap:"):
                pt, _, enc = attr[7:].partition(" ")
                out[pt] = enc.strip().lower()
        return out


@dataclass(eq=False)
class WireMessage:
    """One SIP message as seen on one hop: where and when, plus the message itself."""

    frame: int
    index: int
    time: float
    src: str
    sport: int
    dst: str
    dport: int
    transport: str
    msg: SipMessage
    parse_error: str | None = None
    wire_body_len: int = 0           # bytes after the header section on the wire (UDP: rest of datagram)
    raw: bytes = field(default=b"", repr=False)

    @classmethod
    def from_bytes(cls, data: bytes, **where: object) -> WireMessage:
        start, _length, rest = frame_body(data)
        try:
            msg = SipMessage.parse(data)
            error = None
        except SipParseError as exc:
            msg, error = lenient_parse(data), exc.reason
        return cls(msg=msg, parse_error=error, wire_body_len=rest, raw=data, **where)  # type: ignore[arg-type]

    # --- where --------------------------------------------------------------------------
    @property
    def src_ep(self) -> str:
        return endpoint(self.src, self.sport)

    @property
    def dst_ep(self) -> str:
        return endpoint(self.dst, self.dport)

    @property
    def hop(self) -> tuple[str, str]:
        return self.src_ep, self.dst_ep

    # --- start line ---------------------------------------------------------------------
    @property
    def is_request(self) -> bool:
        return self.msg.method is not None

    @property
    def method(self) -> str | None:
        return self.msg.method

    @property
    def uri(self) -> str | None:
        return self.msg.uri

    @property
    def status(self) -> int | None:
        return self.msg.status

    @property
    def start_line(self) -> str:
        if self.msg.method is not None:
            return f"{self.msg.method} {self.msg.uri} {self.msg.version}"
        return f"{self.msg.version} {self.msg.status} {self.msg.reason}"

    # --- headers ------------------------------------------------------------------------
    def get(self, name: str) -> str | None:
        return self.msg.get(name)

    def get_all(self, name: str) -> list[str]:
        return self.msg.get_all(name)

    def lines(self, name: str) -> list[str]:
        """Each header line's raw value (no comma splitting)."""
        want = canonical_name(name)
        return [h.value for h in self.msg.headers if h.canonical == want]

    def has(self, name: str) -> bool:
        return bool(self.lines(name))

    @cached_property
    def call_id(self) -> str | None:
        return self.get("Call-ID")

    @cached_property
    def cseq(self) -> tuple[int, str] | None:
        value = self.get("CSeq")
        try:
            return parse_cseq(value) if value is not None else None
        except SipParseError:
            return None

    @property
    def cseq_num(self) -> int | None:
        return self.cseq[0] if self.cseq else None

    @property
    def cseq_method(self) -> str | None:
        return self.cseq[1] if self.cseq else None

    def name_addr(self, name: str) -> NameAddr | None:
        value = self.get(name)
        if value is None:
            return None
        try:
            return NameAddr.parse(value)
        except SipParseError:
            return None

    @cached_property
    def from_tag(self) -> str | None:
        return _tag(self.get("From"))

    @cached_property
    def to_tag(self) -> str | None:
        return _tag(self.get("To"))

    @cached_property
    def vias(self) -> list[str]:
        return self.get_all("Via")

    @cached_property
    def branches(self) -> list[str | None]:
        out: list[str | None] = []
        for value in self.vias:
            try:
                out.append(Via.parse(value).branch)
            except SipParseError:
                match = re.search(r";\s*branch\s*=\s*([^;,\s]+)", value, re.I)
                out.append(match.group(1) if match else None)
        return out

    @property
    def top_branch(self) -> str | None:
        return self.branches[0] if self.branches else None

    @property
    def bottom_branch(self) -> str | None:
        """The branch the originating UAC chose: the logical identity of a request across hops."""
        if not self.vias:
            return None
        return self.branches[-1] or self.vias[-1]

    @cached_property
    def max_forwards(self) -> int | None:
        value = self.get("Max-Forwards")
        return int(value) if value is not None and value.strip().isdigit() else None

    @property
    def content_type(self) -> str | None:
        value = self.get("Content-Type")
        return None if value is None else value.split(";", 1)[0].strip().lower()

    @property
    def body(self) -> bytes:
        return self.msg.body

    @cached_property
    def sdp(self) -> SdpView | None:
        if not self.body or (self.content_type or "application/sdp") != "application/sdp":
            return None
        return SdpView.parse(self.body)

    @cached_property
    def sipfrag_lines(self) -> list[str]:
        return [line.rstrip("\r") for line in self.body.decode("utf-8", "replace").split("\n") if line.strip()]

    @cached_property
    def contact_uris(self) -> list[str]:
        return self.get_all("Contact")

    def summary(self) -> str:
        cseq = f" (CSeq {self.cseq_num} {self.cseq_method})" if self.cseq else ""
        if self.is_request:
            return f"{self.method} {self.uri}{cseq}"
        return f"{self.status} {self.msg.reason}{cseq}"

    def __repr__(self) -> str:
        return f"<WireMessage #{self.frame}.{self.index} {self.src_ep}->{self.dst_ep} {self.summary()}>"


def _tag(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return NameAddr.parse(value).tag
    except SipParseError:
        match = re.search(r";\s*tag\s*=\s*([^;,\s>]+)\s*(?:;|$)", value, re.I)
        return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class RtpPacket:
    frame: int
    time: float
    src: str
    sport: int
    dst: str
    dport: int
    ssrc: int
    pt: int
    seq: int
    timestamp: int
    marker: bool


@dataclass(frozen=True, slots=True)
class RtcpPacket:
    frame: int
    time: float
    src: str
    sport: int
    dst: str
    dport: int
    pt: int | None


@dataclass
class CaptureData:
    """Everything the checks read from one capture file."""

    path: str
    messages: list[WireMessage]
    rtp: list[RtpPacket]
    rtcp: list[RtcpPacket]
    frames: int = 0
    notes: list[str] = field(default_factory=list)
