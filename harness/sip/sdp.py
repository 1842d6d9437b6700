"""SDP (RFC 4566) kept as its lines so that `bytes(Sdp.parse(b)) == b`, with the few views the
offer/answer model (RFC 3264) needs: origin, connection, media, direction, rtpmap.

Edits (`with_direction`, `bump_version`) return a new Sdp and touch only the lines they change.
"""

import re
from dataclasses import dataclass, replace
from functools import lru_cache

from .errors import SipBuildError, SipParseError

__all__ = [
    "DIRECTIONS",
    "Connection",
    "Media",
    "Origin",
    "Sdp",
    "SdpLine",
    "answer_direction",
    "offer_audio",
]

#: RFC 3264 §5.1 / RFC 4566 §6 direction attributes.
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")

#: RFC 3264 §6.1: "If a stream is offered as sendonly, the corresponding stream MUST be marked as
#: recvonly or inactive in the answer. If a media stream is listed as recvonly in the offer, the
#: answer MUST be marked as sendonly or inactive ... If an offered media stream is listed as
#: sendrecv (or if there is no direction attribute ...), the corresponding stream in the answer MAY
#: be marked as sendonly, recvonly, sendrecv, or inactive. If an offered media stream is listed as
#: inactive, it MUST be marked as inactive in the answer."  The default answers are these.
_ANSWER = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive", "sendrecv": "sendrecv"}

#: RFC 3551 §6 static payload types, used when no a=rtpmap names them.
STATIC_PAYLOADS = {0: "PCMU/8000", 3: "GSM/8000", 4: "G723/8000", 8: "PCMA/8000", 9: "G722/8000", 18: "G729/8000"}

_LINE_RE = re.compile(r"([a-z])=(.*)", re.S)
_CTL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class SdpLine:
    """`type=value` and the line end it had ("" only for an unterminated last line)."""

    type: str
    value: str
    eol: str = "\r\n"

    def __str__(self) -> str:
        return f"{self.type}={self.value}{self.eol}"


@dataclass(frozen=True, slots=True)
class Origin:
    """o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address> (RFC 4566 §5.2)."""

    username: str
    sess_id: str
    sess_version: int
    nettype: str
    addrtype: str
    addr: str

    @classmethod
    def parse(cls, value: str) -> "Origin":
        fields = value.split(" ")
        if len(fields) != 6 or not all(fields):
            raise SipParseError(f"o={value!r} does not have 6 space-separated fields")
        if not (fields[1].isascii() and fields[1].isdigit() and fields[2].isascii() and fields[2].isdigit()):
            raise SipParseError(f"o={value!r}: sess-id and sess-version must be numeric")
        return cls(fields[0], fields[1], int(fields[2]), fields[3], fields[4], fields[5])

    def __str__(self) -> str:
        return f"{self.username} {self.sess_id} {self.sess_version} {self.nettype} {self.addrtype} {self.addr}"


@dataclass(frozen=True, slots=True)
class Connection:
    """c=<nettype> <addrtype> <connection-address> (RFC 4566 §5.7); `address` drops any /ttl."""

    nettype: str
    addrtype: str
    address: str

    @classmethod
    def parse(cls, value: str) -> "Connection":
        fields = value.split(" ")
        if len(fields) != 3 or not all(fields):
            raise SipParseError(f"c={value!r} does not have 3 space-separated fields")
        return cls(fields[0], fields[1], fields[2].split("/", 1)[0])

    @property
    def is_hold_address(self) -> bool:
        """RFC 3264 §8.4: legacy `c=IN IP4 0.0.0.0` hold."""
        return self.address in ("0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class Media:
    """One media description: the m= line and the lines under it, in order."""

    lines: tuple[SdpLine, ...]
    kind: str
    port: int
    port_count: int | None
    proto: str
    fmts: tuple[str, ...]

    @classmethod
    def from_lines(cls, lines: "tuple[SdpLine, ...]") -> "Media":
        value = lines[0].value
        fields = value.split(" ")
        # RFC 4566 §5.14: m=<media> <port>[/<number of ports>] <proto> <fmt> ...
        if lines[0].type != "m" or len(fields) < 4 or not all(fields):
            raise SipParseError(f"m={value!r} is not '<media> <port> <proto> <fmt> ...'")
        port_text, slash, count_text = fields[1].partition("/")
        for number in (port_text, count_text) if slash else (port_text,):
            if not number.isascii() or not number.isdigit() or int(number) > 65535:
                raise SipParseError(f"m={value!r}: port {fields[1]!r} is not a number")
        count = int(count_text) if slash else None
        return cls(tuple(lines), fields[0], int(port_text), count, fields[2], tuple(fields[3:]))

    @property
    def attrs(self) -> list[tuple[str, str | None]]:
        """a= lines in order as (name, value or None for property attributes)."""
        return [_split_attr(line.value) for line in self.lines if line.type == "a"]

    @property
    def connection(self) -> Connection | None:
        for line in self.lines:
            if line.type == "c":
                return Connection.parse(line.value)
        return None

    @property
    def direction(self) -> str | None:
        """The media-level direction attribute, or None when the media section has none."""
        return _direction_of(self.lines)

    def rtpmap(self) -> dict[int, str]:
        """{payload type: "encoding/clock[/channels]"}: a=rtpmap lines, plus RFC 3551 static
        types listed in the m= line without one."""
        mapping: dict[int, str] = {}
        for name, value in self.attrs:
            if name == "rtpmap" and value:
                pt, _, encoding = value.partition(" ")
                if pt.isascii() and pt.isdigit():
                    mapping[int(pt)] = encoding.strip()
        for fmt in self.fmts:
            if fmt.isascii() and fmt.isdigit() and int(fmt) in STATIC_PAYLOADS:
                mapping.setdefault(int(fmt), STATIC_PAYLOADS[int(fmt)])
        return mapping


def _split_attr(value: str) -> tuple[str, str | None]:
    name, colon, rest = value.partition(":")
    return name, rest if colon else None


def _direction_of(lines: "tuple[SdpLine, ...]") -> str | None:
    for line in lines:
        if line.type == "a" and line.value in DIRECTIONS:
            return line.value
    return None


@dataclass(frozen=True, slots=True)
class Sdp:
    """A session description: session-level lines, media sections, and any blank lines at the end."""

    session: tuple[SdpLine, ...]
    media: tuple[Media, ...] = ()
    trailer: str = ""

    @classmethod
    def parse(cls, data: bytes) -> "Sdp":
        """Parse a body; an Sdp is immutable, so the last bodies parsed are remembered."""
        return cls._parse(bytes(data))

    @classmethod
    @lru_cache(maxsize=1024)
    def _parse(cls, data: bytes) -> "Sdp":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SipParseError(f"SDP is not UTF-8 (byte {exc.start})") from None
        body = text.rstrip("\r\n")
        # Blank lines after the last line are kept verbatim; any line end that follows text belongs to it.
        end = len(body) + (2 if text[len(body) : len(body) + 2] == "\r\n" else 1 if text[len(body) :] else 0)
        body, trailer = text[:end], text[end:]
        lines: list[SdpLine] = []
        parts = body.split("\n")
        if parts[-1] == "":
            parts.pop()
        for number, part in enumerate(parts, start=1):
            last = number == len(parts) and not body.endswith("\n")
            crlf = not last and part.endswith("\r")
            content = part[:-1] if crlf else part
            eol = "" if last else "\r\n" if crlf else "\n"
            # RFC 4566 §5: "<type>=<value>" where <type> is exactly one case-significant character.
            match = _LINE_RE.fullmatch(content)
            if not match:
                raise SipParseError(f"SDP line {number} {content!r} is not '<type>=<value>'")
            if _CTL_RE.search(content) or "\r" in content:
                raise SipParseError(f"SDP line {number} contains a control character")
            lines.append(SdpLine(match.group(1), match.group(2), eol))
        return cls._from_lines(lines, trailer)

    @classmethod
    def _from_lines(cls, lines: list[SdpLine], trailer: str = "") -> "Sdp":
        # RFC 4566 §5: "v=" first, then "o=" and "s="; "t=" is required too.
        if not lines or lines[0].type != "v" or lines[0].value != "0":
            raise SipParseError("SDP does not start with v=0")
        if len(lines) < 2 or lines[1].type != "o":
            raise SipParseError("SDP line 2 is not o=")
        Origin.parse(lines[1].value)
        starts = [i for i, line in enumerate(lines) if line.type == "m"] + [len(lines)]
        session = tuple(lines[: starts[0]])
        for required in "st":
            if not any(line.type == required for line in session):
                raise SipParseError(f"SDP session section has no {required}= line")
        for line in lines:
            if line.type == "c":
                Connection.parse(line.value)
        media = tuple(Media.from_lines(tuple(lines[a:b])) for a, b in zip(starts, starts[1:], strict=False))
        return cls(session, media, trailer)

    def __bytes__(self) -> bytes:
        out = "".join(map(str, self.session))
        out += "".join(str(line) for media in self.media for line in media.lines)
        return (out + self.trailer).encode("utf-8")

    # --- views -----------------------------------------------------------------------------

    @property
    def origin(self) -> Origin:
        return Origin.parse(self.session[1].value)

    @property
    def connection(self) -> Connection | None:
        """The session-level c= line."""
        for line in self.session:
            if line.type == "c":
                return Connection.parse(line.value)
        return None

    def direction(self, media_index: int = 0) -> str:
        """RFC 4566 §6: a media-level direction attribute overrides the session-level one;
        RFC 3264 §5.1: with neither, the stream is sendrecv."""
        media = self.media[media_index].direction if media_index < len(self.media) else None
        return media or _direction_of(self.session) or "sendrecv"

    def media_address(self, media_index: int = 0) -> tuple[str, int]:
        """(address, port) RTP goes to: media-level c= beats session-level (RFC 4566 §5.7)."""
        media = self.media[media_index]
        connection = media.connection or self.connection
        if connection is None:
            raise SipParseError(f"SDP media {media_index} has no c= line at either level")
        return connection.address, media.port

    def rtpmap(self, media_index: int = 0) -> dict[int, str]:
        return self.media[media_index].rtpmap()

    # --- edits -----------------------------------------------------------------------------

    def with_direction(self, direction: str, media_index: int | None = None) -> "Sdp":
        """A copy with the media-level direction set on one media (or all when None): an existing
        direction attribute is replaced in place, else `a=<direction>` is appended to the section."""
        if direction not in DIRECTIONS:
            raise SipBuildError(f"{direction!r} is not one of {DIRECTIONS}")
        media = list(self.media)
        for i, section in enumerate(media):
            if media_index is not None and i != media_index:
                continue
            lines: list[SdpLine] = []
            placed = False
            for line in section.lines:
                if line.type == "a" and line.value in DIRECTIONS:
                    if not placed:
                        lines.append(replace(line, value=direction))
                        placed = True
                    continue
                lines.append(line)
            if not placed:
                lines.append(SdpLine("a", direction, _eol_of(self.session + section.lines)))
                if not lines[-2].eol:  # the section was the unterminated end of the SDP
                    lines[-2] = replace(lines[-2], eol=lines[-1].eol)
            media[i] = Media.from_lines(tuple(lines))
        return replace(self, media=tuple(media))

    def bump_version(self) -> "Sdp":
        """RFC 3264 §8: a modified offer increments <sess-version> in o= by one."""
        origin = self.origin
        bumped = Origin(origin.username, origin.sess_id, origin.sess_version + 1, origin.nettype,
                        origin.addrtype, origin.addr)
        session = list(self.session)
        session[1] = replace(session[1], value=str(bumped))
        return replace(self, session=tuple(session))


def _eol_of(lines: "tuple[SdpLine, ...]") -> str:
    return next((line.eol for line in lines if line.eol), "\r\n")


def answer_direction(offer_direction: str) -> str:
    """The direction to answer with (RFC 3264 §6.1): sendonly->recvonly, recvonly->sendonly,
    inactive->inactive, sendrecv->sendrecv."""
    try:
        return _ANSWER[offer_direction]
    except KeyError:
        raise SipBuildError(f"{offer_direction!r} is not one of {DIRECTIONS}") from None


def offer_audio(
    addr: str,
    port: int,
    sess_id: int | str,
    version: int,
    direction: str = "sendrecv",
    pt: int = 0,
    username: str = "-",
) -> Sdp:
    """A minimal valid single-stream G.711 offer (or answer): v o s c t m, rtpmap, ptime, direction."""
    if direction not in DIRECTIONS:
        raise SipBuildError(f"{direction!r} is not one of {DIRECTIONS}")
    if pt not in (0, 8):
        raise SipBuildError(f"payload type {pt} is not G.711 (0 PCMU or 8 PCMA)")
    addrtype = "IP6" if ":" in addr else "IP4"
    text = (
        "v=0\r\n"
        f"o={username} {sess_id} {version} IN {addrtype} {addr}\r\n"
        "s=-\r\n"
        f"c=IN {addrtype} {addr}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP {pt}\r\n"
        f"a=rtpmap:{pt} {STATIC_PAYLOADS[pt]}\r\n"
        "a=ptime:20\r\n"
        f"a={direction}\r\n"
    )
    return Sdp.parse(text.encode())
