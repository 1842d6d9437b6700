"""What the UEs and the conference server share as SIP user agents: one TransactionLayer on a
SipUdpEndpoint, requests awaited as futures, ACK retransmission for 2xx retransmissions, tracked tasks.

Event handling is synchronous (called from the endpoint); anything that must await (binding an RTP
port, asking the MRFP) is spawned as a tracked task so `stop()` can cancel it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from harness.agents.badrequest import bad_request
from harness.agents.errors import FlowError, FlowTimeout, bounded
from harness.agents.tasks import TaskSet
from harness.agents.validate import check_uas
from harness.agents.wire import through_layer
from harness.net.tcp import SipTcpEndpoint
from harness.net.udp import Addr, SipUdpEndpoint, UdpSocket, bind_rtp_pair
from harness.sip.build import add_via, make_response
from harness.sip.errors import SipError
from harness.sip.fsm import ProtocolError
from harness.sip.headers import NameAddr, SipUri
from harness.sip.ids import new_tag
from harness.sip.message import Header, SipMessage
from harness.sip.timers import T1, T2
from harness.sip.transaction import (
    MessageDropped,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionTimeout,
)

log = logging.getLogger(__name__)

WAIT = 5.0  # default bound on any single wait for a peer
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, REFER, NOTIFY"
SDP_TYPE = "application/sdp"
DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE", "REFER"})


def next_hop(msg: SipMessage) -> Addr:
    """RFC 3261 §8.1.2: the first Route URI if any (loose routing), else the Request-URI."""
    routes = msg.get_all("Route")
    target = NameAddr.parse(routes[0]).uri if routes else SipUri.parse(str(msg.uri))
    if not isinstance(target, SipUri):
        raise FlowError(f"cannot route to {target}")
    host, port = target.host_port
    return (target.params.get("maddr") or host, port)


def _record_route_lines(request: SipMessage) -> list[str]:
    """Record-Route header lines as received (values kept verbatim, comma lists and all)."""
    return [h.unfolded for h in request.headers if h.canonical == "Record-Route"]


class SipAgent:
    """Base of UE and CS: transport, transactions, request futures, task tracking."""

    allow = ALLOW  # what OPTIONS and 405 answers list
    accept = frozenset({"application/sdp", "message/sipfrag"})  # bodies it reads (§8.2.3: else 415)

    def __init__(self, role: str, ip: str, port: int = 5060, faults: frozenset[str] = frozenset(),
                 rtp_base_port: int = 20000, transport: str = "udp") -> None:
        self.role = role
        self.ip = ip
        self.port = port
        self.transport = transport.lower()  # "udp" or "tcp": what this agent listens on and sends over
        self.t1, self.t2 = T1, T2  # RFC 3261 timer base values; a SUT profile may change them before start()
        self.faults = faults
        self.endpoint: SipUdpEndpoint | None = None
        self.errors: list[str] = []
        self.dropped: list[str] = []
        self._pending: dict[str, asyncio.Future[SipMessage]] = {}
        self._acks: dict[tuple[str, int], SipMessage] = {}  # (Call-ID, CSeq) -> ACK sent for that 2xx
        self._tasks = TaskSet(role, self.errors)
        self._sockets: list[UdpSocket] = []
        self._next_rtp_port = rtp_base_port
        self._changed = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        core = TransactionLayer((self.ip, self.port), transport=self.transport.upper(), t1=self.t1, t2=self.t2)
        endpoint = SipTcpEndpoint if self.transport == "tcp" else SipUdpEndpoint
        self.endpoint = await endpoint.open(self.ip, self.port, core, self._on_event)

    async def stop(self) -> None:
        await self._tasks.cancel()
        for fut in self._pending.values():
            if not fut.done():
                fut.cancel()
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None

    def die(self) -> None:
        """Vanish like a killed process (fault tests): nothing more is answered or sent, the sockets
        close so peers meet ICMP port unreachable; `stop()` still cleans up after the run."""
        if self.endpoint is not None:
            self.endpoint.close()
        for sock in self._sockets:
            sock.close()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro, name)

    def changed(self) -> None:
        """Wake everything blocked in `wait_until` to re-check its condition."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """The first truthy `predicate()`, re-checked after every `changed()`; FlowTimeout after `timeout`."""
        async def check() -> Any:
            while True:
                result = predicate()
                if result:
                    return result
                await self._changed.wait()
        return await bounded(check(), timeout, what)

    async def bind_rtp(self) -> tuple[UdpSocket, UdpSocket]:
        """RTP and RTCP sockets on the next free even port of this agent's IP and the odd one above it."""
        rtp, rtcp = await bind_rtp_pair(self.ip, self._next_rtp_port)
        self._next_rtp_port = rtp.local[1] + 2
        self._sockets += [rtp, rtcp]
        return rtp, rtcp

    # --- sending --------------------------------------------------------------------------------

    def _endpoint(self) -> SipUdpEndpoint:
        if self.endpoint is None:
            raise FlowError(f"{self.role} is not started")
        return self.endpoint

    def _finish(self, msg: SipMessage) -> SipMessage:
        """Our Via on top (fresh branch, rport), Max-Forwards 70 under it, a correct Content-Length."""
        add_via(msg, f"[{self.ip}]" if ":" in self.ip else self.ip, self.port, self.transport, rport=True)
        if msg.get("Max-Forwards") is None:
            msg.headers.insert(1, Header("Max-Forwards", "70"))
        msg.set("Content-Length", str(len(msg.body)))
        return through_layer(msg)

    def send_request(self, msg: SipMessage, to: Addr | None = None) -> asyncio.Future[SipMessage]:
        """Send a request (Via, Max-Forwards added here) to `to`, else by Route/Request-URI; returns
        the final response's future. `to` is an outbound proxy reached without a Route (REGISTER)."""
        wire = self._finish(msg)
        fut: asyncio.Future[SipMessage] = asyncio.get_running_loop().create_future()
        key = self._endpoint().send_request(wire, to or next_hop(wire))
        self._pending[key] = fut
        return fut

    async def request(self, msg: SipMessage, timeout: float, what: str, to: Addr | None = None) -> SipMessage:
        """Send and await the final response (bounded)."""
        return await bounded(self.send_request(msg, to), timeout, what)

    def send_ack(self, ack: SipMessage) -> None:
        """The ACK for a 2xx: its own branch (§13.2.2.4), remembered to answer 2xx retransmissions."""
        wire = self._finish(ack)
        num, _ = wire.cseq
        self._acks[(str(wire.call_id), num)] = wire
        self._endpoint().send_request(wire, next_hop(wire))

    def respond(self, request: SipMessage, status: int, reason: str, to_tag: str | None = None,
                headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> SipMessage:
        headers = list(headers)
        if request.to_tag is None and request.method in DIALOG_CREATING and 100 < status < 300:
            # §12.1.1: "the UAS MUST copy all Record-Route header field values from the request into
            # the response ... and MUST maintain the order of those values".
            headers = [("Record-Route", value) for value in _record_route_lines(request)] + headers
        response = make_response(request, status, reason, to_tag=to_tag, headers=headers, body=body)
        self._endpoint().send_response(request, through_layer(response))
        return response

    # --- events ---------------------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        try:
            if isinstance(event, ResponseReceived):
                self._response(event)
            elif isinstance(event, RequestReceived):
                self._request(event)
            elif isinstance(event, TransactionTimeout):
                fut = self._pending.pop(event.key, None)
                if fut is not None and not fut.done():
                    fut.set_exception(FlowTimeout(f"{self.role}: no final response to {event.method}"))
            elif isinstance(event, MessageDropped):
                self.dropped.append(event.reason)
                log.info("%s dropped a message: %s", self.role, event.reason)
                self._answer_refused(event)
        except Exception as exc:  # one bad message must not stop the agent
            self.errors.append(f"{type(event).__name__}: {type(exc).__name__}: {exc}")
            log.exception("%s failed on %s", self.role, type(event).__name__)

    def _response(self, event: ResponseReceived) -> None:
        msg = event.message
        status = msg.status or 0
        if status < 200:
            self.on_provisional(msg)
            return
        fut = self._pending.pop(event.key, None)
        if fut is not None and not fut.done():
            fut.set_result(msg)
            return
        num, method = msg.cseq
        ack = self._acks.get((str(msg.call_id), num))
        if method == "INVITE" and status < 300 and ack is not None:
            self._endpoint().send_request(ack, next_hop(ack))  # §13.2.2.4: ACK every 2xx retransmission

    def _request(self, event: RequestReceived) -> None:
        msg = event.message
        try:
            problem = check_uas(msg, self.accept)  # §8.2: 416, 400, 420, 415, 406 before acting
            if problem is not None:
                status, reason, headers = problem
                self.respond(msg, status, reason, to_tag=None if msg.to_tag else new_tag(), headers=headers)
                return
            if msg.method == "OPTIONS" and msg.to_tag is None:  # §11.2: capabilities, also for probes
                self.respond(msg, 200, "OK", to_tag=new_tag(), headers=[("Allow", self.allow)])
                return
            self.handle_request(msg, event)
        except (SipError, ValueError) as exc:
            self.errors.append(f"{msg.method}: {exc}")
            if msg.method != "ACK":
                self._try_respond(msg, 400, "Bad Request", event.addr)
        except Exception as exc:
            self.errors.append(f"{msg.method}: {type(exc).__name__}: {exc}")
            log.exception("%s failed handling %s", self.role, msg.method)
            if msg.method != "ACK":
                self._try_respond(msg, 500, "Server Internal Error")

    def _answer_refused(self, event: MessageDropped) -> None:
        """§8.2.2: 400 for a request the codec refused, when it still names Via/From/To/Call-ID/CSeq."""
        send = getattr(self.endpoint, "send_raw", None)
        if send is not None and event.reason.startswith(("unparseable", "malformed")):
            answer = bad_request(event.data, event.reason.partition(": ")[2], event.addr)
            if answer is not None:
                send(*answer)

    def _try_respond(self, msg: SipMessage, status: int, reason: str, addr: Addr | None = None) -> None:
        try:
            self.respond(msg, status, reason)
        except ProtocolError:
            pass  # the transaction already has a final response
        except Exception:
            # A 400 the codec cannot build (its From or To does not parse): answer from the raw lines.
            send = getattr(self.endpoint, "send_raw", None)
            answer = bad_request(bytes(msg), reason, addr) if status == 400 and addr is not None else None
            if send is not None and answer is not None:
                send(*answer)

    # --- for subclasses ---------------------------------------------------------------------------

    def on_provisional(self, msg: SipMessage) -> None:
        """1xx responses are tolerated and otherwise ignored."""

    def handle_request(self, msg: SipMessage, event: RequestReceived) -> None:
        raise NotImplementedError
