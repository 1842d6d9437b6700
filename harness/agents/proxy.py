"""A stateless, record-routing SIP proxy (RFC 3261 §16.11) playing the P-CSCF and the S-CSCF.

Stateless keeps it honest and small: every request is forwarded on its own merits, the Via branch is
derived from the incoming top branch so retransmissions, CANCEL and the non-2xx ACK map to the same
branch (§16.11), and responses are routed back by the Via stack alone. It never touches Call-ID,
From, To, CSeq or the body (checklist G5).

Two paths, one behaviour. The reference path parses the datagram into a SipMessage, routes it
(`route_request` / `route_response`) and serialises the result through the Scapy layer. The fast
path (`FastPath`) forwards the received bytes with the few lines §16.6 / §16.7 change patched in
place: the new top Via, Record-Route, Max-Forwards - 1, the popped Route value, `received`/`rport`
on the sender's Via, the proxy's own Via removed from a response. It takes only datagrams it can
judge completely: CRLF line ends, printable-ASCII header lines without folding, one matching
Content-Length, one value per Via line, and every §16.3 check passing (scheme, single-value
fields, CSeq, no Proxy-Require, Max-Forwards > 0, not addressed to the proxy itself). Anything
else - and every message of a proxy told to commit a fault, or asserting identities - takes the
reference path, which answers 400/416/420/483 or drops exactly as before. Unit tests hold the two
paths byte-equal on the harness's own traffic and on the RFC 4475 torture corpus.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import deque
from typing import NamedTuple

from harness.agents.badrequest import bad_request
from harness.agents.validate import check_proxy
from harness.agents.wire import to_wire
from harness.net.tcp import TcpSocket
from harness.net.udp import Addr, UdpSocket, frame_datagram
from harness.sip.errors import SipError
from harness.sip.headers import (
    NameAddr,
    SipUri,
    Via,
    first_comma_value,
    parse_cseq,
    split_commas,
)
from harness.sip.ids import MAGIC_COOKIE
from harness.sip.message import Header, SipMessage

log = logging.getLogger(__name__)

try:  # CPython's own SHA-1: the same digest as OpenSSL's, a third cheaper for a short input
    from _sha1 import sha1 as _sha1
except ImportError:  # pragma: no cover - another interpreter
    _sha1 = hashlib.sha1

DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE"})
DEFAULT_MAX_FORWARDS = 70


class Forwarded(NamedTuple):
    """What the proxy did with one datagram (for logs and tests)."""

    kind: str  # "request" | "response" | "reply" | "drop"
    summary: str
    to: Addr | None


LOG_KEPT = 4096  # the latest Forwarded records a proxy keeps (a load run forwards without end)


class Proxy:
    """P-CSCF or S-CSCF: Max-Forwards, loose routing, Record-Route, one Via, forward."""

    def __init__(self, role: str, ip: str, port: int = 5060, faults: frozenset[str] = frozenset(),
                 transport: str = "udp") -> None:
        self.role = role
        self.ip = ip
        self.port = port
        self.faults = faults
        self.transport = transport.lower()  # one transport in and out (no RFC 5658 double Record-Route)
        # (kind, summary, to, detail): a Forwarded's parts, its summary joined only when read (`log`)
        self._log: deque[tuple[str, str, Addr | None, str | None]] = deque(maxlen=LOG_KEPT)
        # RFC 3325 §5: assert the identity of initial requests that arrive unasserted (a SUT profile's
        # [ims] p_asserted_identity); the UEs' first hop is the one that sees them so.
        self.assert_identity = False
        self._sock: UdpSocket | TcpSocket | None = None
        self.fast = FastPath(self)

    @property
    def log(self) -> deque[Forwarded]:
        """The latest records, oldest first; built when read, so a forward only stores a tuple."""
        return deque((Forwarded(kind, summary if detail is None else f"{summary} {detail}", to)
                      for kind, summary, to, detail in self._log), maxlen=LOG_KEPT)

    @property
    def decrements_max_forwards(self) -> bool:
        return not (self.role == "S-CSCF" and "scscf-no-max-forwards-decrement" in self.faults)

    async def start(self) -> None:
        bind = TcpSocket.bind if self.transport == "tcp" else UdpSocket.bind
        self._sock = await bind(self.ip, self.port, self._datagram)

    async def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # --- datagrams --------------------------------------------------------------------------

    def _datagram(self, data: bytes, addr: Addr) -> None:
        out = self.fast.forward(data, addr) or self.reference(data, addr)
        if out is not None and self._sock is not None:
            self._sock.sendto(*out)

    def reference(self, data: bytes, addr: Addr) -> tuple[bytes, Addr] | None:
        """The reference path: parse, route, serialise through the Scapy layer; the datagram to
        send (a forward, a stateless answer or a 400) and where, or None (dropped, or keep-alive)."""
        if not data.strip():
            return None  # keep-alive CRLF
        try:
            msg = SipMessage.parse(frame_datagram(data))
            out = self.route_request(msg, addr) if msg.is_request else self.route_response(msg)
        except (SipError, ValueError) as exc:
            self._note("drop", f"{exc}", None)
            return bad_request(data, str(exc), addr)  # §16.3: 400 when the request names its Vias etc.
        if out is None:
            return None
        message, target = out
        return to_wire(message), target

    def _note(self, kind: str, summary: str, to: Addr | None, detail: str | None = None) -> None:
        """Record what happened; the summary is `summary`, or "summary detail" when a detail is given."""
        self._log.append((kind, summary, to, detail))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s %s -> %s", self.role, kind, summary if detail is None else f"{summary} {detail}", to)

    # --- requests (§16.3 - §16.6) ------------------------------------------------------------

    def route_request(self, msg: SipMessage, source: Addr) -> tuple[SipMessage, Addr] | None:
        msg = msg.copy()
        self._mark_received(msg, source)
        assert msg.method is not None and msg.uri is not None
        problem = check_proxy(msg)  # §16.3: scheme, single-value fields, Proxy-Require
        if problem is not None and msg.method != "ACK":
            return self._reply(msg, problem[0], problem[1], problem[2])
        # §16.3 step 3 / §16.6 step 3: Max-Forwards.
        max_forwards = msg.get("Max-Forwards")
        if max_forwards is not None:
            if not max_forwards.isdigit():
                return self._reply(msg, 400, "Invalid Max-Forwards")
            if int(max_forwards) == 0:
                if msg.method == "ACK":
                    self._note("drop", "ACK with Max-Forwards 0", None)
                    return None
                return self._reply(msg, 483, "Too Many Hops")
            if self.decrements_max_forwards:
                msg.set("Max-Forwards", str(int(max_forwards) - 1))
        else:
            msg.add("Max-Forwards", str(DEFAULT_MAX_FORWARDS))
        # §16.4: a loose-routing proxy removes its own URI from the top of Route.
        routes = msg.get_all("Route")
        if routes and self._is_me(routes[0]):
            msg.pop_first("Route")
            routes = routes[1:]
        # §16.6 step 4: Record-Route on dialog-creating requests, so in-dialog requests come back here.
        if msg.to_tag is None and (msg.method in DIALOG_CREATING or msg.method == "REFER"):
            msg.add("Record-Route", f"<{self.uri};lr>", first=True)
        if self.assert_identity and msg.to_tag is None and msg.method not in ("ACK", "CANCEL"):
            self._assert_identity(msg)
        if not routes and self._is_me(f"<{msg.uri}>"):
            # §16.4-16.5: addressed to the proxy itself; forwarding would loop back here.
            if msg.method == "ACK":
                return None
            return self._reply(msg, 200, "OK") if msg.method == "OPTIONS" else self._reply(msg, 404, "Not Found")
        # §16.6 steps 6-7: next hop from the top Route, else the Request-URI.
        target_uri = NameAddr.parse(routes[0] if routes else f"<{msg.uri}>").uri  # any scheme: 416 below
        if not isinstance(target_uri, SipUri):
            return self._reply(msg, 416, "Unsupported URI Scheme")
        target = self._resolve(target_uri)
        # §16.6 step 8 / §16.11: our Via, branch derived from the incoming top branch.
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        msg.add("Via", f"SIP/2.0/{self.transport.upper()} {host}:{self.port};branch={self.branch_for(msg)}",
                first=True)
        self._note("request", f"{msg.method} {msg.uri}", target)
        return msg, target

    @property
    def uri(self) -> str:
        """This proxy's SIP URI (what it puts in Record-Route), `;transport=tcp` on TCP."""
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        hostport = host if self.port == 5060 else f"{host}:{self.port}"
        return f"sip:{hostport}" + (";transport=tcp" if self.transport == "tcp" else "")

    @staticmethod
    def _assert_identity(msg: SipMessage) -> None:
        """P-Preferred-Identity becomes P-Asserted-Identity; with none, the From URI is asserted."""
        if msg.get("P-Asserted-Identity") is not None:
            return
        preferred = msg.get("P-Preferred-Identity")
        msg.remove("P-Preferred-Identity")
        msg.add("P-Asserted-Identity", preferred or f"<{msg.from_addr.uri}>")

    def branch_for(self, msg: SipMessage) -> str:
        """§16.11: same for retransmissions, CANCEL and non-2xx ACK (same incoming branch), different
        for different requests (a 2xx ACK has its own incoming branch)."""
        incoming = msg.top_via.branch or ""
        if not incoming.startswith(MAGIC_COOKIE):
            # RFC 2543 peer: hash what identifies the transaction instead (§16.11, §17.2.3).
            incoming = "|".join([msg.uri or "", msg.from_tag or "", msg.call_id or "", str(msg.cseq[0]),
                                 str(msg.top_via)])
        digest = hashlib.sha1(f"{self.ip}:{self.port}|{incoming}".encode()).hexdigest()[:20]
        return MAGIC_COOKIE + digest

    def _mark_received(self, msg: SipMessage, source: Addr) -> None:
        """§18.2.1 / RFC 3581: note where the request really came from in the top Via."""
        top = msg.top_via
        params = dict(top.params)
        changed = False
        if top.sent_by[0] != source[0]:
            params["received"] = source[0]
            changed = True
        if self.transport == "tcp" or ("rport" in params and params["rport"] is None):
            # On TCP the response must ride the connection the request came on (§18.2.2): its port.
            params["rport"] = str(source[1])
            params.setdefault("received", source[0])
            changed = True
        if changed:
            _replace_top_value(msg, "Via", str(Via(top.protocol, top.host, top.port, params)))

    def _is_me(self, route: str) -> bool:
        uri = NameAddr.parse(route).uri
        return isinstance(uri, SipUri) and uri.host_port == (self.ip, self.port)

    @staticmethod
    def _resolve(uri: SipUri) -> Addr:
        host, port = uri.host_port
        maddr = uri.params.get("maddr")
        return (maddr or host, port)

    def _reply(self, request: SipMessage, status: int, reason: str,
               extra: list[tuple[str, str]] | None = None) -> tuple[SipMessage, Addr]:
        """A stateless response (§16.11: "MUST ... send the response statelessly")."""
        headers = [(h.name, h.value) for h in request.headers
                   if h.canonical in ("Via", "From", "To", "Call-ID", "CSeq")] + (extra or [])
        response = SipMessage.response(status, reason, headers, content_length=True)
        self._note("reply", f"{status} to {request.method}", None)
        return response, self._via_target(request.top_via)

    # --- responses (§16.7, stateless) ---------------------------------------------------------

    def route_response(self, msg: SipMessage) -> tuple[SipMessage, Addr] | None:
        msg = msg.copy()
        if msg.top_via.sent_by != (self.ip, self.port):
            self._note("drop", f"{msg.status} whose top Via is not ours", None)
            return None
        msg.pop_first("Via")
        if not msg.get_all("Via"):
            self._note("drop", f"{msg.status} with no Via left", None)
            return None
        target = self._via_target(msg.top_via)
        self._note("response", f"{msg.status} {msg.cseq[1]}", target)
        return msg, target

    @staticmethod
    def _via_target(via: Via) -> Addr:
        """§18.2.2 with RFC 3581: received (else sent-by host), rport (else sent-by port)."""
        host, port = via.sent_by
        return (via.received or host, via.rport or port)



def _replace_top_value(msg: SipMessage, name: str, value: str) -> None:
    """Replace the first value of header `name` where it stands (first line, first comma element)."""
    for i, header in enumerate(msg.headers):
        if header.canonical == name:
            rest = split_commas(header.unfolded)[1:]
            msg.headers[i] = Header(header.name, ", ".join([value, *rest]), header.sep, header.eol)
            return


# --- the fast path ------------------------------------------------------------------------------

_TOKEN = rb"[A-Za-z0-9\-.!%*_+`'~]+"
_TOKEN_RE = re.compile(_TOKEN)
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([A-Za-z][A-Za-z0-9+.\-]*:[!-~]+) SIP/2\.0")
_STATUS_LINE = re.compile(rb"SIP/2\.0 ([1-6][0-9][0-9]) [\t\x20-\x7e]*")
# Head bytes a header line may hold besides its CRLF: printable ASCII and HTAB (no CTL, no bare
# CR/LF, no UTF-8: those take the reference path). Deleting them leaves exactly the line ends.
_PRINTABLE = bytes(range(0x20, 0x7F)) + b"\t"
_NAME = re.compile(rb"\r\n([^:\r\n]*):")  # each header line's name as written (with blanks before ':')

# Lower-cased header name (full and compact) -> what the fast path needs to know about it.
_KIND: dict[bytes, str] = {
    b"via": "via", b"v": "via", b"route": "route", b"record-route": "record-route",
    b"max-forwards": "max-forwards", b"to": "to", b"t": "to", b"cseq": "cseq",
    b"content-length": "content-length", b"l": "content-length", b"call-id": "call-id", b"i": "call-id",
    b"from": "from", b"f": "from", b"content-type": "content-type", b"c": "content-type",
    # §16.3 step 5 and RFC 3325: judged by the reference path only.
    b"proxy-require": "other-path", b"p-asserted-identity": "other-path", b"p-preferred-identity": "other-path",
}
# §7.3.1 / validate.SINGLE: fields of one value; two lines of one are the reference path's 400.
_REPEATABLE = frozenset({"via", "route", "record-route"})
# A Via value in the form UAs and this proxy write (`SIP/2.0/UDP a.b.c.d[:port]` and token params):
# parsed here exactly as Via.parse would, without its general machinery; anything else goes to it.
_SIMPLE_VIA = re.compile(r"SIP/2\.0/UDP ((?:[0-9]{1,3}\.){3}[0-9]{1,3})(?::([0-9]{1,5}))?"
                         r"((?:;[A-Za-z0-9\-.!%*_+`'~]+(?:=[A-Za-z0-9\-.!%*_+`'~]+)?)*)")
# Header params of token names and values (a To's after its <uri>), as parse_params reads them plainly.
_PARAMS = re.compile(r"(?:;[A-Za-z0-9\-.!%*_+`'~]+(?:=[A-Za-z0-9\-.!%*_+`'~]+)?)*")
_CACHE_LIMIT = 4096
_RECENT_SHAPES = 4  # shapes tried per (line count, start) before the names are read

# The common forms, read with one regex instead of the general parsers (whose lru_caches a load
# run churns: every dialog brings new branches, tags and UEs). Each is a subset of what the
# general parser accepts, read exactly as it reads it; anything else takes the general parser.
_HOST = rb"[0-9][0-9.]*"  # digits and dots: a valid host to the Via parser, matched faster than strict IPv4
_TOKEN_CHAR = rb"[A-Za-z0-9\-.!%*_+`'~]"
# A request's top Via line as UAs and proxies write it: a numeric sent-by host, a port as int() prints it
# back, `;branch=z9hG4bK...`, at most a bare `;rport` after it, no trailing blanks. Its params are
# then lower-case and distinct, so what the reference path writes back (§18.2.1 / RFC 3581) is
# the line itself with `=port;received=ip` or `;received=ip` appended.
_SENDER_VIA = re.compile(rb"[^:]*:[ \t]*SIP/2\.0/UDP (" + _HOST + rb")(?::(0|[1-9][0-9]{0,4}))?;branch=(z9hG4bK"
                         + _TOKEN_CHAR + rb"*)(;rport)?")
# A Via line a response brings back as this harness writes it (a proxy's own, or a sender's
# patched as above): its sent-by and where the response goes, read off without the Via parser.
_RETURN_VIA = re.compile(rb"[^:]*:[ \t]*SIP/2\.0/UDP (" + _HOST + rb")(?::([0-9]{1,5}))?;branch=" + _TOKEN_CHAR
                         + rb"+(?:;rport=([0-9]{1,5}))?(?:;received=(" + _HOST + rb"))?")
# `sip:[user@]a.b.c.d[:port]` without params or headers: SipUri.parse takes it, and its host_port
# is (a.b.c.d, port or 5060) - a Request-URI or a To URI that needs no parser.
_PLAIN_SIP_URI = re.compile(r"sip:(?:[A-Za-z0-9\-_.!~*'()%+]+@)?((?:[0-9]{1,3}\.){3}[0-9]{1,3})(?::([0-9]{1,5}))?")

# (protocol, host as written, port or None, params, sent_by, simple, where a response goes): what a
# Via value says; simple: the common form, whose patched text (received=IPv4, rport=digits) stays so.
ViaParts = tuple[str, str, "int | None", dict[str, "str | None"], Addr, bool, Addr]
# (ip:port, our Via line up to the branch's hash, our Record-Route line, the branch hash's
# prefix): what a proxy writes.
Own = tuple[Addr, bytes, bytes, bytes]
# (pop our URI from the top of Route, the first Route line as it stays - None: it goes -, the
# next Route value): what a request's Route lines say to this proxy.
Routes = tuple[bool, "bytes | None", "str | None"]
# The kinds of interesting header lines -> their indexes in the head's lines.
Found = dict[str, list[int]]


class Shape(NamedTuple):
    """Where the interesting lines of a head with a given tuple of header names are (indexes in
    its lines, the start line 0): worked out once per shape, unpacked by every forward."""

    content_length: int
    cseq: int | None
    to: int | None
    max_forwards: int | None
    vias: tuple[int, ...]
    routes: tuple[int, ...]
    record_route: int | None  # the first Record-Route line

    @classmethod
    def of(cls, found: Found) -> Shape:
        def one(kind: str) -> int | None:
            return found[kind][0] if kind in found else None

        return cls(found["content-length"][0], one("cseq"), one("to"), one("max-forwards"),
                   tuple(found.get("via", ())), tuple(found.get("route", ())), one("record-route"))


# Caches of what a line or value says, whichever proxy reads it; each bounded by _CACHE_LIMIT.
_TAGS: dict[bytes, bool] = {}  # To line -> has a tag
_NAMES: dict[bytes, str] = {}  # header name as written before ':' -> kind or "" (uninteresting)
_SHAPES: dict[tuple[bytes, ...], Shape | None] = {}  # header names of a head -> its Shape
_STARTS: dict[bytes, tuple[str, str] | None] = {}  # request line -> (method, URI) or None
_STATUSES: dict[bytes, str | None] = {}  # status line -> status code or None
_CSEQS: dict[bytes, str | None] = {}  # CSeq line -> method or None (does not parse)
_LENGTHS: dict[bytes, int | None] = {}  # Content-Length line -> its number, None when not one
_HOPS: dict[bytes, bytes] = {}  # Max-Forwards line -> the line to send
# Via line a proxy has written (its own, or a sender's patched) -> where a response bringing it
# back below the top Via goes: the responses find it here instead of parsing it again.
_RETURNS: dict[bytes, Addr] = {}


def clear_caches() -> None:
    """Empty the caches the fast paths share (benchmarks measure them cold)."""
    for cache in (_TAGS, _NAMES, _SHAPES, _STARTS, _STATUSES, _CSEQS, _HOPS, _LENGTHS, _RETURNS):
        cache.clear()


def _value(line: bytes) -> bytes:
    """A header line's value after `name[ \t]*:[ \t]*`, trailing blanks kept (they are replaced)."""
    return line[line.find(b":") + 1:].lstrip(b" \t")


def _text(line: bytes) -> str:
    """A line's value as the codec's `unfolded` gives it."""
    return _value(line).decode().rstrip(" \t")


def _parse_via(text: str) -> ViaParts:
    """`Via.parse(text)` as a tuple; the common form without the general parser (a third of the
    fast path's CPU when every transaction brings a new branch)."""
    simple = _SIMPLE_VIA.fullmatch(text)
    if simple is not None and (simple[2] is None or int(simple[2]) <= 65535):
        host, port_text, param_text = simple.groups()
        params: dict[str, str | None] = {}
        for param in param_text[1:].split(";") if param_text else ():
            name, eq, value = param.partition("=")
            params.setdefault(name.lower(), value if eq else None)
        port = int(port_text) if port_text is not None else None
        sent_by = (host, 5060 if port is None else port)
        return "SIP/2.0/UDP", host, port, params, sent_by, True, _via_target(params, sent_by)
    via = Via.parse(text)
    return via.protocol, via.host, via.port, via.params, via.sent_by, False, Proxy._via_target(via)


def _plain_uri_address(text: str, start: int, end: int) -> Addr | None:
    """host_port of the URI text[start:end] when it is in _PLAIN_SIP_URI's form, else None."""
    plain = _PLAIN_SIP_URI.fullmatch(text, start, end)
    if plain is None:
        return None
    port = int(plain[2]) if plain[2] is not None else 5060
    return (plain[1], port) if port <= 65535 else None


def _sender_via(line: bytes, source: Addr) -> tuple[bytes, bytes] | None:
    """(the request's top Via line as the reference path writes it back - `received` and `rport`
    noted, §18.2.1 / RFC 3581 -, its branch), None when the line holds no value or several, or
    the branch is RFC 2543's (the reference path hashes the transaction identifiers instead)."""
    plain = _SENDER_VIA.fullmatch(line)
    if plain is None:
        return _sender_via_parsed(line, source)
    host, port, branch, bare_rport = plain.groups()
    if port is not None and len(port) == 5 and int(port) > 65535:
        return None  # the Via parser's 400
    sent_port = int(port) if port is not None else 5060
    ip = source[0]
    if bare_rport is not None:
        line = b"%s=%d;received=%s" % (line, source[1], ip.encode())
        _returns(line, (ip, source[1] or sent_port))
    elif host.decode() != ip:
        line += b";received=" + ip.encode()
        _returns(line, (ip, sent_port))
    return line, branch


def _sender_via_parsed(line: bytes, source: Addr) -> tuple[bytes, bytes] | None:
    """`_sender_via` of a line in any form: parsed, patched, and written as str(Via) would."""
    text = _text(line)
    if not text or "," in text:
        return None
    protocol, host, port, params, sent_by, _, _ = _parse_via(text)
    branch = params.get("branch") or ""
    if not branch.startswith(MAGIC_COOKIE):
        return None
    ip = source[0]
    moved = sent_by[0] != ip
    bare_rport = "rport" in params and params["rport"] is None
    if moved or bare_rport:
        params = dict(params)
        if moved:
            params["received"] = ip
        if bare_rport:
            params["rport"] = str(source[1])
            params.setdefault("received", ip)
        # str(Via(protocol, host, port, params)), as the reference path writes it back (the names
        # are tokens: parsed, or ours)
        formatted = "".join([f";{name}" if value is None else f";{name}={value}" for name, value in params.items()])
        patched = f"{protocol} {host}{formatted}" if port is None else f"{protocol} {host}:{port}{formatted}"
        line = line[:len(line) - len(_value(line))] + patched.encode()
    return line, branch.encode()


def _own_via(incoming: bytes, own: Own) -> bytes:
    """Our Via line, its branch as `Proxy.branch_for` derives it from the incoming top branch
    (§16.11). Not remembered: in a load run every transaction brings a new branch."""
    line = own[1] + _sha1(own[3] + incoming).hexdigest()[:20].encode()
    _returns(line, own[0])
    return line


def _returns(line: bytes, target: Addr) -> None:
    """Remember where a response goes that brings back this Via line we have written."""
    if len(_RETURNS) > _CACHE_LIMIT:
        _RETURNS.clear()
    _RETURNS[line] = target


def _response_target(line: bytes) -> Addr | None:
    """Where a response goes by the Via line below ours (§18.2.2, RFC 3581): its first value's
    received (else sent-by host) and rport (else sent-by port); None when it has no value."""
    known = _RETURNS.get(line)
    if known is not None:
        return known
    plain = _RETURN_VIA.fullmatch(line)
    if plain is None:
        text = first_comma_value(_text(line))
        return None if text is None else _parse_via(text)[6]
    host, port_text, rport, received = plain.groups()
    port = int(port_text) if port_text is not None else 5060
    if port > 65535:
        raise ValueError(f"Via port {port}")  # the Via parser's 400
    return (received or host).decode(), (int(rport) if rport else 0) or port


def _via_target(params: dict[str, str | None], sent_by: Addr) -> Addr:
    """`Proxy._via_target`: received (else sent-by host), rport (else sent-by port)."""
    rport = params.get("rport")
    return (params.get("received") or sent_by[0],
            (int(rport) if rport and rport.isascii() and rport.isdigit() else None) or sent_by[1])


class FastPath:
    """Forward by patching the received bytes; None means "take the reference path".

    The outcome for every datagram it accepts is the one `Proxy.route_request` /
    `Proxy.route_response` + `to_wire` give (unit-tested byte for byte); the values it parses use
    the same parsers (NameAddr, CSeq, Via), except for the common forms one regex reads exactly as
    they would (`_SENDER_VIA`, `_RETURN_VIA`, `_PLAIN_SIP_URI`, `_SIMPLE_VIA`).

    Where the CPU goes, in a load run (every dialog brings new branches, tags, UEs, so a cache of
    what such a line says misses and churns): the head is split into lines once and checked by one
    `translate` (printable ASCII); its shape (the tuple of header names) gives the interesting
    lines' indexes (`Shape`), a shape the proxy has met recognised by one `startswith` per line,
    another read by one `findall`. A request's top Via is patched by appending to it, our Via's
    branch is hashed afresh (retransmissions are rare), a response's top Via is recognised as ours
    by its prefix and the next one read from `_RETURNS` (the Via lines the proxies wrote) or by
    `_RETURN_VIA`. Edits are whole lines: a value replaced (Via received/rport, Max-Forwards, the
    first Route line), a line joined below ours (our Via, our Record-Route) or removed (our Route,
    our Via in a response). What repeats across dialogs (request and status lines, CSeq,
    Max-Forwards, Content-Length and To lines, header names, shapes) is cached per line, bounded,
    shared by all proxies; Route sets and URI targets per proxy.
    """

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.taken = 0  # datagrams forwarded here (tests and benchmarks look)
        self._route_cache: dict[str, tuple[bool, Addr | None]] = {}
        self._routes_cache: dict[tuple[bytes, ...], Routes] = {}
        # (line count, first 12 bytes) -> (each line's expected start, its Shape), latest first
        self._recent: dict[tuple[int, bytes], list[tuple[tuple[bytes, ...], Shape]]] = {}
        # What does not depend on the proxy is shared by all of them (the S-CSCF meets the lines the
        # P-CSCF has just read or written).
        self._tag_cache, self._names, self._shapes, self._starts = _TAGS, _NAMES, _SHAPES, _STARTS
        self._statuses, self._cseqs, self._hops = _STATUSES, _CSEQS, _HOPS
        self._ours: Own | None = None

    @property
    def enabled(self) -> bool:
        proxy = self.proxy
        return proxy.transport == "udp" and not proxy.faults and not proxy.assert_identity

    def forward(self, data: bytes, source: Addr) -> tuple[bytes, Addr] | None:
        proxy = self.proxy
        if proxy.transport != "udp" or proxy.faults or proxy.assert_identity:  # not self.enabled
            return None
        try:
            out = self._response(data) if data.startswith(b"SIP/2.0 ") else self._request(data, source)
        except Exception:  # noqa: BLE001 - whatever it is, the reference path parses it again and says
            return None
        if out is not None:
            self.taken += 1
        return out

    # --- shared ---------------------------------------------------------------------------------

    def _head(self, data: bytes) -> tuple[list[bytes], Shape, int] | None:
        """(the head's lines, where its interesting lines are, where it ends) or None: not
        printable ASCII in CRLF lines of `token[ \t]*:` form, a shape `_shape` refuses, or a
        Content-Length that is not the body's."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = data[:end]
        lines = head.split(b"\r\n")
        if len(head.translate(None, _PRINTABLE)) != 2 * (len(lines) - 1):
            return None  # a CTL, a bare CR or LF, or a byte beyond ASCII
        shape = self._known_shape(lines, data)
        if shape is None:
            names = tuple(_NAME.findall(head))
            if len(names) != len(lines) - 1:
                return None  # a line without a colon (folding, for one)
            shape = self._shapes.get(names, False)
            if shape is False:
                shape = self._shape(names)
            if shape is None:
                return None
            self._seen_shape(lines, data, names, shape)
        line = lines[shape.content_length]
        length = _LENGTHS.get(line, -1)
        if length == -1:
            value = _value(line).rstrip(b" \t")
            length = int(value) if value.isdigit() else None
            if len(_LENGTHS) > _CACHE_LIMIT:
                _LENGTHS.clear()
            _LENGTHS[line] = length
        if length != len(data) - end - 4:
            return None
        return lines, shape, end

    def _known_shape(self, lines: list[bytes], data: bytes) -> Shape | None:
        """The Shape of a head whose lines start with the header names (and colons) of a shape
        this proxy has met with the same line count and start - the lines, not the names, tested
        (one `startswith` per line, no regex, no new tuple to hash); None: not one of those."""
        for prefixes, shape in self._recent.get((len(lines), data[:12]), ()):
            if all(map(bytes.startswith, lines, prefixes)):
                return shape
        return None

    def _seen_shape(self, lines: list[bytes], data: bytes, names: tuple[bytes, ...], shape: Shape) -> None:
        """Enter a shape the fast path takes for `_known_shape`, before others of its key."""
        recent = self._recent
        if len(recent) > _CACHE_LIMIT:
            recent.clear()
        key = (len(lines), data[:12])
        others = recent.get(key, [])
        recent[key] = [((b"", *[name + b":" for name in names]), shape), *others[:_RECENT_SHAPES - 1]]

    def _shape(self, names: tuple[bytes, ...]) -> Shape | None:
        """The interesting lines per kind of a head with these header names (as written before
        their ':'), None when a name is not `token[ \t]*`, a single-value field is given twice, a
        field only the reference path judges is present or Content-Length is missing; remembered
        (a load run's messages come in a few shapes)."""
        found = self._interesting(names)
        shape = None
        if found is not None and "content-length" in found and "other-path" not in found:
            shape = Shape.of(found)
        if len(self._shapes) > _CACHE_LIMIT:
            self._shapes.clear()
        self._shapes[names] = shape
        return shape

    def _interesting(self, names: tuple[bytes, ...]) -> Found | None:
        found: Found = {}
        for i, name in enumerate(names, 1):
            kind = self._names.get(name)
            if kind is None:
                kind = self._name(name)
                if kind is None:
                    return None
            if kind:
                have = found.get(kind)
                if have is None:
                    found[kind] = [i]
                elif kind in _REPEATABLE:
                    have.append(i)
                else:
                    return None
        return found

    def _name(self, name: bytes) -> str | None:
        """The kind of a header name as written before its ':' ("" uninteresting), None when it is
        not `token[ \t]*`; remembered."""
        token = name.rstrip(b" \t")
        kind = _KIND.get(token.lower(), "") if _TOKEN_RE.fullmatch(token) else None
        if kind is not None:
            if len(self._names) > _CACHE_LIMIT:
                self._names.clear()
            self._names[name] = kind
        return kind

    def _via(self, line: bytes) -> ViaParts | None:
        """What a Via line says, None when it is empty or holds more than one value; raises when it
        does not parse."""
        text = _text(line)
        if not text or "," in text:
            return None
        return _parse_via(text)

    def _cached_route(self, route: str) -> tuple[bool, Addr | None]:
        """(is this proxy, next-hop address or None for a non-SIP URI) of a Route value."""
        found = self._route_cache.get(route)
        if found is None:
            plain = _plain_uri_address(route, 1, len(route) - 1) if route[:1] == "<" and route[-1:] == ">" else None
            if plain is not None:
                found = (plain == (self.proxy.ip, self.proxy.port), plain)
            else:
                uri = NameAddr.parse(route).uri
                if isinstance(uri, SipUri):
                    found = (uri.host_port == (self.proxy.ip, self.proxy.port), Proxy._resolve(uri))
                else:
                    found = (False, None)
            if len(self._route_cache) > _CACHE_LIMIT:
                self._route_cache.clear()
            self._route_cache[route] = found
        return found

    def _routes(self, lines: tuple[bytes, ...]) -> Routes:
        """(pop our URI from the top, the first Route line as it stays when popping - None: it
        goes -, the next Route value after ours or None) for the request's Route lines;
        remembered (a load run's Route sets are few)."""
        found = self._routes_cache.get(lines)
        if found is None:
            routes: list[str] = []
            first: list[str] = []
            for line in lines:
                parts = split_commas(_text(line))
                if not parts:
                    raise ValueError("an empty Route line")  # the reference path judges it
                first = first or parts
                routes += parts
            pop = bool(routes) and self._cached_route(routes[0])[0]
            rest = routes[1:] if pop else routes
            stays = None
            if pop and len(first) > 1:
                stays = lines[0][:len(lines[0]) - len(_value(lines[0]))] + ", ".join(first[1:]).encode()
            found = (pop, stays, rest[0] if rest else None)
            if len(self._routes_cache) > _CACHE_LIMIT:
                self._routes_cache.clear()
            self._routes_cache[lines] = found
        return found

    def _has_to_tag(self, line: bytes) -> bool:
        """Whether a To line has a tag; raises when the To does not parse (the reference path's
        400); remembered."""
        text = _text(line)
        gt = text.find(">")
        if text.startswith("<") and '"' not in text and gt > 0 and _PARAMS.fullmatch(text, gt + 1):
            # "<uri>" and token params: NameAddr.parse of the whole, without parsing the URI again
            if _plain_uri_address(text, 1, gt) is None:
                NameAddr.parse(text[:gt + 1])
            found = False
            for param in text[gt + 2:].split(";") if gt + 1 < len(text) else ():
                name, eq, _ = param.partition("=")
                if name.lower() == "tag":  # the first one counts (parse_params keeps the first)
                    found = bool(eq)
                    break
        else:
            found = NameAddr.parse(text).tag is not None
        if len(self._tag_cache) > _CACHE_LIMIT:
            self._tag_cache.clear()
        self._tag_cache[line] = found
        return found

    def _cseq_method(self, line: bytes) -> str | None:
        """The method of a CSeq line, None when it does not parse (the reference path's 400)."""
        cseqs = self._cseqs
        if line in cseqs:
            return cseqs[line]
        try:
            method: str | None = parse_cseq(_text(line))[1]
        except SipError:
            method = None
        if len(cseqs) > _CACHE_LIMIT:
            cseqs.clear()
        cseqs[line] = method
        return method

    # --- requests -------------------------------------------------------------------------------

    def _start(self, line: bytes) -> tuple[str, str] | None:
        """(method, Request-URI) of a request line the fast path takes; remembered."""
        starts = self._starts
        if line in starts:
            return starts[line]
        match = _REQUEST_LINE.fullmatch(line)
        found: tuple[str, str] | None = None
        if match is not None:
            method, uri = match[1].decode(), match[2].decode()
            # §16.3 step 1 (scheme; no headers in the Request-URI: RFC 4475 §3.1.2.11).
            if uri.partition(":")[0].lower() in ("sip", "sips", "tel") and "?" not in uri:
                found = (method, uri)
        if len(starts) > _CACHE_LIMIT:
            starts.clear()
        starts[line] = found
        return found

    def _request(self, data: bytes, source: Addr) -> tuple[bytes, Addr] | None:
        split = self._head(data)
        if split is None:
            return None
        lines, shape, end = split
        _, cseq, to, max_forwards, vias, routes, record_route = shape
        if cseq is None or to is None or max_forwards is None or not vias:
            return None  # no CSeq, To, Via or Max-Forwards: the reference path answers or adds
        start = self._starts.get(lines[0], False)
        if start is False:
            start = self._start(lines[0])
        if start is None:
            return None
        method, uri = start
        line = lines[cseq]
        if self._cseqs.get(line, False) != method and self._cseq_method(line) != method:  # §8.1.1.5
            return None
        # §16.3 step 3 / §16.6 step 3: Max-Forwards, 0 and nonsense left to the reference path.
        line = self._hops.get(lines[max_forwards])
        if line is None:
            line = self._decrement(lines[max_forwards])
            if line is None:
                return None
        lines[max_forwards] = line
        # §18.2.1 / RFC 3581 on the sender's Via; one value per Via line here.
        via = vias[0]
        sender = _sender_via(lines[via], source)
        if sender is None:
            return None
        lines[via], branch = sender
        # §16.4: our own URI on top of Route is removed.
        pop, first_stays, next_route = self._routes(
            (lines[routes[0]],) if len(routes) == 1 else tuple([lines[i] for i in routes]))
        # §16.6 step 4: Record-Route on dialog-creating requests (To is parsed for every request,
        # as the reference path does: a To that does not parse gets its 400 there).
        has_to_tag = self._tag_cache.get(lines[to])
        if has_to_tag is None:
            has_to_tag = self._has_to_tag(lines[to])
        # §16.6 steps 6-7: next hop; a request for the proxy itself takes the reference path.
        if next_route is not None:
            target = self._cached_route(next_route)[1]
        else:
            is_me, target = self._cached_route(f"<{uri}>")
            if is_me:
                return None
        if target is None:
            return None  # 416 from the reference path
        proxy = self.proxy
        own = self._ours
        if own is None or own[0] != (proxy.ip, proxy.port):
            own = self._own()
        # The edits: a line inserted above another is joined to it, so every index stays valid until
        # the one line removed (our Route, alone on its line) goes last.
        lines[via] = _own_via(branch, own) + b"\r\n" + lines[via]
        if not has_to_tag and (method in DIALOG_CREATING or method == "REFER"):
            if record_route is not None:
                lines[record_route] = own[2] + b"\r\n" + lines[record_route]
            else:
                lines.append(own[2])
        if pop:
            if first_stays is None:
                del lines[routes[0]]
            else:
                lines[routes[0]] = first_stays
        lines.append(data[end + 2:])  # the blank line and the body
        proxy._log.append(("request", method, target, uri))  # Proxy._note, inline
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s request %s %s -> %s", proxy.role, method, uri, target)
        return b"\r\n".join(lines), target

    def _decrement(self, line: bytes) -> bytes | None:
        """A Max-Forwards line with the value one less, None for 0 or not a number; remembered."""
        value = _value(line)
        hops = value.rstrip(b" \t")
        if not hops.isdigit() or int(hops) == 0:
            return None
        if len(self._hops) > _CACHE_LIMIT:
            self._hops.clear()
        out = self._hops[line] = line[:len(line) - len(value)] + str(int(hops) - 1).encode()
        return out

    def _own(self) -> Own:
        """What this proxy writes, for its current ip:port."""
        proxy = self.proxy
        host = f"[{proxy.ip}]" if ":" in proxy.ip else proxy.ip
        own = self._ours = ((proxy.ip, proxy.port), f"Via: SIP/2.0/UDP {host}:{proxy.port};branch={MAGIC_COOKIE}".encode(),
                            f"Record-Route: <{proxy.uri};lr>".encode(), f"{proxy.ip}:{proxy.port}|".encode())
        return own

    # --- responses ------------------------------------------------------------------------------

    def _ours_on_top(self, line: bytes) -> bool:
        """Whether a response's top Via is one value whose sent-by is this proxy: the line as
        `_own_via` writes it (a prefix and a token), else parsed; raises when it does not parse."""
        proxy = self.proxy
        own = self._ours
        if own is None or own[0] != (proxy.ip, proxy.port):
            own = self._own()
        if line.startswith(own[1]) and line[len(own[1]):].isalnum():  # our hex hash: a token
            return True
        parts = self._via(line)
        return parts is not None and parts[4] == own[0]

    def _status(self, line: bytes) -> str | None:
        statuses = self._statuses
        if line in statuses:
            return statuses[line]
        match = _STATUS_LINE.fullmatch(line)
        status = match[1].decode() if match is not None else None
        if len(statuses) > _CACHE_LIMIT:
            statuses.clear()
        statuses[line] = status
        return status

    def _response(self, data: bytes) -> tuple[bytes, Addr] | None:
        split = self._head(data)
        if split is None:
            return None
        lines, shape, end = split
        vias, cseq = shape.vias, shape.cseq
        if len(vias) < 2 or cseq is None:
            return None
        status = self._statuses.get(lines[0], False)
        if status is False:
            status = self._status(lines[0])
        if status is None:
            return None
        if not self._ours_on_top(lines[vias[0]]):
            return None  # not ours: dropped by the reference path, which says why
        target = _response_target(lines[vias[1]])
        if target is None:
            return None
        proxy = self.proxy
        line = lines[cseq]
        method = self._cseqs.get(line, False)
        if method is False:
            method = self._cseq_method(line)
        if method is None:
            return None
        proxy._log.append(("response", status, target, method))  # Proxy._note, inline
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s response %s %s -> %s", proxy.role, status, method, target)
        del lines[vias[0]]
        lines.append(data[end + 2:])
        return b"\r\n".join(lines), target
