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

from harness.agents.wire import to_wire
from harness.net.udp import Addr, UdpSocket
from harness.sip.errors import SipParseError
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

    def __init__(self, role: str, ip: str, port: int = 5060, faults: frozenset[str] = frozenset()) -> None:
        self.role = role
        self.ip = ip
        self.port = port
        self.faults = faults
        self.log: list[Forwarded] = []
        self._sock: UdpSocket | None = None

    @property
    def decrements_max_forwards(self) -> bool:
        return not (self.role == "S-CSCF" and "scscf-no-max-forwards-decrement" in self.faults)

    async def start(self) -> None:
        self._sock = await UdpSocket.bind(self.ip, self.port, self._datagram)

    async def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # --- datagrams --------------------------------------------------------------------------

    def _datagram(self, data: bytes, addr: Addr) -> None:
        if not data.strip():
            return  # keep-alive CRLF
        try:
            msg = SipMessage.parse(data)
            out = self.route_request(msg, addr) if msg.is_request else self.route_response(msg)
        except (SipParseError, ValueError) as exc:
            self._note("drop", f"{exc}", None)
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
            msg.add("Record-Route", f"<sip:{self.ip};lr>" if self.port == 5060
                    else f"<sip:{self.ip}:{self.port};lr>", first=True)
        # §16.6 steps 6-7: next hop from the top Route, else the Request-URI.
        target_uri = NameAddr.parse(routes[0]).uri if routes else SipUri.parse(msg.uri)
        if not isinstance(target_uri, SipUri):
            return self._reply(msg, 416, "Unsupported URI Scheme")
        target = self._resolve(target_uri)
        # §16.6 step 8 / §16.11: our Via, branch derived from the incoming top branch.
        msg.add("Via", f"SIP/2.0/UDP {self.ip}:{self.port};branch={self.branch_for(msg)}", first=True)
        self._note("request", f"{msg.method} {msg.uri}", target)
        return msg, target

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
        if top.host != source[0]:
            params["received"] = source[0]
            changed = True
        if "rport" in params and params["rport"] is None:
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

    def _reply(self, request: SipMessage, status: int, reason: str) -> tuple[SipMessage, Addr]:
        """A stateless response (§16.11: "MUST ... send the response statelessly")."""
        headers = [(h.name, h.value) for h in request.headers
                   if h.canonical in ("Via", "From", "To", "Call-ID", "CSeq")]
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
