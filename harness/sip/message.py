"""SIP message codec (RFC 3261 §7) that round-trips byte-exact.

Headers are an ordered list of raw (name, separator, value, line end) so that `bytes(parse(b)) == b`
for folded lines, compact names, odd spacing and LF-only line ends; compact forms and letter case
are normalised only in `Header.canonical`, which every lookup goes through.
"""

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from .errors import SipBuildError, SipParseError
from .headers import NameAddr, Via, first_comma_value, parse_cseq, parse_status_line, split_commas

__all__ = ["COMPACT_FORMS", "Header", "SipMessage", "SipParseError", "canonical_name"]

#: RFC 3261 §7.3.3 and the IANA registry: compact form -> full name.
COMPACT_FORMS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_KNOWN_NAMES = (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-ID", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Diversion", "Error-Info", "Event", "Expires", "Feature-Caps",
    "From", "Geolocation", "History-Info", "Identity", "Identity-Info", "In-Reply-To",
    "Info-Package", "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE", "Organization",
    "P-Access-Network-Info", "P-Asserted-Identity", "P-Associated-URI", "P-Called-Party-ID",
    "P-Charging-Function-Addresses", "P-Charging-Vector", "P-Early-Media", "P-Preferred-Identity",
    "P-Visited-Network-ID", "Path", "Priority", "Privacy", "Proxy-Authenticate",
    "Proxy-Authorization", "Proxy-Require", "RAck", "Reason", "Record-Route", "Recv-Info",
    "Refer-Sub", "Refer-To", "Referred-By", "Reject-Contact", "Replaces", "Reply-To",
    "Request-Disposition", "Require", "Retry-After", "Route", "RSeq", "Security-Client",
    "Security-Server", "Security-Verify", "Server", "Service-Route", "Session-Expires",
    "Session-ID", "SIP-ETag", "SIP-If-Match", "Subject", "Subscription-State", "Supported",
    "Target-Dialog", "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning",
    "WWW-Authenticate",
)
_CANONICAL = {name.lower(): name for name in _KNOWN_NAMES}

#: Headers whose values are never comma lists: credentials/challenges carry commas between their
#: auth-params (RFC 3261 §20.7, §20.27, §20.44), dates and free text carry commas of their own, and
#: single-valued headers are kept whole so a comma inside them is not mistaken for two values.
NO_SPLIT = frozenset(
    {
        "Authorization", "Proxy-Authorization", "WWW-Authenticate", "Proxy-Authenticate",
        "Authentication-Info", "Date", "Subject", "Organization", "Server", "User-Agent",
        "Retry-After", "Timestamp", "Call-ID", "CSeq", "Content-Length", "Content-Type",
        "Content-Disposition", "Max-Forwards", "Expires", "Min-Expires", "From", "To", "Reply-To",
        "Priority", "MIME-Version", "Event", "Subscription-State", "Identity", "Identity-Info",
        "Session-Expires", "Min-SE", "RSeq", "RAck", "Replaces", "Target-Dialog", "Refer-Sub",
        "In-Reply-To",
    }
)

# RFC 3261 §25.1 token, the grammar of a header name and of a Method.
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_HEADER_LINE_RE = re.compile(r"([^ \t:]*)([ \t]*:[ \t]*)(.*)", re.S)
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")
_FOLD_RE = re.compile(r"[ \t]*\r?\n[ \t]+")
_CTL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@lru_cache(maxsize=512)
def canonical_name(name: str) -> str:
    """Compact forms expanded and case normalised: "v" -> "Via", "CALL-ID" -> "Call-ID",
    "x-my-header" -> "X-My-Header" (RFC 3261 §7.3.1: field names are case-insensitive)."""
    lower = name.lower()
    if lower in COMPACT_FORMS:
        return COMPACT_FORMS[lower]
    if lower in _CANONICAL:
        return _CANONICAL[lower]
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


@dataclass(frozen=True, slots=True)
class Header:
    """One header line as on the wire. `eol` None means "the message's line end".

    `canonical` (compact form expanded, canonical case) is computed once, when the line is made:
    every header lookup compares it."""

    name: str
    value: str
    sep: str = ": "
    eol: str | None = None
    canonical: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "canonical", canonical_name(self.name))

    @property
    def unfolded(self) -> str:
        """The value with folding replaced by one SP and outer whitespace stripped (RFC 3261 §7.3.1)."""
        value = self.value
        if "\n" in value:
            value = _FOLD_RE.sub(" ", value)
        return value.strip(" \t")


@dataclass(slots=True)
class SipMessage:
    """A request (method, uri set) or a response (status, reason set)."""

    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str | None = None
    headers: list[Header] = field(default_factory=list)
    body: bytes = b""
    version: str = "SIP/2.0"
    eol: str = field(default="\r\n", repr=False)
    blank_eol: str | None = field(default=None, repr=False)
    # Parsed values of single header lines, keyed by purpose ("via", "from", "to"): (the Header the
    # value came from, the value). Headers are immutable, so an entry is valid while that very
    # Header object is still the one a lookup finds; edits of `headers` need no invalidation.
    _parsed: dict[str, tuple[Header, Any]] = field(default_factory=dict, init=False, repr=False, compare=False)

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def request(
        cls,
        method: str,
        uri: str,
        headers: "list[tuple[str, str]] | tuple[tuple[str, str], ...]" = (),
        body: bytes = b"",
        content_length: bool = False,
    ) -> "SipMessage":
        """Headers go on the wire exactly as given; `content_length=True` appends a correct one."""
        if not _TOKEN_RE.fullmatch(method):
            raise SipBuildError(f"method {method!r} is not a token")
        if not _SCHEME_RE.fullmatch(uri):
            raise SipBuildError(f"Request-URI {uri!r} is not an absolute URI")
        msg = cls(method=method, uri=uri, headers=[_build_header(n, v) for n, v in headers], body=bytes(body))
        return msg.with_content_length() if content_length else msg

    @classmethod
    def response(
        cls,
        status: int,
        reason: str,
        headers: "list[tuple[str, str]] | tuple[tuple[str, str], ...]" = (),
        body: bytes = b"",
        content_length: bool = False,
    ) -> "SipMessage":
        if not 100 <= status <= 699:
            raise SipBuildError(f"status {status} is not in 100..699")
        if _CTL_RE.search(reason):
            raise SipBuildError(f"reason phrase {reason!r} contains control characters")
        msg = cls(status=status, reason=reason, headers=[_build_header(n, v) for n, v in headers], body=bytes(body))
        return msg.with_content_length() if content_length else msg

    def with_content_length(self) -> "SipMessage":
        """A copy whose Content-Length equals the body length (RFC 3261 §20.14), added if absent."""
        msg = self.copy()
        msg.set("Content-Length", str(len(self.body)))
        return msg

    def copy(self) -> "SipMessage":
        """An independent copy (headers are immutable, so copying the list is enough)."""
        return replace(self, headers=list(self.headers))

    # --- parsing ----------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes) -> "SipMessage":
        """One whole message (a datagram). Body = Content-Length bytes when present, else the rest."""
        msg, end = _parse_head(bytes(data))
        rest = len(data) - end
        length = msg._content_length()
        if length is None:
            msg.body = bytes(data[end:])
            return msg
        if rest < length:
            raise SipParseError(f"body is {rest} bytes but Content-Length says {length}")
        if rest > length:
            raise SipParseError(f"{rest - length} bytes follow the {length}-byte body given by Content-Length")
        msg.body = bytes(data[end:])
        return msg

    @classmethod
    def parse_stream(cls, buffer: bytes) -> "tuple[SipMessage | None, int]":
        """Frame one message off a stream (RFC 3261 §18.3): (message, bytes consumed) or (None, 0)
        when more bytes are needed. Leading CRLFs are skipped and counted (RFC 3261 §7.5: "MUST
        ignore any CRLF appearing before the start-line")."""
        data = bytes(buffer)
        skip = len(data) - len(data.lstrip(b"\r\n"))
        head = data[skip:]
        if not head or (b"\r\n\r\n" not in head and b"\n\n" not in head and b"\n\r\n" not in head):
            return None, 0
        msg, end = _parse_head(head)
        length = msg._content_length()
        if length is None:
            # RFC 3261 §18.3: "In the case of stream-oriented transports such as TCP, the
            # Content-Length header field indicates the size of the body ... MUST be used".
            raise SipParseError("message on a stream transport has no Content-Length")
        if len(head) - end < length:
            return None, 0
        msg.body = head[end : end + length]
        return msg, skip + end + length

    def _content_length(self) -> int | None:
        values = {h.unfolded for h in self.headers if h.canonical == "Content-Length"}
        if not values:
            return None
        if len(values) > 1:
            raise SipParseError(f"conflicting Content-Length values {sorted(values)}")
        (value,) = values
        if not value.isascii() or not value.isdigit():
            raise SipParseError(f"Content-Length {value!r} is not a number")
        return int(value)

    # --- serialising ------------------------------------------------------------------------

    @property
    def is_request(self) -> bool:
        return self.method is not None

    @property
    def start_line(self) -> str:
        if self.method is not None:
            return f"{self.method} {self.uri} {self.version}"
        if self.status is None:
            raise SipBuildError("a SIP message needs a method (request) or a status (response)")
        return f"{self.version} {self.status:03d} {self.reason or ''}"

    def __bytes__(self) -> bytes:
        eol = self.eol
        lines = [self.start_line, eol]
        for h in self.headers:
            lines += (h.name, h.sep, h.value, h.eol or eol)
        lines.append(self.blank_eol or eol)
        return "".join(lines).encode("utf-8") + self.body

    def __str__(self) -> str:
        return bytes(self).decode("utf-8", "replace")

    # --- header access ----------------------------------------------------------------------

    def _matching(self, name: str) -> list[int]:
        want = canonical_name(name)
        return [i for i, h in enumerate(self.headers) if h.canonical == want]

    def _first(self, canonical: str) -> Header | None:
        for h in self.headers:
            if h.canonical == canonical:
                return h
        return None

    def get(self, name: str) -> str | None:
        """The first header line's value (unfolded, stripped); compact-aware, case-insensitive."""
        header = self._first(canonical_name(name))
        return None if header is None else header.unfolded

    def get_all(self, name: str) -> list[str]:
        """Every value in order: all header lines, each split at commas (RFC 3261 §7.3.1) unless
        the header's grammar has no comma list (see NO_SPLIT)."""
        canonical = canonical_name(name)
        values = [self.headers[i].unfolded for i in self._matching(name)]
        if canonical in NO_SPLIT:
            return values
        return [part for value in values for part in split_commas(value)]

    def set(self, name: str, value: str) -> None:
        """Replace the first occurrence (keeping its spelling) and drop the others; append if absent."""
        idx = self._matching(name)
        if not idx:
            self.headers.append(_build_header(canonical_name(name), value))
            return
        old = self.headers[idx[0]]
        self.headers[idx[0]] = _build_header(old.name, value, old.sep, old.eol)
        for i in reversed(idx[1:]):
            del self.headers[i]

    def add(self, name: str, value: str, first: bool = False) -> None:
        """Add a header line: `first=True` puts it above the existing ones of that name (a new top
        Via, RFC 3261 §16.6 step 8); otherwise it goes after the last one, or at the end."""
        header = _build_header(canonical_name(name), value)
        idx = self._matching(name)
        if not idx:
            self.headers.append(header)
        elif first:
            self.headers.insert(idx[0], header)
        else:
            self.headers.insert(idx[-1] + 1, header)

    def remove(self, name: str) -> int:
        """Remove every line of that header; returns how many were removed."""
        idx = self._matching(name)
        for i in reversed(idx):
            del self.headers[i]
        return len(idx)

    def pop_first(self, name: str) -> str | None:
        """Remove and return the first value, even inside a comma list (a proxy removing its Route
        value, RFC 3261 §16.4, or the top Via from a response, §16.7 step 3)."""
        idx = self._matching(name)
        if not idx:
            return None
        header = self.headers[idx[0]]
        parts = split_commas(header.unfolded)
        if len(parts) <= 1:
            del self.headers[idx[0]]
            return parts[0] if parts else ""
        self.headers[idx[0]] = _build_header(header.name, ", ".join(parts[1:]), header.sep, header.eol)
        return parts[0]

    # --- conveniences -----------------------------------------------------------------------

    def _require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise SipParseError(f"{self.start_line!r} has no {name} header")
        return value

    @property
    def call_id(self) -> str | None:
        return self.get("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self._require("CSeq"))

    def _name_addr(self, name: str, key: str) -> NameAddr:
        header = self._first(name)
        if header is None:
            raise SipParseError(f"{self.start_line!r} has no {name} header")
        cached = self._parsed.get(key)
        if cached is not None and cached[0] is header:
            return cached[1]  # type: ignore[no-any-return]
        value = NameAddr.parse(header.unfolded)
        self._parsed[key] = (header, value)
        return value

    @property
    def from_addr(self) -> NameAddr:
        return self._name_addr("From", "from")

    @property
    def to_addr(self) -> NameAddr:
        return self._name_addr("To", "to")

    @property
    def from_tag(self) -> str | None:
        return self.from_addr.tag

    @property
    def to_tag(self) -> str | None:
        return self.to_addr.tag

    @property
    def top_via(self) -> Via:
        """The first Via value (of the first Via line that has one), parsed once per line."""
        for header in self.headers:
            if header.canonical != "Via":
                continue
            cached = self._parsed.get("via")
            if cached is not None and cached[0] is header:
                return cached[1]  # type: ignore[no-any-return]
            first = first_comma_value(header.unfolded)
            if first is None:
                continue  # an empty Via line: get_all() skips it too
            via = Via.parse(first)
            self._parsed["via"] = (header, via)
            return via
        raise SipParseError(f"{self.start_line!r} has no Via header")

    @property
    def branch(self) -> str | None:
        return self.top_via.branch

    top_via_branch = branch

    @property
    def content_type(self) -> str | None:
        """The media type, lower-cased and without parameters ("application/sdp"), or None."""
        value = self.get("Content-Type")
        return None if value is None else value.split(";", 1)[0].strip(" \t").lower()


def _build_header(name: str, value: str, sep: str = ": ", eol: str | None = None) -> Header:
    if not _TOKEN_RE.fullmatch(name):
        raise SipBuildError(f"header name {name!r} is not a token")
    if _CTL_RE.search(value):
        raise SipBuildError(f"{name} value {value!r} contains CR, LF or control characters")
    return Header(name, value, sep, eol)


# The common head: UTF-8, CRLF line ends only, no control characters, no folding.
_IRREGULAR = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n|\r\n[ \t]")
_HEADER_LINES_RE = re.compile(r"\r\n([A-Za-z0-9\-.!%*_+`'~]+)([ \t]*:[ \t]*)([^\r\n]*)")


def _parse_head(data: bytes) -> tuple[SipMessage, int]:
    """Start line and headers; returns the message (empty body) and the offset of the body."""
    end = data.find(b"\r\n\r\n")
    if end > 0:
        try:
            text = data[:end].decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        first = text.find("\r\n")
        start = text if first < 0 else text[:first]
        if start and not _IRREGULAR.search(text):
            found = _HEADER_LINES_RE.findall(text, max(first, 0)) if first >= 0 else []
            if len(found) == text.count("\r\n"):  # every header line read whole: the same as below
                msg = _parse_start_line(start)
                msg.headers = [Header(n, v, s) for n, s, v in found]
                return msg, end + 4
    return _parse_head_lines(data)


def _parse_head_lines(data: bytes) -> tuple[SipMessage, int]:
    """Line by line, for any head (LF line ends, folding, ...), saying where it goes wrong."""
    lines: list[tuple[str, str]] = []  # (text, line end)
    pos = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            raise SipParseError(f"no empty line ends the header section (after line {len(lines)})")
        crlf = nl > pos and data[nl - 1] == 0x0D
        raw = data[pos : nl - 1 if crlf else nl]
        eol = "\r\n" if crlf else "\n"
        pos = nl + 1
        if not raw:
            if not lines:
                raise SipParseError("message starts with an empty line instead of a start line")
            blank_eol = eol
            break
        number = len(lines) + 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SipParseError(f"line {number} is not UTF-8 (byte {exc.start})") from None
        bad = _CTL_RE.search(text)
        if bad:
            raise SipParseError(f"line {number} contains control character {ord(bad.group()):#04x}")
        lines.append((text, eol))

    start, eol = lines[0]
    msg = _parse_start_line(start)
    msg.eol = eol
    current: list[str] | None = None  # [name, sep, value, eol] of the header being read
    headers: list[list[str]] = []
    for number, (text, line_eol) in enumerate(lines[1:], start=2):
        if text[0] in " \t":
            # RFC 3261 §7.3.1: a header line may be folded onto lines starting with SP or HTAB.
            if current is None:
                raise SipParseError(f"line {number} is a continuation but no header precedes it")
            current[2] += current[3] + text
            current[3] = line_eol
            continue
        match = _HEADER_LINE_RE.fullmatch(text)
        if not match:
            if ":" not in text:
                raise SipParseError(f"header line {number} has no colon")
            bad_name = text.split(":", 1)[0]
            raise SipParseError(f"header line {number}: {bad_name!r} is not a valid header name")
        name, sep, value = match.groups()
        if not _TOKEN_RE.fullmatch(name):
            raise SipParseError(f"header line {number}: {name!r} is not a valid header name")
        current = [name, sep, value, line_eol]
        headers.append(current)
    msg.headers = [Header(n, v, s, None if e == eol else e) for n, s, v, e in headers]
    msg.blank_eol = None if blank_eol == eol else blank_eol
    return msg, pos


def _parse_start_line(line: str) -> SipMessage:
    if line[:4].upper() == "SIP/":
        # RFC 3261 §7.2: Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF
        version, status, reason = parse_status_line(line)
        _check_version(version, line)
        return SipMessage(status=status, reason=reason, version=version)
    # RFC 3261 §7.1: Request-Line = Method SP Request-URI SP SIP-Version CRLF
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError(f"start line {line!r} is not 'METHOD SP Request-URI SP SIP/2.0'")
    method, uri, version = parts
    if not _TOKEN_RE.fullmatch(method):
        raise SipParseError(f"start line {line!r}: method {method!r} is not a token")
    if not _SCHEME_RE.fullmatch(uri):
        raise SipParseError(f"start line {line!r}: Request-URI {uri!r} is not an absolute URI")
    _check_version(version, line)
    return SipMessage(method=method, uri=uri, version=version)


def _check_version(version: str, line: str) -> None:
    # RFC 3261 §7.1: "the SIP-Version string is case-insensitive, but implementations MUST send upper-case";
    # only 2.0 is defined.
    if version.upper() != "SIP/2.0":
        raise SipParseError(f"start line {line!r}: version {version!r} is not SIP/2.0")
