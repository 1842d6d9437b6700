"""RFC 3261 §17 over UDP for the lean agents, sans-IO (the h11 shape): fed datagrams and `now`, it
says what arrived for the agent and queues the datagrams its timers send; time only enters as
`now`, and the caller calls `expire(now)` at `next_deadline()`.

Client side: a request is retransmitted from T1 doubling (INVITE: Timer A, until a provisional or
final response; non-INVITE: Timer E, capped at T2) and given up after 64*T1 (Timers B/F: its
branch lands in `timed_out`). Responses match by the top Via branch (§17.1.3). Server side: a
retransmitted request (same branch and method, §17.2.3) gets the response already sent again, or
nothing while the agent is still deciding; a 2xx to INVITE is retransmitted from T1 doubling to T2
until `acked()` (§13.3.1.4). An ACK, and a response no transaction waits for, go to the agent:
that is where a 2xx retransmission is ACKed again (§13.2.2.4).

Deadlines sit in one heap of (when, sequence, entry) tuples, compared in C; an entry that finished
stays there, marked done, until its deadline comes up (no removal from the middle of the heap).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from typing import Any

from harness.agents.badrequest import bad_request
from harness.load.lean import forms
from harness.load.lean.head import Head, HeadError, read
from harness.sip.timers import T1, T2

Addr = tuple[str, int]
ANSWERED_KEPT = 32.0  # seconds a server transaction's response is kept for retransmissions (64*T1)
REQUEST, RESPONSE, STRAY = "request", "response", "stray"


def non_2xx_ack(invite: bytes, response: Head) -> bytes:
    """§17.1.1.3: the ACK of a 3xx-6xx final to `invite` - its Request-URI, top Via (same branch),
    From, Call-ID and Route, the response's To (with the tag), CSeq number with method ACK."""
    request = read(invite)
    fields: list[tuple[str, bytes]] = [("Via", request.via[0]), ("Max-Forwards", b"70")]
    if request.route:
        fields.append(("Route", b", ".join(request.route)))
    fields += [("From", request.from_), ("To", response.to), ("Call-ID", request.call_id),
               ("CSeq", request.cseq + b" ACK")]
    return forms.request("ACK", request.uri, fields)


class _Resent:
    """A datagram resent until its answer arrives: a client transaction's request (key: its branch)
    or a 2xx to INVITE waiting for the ACK (key: Call-ID and CSeq)."""

    __slots__ = ("key", "data", "addr", "interval", "give_up", "invite", "proceeding", "done")

    def __init__(self, key: object, data: bytes, addr: Addr, interval: float, give_up: float, invite: bool) -> None:
        self.key, self.data, self.addr = key, data, addr
        self.interval, self.give_up, self.invite = interval, give_up, invite
        self.proceeding = False  # an INVITE that got a provisional response: no more retransmissions
        self.done = False


class Transactions:
    """The transaction state of one lean SIP address."""

    def __init__(self, t1: float = T1, t2: float = T2) -> None:
        self.t1, self.t2 = t1, t2
        self.outbox: list[tuple[bytes, Addr]] = []  # retransmissions and repeated responses to send
        self.timed_out: list[bytes] = []  # branches of client transactions given up (Timer B/F)
        self.unreadable = 0  # datagrams that were not SIP the lean agents can act on
        self.retransmitted = 0
        self._clients: dict[bytes, _Resent] = {}
        self._unacked: dict[tuple[bytes, bytes], _Resent] = {}
        self._answered: dict[tuple[bytes, bytes], tuple[bytes, Addr]] = {}
        self._answered_order: deque[tuple[float, tuple[bytes, bytes]]] = deque()
        self._acks: dict[bytes, tuple[bytes, Addr]] = {}  # INVITE branch -> the ACK of its non-2xx final
        self._acks_order: deque[tuple[float, bytes]] = deque()
        self._heap: list[tuple[float, int, _Resent]] = []
        self._sequence = itertools.count()

    # --- the agent's side -----------------------------------------------------------------------

    def request(self, data: bytes, addr: Addr, branch: bytes, invite: bool, now: float) -> None:
        """A client transaction starts (the caller sends `data` now)."""
        entry = _Resent(branch, data, addr, self.t1, now + 64 * self.t1, invite)
        self._clients[branch] = entry
        heapq.heappush(self._heap, (now + self.t1, next(self._sequence), entry))

    def respond(self, request: Head, data: bytes, addr: Addr, now: float) -> None:
        """The agent answers `request` (the caller sends `data` now); kept for its retransmissions."""
        self._answered[(request.branch, request.method or b"")] = (data, addr)
        if request.method == b"INVITE" and data[8:9] == b"2":
            ident = (request.call_id, request.cseq)
            old = self._unacked.get(ident)
            if old is not None:
                old.done = True
            entry = _Resent(ident, data, addr, self.t1, now + 64 * self.t1, True)
            self._unacked[ident] = entry
            heapq.heappush(self._heap, (now + self.t1, next(self._sequence), entry))

    def acked(self, call_id: bytes, cseq: bytes) -> bool:
        """The ACK for the 2xx of INVITE (Call-ID, CSeq) arrived: stop retransmitting it."""
        entry = self._unacked.pop((call_id, cseq), None)
        if entry is not None:
            entry.done = True
        return entry is not None

    # --- the network's side ---------------------------------------------------------------------

    def receive(self, data: bytes, addr: Addr, now: float) -> tuple[str, Head] | None:
        """(REQUEST, head) for the agent to act on, (RESPONSE, head) for the client transaction of
        head.branch, (STRAY, head) for a response nothing waits for; None when the transaction
        layer dealt with it (a retransmission, a provisional response, something unreadable)."""
        try:
            head = read(data)
        except HeadError as exc:
            if data.strip():  # not a keep-alive CRLF
                self.unreadable += 1
                # §8.2.2 / RFC 4475: 400 when the refused request still names its Via, From, To,
                # Call-ID and CSeq (nothing for a response or an ACK)
                answer = bad_request(data, str(exc), addr)
                if answer is not None:
                    self.outbox.append(answer)
            return None
        if head.method is None:
            entry = self._clients.get(head.branch)
            if entry is None:
                ack = self._acks.get(head.branch)
                if ack is not None and head.status >= 300:
                    self.outbox.append(ack)  # §17.1.1.2 Completed: a retransmitted final, ACKed again
                    return None
                return STRAY, head
            if head.status < 200:
                entry.proceeding = True
                return None
            del self._clients[head.branch]
            entry.done = True
            if entry.invite and head.status >= 300:
                ack = (non_2xx_ack(entry.data, head), entry.addr)
                self.outbox.append(ack)
                self._keep(self._acks, self._acks_order, head.branch, ack, now)
            return RESPONSE, head
        if head.method == b"ACK":
            return REQUEST, head
        key = (head.branch, head.method)
        answered = self._answered.get(key)
        if answered is not None:
            if answered[0]:
                self.outbox.append(answered)  # a retransmission: the same response again
            return None
        self._keep(self._answered, self._answered_order, key, (b"", addr), now)
        return REQUEST, head

    @staticmethod
    def _keep(kept: dict[Any, Any], order: deque[tuple[float, Any]], key: Any, value: Any, now: float) -> None:
        """Keep `value` for ANSWERED_KEPT seconds (Timers J/H/D: 64*T1), dropping what has expired."""
        while order and order[0][0] < now:
            kept.pop(order.popleft()[1], None)
        kept[key] = value
        order.append((now + ANSWERED_KEPT, key))

    # --- timers ---------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].done:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def expire(self, now: float) -> None:
        """Fire every deadline up to `now`: retransmissions into `outbox`, given-up client
        transactions into `timed_out`."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, entry = heapq.heappop(heap)
            if entry.done:
                continue
            if now >= entry.give_up:
                entry.done = True
                if isinstance(entry.key, bytes):
                    self._clients.pop(entry.key, None)
                    self.timed_out.append(entry.key)
                else:  # §13.3.1.4: no ACK; the session should end, the flow's checks say so
                    self._unacked.pop(entry.key, None)  # type: ignore[arg-type]
                continue
            if not entry.proceeding:
                self.retransmitted += 1
                self.outbox.append((entry.data, entry.addr))
                doubled = 2 * entry.interval  # Timer A doubles without a cap; Timer E and the 2xx stop at T2
                entry.interval = doubled if entry.invite and isinstance(entry.key, bytes) else min(doubled, self.t2)
            at = entry.give_up if entry.proceeding else min(now + entry.interval, entry.give_up)
            heapq.heappush(heap, (at, next(self._sequence), entry))
