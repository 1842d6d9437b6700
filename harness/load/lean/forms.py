"""The bytes the lean agents send: one Scapy-built template per message shape, values patched in.

A shape is the start-line form plus the ordered header names (harness/agents/wire.py cuts the
Scapy layer's output of a placeholder message into constant parts). Values stay bytes end to end:
`request()` / `response()` fill the template with a bytes %-format and append Content-Length and
the body. The first message of every shape is also built in full through the Scapy layer and the
two renderings compared; a shape whose template disagrees is refused (FormError), so what a lean
agent sends is always what the Scapy layer builds.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

from harness.agents.wire import build_template, scapy_build
from harness.sip.message import SipMessage
from harness.sip.sdp import offer_audio

Fields = Sequence[tuple[str, bytes]]


class FormError(RuntimeError):
    """A message shape the Scapy layer renders differently from its template."""


_FORMS: dict[tuple[object, ...], bytes] = {}


def _render(key: tuple[object, ...], start: bytes, fields: Fields, body: bytes) -> bytes:
    """The message of shape `key` ((method or status, header names...)): its cached template filled
    in, or - the first time - the template built, rendered and checked against the Scapy layer."""
    values = (start, *[value for _, value in fields], b"%d" % len(body))
    fmt = _FORMS.get(key)
    if fmt is not None:
        return fmt % values + body
    first = key[0]
    names = [*(str(n) for n in key[1:]), "Content-Length"]
    placeholder_fields = [(n, "x") for n in names]
    real_fields = [(n, v.decode()) for n, v in zip(names, values[1:], strict=True)]
    if isinstance(first, str):
        placeholder = SipMessage.request(first, "sip:x", placeholder_fields)
        full = SipMessage.request(first, start.decode(), real_fields, body)
    else:
        placeholder = SipMessage.response(int(str(first)), "x", placeholder_fields)
        full = SipMessage.response(int(str(first)), start.decode(), real_fields, body)
    template = build_template(placeholder)
    if template is None:
        raise FormError(f"no template for the shape {key}")
    fmt = template.fmt.encode("utf-8")
    rendered = fmt % values + body
    built = scapy_build(full)
    if built != rendered:
        raise FormError(f"template of {key[:2]} renders {rendered[:80]!r}..., the Scapy layer {built[:80]!r}...")
    _FORMS[key] = fmt
    return rendered


def request(method: str, uri: bytes, fields: Fields, body: bytes = b"") -> bytes:
    """`method uri SIP/2.0`, the fields in order, Content-Length, the body."""
    return _render((method, *[name for name, _ in fields]), uri, fields, body)


def response(status: int, reason: bytes, fields: Fields, body: bytes = b"") -> bytes:
    """`SIP/2.0 status reason`, the fields in order, Content-Length, the body."""
    return _render((status, *[name for name, _ in fields]), reason, fields, body)


_KEYED: dict[Hashable, bytes] = {}


def response_keyed(key: Hashable, status: int, reason: bytes, values: Sequence[bytes],
                   names: Callable[[Hashable], Sequence[str]], body: bytes = b"") -> bytes:
    """response() for a caller that names its shapes by keys of its own (a key must always stand for
    the same status and header names): only the values are filled in, as the names and the shape
    key are not built per message; `names(key)` is called the first time only, and that first
    message goes through response() (its template checked against the Scapy layer)."""
    fmt = _KEYED.get(key)
    if fmt is not None:
        return fmt % (reason, *values, b"%d" % len(body)) + body
    shape = (status, *names(key))
    data = _render(shape, reason, list(zip(shape[1:], values, strict=True)), body)
    _KEYED[key] = _FORMS[shape]
    return data


class SdpForm:
    """`offer_audio`'s bytes for one payload type as a %-format: the o= session id and version, the
    addresses, the m= port and the direction patched in. Each (address family, direction)'s first
    rendering is compared with `offer_audio` itself (FormError when they differ)."""

    _IP = "192.0.2.123"  # TEST-NET-1: never one of the harness's own addresses
    _SENTINELS = (b"1234567891", b"1234567893", b"192.0.2.123", b"192.0.2.123", b"65011", b"a=sendrecv")

    def __init__(self, pt: int = 0) -> None:
        self.pt = pt
        text = bytes(offer_audio(self._IP, 65011, 1234567891, 1234567893, "sendrecv", pt=pt))
        at, start = [], 0
        for sentinel in self._SENTINELS:
            start = text.find(sentinel, start)
            if start < 0:
                raise FormError("cannot cut offer_audio's SDP into a template")
            at.append(start)
            start += len(sentinel)
        if text.count(b"192.0.2.123") != 2 or any(text.count(s) != 1 for s in self._SENTINELS if s != b"192.0.2.123"):
            raise FormError("cannot cut offer_audio's SDP into a template")
        fmt = text.replace(b"%", b"%%")
        for sentinel, slot in ((b"1234567891", b"%d"), (b"1234567893", b"%d"), (b"192.0.2.123", b"%s"),
                               (b"65011", b"%d"), (b"a=sendrecv", b"a=%s")):
            fmt = fmt.replace(sentinel, slot)
        self.fmt = fmt
        self._checked: set[tuple[bool, bytes]] = set()

    def render(self, ip: bytes, port: int, sess: int, version: int, direction: bytes) -> bytes:
        """The SDP of `ip` (IPv4: the load topology's addresses; anything else fails the check)."""
        out = self.fmt % (sess, version, ip, ip, port, direction)
        key = (b":" in ip, direction)
        if key not in self._checked:
            if out != bytes(offer_audio(ip.decode(), port, sess, version, direction.decode(), pt=self.pt)):
                raise FormError(f"SDP template disagrees with offer_audio for {ip!r} {direction!r}")
            self._checked.add(key)
        return out


SDP_FORMS = {pt: SdpForm(pt) for pt in (0, 8)}  # PCMU, PCMA
