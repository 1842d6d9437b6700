"""RFC 3261 §17 transactions (with the RFC 6026 Accepted states), sans-IO.

Theory of operation
-------------------
One `TransactionLayer` serves one local SIP address. It never reads a clock or a
socket: the driver (harness/net) feeds it `receive(data, addr, now)` and
`handle_timer(now)`, then drains `datagrams_to_send(now)`, re-arms one timer at
`get_timer()` and consumes `next_event()` until it returns None (aioquic shape).
The TU (an agent) talks to it with `send_request` and `send_response`.

Each transaction is a row in one of four tables below (`state -> {event: next}`),
chosen by (role, INVITE or not). Every input -- a message in, a message from the
TU, a timer firing -- is first looked up in the table; only then are the side
effects for that edge applied (send, arm/cancel timers, tell the TU). An input
the table lacks raises `ProtocolError(role, state, event)`. That is the one
boundary between local and remote fault: inside `receive` the error becomes a
`MessageDropped` event naming the rule (the peer did wrong), as do bytes that
do not parse, so `receive` never raises; from `send_response` it propagates
(the TU did wrong).

Timers are absolute deadlines in a per-transaction dict. A retransmission timer
re-arms from its own previous deadline, not from `now`, so the schedule is exact
(Timer A at 0.5, 1.5, 3.5, 7.5 s ...) however late the driver calls in.
Reliable transports get no retransmission timers and zero-length D/I/J/K, which
then fire on the next `handle_timer`.

Deliberate choices:
* Client INVITE: a 2xx moves to Accepted (RFC 6026) for 64*T1 so 2xx
  retransmissions still reach the TU, which ACKs each one (§13.2.2.4). The ACK
  for a 2xx is its own "transaction": `send_request` with method ACK sends it
  once and tracks nothing. The ACK for a non-2xx is built and sent here, with the
  INVITE's branch (§17.1.1.3).
* Server INVITE: if the TU has not answered within 200 ms the layer sends
  100 Trying itself (§17.2.1; `auto_100`). After the TU's 2xx the transaction
  sits in Accepted and does the UAS core's job of retransmitting the 2xx
  (T1, 2*T1 ... capped at T2, §13.3.1.4) until an ACK with the same Call-ID and
  CSeq number arrives, whatever its branch; after 64*T1 without one it emits
  `AckTimeout`.
* Retransmitted requests never surface twice: the server transaction absorbs
  them and resends its last response. A response matching no client
  transaction reaches the TU only if it is a 2xx to INVITE (a 2xx retransmission
  after Accepted ended, §13.2.2.4); anything else is dropped with a reason.
* A CANCEL is a non-INVITE server transaction of its own; `find_invite_server`
  names the INVITE transaction it targets (§9.2).
* Responses go back to the address the request came from, with the port from
  Via sent-by unless `rport` is present or the transport is reliable (§18.2.2,
  RFC 3581). The layer does
  not rewrite the request's Via with `received`: on the harness's loopback
  topology sent-by always equals the source address.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field

from .build import make_response
from .errors import SipError, SipParseError
from .fsm import ProtocolError, check_table, transition
from .headers import Via
from .ids import MAGIC_COOKIE
from .message import SipMessage
from .timers import TRYING_DELAY, Timers

Addr = tuple[str, int]

RELIABLE_TRANSPORTS = frozenset({"TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS"})

# --------------------------------------------------------------------------- states
CALLING = "Calling"
TRYING = "Trying"
PROCEEDING = "Proceeding"
COMPLETED = "Completed"
CONFIRMED = "Confirmed"
ACCEPTED = "Accepted"  # RFC 6026
TERMINATED = "Terminated"

# --------------------------------------------------------------------------- inputs
# Client side: responses from the wire.
RECV_1XX = "recv 1xx"
RECV_2XX = "recv 2xx"
RECV_3XX_6XX = "recv 3xx-6xx"
# Server side: requests from the wire, responses from the TU.
RECV_REQUEST = "recv request"  # a retransmission of the request that created the transaction
RECV_ACK = "recv ACK"
SEND_1XX = "send 1xx"
SEND_2XX = "send 2xx"
SEND_3XX_6XX = "send 3xx-6xx"
# Timers (RFC 3261 Table 4, RFC 6026 L/M); TRY = the 200 ms 100-Trying timer, 2XX = UAS 2xx resend.
TIMER_A, TIMER_B, TIMER_D = "Timer A", "Timer B", "Timer D"
TIMER_E, TIMER_F, TIMER_K = "Timer E", "Timer F", "Timer K"
TIMER_G, TIMER_H, TIMER_I = "Timer G", "Timer H", "Timer I"
TIMER_J, TIMER_L, TIMER_M = "Timer J", "Timer L", "Timer M"
TIMER_TRY = "Timer 100"
TIMER_2XX = "Timer 2xx"

# --------------------------------------------------------------------------- tables
# §17.1.1.2 Figure 5 as amended by RFC 6026 §7.2 (2xx -> Accepted, Timer M).
INVITE_CLIENT = {
    CALLING: {
        TIMER_A: CALLING,
        TIMER_B: TERMINATED,
        RECV_1XX: PROCEEDING,
        RECV_2XX: ACCEPTED,
        RECV_3XX_6XX: COMPLETED,
    },
    PROCEEDING: {RECV_1XX: PROCEEDING, RECV_2XX: ACCEPTED, RECV_3XX_6XX: COMPLETED},
    # "Any retransmissions of the final response that are received while in the Completed
    # state MUST cause the ACK to be re-passed to the transport layer" (§17.1.1.2).
    COMPLETED: {RECV_3XX_6XX: COMPLETED, TIMER_D: TERMINATED},
    ACCEPTED: {RECV_2XX: ACCEPTED, TIMER_M: TERMINATED},
    TERMINATED: {},
}

# §17.1.2.2 Figure 6.
NON_INVITE_CLIENT = {
    TRYING: {
        TIMER_E: TRYING,
        TIMER_F: TERMINATED,
        RECV_1XX: PROCEEDING,
        RECV_2XX: COMPLETED,
        RECV_3XX_6XX: COMPLETED,
    },
    PROCEEDING: {
        TIMER_E: PROCEEDING,
        TIMER_F: TERMINATED,
        RECV_1XX: PROCEEDING,
        RECV_2XX: COMPLETED,
        RECV_3XX_6XX: COMPLETED,
    },
    # Final-response retransmissions are absorbed in Completed.
    COMPLETED: {RECV_1XX: COMPLETED, RECV_2XX: COMPLETED, RECV_3XX_6XX: COMPLETED, TIMER_K: TERMINATED},
    TERMINATED: {},
}

# §17.2.1 Figure 7 as amended by RFC 6026 §7.1 (2xx -> Accepted, Timer L).
INVITE_SERVER = {
    PROCEEDING: {
        RECV_REQUEST: PROCEEDING,
        TIMER_TRY: PROCEEDING,
        SEND_1XX: PROCEEDING,
        SEND_2XX: ACCEPTED,
        SEND_3XX_6XX: COMPLETED,
    },
    COMPLETED: {RECV_REQUEST: COMPLETED, RECV_ACK: CONFIRMED, TIMER_G: COMPLETED, TIMER_H: TERMINATED},
    CONFIRMED: {RECV_REQUEST: CONFIRMED, RECV_ACK: CONFIRMED, TIMER_I: TERMINATED},
    # RFC 6026 §7.1: INVITE retransmissions absorbed, ACKs passed to the TU, the TU's 2xx
    # retransmissions passed to the transport.
    ACCEPTED: {RECV_REQUEST: ACCEPTED, RECV_ACK: ACCEPTED, SEND_2XX: ACCEPTED, TIMER_2XX: ACCEPTED,
               TIMER_L: TERMINATED},
    TERMINATED: {},
}

# §17.2.2 Figure 8.
NON_INVITE_SERVER = {
    TRYING: {RECV_REQUEST: TRYING, SEND_1XX: PROCEEDING, SEND_2XX: COMPLETED, SEND_3XX_6XX: COMPLETED},
    PROCEEDING: {RECV_REQUEST: PROCEEDING, SEND_1XX: PROCEEDING, SEND_2XX: COMPLETED,
                 SEND_3XX_6XX: COMPLETED},
    COMPLETED: {RECV_REQUEST: COMPLETED, TIMER_J: TERMINATED},
    TERMINATED: {},
}

TABLES: dict[str, dict[str, dict[str, str]]] = {
    "INVITE client": INVITE_CLIENT,
    "non-INVITE client": NON_INVITE_CLIENT,
    "INVITE server": INVITE_SERVER,
    "non-INVITE server": NON_INVITE_SERVER,
}
for _table in TABLES.values():
    check_table(_table, TERMINATED)


# --------------------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the TU (never a retransmission). For an ACK to a 2xx, `key` is
    the INVITE server transaction it acknowledges when known."""

    key: str
    message: SipMessage
    addr: Addr


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for the TU: 1xx and the first final, plus every 2xx to INVITE (§13.2.2.4)."""

    key: str
    message: SipMessage
    addr: Addr


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """Timer B/F (no final response) or H (no ACK for a non-2xx) fired."""

    key: str
    method: str


@dataclass(frozen=True, slots=True)
class AckTimeout:
    """§13.3.1.4: the 2xx was retransmitted for 64*T1 without an ACK; the TU SHOULD end the session."""

    key: str
    call_id: str
    cseq: int


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    key: str


@dataclass(frozen=True, slots=True)
class MessageDropped:
    """Input the layer refused; `reason` names the rule, for tests and logs."""

    reason: str
    data: bytes
    addr: Addr


Event = (RequestReceived | ResponseReceived | TransactionTimeout | AckTimeout | TransactionTerminated
         | MessageDropped)


# --------------------------------------------------------------------------- keys
def _sent_by(via: Via) -> str:
    host, port = via.sent_by
    return f"{host.lower()}:{port}"


def client_key(branch: str, method: str) -> str:
    """§17.1.3: a response matches on the top Via branch plus the CSeq method."""
    return f"{branch};{method}"


def server_key(msg: SipMessage, method: str | None = None) -> str:
    """§17.2.3: branch + sent-by + method, where an ACK matches its INVITE.

    Requests without the z9hG4bK cookie (RFC 2543 peers) fall back to the
    dialog-and-sequence identifiers, which is enough to pair an INVITE with its
    retransmissions and its non-2xx ACK.
    """
    via = msg.top_via
    method = method or ("INVITE" if msg.method == "ACK" else str(msg.method))
    branch = via.branch
    if branch and branch.startswith(MAGIC_COOKIE):
        return f"{branch};{_sent_by(via)};{method}"
    num, _ = msg.cseq
    return f"2543;{msg.call_id};{msg.from_tag};{num};{_sent_by(via)};{method}"


# --------------------------------------------------------------------------- transaction
Entry = tuple[float, int, "Deadlines", str]


class Deadlines(dict[str, float]):
    """One transaction's timers, timer name -> absolute deadline, that report every arming to
    the layer's heap, so the earliest deadline of thousands of transactions is found without
    looking at each. Disarming (pop, del, clear) needs no report: a heap entry whose deadline
    is no longer in its dict is stale and skipped."""

    __slots__ = ("_heap", "_seq", "txn")

    def __init__(self, heap: list[Entry], seq: itertools.count[int]) -> None:
        super().__init__()
        self._heap = heap
        self._seq = seq
        self.txn: Transaction | None = None

    def __setitem__(self, name: str, at: float) -> None:
        dict.__setitem__(self, name, at)
        heapq.heappush(self._heap, (at, next(self._seq), self, name))


@dataclass(slots=True)
class Transaction:
    """One transaction's state; the layer applies the side effects."""

    key: str
    role: str  # a TABLES key
    request: SipMessage
    addr: Addr  # client: where the request goes; server: where it came from
    state: str
    timers: dict[str, float] = field(default_factory=dict)
    fired: dict[str, int] = field(default_factory=dict)  # retransmissions done per timer
    request_bytes: bytes = b""
    last_response: bytes | None = None  # server: what a retransmitted request gets back
    ack: bytes | None = None  # client INVITE: the ACK for the non-2xx, resent per retransmission
    awaiting_ack: bool = False  # server INVITE in Accepted: the 2xx is still unacknowledged

    @property
    def method(self) -> str:
        return str(self.request.method)

    def step(self, event: str) -> str:
        """Apply `event` to the table; returns the previous state."""
        before = self.state
        self.state = transition(TABLES[self.role], f"{self.role} {self.key}", before, event)
        return before


def _response_input(status: int, sending: bool) -> str:
    if status < 100 or status > 699:
        raise ValueError(f"status {status} out of range 100..699")
    if status < 200:
        return SEND_1XX if sending else RECV_1XX
    if status < 300:
        return SEND_2XX if sending else RECV_2XX
    return SEND_3XX_6XX if sending else RECV_3XX_6XX


# --------------------------------------------------------------------------- layer
class TransactionLayer:
    """Client and server transactions for one local SIP address (RFC 3261 §17)."""

    def __init__(
        self,
        local: Addr,
        transport: str = "UDP",
        t1: float = 0.5,
        t2: float = 4.0,
        t4: float = 5.0,
        *,
        auto_100: bool = True,
        reliable: bool | None = None,
    ) -> None:
        self.local = local
        self.transport = transport.upper()
        if reliable is None:
            reliable = self.transport in RELIABLE_TRANSPORTS
        self.timers = Timers(t1=t1, t2=t2, t4=t4, reliable=reliable)
        self.auto_100 = auto_100
        self._clients: dict[str, Transaction] = {}
        self._servers: dict[str, Transaction] = {}
        self._awaiting_ack: dict[tuple[str, int], Transaction] = {}  # (Call-ID, CSeq number)
        self._out: list[tuple[bytes, Addr]] = []
        self._events: deque[Event] = deque()
        self._deadlines: list[Entry] = []  # heap of (deadline, arming order, timers, name)
        self._armed = itertools.count()

    # ------------------------------------------------------------------ driver side
    def receive(self, data: bytes, addr: Addr, now: float) -> None:
        """One datagram in. Never raises for anything the peer sent."""
        try:
            msg = SipMessage.parse(data)
            if msg.is_request:
                self._receive_request(msg, data, addr, now)
            else:
                self._receive_response(msg, data, addr, now)
        except ProtocolError as exc:
            self._events.append(MessageDropped(str(exc), data, addr))
        except SipParseError as exc:
            self._events.append(MessageDropped(f"unparseable: {exc.reason}", data, addr))
        except (SipError, ValueError) as exc:
            self._events.append(MessageDropped(f"malformed: {exc}", data, addr))

    def handle_timer(self, now: float) -> None:
        """Fire every deadline <= now, earliest first (re-armed timers may be due too; equal
        deadlines in the order they were armed)."""
        heap = self._deadlines
        while heap:
            at, _, timers, name = heap[0]
            if timers.get(name) != at:
                heapq.heappop(heap)  # stale: fired, disarmed or re-armed since
                continue
            if at > now:
                return
            heapq.heappop(heap)
            del timers[name]
            assert timers.txn is not None
            self._fire(timers.txn, name, at)

    def get_timer(self) -> float | None:
        heap = self._deadlines
        while heap:
            at, _, timers, name = heap[0]
            if timers.get(name) == at:
                return at
            heapq.heappop(heap)
        return None

    def _transaction(self, key: str, role: str, request: SipMessage, addr: Addr, state: str,
                     request_bytes: bytes) -> Transaction:
        timers = Deadlines(self._deadlines, self._armed)
        txn = Transaction(key, role, request, addr, state, timers=timers, request_bytes=request_bytes)
        timers.txn = txn
        return txn

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------------ TU side
    def send_request(self, msg: SipMessage, addr: Addr, now: float) -> str:
        """Start a client transaction (the caller has added Via with a fresh branch).

        An ACK is sent once and starts nothing: for a non-2xx the transaction sends
        its own ACK, and the ACK for a 2xx is the TU's (§17.1.1.3, §13.2.2.4).
        """
        if not msg.is_request or not msg.method:
            raise ValueError("send_request needs a request")
        via = msg.top_via
        if not via.branch:
            raise ValueError("request has no Via branch: add_via() before send_request()")
        num, cseq_method = msg.cseq
        if cseq_method != msg.method:
            raise ValueError(f"CSeq method {cseq_method!r} differs from request method {msg.method!r}")
        key = client_key(via.branch, msg.method)
        data = bytes(msg)
        if msg.method == "ACK":
            self._out.append((data, addr))
            return key
        if key in self._clients:
            raise ValueError(f"client transaction {key} exists: use a new branch")
        invite = msg.method == "INVITE"
        txn = self._transaction(key, "INVITE client" if invite else "non-INVITE client", msg, addr,
                                CALLING if invite else TRYING, request_bytes=data)
        self._clients[key] = txn
        self._out.append((data, addr))
        if invite:
            self._arm_retransmit(txn, TIMER_A, self.timers.a(0), now)
            txn.timers[TIMER_B] = now + self.timers.b
        else:
            self._arm_retransmit(txn, TIMER_E, self.timers.e(0), now)
            txn.timers[TIMER_F] = now + self.timers.f
        return key

    def send_response(self, request: SipMessage, response: SipMessage, now: float) -> None:
        """Pass the TU's response to the request's server transaction.

        Raises ProtocolError when the transaction's state forbids it (e.g. a second
        final response) and KeyError when no transaction exists for `request`.
        """
        if request.method == "ACK":
            raise ValueError("an ACK gets no response (§17.1.1.3)")
        key = server_key(request)
        txn = self._servers.get(key)
        if txn is None:
            raise KeyError(f"no server transaction {key} (ACK gets no response; was it terminated?)")
        status = response.status
        if status is None:
            raise ValueError("send_response needs a response")
        event = _response_input(status, sending=True)
        before = txn.step(event)
        txn.timers.pop(TIMER_TRY, None)
        data = bytes(response)
        self._out.append((data, self._response_addr(txn)))
        if event == SEND_1XX:
            txn.last_response = data
        elif txn.role == "INVITE server" and event == SEND_2XX:
            txn.last_response = data
            if before == PROCEEDING:
                num, _ = request.cseq
                txn.awaiting_ack = True
                self._awaiting_ack[(str(request.call_id), num)] = txn
                txn.timers[TIMER_L] = now + self.timers.l
                txn.fired[TIMER_2XX] = 0
                txn.timers[TIMER_2XX] = now + self.timers.retransmit_2xx(0)
        elif txn.role == "INVITE server":  # 3xx-6xx
            txn.last_response = data
            self._arm_retransmit(txn, TIMER_G, self.timers.g(0), now)
            txn.timers[TIMER_H] = now + self.timers.h
        else:  # non-INVITE final
            txn.last_response = data
            txn.timers[TIMER_J] = now + self.timers.j

    def find_invite_server(self, cancel: SipMessage) -> str | None:
        """§9.2: the INVITE server transaction a CANCEL targets (same rules, method INVITE)."""
        try:
            key = server_key(cancel, method="INVITE")
        except (SipError, ValueError):
            return None
        return key if key in self._servers else None

    def state(self, key: str) -> str | None:
        """Current state of a transaction, None once terminated (or never known)."""
        txn = self._clients.get(key) or self._servers.get(key)
        return txn.state if txn else None

    # ------------------------------------------------------------------ internals
    def _receive_response(self, msg: SipMessage, data: bytes, addr: Addr, now: float) -> None:
        status = msg.status
        assert status is not None
        event = _response_input(status, sending=False)
        branch = msg.top_via.branch
        if not branch:
            raise SipParseError("response top Via has no branch")
        _, method = msg.cseq
        key = client_key(branch, method)
        txn = self._clients.get(key)
        if txn is None:
            if event == RECV_2XX and method == "INVITE":
                # §13.2.2.4: 2xx retransmissions outlive the client transaction; the TU ACKs each.
                self._events.append(ResponseReceived(key, msg, addr))
                return
            raise ProtocolError("client", "no transaction", f"recv {status} {method}", detail=key)
        before = txn.step(event)
        if txn.role == "INVITE client":
            if event == RECV_3XX_6XX:
                if before != COMPLETED:
                    txn.ack = bytes(_ack_for(txn.request, msg))
                    self._events.append(ResponseReceived(key, msg, addr))
                    txn.timers.clear()
                    txn.timers[TIMER_D] = now + self.timers.d
                assert txn.ack is not None
                self._out.append((txn.ack, txn.addr))
                return
            if before in (CALLING, PROCEEDING):
                # §17.1.1.2: stop retransmitting once anything arrives; B guards Calling only.
                txn.timers.clear()
                if event == RECV_2XX:
                    txn.timers[TIMER_M] = now + self.timers.m
            self._events.append(ResponseReceived(key, msg, addr))
            return
        # non-INVITE client
        if before == COMPLETED:
            return  # retransmitted final: absorbed
        if event != RECV_1XX:
            txn.timers.clear()
            txn.timers[TIMER_K] = now + self.timers.k
        self._events.append(ResponseReceived(key, msg, addr))

    def _receive_request(self, msg: SipMessage, data: bytes, addr: Addr, now: float) -> None:
        # §8.1.1: without these a response cannot even be built (§8.2.6.2 copies them).
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            if msg.get(name) is None:
                raise SipParseError(f"request has no {name} header")
        num, cseq_method = msg.cseq
        if cseq_method != msg.method:
            raise SipParseError(f"CSeq method {cseq_method!r} differs from request method {msg.method!r}")
        key = server_key(msg)
        txn = self._servers.get(key)
        if msg.method == "ACK":
            if txn is not None:
                before = txn.step(RECV_ACK)
                if txn.state == CONFIRMED:
                    if before == COMPLETED:  # §17.2.1: stop G and H, absorb further ACKs for T4
                        txn.timers.clear()
                        txn.timers[TIMER_I] = now + self.timers.i
                    return
            # The ACK for a 2xx is a transaction of its own and goes to the TU (§17.2.3, RFC 6026 §7.1);
            # it stops the 2xx retransmission whatever its branch (§13.3.1.4).
            pending = self._awaiting_ack.get((msg.call_id, num))
            if pending is not None:
                pending.awaiting_ack = False
                pending.timers.pop(TIMER_2XX, None)
                self._events.append(RequestReceived(pending.key, msg, addr))
            else:
                self._events.append(RequestReceived(server_key(msg, method="ACK"), msg, addr))
            return
        if txn is not None:
            txn.step(RECV_REQUEST)
            if txn.state in (PROCEEDING, COMPLETED) and txn.last_response is not None:
                self._out.append((txn.last_response, self._response_addr(txn)))
            return
        invite = msg.method == "INVITE"
        txn = self._transaction(key, "INVITE server" if invite else "non-INVITE server", msg, addr,
                                PROCEEDING if invite else TRYING, request_bytes=data)
        self._servers[key] = txn
        if invite and self.auto_100:
            txn.timers[TIMER_TRY] = now + TRYING_DELAY
        self._events.append(RequestReceived(key, msg, addr))

    def _fire(self, txn: Transaction, name: str, at: float) -> None:
        txn.step(name)
        if txn.state == TERMINATED:
            if name in (TIMER_B, TIMER_F, TIMER_H):
                self._events.append(TransactionTimeout(txn.key, txn.method))
            if name == TIMER_L and txn.awaiting_ack:
                num, _ = txn.request.cseq
                self._events.append(AckTimeout(txn.key, str(txn.request.call_id), num))
            self._terminate(txn)
            return
        if name == TIMER_TRY:
            trying = make_response(txn.request, 100, "Trying")
            txn.last_response = bytes(trying)
            self._out.append((txn.last_response, self._response_addr(txn)))
        elif name == TIMER_A:
            self._out.append((txn.request_bytes, txn.addr))
            self._arm_retransmit(txn, TIMER_A, self.timers.a(txn.fired[TIMER_A] + 1), at)
        elif name == TIMER_E:
            self._out.append((txn.request_bytes, txn.addr))
            # §17.1.2.2: in Proceeding, Timer E is reset to T2.
            delay = self.timers.e(txn.fired[TIMER_E] + 1) if txn.state == TRYING else self.timers.e_proceeding
            self._arm_retransmit(txn, TIMER_E, delay, at)
        elif name == TIMER_G:
            assert txn.last_response is not None
            self._out.append((txn.last_response, self._response_addr(txn)))
            self._arm_retransmit(txn, TIMER_G, self.timers.g(txn.fired[TIMER_G] + 1), at)
        elif name == TIMER_2XX:
            assert txn.last_response is not None
            self._out.append((txn.last_response, self._response_addr(txn)))
            txn.fired[TIMER_2XX] += 1
            txn.timers[TIMER_2XX] = at + self.timers.retransmit_2xx(txn.fired[TIMER_2XX])

    def _arm_retransmit(self, txn: Transaction, name: str, delay: float | None, base: float) -> None:
        """(Re)arm a doubling retransmission timer; `fired[name]` is the n of the interval just armed."""
        if delay is None:  # reliable transport: no retransmissions
            return
        txn.fired[name] = txn.fired.get(name, -1) + 1
        txn.timers[name] = base + delay

    def _terminate(self, txn: Transaction) -> None:
        txn.timers.clear()
        if txn.role == "INVITE server" and txn.last_response is not None:
            ack_id = (str(txn.request.call_id), txn.request.cseq[0])
            if self._awaiting_ack.get(ack_id) is txn:
                del self._awaiting_ack[ack_id]
        table = self._clients if txn.role.endswith("client") else self._servers
        table.pop(txn.key, None)
        self._events.append(TransactionTerminated(txn.key))

    def _response_addr(self, txn: Transaction) -> Addr:
        """§18.2.2 + RFC 3581: source IP; source port only when the client asked with rport
        (or the transport is connection-oriented and the response rides the same connection)."""
        via = txn.request.top_via
        if self.timers.reliable or "rport" in via.params:
            return txn.addr
        return (txn.addr[0], via.sent_by[1])


def _ack_for(invite: SipMessage, response: SipMessage) -> SipMessage:
    """§17.1.1.3: ACK for a non-2xx, built by the transaction from the INVITE and the response."""
    num, _ = invite.cseq
    headers: list[tuple[str, str]] = [("Via", invite.get_all("Via")[0])]
    for route in invite.get_all("Route"):
        headers.append(("Route", route))
    headers += [
        ("Max-Forwards", invite.get("Max-Forwards") or "70"),
        ("From", str(invite.get("From"))),
        ("To", str(response.get("To"))),
        ("Call-ID", str(invite.call_id)),
        ("CSeq", f"{num} ACK"),
    ]
    return SipMessage.request("ACK", str(invite.uri), headers, content_length=True)
