"""A stateless, record-routing SIP proxy (RFC 3261 §16.11) playing the P-CSCF and the S-CSCF.

Stateless keeps it honest and small: every request is forwarded on its own merits, the Via branch is
derived from the incoming top branch so retransmissions, CANCEL and the non-2xx ACK map to the same
branch (§16.11), and responses are routed back by the Via stack alone. It never touches Call-ID,
From, To, CSeq or the body (checklist G5).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from harness.agents.badrequest import bad_request
from harness.agents.validate import check_proxy
from harness.agents.wire import to_wire
from harness.net.tcp import TcpSocket
from harness.net.udp import Addr, UdpSocket, frame_datagram
from harness.sip.errors import SipError
from harness.sip.headers import NameAddr, SipUri, Via, split_commas
from harness.sip.ids import MAGIC_COOKIE
from harness.sip.message import Header, SipMessage

log = logging.getLogger(__name__)

DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE"})
DEFAULT_MAX_FORWARDS = 70


@dataclass(frozen=True, slots=True)
class Forwarded:
    """What the proxy did with one datagram (for logs and tests)."""

    kind: str  # "request" | "response" | "reply" | "drop"
    summary: str
    to: Addr | None


class Proxy:
    """P-CSCF or S-CSCF: Max-Forwards, loose routing, Record-Route, one Via, forward."""

    def __init__(self, role: str, ip: str, port: int = 5060, faults: frozenset[str] = frozenset(),
                 transport: str = "udp") -> None:
        self.role = role
        self.ip = ip
        self.port = port
        self.faults = faults
        self.transport = transport.lower()  # one transport in and out (no RFC 5658 double Record-Route)
        self.log: list[Forwarded] = []
        # RFC 3325 §5: assert the identity of initial requests that arrive unasserted (a SUT profile's
        # [ims] p_asserted_identity); the UEs' first hop is the one that sees them so.
        self.assert_identity = False
        self._sock: UdpSocket | TcpSocket | None = None

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
        if not data.strip():
            return  # keep-alive CRLF
        try:
            msg = SipMessage.parse(frame_datagram(data))
            out = self.route_request(msg, addr) if msg.is_request else self.route_response(msg)
        except (SipError, ValueError) as exc:
            self._note("drop", f"{exc}", None)
            answer = bad_request(data, str(exc), addr)  # §16.3: 400 when the request names its Vias etc.
            if answer is not None and self._sock is not None:
                self._sock.sendto(*answer)
            return
        if out is not None and self._sock is not None:
            message, target = out
            self._sock.sendto(to_wire(message), target)

    def _note(self, kind: str, summary: str, to: Addr | None) -> None:
        self.log.append(Forwarded(kind, summary, to))
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
