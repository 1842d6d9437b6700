"""The one way SIP bytes leave an agent: SipMessage -> Scapy SIP layer -> bytes.

Building every message through Scapy costs about as much as everything else an agent does, so the
layer builds one template per message shape instead: the start-line form and the header lines'
names, separators and line ends, with every value (Request-URI or reason phrase, each header value)
cut out. `bytes(SIP.from_message(m))` of a placeholder message of that shape, whose values are
numbered sentinels, gives the constant bytes between the values; a message of that shape is then
those bytes with its own values patched in (Call-ID, tags, branch, CSeq, Content-Length, Contact,
... whatever differs), plus the body, which the layer's payload (SDP, SIPFrag, Raw) carries
byte-exact. The first message of each shape is also built in full by Scapy and compared with its
patched rendering; a shape whose template does not reproduce Scapy's bytes is never patched
(`scapy_build` serves it), so what leaves an agent is always what the Scapy layer builds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.sip.layer import SIP
from harness.sip.message import Header, SipMessage

_SENTINEL = re.compile("\x00([0-9]+)\x00")
_LIMIT = 1024  # shapes kept (robustness runs mutate shapes freely; agents use a few dozen)

ShapeKey = tuple[object, ...]


def scapy_build(msg: SipMessage) -> bytes:
    """The whole message built by the Scapy layer (byte-exact with `bytes(msg)`)."""
    return bytes(SIP.from_message(msg))


@dataclass(frozen=True, slots=True)
class Template:
    """Scapy-built head of one message shape, as a %-format with one %s per value."""

    fmt: str
    slots: int

    def render(self, msg: SipMessage) -> bytes:
        values = [msg.uri if msg.method is not None else msg.reason or ""]
        values += [h.value for h in msg.headers]
        return (self.fmt % tuple(values)).encode("utf-8") + msg.body


def shape(msg: SipMessage) -> ShapeKey:
    """What a template fixes: start-line form and every header line but its value."""
    return (msg.method, msg.status, msg.version, msg.eol, msg.blank_eol,
            *[(h.name, h.sep, h.eol) for h in msg.headers])


def build_template(msg: SipMessage) -> Template | None:
    """The template of `msg`'s shape, built by Scapy from a placeholder of that shape; None when
    the shape cannot be cut into constant parts (a sentinel lost or reordered)."""
    count = 1 + len(msg.headers)
    placeholder = SipMessage(
        method=msg.method, uri="\x000\x00" if msg.method is not None else None, status=msg.status,
        reason="\x000\x00" if msg.method is None else None, version=msg.version, eol=msg.eol,
        blank_eol=msg.blank_eol,
        headers=[Header(h.name, f"\x00{i}\x00", h.sep, h.eol) for i, h in enumerate(msg.headers, start=1)],
    )
    text = scapy_build(placeholder).decode("utf-8")
    parts = _SENTINEL.split(text)
    segments, numbers = parts[0::2], parts[1::2]
    if numbers != [str(i) for i in range(count)]:
        return None
    return Template("%s".join(seg.replace("%", "%%") for seg in segments), count)


_TEMPLATES: dict[ShapeKey, Template | None] = {}


def to_wire(msg: SipMessage) -> bytes:
    """The bytes the Scapy layer builds for `msg`, from its shape's template (see above)."""
    key = shape(msg)
    try:
        template = _TEMPLATES[key]
    except KeyError:
        template = build_template(msg)
        built = scapy_build(msg)
        if template is not None and template.render(msg) != built:
            template = None  # never patch a shape whose template disagrees with Scapy
        if len(_TEMPLATES) >= _LIMIT:
            _TEMPLATES.clear()
        _TEMPLATES[key] = template
        return built
    return scapy_build(msg) if template is None else template.render(msg)


def through_layer(msg: SipMessage) -> SipMessage:
    """The message as the Scapy layer serialises it, for cores that take a SipMessage and call
    `bytes()` themselves: the datagram they send is then exactly `to_wire(msg)`. When the codec
    already serialises `msg` to those bytes (the layer's contract), a copy of `msg` is that message."""
    wire = to_wire(msg)
    return msg.copy() if bytes(msg) == wire else SipMessage.parse(wire)
