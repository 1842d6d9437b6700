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
    format_params,
    parse_cseq,
    split_commas,
)
from harness.sip.ids import MAGIC_COOKIE
from harness.sip.message import Header, SipMessage

log = logging.getLogger(__name__)

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
        self.log: deque[Forwarded] = deque(maxlen=LOG_KEPT)
        # RFC 3325 §5: assert the identity of initial requests that arrive unasserted (a SUT profile's
        # [ims] p_asserted_identity); the UEs' first hop is the one that sees them so.
        self.assert_identity = False
        self._sock: UdpSocket | TcpSocket | None = None
        self.fast = FastPath(self)

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

    def _note(self, kind: str, summary: str, to: Addr | None) -> None:
        self.log.append(Forwarded(kind, summary, to))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s %s -> %s", self.role, kind, summary, to)

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
# Header lines the codec would read the same way: token name, [ \t]*:[ \t]*, printable ASCII or
# HTAB (no CTL, no bare CR/LF, no folding, no UTF-8: those take the reference path).
_LINES = rb"((?:\r\n" + _TOKEN + rb"[ \t]*:[\t\x20-\x7e]*)*)\r\n\r\n"
_REQUEST_HEAD = re.compile(rb"(" + _TOKEN + rb") ([A-Za-z][A-Za-z0-9+.\-]*:[!-~]+) SIP/2\.0" + _LINES)
_RESPONSE_HEAD = re.compile(rb"SIP/2\.0 ([1-6][0-9][0-9]) [\t\x20-\x7e]*" + _LINES)

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
# One line of any kind above: "\r\n" name sep value (value: group 3, without the line end).
_INTERESTING = re.compile(rb"\r\n(" + rb"|".join(re.escape(k) for k in sorted(_KIND, key=len, reverse=True))
                          + rb")([ \t]*:[ \t]*)([^\r\n]*)", re.I)
_CACHE_LIMIT = 4096

Edit = tuple[int, int, bytes]  # replace data[start:end] with the bytes


class FastPath:
    """Forward by patching the received bytes; None means "take the reference path".

    The outcome for every datagram it accepts is the one `Proxy.route_request` /
    `Proxy.route_response` + `to_wire` give (unit-tested byte for byte); the values it parses use
    the same parsers (Via, NameAddr, CSeq), and parses of repeated texts (Route, To) are cached.
    Edits are byte spans of the received datagram: a value replaced (Via received/rport,
    Max-Forwards, the first Route line), a line removed (our Route, our Via in a response) or
    inserted (our Via above the first Via line, Record-Route above the first Record-Route line or
    after the last header line).
    """

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.taken = 0  # datagrams forwarded here (tests and benchmarks look)
        self._route_cache: dict[str, tuple[bool, Addr | None]] = {}
        self._tag_cache: dict[bytes, bool] = {}
        self._routes_cache: dict[tuple[bytes, ...], tuple[bool, str | None, str | None]] = {}

    @property
    def enabled(self) -> bool:
        proxy = self.proxy
        return proxy.transport == "udp" and not proxy.faults and not proxy.assert_identity

    def forward(self, data: bytes, source: Addr) -> tuple[bytes, Addr] | None:
        if not self.enabled:
            return None
        try:
            out = self._response(data) if data[:8] == b"SIP/2.0 " else self._request(data, source)
        except Exception:  # noqa: BLE001 - whatever it is, the reference path parses it again and says
            return None
        if out is not None:
            self.taken += 1
        return out

    # --- shared ---------------------------------------------------------------------------------

    @staticmethod
    def _fields(data: bytes, start: int, end: int) -> dict[str, list[re.Match[bytes]]] | None:
        """The lines of interest per kind; None when a single-value field is given twice, a field
        only the reference path judges is present, or Content-Length is missing or not the body's."""
        found: dict[str, list[re.Match[bytes]]] = {}
        kinds = _KIND
        for line in _INTERESTING.finditer(data, start, end):
            kind = kinds[line.group(1).lower()]
            have = found.get(kind)
            if have is None:
                found[kind] = [line]
            elif kind in _REPEATABLE:
                have.append(line)
            else:
                return None
        length = found.get("content-length")
        if "other-path" in found or length is None:
            return None
        value = length[0].group(3).rstrip(b" \t")
        if not value.isdigit() or int(value) != len(data) - end - 4:
            return None
        return found

    @staticmethod
    def _text(line: re.Match[bytes]) -> str:
        """A line's value as the codec's `unfolded` gives it."""
        return line.group(3).decode().rstrip(" \t")

    @staticmethod
    def _patch(data: bytes, edits: list[Edit]) -> bytes:
        parts: list[bytes] = []
        at = 0
        for start, end, replacement in sorted(edits):
            parts += (data[at:start], replacement)
            at = end
        parts.append(data[at:])
        return b"".join(parts)

    def _cached_route(self, route: str) -> tuple[bool, Addr | None]:
        """(is this proxy, next-hop address or None for a non-SIP URI) of a Route value."""
        found = self._route_cache.get(route)
        if found is None:
            uri = NameAddr.parse(route).uri
            if isinstance(uri, SipUri):
                found = (uri.host_port == (self.proxy.ip, self.proxy.port), Proxy._resolve(uri))
            else:
                found = (False, None)
            if len(self._route_cache) > _CACHE_LIMIT:
                self._route_cache.clear()
            self._route_cache[route] = found
        return found

    def _routes(self, values: tuple[bytes, ...]) -> tuple[bool, str | None, str | None]:
        """(pop our URI from the top, what stays of the first Route line when popping - None: the
        line goes -, the next Route value after ours or None) for the request's Route lines."""
        found = self._routes_cache.get(values)
        if found is None:
            routes: list[str] = []
            first: list[str] = []
            for value in values:
                parts = split_commas(value.decode().rstrip(" \t"))
                if not parts:
                    raise ValueError("an empty Route line")  # the reference path judges it
                first = first or parts
                routes += parts
            pop = bool(routes) and self._cached_route(routes[0])[0]
            rest = routes[1:] if pop else routes
            found = (pop, ", ".join(first[1:]) if pop and len(first) > 1 else None, rest[0] if rest else None)
            if len(self._routes_cache) > _CACHE_LIMIT:
                self._routes_cache.clear()
            self._routes_cache[values] = found
        return found

    def _has_to_tag(self, to: bytes) -> bool:
        found = self._tag_cache.get(to)
        if found is None:
            found = NameAddr.parse(to.decode().rstrip(" \t")).tag is not None
            if len(self._tag_cache) > _CACHE_LIMIT:
                self._tag_cache.clear()
            self._tag_cache[to] = found
        return found

    # --- requests -------------------------------------------------------------------------------

    def _request(self, data: bytes, source: Addr) -> tuple[bytes, Addr] | None:
        head = _REQUEST_HEAD.match(data)
        if head is None:
            return None
        start, end = head.span(3)
        found = self._fields(data, start, end)
        if found is None:
            return None
        method, uri = head.group(1).decode(), head.group(2).decode()
        # §16.3 step 1 (scheme; no headers in the Request-URI: RFC 4475 §3.1.2.11), §8.1.1.5 CSeq.
        if uri.partition(":")[0].lower() not in ("sip", "sips", "tel") or "?" in uri:
            return None
        try:
            (cseq,), (to,), (max_forwards,), vias = (found["cseq"], found["to"], found["max-forwards"],
                                                     found["via"])
        except KeyError:
            return None  # no CSeq, To, Via or Max-Forwards: the reference path answers or adds
        if parse_cseq(self._text(cseq))[1] != method:
            return None
        # §16.3 step 3 / §16.6 step 3: Max-Forwards, 0 and nonsense left to the reference path.
        hops = max_forwards.group(3).rstrip(b" \t")
        if not hops.isdigit() or int(hops) == 0:
            return None
        # §18.2.1 / RFC 3581 on the sender's Via; one value per Via line here.
        via = vias[0]
        via_text = self._text(via)
        if not via_text or "," in via_text:
            return None
        top = Via.parse(via_text)
        branch = top.branch or ""
        if not branch.startswith(MAGIC_COOKIE):
            return None  # RFC 2543 peer: the reference path hashes the transaction identifiers
        edits: list[Edit] = []
        params = top.params
        bare_rport = "rport" in params and params["rport"] is None
        if top.sent_by[0] != source[0] or bare_rport:
            params = dict(params)
            if top.sent_by[0] != source[0]:
                params["received"] = source[0]
            if bare_rport:
                params["rport"] = str(source[1])
                params.setdefault("received", source[0])
            # str(Via(protocol, host, port, params)), as the reference path writes it back
            port = f":{top.port}" if top.port is not None else ""
            edits.append((via.start(3), via.end(3), f"{top.protocol} {top.host}{port}{format_params(params)}".encode()))
        edits.append((max_forwards.start(3), max_forwards.end(3), str(int(hops) - 1).encode()))
        # §16.4: our own URI on top of Route is removed.
        routes = found.get("route", [])
        pop, first_rest, next_route = self._routes(tuple(line.group(3) for line in routes))
        # §16.6 step 4: Record-Route on dialog-creating requests (To is parsed for every request,
        # as the reference path does: a To that does not parse gets its 400 there).
        has_to_tag = self._has_to_tag(to.group(3))
        # §16.6 steps 6-7: next hop; a request for the proxy itself takes the reference path.
        if next_route is not None:
            _, target = self._cached_route(next_route)
        else:
            is_me, target = self._cached_route(f"<{uri}>")
            if is_me:
                return None
        if target is None:
            return None  # 416 from the reference path
        proxy = self.proxy
        if pop:
            first = routes[0]
            edits.append((first.start(), first.end(), b"") if first_rest is None else
                         (first.start(3), first.end(3), first_rest.encode()))
        if not has_to_tag and (method in DIALOG_CREATING or method == "REFER"):
            record_routes = found.get("record-route")
            at = record_routes[0].start() if record_routes else end
            edits.append((at, at, b"\r\nRecord-Route: <" + proxy.uri.encode() + b";lr>"))
        host = f"[{proxy.ip}]" if ":" in proxy.ip else proxy.ip
        edits.append((via.start(), via.start(),
                      f"\r\nVia: SIP/2.0/UDP {host}:{proxy.port};branch={self._branch(branch)}".encode()))
        proxy._note("request", f"{method} {uri}", target)
        return self._patch(data, edits), target

    def _branch(self, incoming: str) -> str:
        proxy = self.proxy
        return MAGIC_COOKIE + hashlib.sha1(f"{proxy.ip}:{proxy.port}|{incoming}".encode()).hexdigest()[:20]

    # --- responses ------------------------------------------------------------------------------

    def _response(self, data: bytes) -> tuple[bytes, Addr] | None:
        head = _RESPONSE_HEAD.match(data)
        if head is None:
            return None
        start, end = head.span(2)
        found = self._fields(data, start, end)
        if found is None:
            return None
        vias = found.get("via", [])
        if len(vias) < 2 or "cseq" not in found:
            return None
        ours, nxt = self._text(vias[0]), first_comma_value(self._text(vias[1]))
        if not ours or nxt is None or "," in ours:
            return None
        proxy = self.proxy
        if Via.parse(ours).sent_by != (proxy.ip, proxy.port):
            return None  # dropped by the reference path, which says why
        target = Proxy._via_target(Via.parse(nxt))
        method = parse_cseq(self._text(found["cseq"][0]))[1]
        proxy._note("response", f"{head.group(1).decode()} {method}", target)
        return self._patch(data, [(vias[0].start(), vias[0].end(), b"")]), target
