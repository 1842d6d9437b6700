"""Scapy layers for SIP, SDP and message/sipfrag, in the style of scapy/layers/http.py.

Unlike Scapy's HTTP layer, whose header dict keeps only the last of a repeated header and rebuilds
them sorted, `SIP.headers` is the codec's ordered list of `Header`s: Via, Route and Record-Route
order is meaning in SIP (RFC 3261 §7.3.1). Dissection and building reuse message.py, so
`bytes(SIP(raw)) == raw` and `bytes(SIP.from_message(m)) == bytes(m)`.

Import this module explicitly (`from harness.sip.layer import SIP`); `harness.sip` does not, so the
codec stays usable without loading Scapy.
"""

import re
from typing import Any

from scapy.config import conf
from scapy.fields import Field
from scapy.layers.inet import TCP, UDP
from scapy.packet import Packet, Padding, bind_layers

from .errors import SipParseError
from .message import Header, SipMessage, _build_header, _parse_head
from .sdp import Sdp
from .sipfrag import parse_sipfrag

__all__ = ["SDP", "SIP", "SIP_PORT", "HeaderListField", "LinesField", "SIPFrag"]

SIP_PORT = 5060


class _ValueField(Field[Any, Any]):
    """A field holding a Python value; SIP's own do_dissect/self_build do the wire work."""

    def __init__(self, name: str, default: Any) -> None:
        super().__init__(name, default, fmt="H")

    def any2i(self, pkt: Packet | None, x: Any) -> Any:
        return x

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        return repr(x)


class HeaderListField(_ValueField):
    """Ordered, repeatable header lines (list[Header]); accepts (name, value) tuples when building."""

    islist = 1  # one list value, not one packet per header when a SIP packet is iterated

    def any2i(self, pkt: Packet | None, x: Any) -> list[Header]:
        if x is None:
            return []
        return [h if isinstance(h, Header) else _build_header(h[0], h[1]) for h in x]

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        return "[" + ", ".join(f"{h.name}{h.sep}{h.value}" for h in x or []) + "]"


class LinesField(_ValueField):
    """Text lines each with its own terminator, so SDP and sipfrag bodies rebuild byte-exact."""

    islist = 1


def _split_lines(data: bytes) -> list[str]:
    return re.findall(r"[^\n]*\n|[^\n]+", data.decode("utf-8", "surrogateescape"))


def _join_lines(lines: list[str]) -> bytes:
    return "".join(lines).encode("utf-8", "surrogateescape")


class SIP(Packet):
    """A SIP request or response head; the body is the payload (SDP, SIPFrag or Raw)."""

    name = "SIP"
    fields_desc = [
        _ValueField("method", None),
        _ValueField("uri", None),
        _ValueField("status", None),
        _ValueField("reason", None),
        _ValueField("version", "SIP/2.0"),
        HeaderListField("headers", []),
        _ValueField("eol", "\r\n"),
        _ValueField("blank_eol", None),
    ]

    def do_dissect(self, s: bytes) -> bytes:
        head, end = _parse_head(s)
        for name in ("method", "uri", "status", "reason", "version", "eol", "blank_eol"):
            self.fields[name] = getattr(head, name)
        self.fields["headers"] = head.headers
        self.raw_packet_cache = None  # self_build is exact, and sees later edits of `headers`
        self.explicit = 1
        return s[end:]

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes | None]:
        """Bytes past Content-Length are padding (trailing junk in a datagram), not body."""
        length = self._content_length()
        if length is None or len(s) <= length:
            return s, None
        return s[:length], s[length:]

    def self_build(self) -> bytes:
        return bytes(self._head_message())

    def _head_message(self) -> SipMessage:
        return SipMessage(
            method=self.method, uri=self.uri, status=self.status, reason=self.reason,
            headers=list(self.headers), version=self.version, eol=self.eol, blank_eol=self.blank_eol,
        )

    def _content_length(self) -> int | None:
        try:
            return self._head_message()._content_length()
        except SipParseError:
            return None

    def get_header(self, name: str) -> str | None:
        return self._head_message().get(name)

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        content_type = self._head_message().content_type
        if content_type == "application/sdp":
            return SDP
        if content_type == "message/sipfrag":
            return SIPFrag
        return conf.raw_layer

    @classmethod
    def from_message(cls, msg: SipMessage) -> "SIP":
        pkt = cls(
            method=msg.method, uri=msg.uri, status=msg.status, reason=msg.reason, version=msg.version,
            headers=list(msg.headers), eol=msg.eol, blank_eol=msg.blank_eol,
        )
        if msg.body:
            pkt.add_payload(pkt.guess_payload_class(msg.body)(msg.body))
        return pkt

    def to_message(self) -> SipMessage:
        """The codec's view; raises SipParseError when the packet is not a valid whole message."""
        raw = bytes(self)
        padding = self.getlayer(Padding)
        if padding is not None:
            raw = raw[: len(raw) - len(bytes(padding))]
        return SipMessage.parse(raw)

    def hashret(self) -> bytes:
        """Requests and responses share Call-ID and top Via branch (RFC 3261 §17.1.3)."""
        msg = self._head_message()
        try:
            branch = msg.branch or ""
        except SipParseError:
            branch = ""
        return f"{msg.call_id}|{branch}".encode()

    def answers(self, other: Packet) -> bool:
        """A response answers the request whose branch, Call-ID and CSeq it carries."""
        if not isinstance(other, SIP) or self.method is not None or other.method is None:
            return False
        mine, theirs = self._head_message(), other._head_message()
        try:
            return (
                mine.branch == theirs.branch
                and mine.call_id == theirs.call_id
                and mine.cseq == theirs.cseq
                and mine.cseq[1] == other.method
            )
        except SipParseError:
            return False

    def mysummary(self) -> str:
        return self._head_message().start_line


class SDP(Packet):
    """An SDP body kept as its text lines; `to_sdp()` gives the parsed view."""

    name = "SDP"
    fields_desc = [LinesField("lines", [])]

    def do_dissect(self, s: bytes) -> bytes:
        self.fields["lines"] = _split_lines(s)
        self.raw_packet_cache = None
        self.explicit = 1
        return b""

    def self_build(self) -> bytes:
        return _join_lines(self.lines)

    def to_sdp(self) -> Sdp:
        return Sdp.parse(self.self_build())

    def mysummary(self) -> str:
        return f"SDP {len(self.lines)} lines"


class SIPFrag(Packet):
    """A message/sipfrag body kept as its text lines; `status` parses the Status-Line."""

    name = "SIPFrag"
    fields_desc = [LinesField("lines", [])]

    do_dissect = SDP.do_dissect
    self_build = SDP.self_build

    @property
    def status(self) -> tuple[int, str]:
        return parse_sipfrag(self.self_build())

    def mysummary(self) -> str:
        return "SIPFrag " + (self.lines[0].rstrip("\r\n") if self.lines else "")


for _transport in (UDP, TCP):
    bind_layers(_transport, SIP, sport=SIP_PORT)
    bind_layers(_transport, SIP, dport=SIP_PORT)

