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


class _LineCache(dict[str, "tuple[str, str] | None"]):
    """Header line -> `_header_line(line)`, computed on first sight: hop copies and retransmissions
    repeat most lines, so `map(cache.__getitem__, lines)` reads a message at C speed. A line that
    `frame_body` would take for the Content-Length also goes to `lengths`, with its number."""

    def __init__(self) -> None:
        super().__init__()
        self.lengths: dict[str, int] = {}

    def __missing__(self, line: str) -> tuple[str, str] | None:
        item = self[line] = _header_line(line)
        if item is not None and item[0] == "Content-Length":
            match = _LENGTH_STR_RE.match(line)   # only such a line can match frame_body's search
            if match:
                self.lengths[line] = int(match.group(1))
        return item

    def trim(self) -> None:
        """Bound the memory of a long capture (called between messages, never within one)."""
        self.clear()
        self.lengths.clear()


_LINES = _LineCache()
# method, uri, status, reason, version
StartLine = tuple[str | None, str | None, int | None, str | None, str]


def _read_start_line(first: str) -> StartLine:
    """Status-Line (version, status, reason) or Request-Line (method, uri, version), leniently."""
    match = _STATUS_RE.match(first) if first[:4].upper() == "SIP/" else None
    if match:
        return None, None, int(match.group(2)), match.group(3) or "", first.split(" ", 1)[0]
    parts = first.split(" ")
    return (parts[0] if parts and parts[0] else "?", parts[1] if len(parts) > 1 else "", None, None,
            parts[2] if len(parts) > 2 else "")


class _StartCache(dict[str, StartLine]):
    """Start line -> `_read_start_line(line)`: responses and the requests of a load run repeat them."""

    def __missing__(self, first: str) -> StartLine:
        if len(self) > _LINE_CACHE_MAX:
            self.clear()
        value = self[first] = _read_start_line(first)
        return value


_START_LINES = _StartCache()


class _NameCache(dict[str, str]):
    """Header name -> canonical_name(name): a plain dict lookup is cheaper than an lru_cache call,
    and the checks look up ~30 headers of every message."""

    def __missing__(self, name: str) -> str:
        if len(self) > 1 << 12:
            self.clear()
        value = self[name] = canonical_name(name)
        return value


_CANONICAL = _NameCache()


def _search_length(text: str, end: int) -> int | None:
    """frame_body's Content-Length, searched in the header section of `text` (ending at `end`)."""
    if end < 0:
        return None   # no header section: frame_body finds no Content-Length either
    match = _LENGTH_STR_RE.search(text, 0, end + 2)
    return int(match.group(1)) if match else None


class _Ones(dict[str, tuple[str]]):
    """value -> (value,): the value list of a header that occurs once, shared by every message."""

    def __missing__(self, value: str) -> tuple[str]:
        if len(self) > _LINE_CACHE_MAX:
            self.clear()
        one = self[value] = (value,)
        return one


_ONES = _Ones()


def _index(headers: list[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    """Header values by canonical name, in message order."""
    by_name: dict[str, tuple[str, ...]] = {}
    ones = _ONES
    for name, value in headers:
        if name in by_name:
            by_name[name] += (value,)
        else:
            by_name[name] = ones[value]
    return by_name


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


class _EndpointCache(dict[tuple[str, int], str]):
    """(ip, port) -> endpoint(ip, port): a capture has few endpoints and each message names two."""

    def __missing__(self, key: tuple[str, int]) -> str:
        if len(self) > _LINE_CACHE_MAX:
            self.clear()
        value = self[key] = endpoint(*key)
        return value


_ENDPOINTS = _EndpointCache()


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
    copy); the strict codec (`msg`, `parse_error`) runs only when someone asks for it. What the
    model groups by is computed at once (see __post_init__).
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
    # Set by __post_init__: what the model groups by and the checks read most, as plain attributes
    # (no descriptor on the class, so CPython's specialised attribute access applies to them). With
    # the fields these are 29 attributes, the most CPython 3.11 keeps in an instance's inline values
    # without a dict of its own (a load capture holds ~100k messages): add none lightly.
    _by_name: dict[str, tuple[str, ...]] = field(init=False, repr=False)   # header values by canonical name
    call_id: str | None = field(init=False, repr=False)
    cseq: tuple[int, str] | None = field(init=False, repr=False)
    from_tag: str | None = field(init=False, repr=False)
    to_tag: str | None = field(init=False, repr=False)
    vias: list[str] = field(init=False, repr=False)
    branches: list[str | None] = field(init=False, repr=False)
    src_ep: str = field(init=False, repr=False)
    dst_ep: str = field(init=False, repr=False)
    # What the hop copies of one logical message share (harness/verify/model.py groups by it).
    logical_key: tuple[object, ...] = field(init=False, repr=False)
    sdp: SdpView | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name = _index(self.headers)
        derived = _identity(self._by_name, self.method, self.status, self.src, self.sport, self.dst,
                            self.dport, self.body)
        (self.call_id, self.cseq, self.from_tag, self.to_tag, self.vias, self.branches, self.src_ep,
         self.dst_ep, self.logical_key, self.sdp) = derived

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
        method, uri, status, reason, version = _START_LINES[first]
        return cls(raw=data, wire_body_len=rest, start_line=first, headers=headers, body=body, method=method,
                   uri=uri, status=status, reason=reason, version=version, **where)  # type: ignore[arg-type]

    @classmethod
    def from_text(cls, text: str, *, frame: int, index: int, time: float, src: str, sport: int, dst: str,
                  dport: int, transport: str) -> WireMessage:
        """`from_bytes(text.encode("utf-8", "surrogateescape"))`, faster for the ASCII text tshark
        hands over: no bytes round trip, header and start lines looked up in caches (hop copies and
        retransmissions repeat most lines)."""
        if not text.isascii():
            return cls.from_bytes(text.encode("utf-8", "surrogateescape"), frame=frame, index=index,
                                  time=time, src=src, sport=sport, dst=dst, dport=dport, transport=transport)
        end, sep = text.find("\r\n\r\n"), 4
        if end < 0:
            end, sep = text.find("\n\n"), 2
        start = len(text) if end < 0 else end + sep
        head = text[:start]
        headers: list[tuple[str, str]]
        length: int | None
        if "\n " in head or "\n\t" in head:   # a header line is folded
            first, _, lines = head.partition("\n")
            headers = _folded_headers(lines)
            length = _search_length(text, end)
        else:
            if len(_LINES) > _LINE_CACHE_MAX:
                _LINES.trim()
            rows = head.split("\n")
            first = rows[0]
            del rows[0]
            headers = list(filter(None, map(_LINES.__getitem__, rows)))
            if end < 0 or first[:1] in "lLcC":   # the start line may be the Content-Length line
                length = _search_length(text, end)
            else:
                line = next(filter(_LINES.lengths.__contains__, rows), None)
                length = None if line is None else _LINES.lengths[line]
        first = first.rstrip("\r")
        raw = text.encode("ascii")
        body = raw[start:]
        rest = len(body)
        if length is not None and length < rest:
            body = body[:length]
        return cls(frame, index, time, src, sport, dst, dport, transport, raw, rest, first, headers, body,
                   *_START_LINES[first])

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

    @property
    def hop_key(self) -> tuple[object, ...]:
        """Same logical key and same hop key: a retransmission (harness/verify/model.py)."""
        branches = self.branches
        return (self.src_ep, self.dst_ep, len(self.vias), branches[0] if branches else None, self.to_tag)

    # --- where --------------------------------------------------------------------------
    @property
    def hop(self) -> tuple[str, str]:
        return self.src_ep, self.dst_ep

    # --- start line ---------------------------------------------------------------------
    @property
    def is_request(self) -> bool:
        return self.method is not None

    # --- headers ------------------------------------------------------------------------
    def get(self, name: str) -> str | None:
        values = self._by_name.get(_CANONICAL[name])
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        """Every value: header lines, each split at commas unless the header has no comma list."""
        canonical = _CANONICAL[name]
        values = self._by_name.get(canonical, ())
        if canonical in NO_SPLIT:
            return list(values)
        return [part for value in values for part in _split(value)]

    def lines(self, name: str) -> list[str]:
        """Each header line's value (no comma splitting)."""
        return list(self._by_name.get(_CANONICAL[name], ()))

    def has(self, name: str) -> bool:
        return _CANONICAL[name] in self._by_name

    @property
    def cseq_num(self) -> int | None:
        return self.cseq[0] if self.cseq else None

    @property
    def cseq_method(self) -> str | None:
        return self.cseq[1] if self.cseq else None

    def name_addr(self, name: str) -> NameAddr | None:
        value = self.get(name)
        return None if value is None else name_addr(value)

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


def _identity(by_name: dict[str, tuple[str, ...]], method: str | None, status: int | None, src: str,
              sport: int, dst: str, dport: int, body: bytes) -> tuple[Any, ...]:
    """What WireMessage.__post_init__ sets, in its order (Call-ID ... SDP view), in one go."""
    get = by_name.get
    values = get("Call-ID")
    call_id = values[0] if values else None
    values = get("CSeq")
    cseq = _cseq(values[0] if values else None)
    values = get("From")
    from_tag = _tag(values[0] if values else None)
    values = get("To")
    to_tag = _tag(values[0] if values else None)
    values = get("Via")
    parts, marks = _via_stack(values) if values else ((), ())
    vias, branches = list(parts), list(marks)
    src_ep, dst_ep = _ENDPOINTS[src, sport], _ENDPOINTS[dst, dport]
    num, cseq_method = cseq if cseq else (None, None)
    bottom = (branches[-1] or vias[-1]) if vias else None   # the bottom_branch property
    key = ("req", call_id, num, cseq_method, method, bottom) if method is not None else \
        ("rsp", call_id, num, cseq_method, status, bottom)
    values = get("Content-Type") if body else None
    sdp = _sdp_of(body, values[0] if values else None) if body else None
    return call_id, cseq, from_tag, to_tag, vias, branches, src_ep, dst_ep, key, sdp


@lru_cache(maxsize=1 << 16)
def _cseq(value: str | None) -> tuple[int, str] | None:
    """parse_cseq, cached (hop copies repeat the CSeq), None when absent or unreadable."""
    try:
        return parse_cseq(value) if value is not None else None
    except SipParseError:
        return None


ViaStack = tuple[tuple[str, ...], tuple[str | None, ...]]   # (each Via value, its branch)


@lru_cache(maxsize=1 << 16)
def _via_stack(lines: tuple[str, ...]) -> ViaStack:
    """The Vias of a message's Via lines, cached: a response crosses each hop with the Via stack its
    request had there."""
    if len(lines) == 1:
        return _via_line(lines[0])
    parts: tuple[str, ...] = ()
    marks: tuple[str | None, ...] = ()
    for line in lines:
        more, branches = _via_line(line)
        parts += more
        marks += branches
    return parts, marks


@lru_cache(maxsize=1 << 16)
def _via_line(line: str) -> ViaStack:
    """The Vias of one Via line, cached: the hops after it repeat the line under a Via of their own."""
    parts = _comma_values(line)
    return parts, tuple(map(_branch, parts))


def _sdp_of(body: bytes, content_type: str | None) -> SdpView | None:
    """The SDP view of a body whose Content-Type is SDP (or absent), None otherwise."""
    kind = None if content_type is None else content_type.split(";", 1)[0].strip().lower()
    if not body or (kind or "application/sdp") != "application/sdp":
        return None
    return _sdp_view(body)


@lru_cache(maxsize=1 << 12)
def _sdp_view(body: bytes) -> SdpView | None:
    """SdpView.parse, cached: every hop copy of a message carries the same body (SdpView is frozen)."""
    return SdpView.parse(body)


def _comma_values(value: str) -> tuple[str, ...]:
    """split_commas, as a tuple; the common case (no comma) without the quote-aware scan."""
    if "," not in value:
        value = value.strip()
        return (value,) if value else ()
    return tuple(split_commas(value))


_split = lru_cache(maxsize=1 << 16)(_comma_values)   # cached: hop copies repeat Via, Route and Contact lines


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
