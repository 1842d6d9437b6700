"""What the capture shows: SIP messages as seen on one hop, RTP/RTCP packets, and lenient views of
their bodies (SDP, sipfrag).

A verifier must describe malformed traffic, not choke on it, so a message that the strict codec
(`SipMessage.parse`) rejects is re-read leniently and keeps the codec's complaint in `parse_error`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Generic, TypeVar

from harness.sip.errors import SipParseError
from harness.sip.headers import NameAddr, SipUri, parse_cseq, split_commas
from harness.sip.message import NO_SPLIT, Header, SipMessage, canonical_name

T = TypeVar("T")


class cached_property(Generic[T]):  # noqa: N801 - a drop-in for functools.cached_property
    """functools.cached_property without its per-access lock (3.11 takes an RLock on every first
    access; the verifier touches a dozen properties of ~100k messages, on one thread)."""

    def __init__(self, func: Any) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]
        value = obj.__dict__[self.name] = self.func(obj)
        return value  # type: ignore[no-any-return]


_STATUS_RE = re.compile(r"SIP/(\S+)\s+(\d{3})(?:\s(.*))?$", re.I)
_LENGTH_RE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*\r?$", re.I | re.M)
_HEADER_RE = re.compile(r"^([^:\r\n]*):[ \t]*([^\r\n]*?)[ \t]*\r?$", re.M)


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
    match = _LENGTH_RE.search(data, 0, end + 2)
    if match:
        length = int(match.group(1))
    return start, length, len(data) - start


_LENGTH_STR_RE = re.compile(_LENGTH_RE.pattern.decode(), re.I | re.M | re.A)
_MISSING = object()
_LINE_CACHE: dict[str, tuple[str, str] | None] = {}
_LINE_CACHE_MAX = 1 << 18


def _header_line(line: str) -> tuple[str, str] | None:
    """(canonical name, value) of one unfolded header line, exactly as `_HEADER_RE` reads it
    (a line with a CR anywhere but at its end, or without a colon, is no header)."""
    if line[-1:] == "\r":
        line = line[:-1]
    name, colon, value = line.partition(":")
    if not colon or "\r" in line:
        return None
    return canonical_name(name.strip()), value.strip(" \t")


def _folded_headers(text: str) -> list[tuple[str, str]]:
    """Header lines with folding (RFC 3261 §7.3.1): continuation lines joined with one space."""
    headers: list[tuple[str, str]] = []
    for raw in text.split("\n"):
        line = raw.rstrip("\r")
        if not line:
            continue
        if line[0] in " \t":
            if headers:
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {line.strip(chr(32) + chr(9))}".strip())
            continue
        name, colon, value = line.partition(":")
        if colon:
            headers.append((canonical_name(name.strip()), value.strip(" \t")))
    return headers


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
    """One SIP message as seen on one hop: where and when, plus the message itself.

    Headers are indexed once by a fast, lenient split (the verifier reads every header of every
    copy); the strict codec (`msg`, `parse_error`) runs only when someone asks for it.
    """

    frame: int
    index: int
    time: float
    src: str
    sport: int
    dst: str
    dport: int
    transport: str
    raw: bytes = field(default=b"", repr=False)
    wire_body_len: int = 0           # bytes after the header section on the wire (UDP: rest of datagram)
    start_line: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list, repr=False)   # (canonical name, unfolded value)
    body: bytes = field(default=b"", repr=False)
    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str | None = None
    version: str = "SIP/2.0"

    @classmethod
    def from_bytes(cls, data: bytes, **where: object) -> WireMessage:
        start, length, rest = frame_body(data)
        head = data[:start].decode("utf-8", "replace")
        first, _, lines = head.partition("\n")
        first = first.rstrip("\r")
        headers: list[tuple[str, str]]
        if "\n " in lines or "\n\t" in lines or lines[:1] in (" ", "\t"):
            headers = _folded_headers(lines)
        else:
            headers = [(canonical_name(name.strip()), value) for name, value in _HEADER_RE.findall(lines)]
        body = data[start:]
        if length is not None and length < len(body):
            body = body[:length]
        m = cls(raw=data, wire_body_len=rest, start_line=first, headers=headers, body=body,
                **where)  # type: ignore[arg-type]
        m._read_start_line(first)
        return m

    def _read_start_line(self, first: str) -> None:
        """Status-Line (version, status, reason) or Request-Line (method, uri, version), leniently."""
        match = _STATUS_RE.match(first) if first[:4].upper() == "SIP/" else None
        if match:
            self.version, self.status, self.reason = first.split(" ", 1)[0], int(match.group(2)), match.group(3) or ""
        else:
            parts = first.split(" ")
            self.method = parts[0] if parts and parts[0] else "?"
            self.uri = parts[1] if len(parts) > 1 else ""
            self.version = parts[2] if len(parts) > 2 else ""

    @classmethod
    def from_text(cls, text: str, **where: object) -> WireMessage:
        """`from_bytes(text.encode("utf-8", "surrogateescape"))`, faster for the ASCII text tshark
        hands over: no bytes round trip, header lines looked up in a cache (hop copies and
        retransmissions repeat most lines), and the header index built in the same loop."""
        if not text.isascii():
            return cls.from_bytes(text.encode("utf-8", "surrogateescape"), **where)
        raw = text.encode("ascii")
        end, sep = text.find("\r\n\r\n"), 4
        if end < 0:
            end, sep = text.find("\n\n"), 2
        start = len(text) if end < 0 else end + sep
        length: int | None = None
        first, _, lines = text[:start].partition("\n")
        headers: list[tuple[str, str]]
        by_name: dict[str, list[str]] = {}
        if end < 0:
            pass   # no header section: frame_body finds no Content-Length either
        elif "\n " in lines or "\n\t" in lines or lines[:1] in (" ", "\t") or first[:1] in "lLcC":
            match = _LENGTH_STR_RE.search(text, 0, end + 2)
            length = int(match.group(1)) if match else None
        first = first.rstrip("\r")
        if "\n " in lines or "\n\t" in lines or lines[:1] in (" ", "\t"):
            headers = _folded_headers(lines)
            for name, value in headers:
                by_name.setdefault(name, []).append(value)
        else:
            headers = []
            cache = _LINE_CACHE
            if len(cache) > _LINE_CACHE_MAX:
                cache.clear()
            for line in lines.split("\n"):
                item = cache.get(line, _MISSING)
                if item is _MISSING:
                    item = cache[line] = _header_line(line)
                if item is not None:
                    headers.append(item)   # type: ignore[arg-type]
                    name, value = item      # type: ignore[misc]
                    values = by_name.get(name)
                    if values is None:
                        by_name[name] = [value]
                    else:
                        values.append(value)
                    if name == "Content-Length" and length is None and end >= 0:
                        # frame_body's search, line by line: only such a line can match it
                        match = _LENGTH_STR_RE.match(line)
                        length = int(match.group(1)) if match else None
        body = raw[start:]
        rest = len(body)
        if length is not None and length < rest:
            body = body[:length]
        m = object.__new__(cls)
        m.__dict__.update(where, raw=raw, wire_body_len=rest, start_line=first, headers=headers, body=body,
                          method=None, uri=None, status=None, reason=None, version="SIP/2.0", _by_name=by_name)
        m._read_start_line(first)
        return m

    @cached_property
    def _strict(self) -> tuple[SipMessage, str | None]:
        try:
            return SipMessage.parse(self.raw), None
        except SipParseError as exc:
            return lenient_parse(self.raw), exc.reason

    @property
    def msg(self) -> SipMessage:
        """The codec's view (strict parse, or the lenient one when the codec refused the bytes)."""
        return self._strict[0]

    @property
    def parse_error(self) -> str | None:
        """What the strict codec objected to, or None."""
        return self._strict[1]

    def prime(self) -> None:
        """Compute what the model groups by (Call-ID, CSeq, Vias, branches, tags, endpoints) now."""
        self.call_id, self.cseq, self.branches, self.from_tag, self.to_tag  # noqa: B018
        self.src_ep, self.dst_ep, self.logical_key, self.hop_key  # noqa: B018
        if self.body:
            self.sdp  # noqa: B018

    @cached_property
    def logical_key(self) -> tuple[object, ...]:
        """What the hop copies of one logical message share (harness/verify/model.py groups by it)."""
        if self.method is not None:
            return ("req", self.call_id, self.cseq_num, self.cseq_method, self.method, self.bottom_branch)
        return ("rsp", self.call_id, self.cseq_num, self.cseq_method, self.status, self.bottom_branch)

    @cached_property
    def hop_key(self) -> tuple[object, ...]:
        """Same key and same hop key: a retransmission (harness/verify/model.py)."""
        return (self.src_ep, self.dst_ep, len(self.vias), self.top_branch, self.to_tag)

    # --- where --------------------------------------------------------------------------
    @cached_property
    def src_ep(self) -> str:
        return endpoint(self.src, self.sport)

    @cached_property
    def dst_ep(self) -> str:
        return endpoint(self.dst, self.dport)

    @property
    def hop(self) -> tuple[str, str]:
        return self.src_ep, self.dst_ep

    # --- start line ---------------------------------------------------------------------
    @property
    def is_request(self) -> bool:
        return self.method is not None

    # --- headers ------------------------------------------------------------------------
    @cached_property
    def _by_name(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, value in self.headers:
            out.setdefault(name, []).append(value)
        return out

    def get(self, name: str) -> str | None:
        values = self._by_name.get(canonical_name(name))
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        """Every value: header lines, each split at commas unless the header has no comma list."""
        canonical = canonical_name(name)
        values = self._by_name.get(canonical, [])
        if canonical in NO_SPLIT:
            return list(values)
        return [part for value in values for part in _split(value)]

    def lines(self, name: str) -> list[str]:
        """Each header line's value (no comma splitting)."""
        return list(self._by_name.get(canonical_name(name), []))

    def has(self, name: str) -> bool:
        return canonical_name(name) in self._by_name

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
        return None if value is None else name_addr(value)

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
        return [_branch(value) for value in self.vias]

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

    @cached_property
    def sdp(self) -> SdpView | None:
        if not self.body or (self.content_type or "application/sdp") != "application/sdp":
            return None
        return _sdp_view(self.body)

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
        return f"{self.status} {self.reason}{cseq}"

    def __repr__(self) -> str:
        return f"<WireMessage #{self.frame}.{self.index} {self.src_ep}->{self.dst_ep} {self.summary()}>"


@lru_cache(maxsize=1 << 12)
def _sdp_view(body: bytes) -> SdpView | None:
    """SdpView.parse, cached: every hop copy of a message carries the same body (SdpView is frozen)."""
    return SdpView.parse(body)


@lru_cache(maxsize=1 << 16)
def _split(value: str) -> tuple[str, ...]:
    """split_commas, cached: hop copies repeat the same Via, Route and Contact lines."""
    if "," not in value:
        value = value.strip()
        return (value,) if value else ()
    return tuple(split_commas(value))


@lru_cache(maxsize=1 << 14)
def sip_uri(text: str | None) -> SipUri | None:
    """The URI inside a name-addr or a bare URI; None when it is not a SIP URI (or does not parse)."""
    if not text:
        return None
    try:
        value = NameAddr.parse(text).uri if "<" in text else SipUri.parse(text.strip())
    except SipParseError:
        return None
    return value if isinstance(value, SipUri) else None


@lru_cache(maxsize=1 << 16)
def name_addr(value: str) -> NameAddr | None:
    """NameAddr.parse, cached (hop copies repeat the same values), None when it does not parse."""
    try:
        return NameAddr.parse(value)
    except SipParseError:
        return None


_BRANCH_RE = re.compile(r";\s*branch\s*=\s*([^;,\s]+)", re.I)
_TAG_RE = re.compile(r";\s*tag\s*=\s*([^;,\s>]+)", re.I)


@lru_cache(maxsize=1 << 16)
def _branch(value: str) -> str | None:
    """The branch parameter of one Via value (a regex: Via.parse costs 13 us and G2 only needs this)."""
    match = _BRANCH_RE.search(value)
    return match.group(1) if match else None


@lru_cache(maxsize=1 << 16)
def _tag(value: str | None) -> str | None:
    """The tag header parameter of a From/To value: after the `>` of a name-addr, or among the
    parameters of an addr-spec (which cannot carry URI parameters, RFC 3261 §20)."""
    if value is None:
        return None
    params = value[value.rindex(">") + 1:] if ">" in value else value
    match = _TAG_RE.search(params)
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
    payload_hex: str = ""   # tshark's rtp.payload (hex, maybe colon-separated); see `payload`
    source: Any = field(default=None, compare=False, repr=False)  # a pcapindex.CaptureIndex to read the payload from instead (large files)

    @property
    def payload(self) -> bytes:
        """The RTP payload (after header, CSRCs and extension; padding excluded)."""
        if self.source is not None:
            return self.source.rtp_payload(self.frame)
        text = self.payload_hex.replace(":", "")
        try:
            return bytes.fromhex(text)
        except ValueError:
            return b""


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
    # reader bookkeeping: frames with SIP text tshark did not decode, TCP streams it did decode as SIP
    suspects: set[tuple[str, int, int, int]] = field(default_factory=set)
    sip_streams: set[int] = field(default_factory=set)
    # RTP by (address, port), each packet under its source and its destination, in `rtp` order: built
    # by the reader while tshark still reads, so a load capture's instances get their packets at once
    rtp_by_addr: dict[tuple[str, int], list[RtpPacket]] | None = field(default=None, repr=False, compare=False)
