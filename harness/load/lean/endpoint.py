"""One lean SIP address on UDP: RFC 3261 §17 transactions kept as small as the load mode allows.

Client side: a request is sent, retransmitted from T1 doubling (INVITE: Timer A, until a
provisional or final response; non-INVITE: Timer E, capped at T2) and given up after 64*T1
(Timers B/F): its future then holds TransactionTimeout. Responses match by the top Via branch
(§17.1.3). Server side: a retransmitted request (same branch and method, §17.2.3) gets the
response already sent again, or nothing while the TU is still deciding; a 2xx to INVITE is
retransmitted by the UAS core from T1 doubling to T2 until its ACK arrives (§13.3.1.4). An ACK and
a response that matches no transaction go to the agent (`on_request` / `on_stray`): that is where
a 2xx retransmission is ACKed again (§13.2.2.4).

No SipMessage, task or dataclass per message: heads are read by harness/load/lean/head.py and a
transaction is a list.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Callable

from harness.load.lean.head import Head, HeadError, read
from harness.net.udp import Addr, UdpSocket
from harness.sip.timers import T1, T2

ANSWERED_KEPT = 32.0  # seconds a server transaction's response is kept for retransmissions (64*T1)

_RECEIVED = re.compile(rb";[ \t]*received[ \t]*=[ \t]*([^;, \t]+)", re.I)
_RPORT = re.compile(rb";[ \t]*rport[ \t]*=[ \t]*([0-9]+)", re.I)
_SENT_BY = re.compile(rb"^SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*UDP[ \t]+([^;: \t]+|\[[^\]]+\])(?::([0-9]+))?", re.I)


class TransactionTimeout(Exception):
    """No final response within 64*T1 (Timer B or F)."""


def response_target(via: bytes) -> Addr:
    """§18.2.2 with RFC 3581: where the response to a request with top Via `via` goes."""
    sent_by = _SENT_BY.match(via)
    if sent_by is None:
        raise HeadError(f"unusable top Via {via[:60]!r}")
    received, rport = _RECEIVED.search(via), _RPORT.search(via)
    host = (received.group(1) if received else sent_by.group(1)).strip(b"[]").decode()
    port = int(rport.group(1)) if rport else int(sent_by.group(2) or 5060)
    return host, port


class _Pending:
    """A datagram sent and resent until its answer arrives: a client transaction's request, or a
    UAS core's 2xx to INVITE waiting for the ACK."""

    __slots__ = ("fut", "data", "addr", "interval", "give_up", "handle", "invite")

    def __init__(self, data: bytes, addr: Addr, interval: float, give_up: float, invite: bool,
                 fut: asyncio.Future[Head] | None = None) -> None:
        self.fut, self.data, self.addr = fut, data, addr
        self.interval, self.give_up, self.invite = interval, give_up, invite
        self.handle: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()


class LeanEndpoint:
    """Datagrams in, heads to the agent; requests out with retransmission, responses kept."""

    def __init__(self, ip: str, port: int, on_request: Callable[[Head, Addr], None],
                 on_stray: Callable[[Head], None], t1: float = T1, t2: float = T2) -> None:
        self.ip, self.port = ip, port
        self.on_request, self.on_stray = on_request, on_stray
        self.t1, self.t2 = t1, t2
        self.sock: UdpSocket | None = None
        self.loop = asyncio.get_running_loop()
        self.unreadable = 0  # datagrams dropped because they were not SIP we can act on
        self.retransmitted = 0
        self._clients: dict[bytes, _Pending] = {}  # by branch
        # (branch, method) -> response bytes (b"" while the TU decides) and where it went
        self._answered: dict[tuple[bytes, bytes], tuple[bytes, Addr]] = {}
        self._answered_order: deque[tuple[float, tuple[bytes, bytes]]] = deque()
        self._unacked: dict[tuple[bytes, bytes], _Pending] = {}  # 2xx by (Call-ID, CSeq)

    async def open(self) -> LeanEndpoint:
        self.sock = await UdpSocket.bind(self.ip, self.port, self._datagram)
        return self

    def close(self) -> None:
        for tx in self._clients.values():
            tx.cancel()
            if tx.fut is not None and not tx.fut.done():
                tx.fut.cancel()
        for pending in self._unacked.values():
            pending.cancel()
        self._clients.clear()
        self._unacked.clear()
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, data: bytes, addr: Addr) -> None:
        """A datagram outside any transaction (an ACK for a 2xx, §17.1.1.3)."""
        if self.sock is not None:
            self.sock.sendto(data, addr)

    # --- client transactions --------------------------------------------------------------------

    def request(self, data: bytes, addr: Addr, branch: bytes, invite: bool) -> asyncio.Future[Head]:
        """Send a request; the future gets its final response (or TransactionTimeout)."""
        fut: asyncio.Future[Head] = self.loop.create_future()
        now = self.loop.time()
        tx = _Pending(data, addr, self.t1, now + 64 * self.t1, invite, fut)
        tx.handle = self.loop.call_at(now + self.t1, self._retransmit, branch)
        self._clients[branch] = tx
        self.send(data, addr)
        return fut

    def _retransmit(self, branch: bytes) -> None:
        tx = self._clients.get(branch)
        if tx is None:
            return
        now = self.loop.time()
        if now >= tx.give_up:
            del self._clients[branch]
            if tx.fut is not None and not tx.fut.done():
                tx.fut.set_exception(TransactionTimeout(f"no final response within {64 * self.t1:g} s"))
            return
        self.retransmitted += 1
        self.send(tx.data, tx.addr)
        tx.interval = 2 * tx.interval if tx.invite else min(2 * tx.interval, self.t2)
        tx.handle = self.loop.call_at(min(now + tx.interval, tx.give_up), self._retransmit, branch)

    def _response(self, head: Head) -> None:
        tx = self._clients.get(head.branch)
        if tx is None:
            self.on_stray(head)
            return
        if head.status < 200:
            if tx.invite:  # Proceeding: no more retransmissions; Timer B still bounds the wait
                tx.cancel()
                tx.handle = self.loop.call_at(tx.give_up, self._retransmit, head.branch)
            return
        del self._clients[head.branch]
        tx.cancel()
        if tx.fut is not None and not tx.fut.done():
            tx.fut.set_result(head)

    # --- server transactions --------------------------------------------------------------------

    def respond(self, request: Head, data: bytes, addr: Addr) -> None:
        """Send a response to `request`; kept for its retransmissions, and a 2xx to INVITE is
        retransmitted until `acked()`."""
        key = (request.branch, request.method or b"")
        self._answered[key] = (data, addr)
        self.send(data, addr)
        if request.method == b"INVITE" and 200 <= int(data[8:11]) < 300:
            now = self.loop.time()
            ident = (request.call_id, request.cseq)
            old = self._unacked.get(ident)
            if old is not None:
                old.cancel()
            pending = _Pending(data, addr, self.t1, now + 64 * self.t1, True)
            pending.handle = self.loop.call_at(now + self.t1, self._retransmit_2xx, ident)
            self._unacked[ident] = pending

    def acked(self, call_id: bytes, cseq: bytes) -> bool:
        """The ACK for the 2xx of INVITE (Call-ID, CSeq) arrived: stop retransmitting it."""
        pending = self._unacked.pop((call_id, cseq), None)
        if pending is not None:
            pending.cancel()
        return pending is not None

    def _retransmit_2xx(self, ident: tuple[bytes, bytes]) -> None:
        pending = self._unacked.get(ident)
        if pending is None:
            return
        now = self.loop.time()
        if now >= pending.give_up:
            del self._unacked[ident]  # §13.3.1.4: the session should end; the flow's checks say so
            return
        self.retransmitted += 1
        self.send(pending.data, pending.addr)
        pending.interval = min(2 * pending.interval, self.t2)
        pending.handle = self.loop.call_at(min(now + pending.interval, pending.give_up), self._retransmit_2xx, ident)

    def _request(self, head: Head, addr: Addr) -> None:
        if head.method == b"ACK":
            self.on_request(head, addr)
            return
        key = (head.branch, head.method or b"")
        answered = self._answered.get(key)
        if answered is not None:
            if answered[0]:
                self.send(*answered)  # a retransmission: the same response again
            return
        now = self.loop.time()
        order = self._answered_order
        while order and order[0][0] < now:
            self._answered.pop(order.popleft()[1], None)
        self._answered[key] = (b"", addr)
        order.append((now + ANSWERED_KEPT, key))
        self.on_request(head, addr)

    def _datagram(self, data: bytes, addr: Addr) -> None:
        try:
            head = read(data)
        except HeadError:
            if data.strip():
                self.unreadable += 1
            return
        if head.method is None:
            self._response(head)
        else:
            self._request(head, addr)
