"""Value parsers for SIP header fields, shared by the agents and the verifier.

Every parsed value remembers the text it came from, so `str(parse(t)) == t` even when the
peer used odd spacing or letter case; values built from fields print in canonical form.
Parameter names are case-insensitive (RFC 3261 §7.3.1), so dict keys are lower-cased; values are
kept as seen (quotes included) so a malformed value such as `reason=reason=noresource` stays visible.
"""

import re
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from urllib.parse import unquote as _pct_decode

from .errors import SipBuildError, SipParseError

__all__ = [
    "AbsoluteUri",
    "EventHeader",
    "NameAddr",
    "SipUri",
    "SubscriptionState",
    "Via",
    "first_comma_value",
    "format_params",
    "parse_cseq",
    "parse_params",
    "parse_status_line",
    "parse_uri",
    "quote",
    "split_commas",
    "unquote",
    "uri_without",
]

Params = dict[str, str | None]

#: Parsed values are immutable (frozen; their params dicts are never changed in place: use
#: `replace`/`with_params`), so the parsers of URIs, name-addrs and Vias remember their last texts:
#: an agent, the transaction layer and a proxy in one process read the same values many times.
PARSE_CACHE = 4096

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_TOKEN_RE = re.compile(_TOKEN)
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):(.*)", re.S)
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9\-_.]*[A-Za-z0-9_.])?")
_IPV6_RE = re.compile(r"\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9]+)?\]")
_WS_RE = re.compile(r"\s")
_DISPLAY_TOKENS_RE = re.compile(rf"{_TOKEN}(?:[ \t]+{_TOKEN})*")
_CSEQ_RE = re.compile(rf"[ \t]*([0-9]{{1,10}})[ \t]+({_TOKEN})[ \t]*")
_STATUS_LINE_RE = re.compile(r"([Ss][Ii][Pp]/[0-9]+\.[0-9]+) ([1-6][0-9][0-9]) ([^\r\n]*)")
_VIA_PROTO_RE = re.compile(rf"({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]+(.*)", re.S)


def _is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


# --- quoting and splitting -------------------------------------------------------------------


def _quoted_end(text: str, start: int) -> int:
    """Index just past the quoted-string opening at `start`, or -1 if it never closes."""
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2  # RFC 3261 §25.1 quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
            continue
        if ch == '"':
            return i + 1
        i += 1
    return -1


def unquote(text: str) -> str:
    """Strip the quotes of a quoted-string and resolve quoted-pairs; other text is returned as is."""
    if len(text) >= 2 and text[0] == '"' and _quoted_end(text, 0) == len(text):
        return re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.S)
    return text


def quote(text: str) -> str:
    """A quoted-string for `text` (RFC 3261 §25.1)."""
    if any(ch in text for ch in "\r\n"):
        raise SipBuildError(f"cannot quote {text!r}: CR/LF are not allowed in a quoted-string")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_SPECIALS = {",": re.compile(r'[<>",]'), ";": re.compile(r'[<>";]')}


def _split_outside(text: str, sep: str) -> list[str]:
    """Split on `sep` except inside quoted strings and <...>; never raises (unclosed = to the end)."""
    if '"' not in text and "<" not in text:
        return text.split(sep)  # nothing to respect: the common case, at C speed
    specials = _SPECIALS.get(sep) or re.compile('[<>"' + re.escape(sep) + "]")
    parts: list[str] = []
    depth = 0
    start = 0
    pos = 0
    search = specials.search
    while (found := search(text, pos)) is not None:
        i = found.start()
        ch = text[i]
        if ch == '"':
            end = _quoted_end(text, i)
            if end < 0:
                break
            pos = end
            continue
        if ch == "<":
            depth += 1
        elif ch == ">":
            if depth:
                depth -= 1
        elif not depth:  # the separator, outside <...>
            parts.append(text[start:i])
            start = i + 1
        pos = i + 1
    parts.append(text[start:])
    return parts


def split_commas(text: str) -> list[str]:
    """The comma-separated values of a header (RFC 3261 §7.3.1), respecting quotes and <...>.

    Empty elements are dropped and each element is stripped.
    """
    return list(_split_commas(text))


@lru_cache(maxsize=PARSE_CACHE)
def _split_commas(text: str) -> tuple[str, ...]:
    return tuple(stripped for part in _split_outside(text, ",") if (stripped := part.strip()))


def first_comma_value(text: str) -> str | None:
    """`split_commas(text)[0]`, or None when there is no value (what a top Via or Route needs)."""
    if "," not in text:
        return text.strip() or None
    parts = split_commas(text)
    return parts[0] if parts else None


def parse_params(text: str) -> Params:
    """`;a=b;c` (leading `;` optional) -> {"a": "b", "c": None}; names lower-cased, first wins.

    The value is everything after the first `=`, so `reason=reason=noresource` yields
    {"reason": "reason=noresource"} and the malformation stays visible.
    """
    text = text.strip()
    if text.startswith(";"):
        text = text[1:]
    params: Params = {}
    if not text.strip():
        return params
    for raw in _split_outside(text, ";"):
        name, eq, value = raw.partition("=")
        name = name.strip()
        if not _is_token(name):
            raise SipParseError(f"parameter {raw.strip()!r} in {text!r} has no valid name")
        params.setdefault(name.lower(), value.strip() if eq else None)
    return params


def format_params(params: Params) -> str:
    """{"a": "b", "c": None} -> ";a=b;c"."""
    out = []
    for name, value in params.items():
        if not _is_token(name):
            raise SipBuildError(f"parameter name {name!r} is not a token")
        out.append(f";{name}" if value is None else f";{name}={value}")
    return "".join(out)


# --- URIs ------------------------------------------------------------------------------------


def _parse_hostport(text: str, where: str) -> tuple[str, int | None]:
    """`host[:port]` with IPv6 references in brackets; raises SipParseError naming `where`."""
    if text.startswith("["):
        end = text.find("]")
        host, rest = (text[: end + 1], text[end + 1 :]) if end >= 0 else (text, "")
        if not _IPV6_RE.fullmatch(host):
            raise SipParseError(f"{where}: {host!r} is not a valid IPv6 reference")
        if rest and not rest.startswith(":"):
            raise SipParseError(f"{where}: unexpected {rest!r} after {host}")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_ = text.partition(":")
        port_text = port_text_ if colon else None
        if not _HOSTNAME_RE.fullmatch(host):
            raise SipParseError(f"{where}: {host!r} is not a valid host")
    if port_text is None:
        return host, None
    port_text = port_text.strip(" \t")
    if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5 or int(port_text) > 65535:
        raise SipParseError(f"{where}: port {port_text!r} is not a number in 0..65535")
    return host, int(port_text)


def _bare_host(host: str) -> str:
    return host[1:-1] if host.startswith("[") else host


def _set_text(obj: object, text: str) -> None:
    object.__setattr__(obj, "_text", text)


def _field_hash(obj: object) -> int:
    """Hash consistent with the generated __eq__ (dict fields compare order-insensitively), so
    parsed values can be set members and dict keys despite holding params dicts."""
    values = []
    for f in fields(obj):  # type: ignore[arg-type]
        if f.compare:
            value = getattr(obj, f.name)
            values.append(frozenset(value.items()) if isinstance(value, dict) else value)
    return hash(tuple(values))


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """A URI of a scheme we do not interpret (tel:, urn:, mailto:, ...); kept opaque."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"

    def equivalent(self, other: object) -> bool:
        """RFC 3986 §6.2.2.1 lite: the scheme is case-insensitive, the rest compares exactly."""
        return (
            isinstance(other, AbsoluteUri)
            and self.scheme.lower() == other.scheme.lower()
            and self.rest == other.rest
        )


@dataclass(frozen=True, slots=True)
class SipUri:
    """A sip: or sips: URI (RFC 3261 §19.1). Param names are lower-cased keys; `str()` round-trips.

    `==` compares fields exactly; `equivalent()` is the RFC 3261 §19.1.4 comparison.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: Params = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    _text: str | None = field(default=None, init=False, repr=False, compare=False)

    __hash__ = _field_hash

    def __post_init__(self) -> None:
        if self.scheme.lower() not in ("sip", "sips"):
            raise SipBuildError(f"SipUri scheme must be sip or sips, not {self.scheme!r}")
        if not self.host:
            raise SipBuildError("SipUri needs a host")

    @classmethod
    @lru_cache(maxsize=PARSE_CACHE)
    def parse(cls, text: str) -> "SipUri":
        match = _SCHEME_RE.fullmatch(text)
        if not match:
            raise SipParseError(f"URI {text!r} has no scheme")
        scheme, rest = match.groups()
        if scheme.lower() not in ("sip", "sips"):
            raise SipParseError(f"URI {text!r} is not a sip: or sips: URI")
        if _WS_RE.search(text) or any(ch in text for ch in '<>"'):
            raise SipParseError(f"URI {text!r} contains whitespace, quotes or angle brackets")
        # RFC 3261 §19.1.1: the user part may itself contain ';' and '?', but '@' never appears
        # after the hostport; headers (after '?') may carry unescaped '@' in the wild.
        qmark = rest.find("?")
        at = (rest if qmark < 0 else rest[:qmark]).find("@")
        user = password = None
        if at >= 0:
            user, colon, pw = rest[:at].partition(":")
            password = pw if colon else None
            if not user:
                raise SipParseError(f"URI {text!r} has an '@' but an empty user part")
            rest = rest[at + 1 :]
        rest, qm, header_text = rest.partition("?")
        hostport, *param_texts = rest.split(";")
        host, port = _parse_hostport(hostport, f"URI {text!r}")
        params: Params = {}
        for ptext in param_texts:
            name, eq, value = ptext.partition("=")
            if not name:
                raise SipParseError(f"URI {text!r} has an empty parameter")
            params.setdefault(name.lower(), value if eq else None)
        headers: dict[str, str] = {}
        if qm:
            for htext in header_text.split("&"):
                name, eq, value = htext.partition("=")
                if not name or not eq:
                    raise SipParseError(f"URI {text!r}: header {htext!r} is not name=value")
                headers.setdefault(name, value)
        uri = cls(scheme, user, password, host, port, params, headers)
        _set_text(uri, text)
        return uri

    def __str__(self) -> str:
        if self._text is not None:
            return self._text
        out = f"{self.scheme}:"
        if self.user is not None:
            out += self.user + (f":{self.password}" if self.password is not None else "") + "@"
        out += self.host + (f":{self.port}" if self.port is not None else "")
        out += "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        if self.headers:
            out += "?" + "&".join(f"{k}={v}" for k, v in self.headers.items())
        return out

    @property
    def is_secure(self) -> bool:
        return self.scheme.lower() == "sips"

    @property
    def host_port(self) -> tuple[str, int]:
        """Address to send to: host without IPv6 brackets, port defaulting to 5060 (5061 for sips)."""
        return _bare_host(self.host), self.port if self.port is not None else (5061 if self.is_secure else 5060)

    @property
    def lr(self) -> bool:
        return "lr" in self.params

    @property
    def transport(self) -> str | None:
        return self.params.get("transport")

    def replace(self, **changes: object) -> "SipUri":
        """A copy with fields changed (printed canonically, no longer as originally seen)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def equivalent(self, other: object) -> bool:
        """URI comparison per RFC 3261 §19.1.4."""
        if not isinstance(other, SipUri):
            return False
        # "A SIP and SIPS URI are never equivalent."
        if self.scheme.lower() != other.scheme.lower():
            return False
        # "Comparison of the userinfo of SIP and SIPS URIs is case-sensitive."
        # "Characters other than those in the "reserved" set ... are equivalent to their "%" HEX HEX encoding."
        if _decode(self.user) != _decode(other.user) or _decode(self.password) != _decode(other.password):
            return False
        # "Comparison of all other components of the URI is case-insensitive"
        if self.host.lower() != other.host.lower():
            return False
        # "An IP address that is the result of a DNS lookup of a host name does not match that host name."
        # "sip:bob@biloxi.com" vs "sip:bob@biloxi.com:5060": a port present in only one never matches.
        if self.port != other.port:
            return False
        mine = {k: _decode(v) for k, v in self.params.items()}
        theirs = {k: _decode(v) for k, v in other.params.items()}
        for name in mine.keys() | theirs.keys():
            if name in mine and name in theirs:
                # "Any uri-parameter appearing in both URIs must match."
                a, b = mine[name], theirs[name]
                if (a or "").lower() != (b or "").lower() or (a is None) != (b is None):
                    return False
            elif name in ("user", "ttl", "method", "maddr", "transport"):
                # "A user, ttl, or method uri-parameter appearing in only one URI never matches";
                # "A URI that includes an maddr parameter will not match a URI that contains no maddr";
                # transport: "sip:bob@biloxi.com" vs ";transport=udp" is in the not-equivalent list.
                return False
            # "All other uri-parameters appearing in only one URI are ignored when comparing the URIs."
        # "URI header components are never ignored. Any present header component MUST be present
        # in both URIs and match for the URIs to match."
        my_headers = {k.lower(): _decode(v) for k, v in self.headers.items()}
        their_headers = {k.lower(): _decode(v) for k, v in other.headers.items()}
        return my_headers == their_headers


def _decode(value: str | None) -> str | None:
    return None if value is None else _pct_decode(value, errors="surrogateescape")


@lru_cache(maxsize=PARSE_CACHE)
def parse_uri(text: str) -> SipUri | AbsoluteUri:
    """A sip/sips URI as SipUri, any other absolute URI as an opaque AbsoluteUri."""
    match = _SCHEME_RE.fullmatch(text)
    if not match:
        raise SipParseError(f"URI {text!r} has no scheme")
    scheme, rest = match.groups()
    if scheme.lower() in ("sip", "sips"):
        return SipUri.parse(text)
    if not rest or _WS_RE.search(rest) or any(ch in rest for ch in '<>"'):
        raise SipParseError(f"URI {text!r} is empty after the scheme or contains whitespace, quotes or <>")
    return AbsoluteUri(scheme, rest)


def uri_without(
    uri: "SipUri | str", params: tuple[str, ...] = ("method",), headers: bool = True
) -> SipUri:
    """`uri` minus the named uri-parameters and (by default) its URI headers.

    For comparing a Refer-To target with a conference URI: RFC 3261 §19.1.4 would make
    `;method=INVITE` or `?Replaces=` alone break equivalence (checklist, Refer-To rows).
    """
    if isinstance(uri, str):
        uri = SipUri.parse(uri)
    drop = {p.lower() for p in params}
    return uri.replace(
        params={k: v for k, v in uri.params.items() if k not in drop},
        headers={} if headers else dict(uri.headers),
    )


# --- name-addr / addr-spec -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NameAddr:
    """From, To, Contact, Route, Refer-To, Referred-By, P-Asserted-Identity values (RFC 3261 §20.10).

    `bracketed` False means the peer sent a bare addr-spec; then, per RFC 3261 §20, every `;param`
    after the URI is a header parameter, not a URI parameter.
    """

    uri: SipUri | AbsoluteUri
    display: str | None = None
    params: Params = field(default_factory=dict)
    bracketed: bool = True
    _text: str | None = field(default=None, init=False, repr=False, compare=False)

    __hash__ = _field_hash

    @classmethod
    @lru_cache(maxsize=PARSE_CACHE)
    def parse(cls, text: str) -> "NameAddr":
        s = text.strip(" \t\r\n")
        if not s:
            raise SipParseError("empty name-addr")
        display: str | None = None
        if s.startswith('"'):
            end = _quoted_end(s, 0)
            if end < 0:
                raise SipParseError(f"unterminated quoted display name in {text!r}")
            display = unquote(s[:end])
            lt = end + (len(s[end:]) - len(s[end:].lstrip(" \t\r\n")))
            if not s.startswith("<", lt):
                raise SipParseError(f"quoted display name not followed by <uri> in {text!r}")
        else:
            lt = s.find("<")
            if lt >= 0:
                words = s[:lt].strip(" \t\r\n")
                if words and not _DISPLAY_TOKENS_RE.fullmatch(words):
                    raise SipParseError(f"display name {words!r} is neither quoted nor tokens in {text!r}")
                display = words or None
        if lt >= 0:
            gt = s.find(">", lt)
            if gt < 0:
                raise SipParseError(f"'<' without '>' in {text!r}")
            uri_text, rest, bracketed = s[lt + 1 : gt], s[gt + 1 :], True
        else:
            # RFC 3261 §20: "If the URI is not enclosed in angle brackets, any semicolon-delimited
            # parameters are header-parameters, not URI parameters."
            uri_text, semi, rest = s.partition(";")
            uri_text = uri_text.rstrip(" \t\r\n")  # SEMI = SWS ";" SWS (§25.1): space may precede it
            rest, bracketed = semi + rest, False
        if rest.strip() and not rest.strip().startswith(";"):
            raise SipParseError(f"unexpected {rest.strip()!r} after the URI in {text!r}")
        value = cls(parse_uri(uri_text), display, parse_params(rest), bracketed)
        _set_text(value, s)
        return value

    def __str__(self) -> str:
        if self._text is not None:
            return self._text
        uri = str(self.uri)
        # RFC 3261 §20: a URI with ',', ';' or '?' MUST be enclosed in <> (also when a display name is used).
        bracket = self.bracketed or self.display is not None or any(c in uri for c in ",;?")
        out = f"{quote(self.display)} " if self.display is not None else ""
        out += f"<{uri}>" if bracket else uri
        return out + format_params(self.params)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def sip_uri(self) -> SipUri | None:
        """The URI when it is sip/sips, else None (saves an isinstance at every call site)."""
        return self.uri if isinstance(self.uri, SipUri) else None

    def with_params(self, **params: str | None) -> "NameAddr":
        """A copy with header params added or replaced (e.g. `tag=`)."""
        return replace(self, params={**self.params, **params})


# --- Via, CSeq, Event, Subscription-State, status line ---------------------------------------


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (RFC 3261 §20.42): `SIP/2.0/UDP host:port;branch=...`."""

    protocol: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=dict)
    _text: str | None = field(default=None, init=False, repr=False, compare=False)

    __hash__ = _field_hash

    @classmethod
    @lru_cache(maxsize=PARSE_CACHE)
    def parse(cls, text: str) -> "Via":
        s = text.strip(" \t\r\n")
        match = _VIA_PROTO_RE.fullmatch(s)
        if not match:
            raise SipParseError(f"Via {text!r} does not start with protocol-name/version/transport SP")
        name, version, transport, rest = match.groups()
        sent_by, semi, param_text = rest.partition(";")
        sent_by = re.sub(r"[ \t]*:[ \t]*", ":", sent_by.strip(" \t\r\n"))
        host, port = _parse_hostport(sent_by, f"Via {text!r}")
        value = cls(f"{name}/{version}/{transport}", host, port, parse_params(semi + param_text))
        _set_text(value, s)
        return value

    def __str__(self) -> str:
        if self._text is not None:
            return self._text
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol} {self.host}{port}{format_params(self.params)}"

    @property
    def transport(self) -> str:
        return self.protocol.rsplit("/", 1)[-1].upper()

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The rport value if it has one (RFC 3581); test `"rport" in via.params` for the bare flag."""
        value = self.params.get("rport")
        return int(value) if value and value.isascii() and value.isdigit() else None

    @property
    def sent_by(self) -> tuple[str, int]:
        """(host without brackets, port defaulting to 5060, or 5061 for TLS) (RFC 3261 §18.2.2)."""
        default = 5061 if self.transport == "TLS" else 5060
        return _bare_host(self.host), self.port if self.port is not None else default


def parse_cseq(text: str) -> tuple[int, str]:
    """`"101 INVITE"` -> (101, "INVITE"). RFC 3261 §8.1.1.5: "The sequence number value MUST be
    expressible as a 32-bit unsigned integer and MUST be less than 2**31"."""
    match = _CSEQ_RE.fullmatch(text.strip("\r\n"))
    if not match:
        raise SipParseError(f"CSeq {text!r} is not 'number METHOD'")
    number = int(match.group(1))
    if number >= 2**31:
        raise SipParseError(f"CSeq number {number} is not less than 2**31")
    return number, match.group(2)


@dataclass(frozen=True, slots=True)
class EventHeader:
    """Event (RFC 6665 §8.2.1): package plus params; `id` distinguishes REFER subscriptions (RFC 3515 §2.4.6)."""

    package: str
    params: Params = field(default_factory=dict)
    _text: str | None = field(default=None, init=False, repr=False, compare=False)

    __hash__ = _field_hash

    @classmethod
    def parse(cls, text: str) -> "EventHeader":
        package, semi, rest = text.strip(" \t\r\n").partition(";")
        package = package.strip(" \t")
        if not _is_token(package):
            raise SipParseError(f"Event {text!r} has no valid event-type")
        value = cls(package, parse_params(semi + rest))
        _set_text(value, text.strip(" \t\r\n"))
        return value

    def __str__(self) -> str:
        return self._text if self._text is not None else self.package + format_params(self.params)

    @property
    def id(self) -> str | None:
        return self.params.get("id")


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() else None


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """Subscription-State (RFC 6665 §8.2.3). `expires`/`retry_after` are None when absent or not
    a number; `params` keeps the raw values so malformed ones can be reported."""

    state: str
    params: Params = field(default_factory=dict)
    _text: str | None = field(default=None, init=False, repr=False, compare=False)

    __hash__ = _field_hash

    @classmethod
    def parse(cls, text: str) -> "SubscriptionState":
        state, semi, rest = text.strip(" \t\r\n").partition(";")
        state = state.strip(" \t")
        if not _is_token(state):
            raise SipParseError(f"Subscription-State {text!r} has no valid substate-value")
        value = cls(state.lower(), parse_params(semi + rest))
        _set_text(value, text.strip(" \t\r\n"))
        return value

    def __str__(self) -> str:
        return self._text if self._text is not None else self.state + format_params(self.params)

    @property
    def reason(self) -> str | None:
        return self.params.get("reason")

    @property
    def expires(self) -> int | None:
        return _int_or_none(self.params.get("expires"))

    @property
    def retry_after(self) -> int | None:
        return _int_or_none(self.params.get("retry-after"))


def parse_status_line(text: str) -> tuple[str, int, str]:
    """`"SIP/2.0 200 OK"` -> ("SIP/2.0", 200, "OK").

    RFC 3261 §7.2: Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF (the SP before
    an empty Reason-Phrase is still required).
    """
    match = _STATUS_LINE_RE.fullmatch(text)
    if not match:
        raise SipParseError(f"{text!r} is not a Status-Line 'SIP/2.0 SP 3DIGIT SP Reason-Phrase'")
    version, code, reason = match.groups()
    return version, int(code), reason
