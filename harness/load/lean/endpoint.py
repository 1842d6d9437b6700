"""One lean SIP address on UDP: the I/O around the sans-IO Transactions (transactions.py).

It owns the socket, the transactions' earliest deadline on the run's Clock (signal.py), and a
Signal per client transaction (its final response, or TransactionTimeout after 64*T1), set in the
datagram callback that brings the response. Requests and responses the transactions hand up go to
the agent's `on_request` / `on_stray`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from harness.load.lean.head import Head, HeadError
from harness.load.lean.signal import Signal, Timer, clock
from harness.load.lean.transactions import REQUEST, RESPONSE, Transactions
from harness.net.udp import READ_BURST, Addr, UdpSocket
from harness.sip.timers import T1, T2

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
    if via.count(b"=") == 1 and b";branch=" in via:  # one `=`, the branch's: no received or rport
        received = rport = None
    else:
        received, rport = _RECEIVED.search(via), _RPORT.search(via)
    host = (received.group(1) if received else sent_by.group(1)).strip(b"[]").decode()
    port = int(rport.group(1)) if rport else int(sent_by.group(2) or 5060)
    return host, port


class LeanEndpoint:
    """Datagrams in, heads to the agent; requests out with retransmission, responses kept."""

    def __init__(self, ip: str, port: int, on_request: Callable[[Head, Addr], None],
                 on_stray: Callable[[Head], None], t1: float = T1, t2: float = T2, burst: int = READ_BURST) -> None:
        self.ip, self.port = ip, port
        self.burst = burst  # datagrams read per readiness (UdpSocket.burst): 1 for a UE's own address
        self.on_request, self.on_stray = on_request, on_stray
        self.core = Transactions(t1, t2)
        self.errors: list[str] = []  # what the agent raised on a message (it is dropped, the endpoint lives on)
        self.t1 = t1
        self.sock: UdpSocket | None = None
        self.clock = clock()
        self._waiting: dict[bytes, Signal[Head]] = {}
        self._timer: Timer | None = None
        self._timer_at: float | None = None

    @property
    def unreadable(self) -> int:
        return self.core.unreadable

    @property
    def retransmitted(self) -> int:
        return self.core.retransmitted

    async def open(self) -> LeanEndpoint:
        self.sock = UdpSocket.open(self.ip, self.port, self._datagram, burst=self.burst)
        return self

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting.clear()  # their waiters end by their own bounds
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, data: bytes, addr: Addr) -> None:
        """A datagram outside any transaction (an ACK for a 2xx, §17.1.1.3)."""
        if self.sock is not None:
            self.sock.sendto(data, addr)

    def request(self, data: bytes, addr: Addr, branch: bytes, invite: bool) -> Signal[Head]:
        """Send a request; the Signal gets its final response (or TransactionTimeout)."""
        signal: Signal[Head] = Signal()
        now = self.clock.time()
        self.core.request(data, addr, branch, invite, now)
        self._waiting[branch] = signal  # a waiter that gives up leaves the transaction to its timers
        self.send(data, addr)
        if self._timer_at is None or now + self.t1 < self._timer_at:
            self._arm()
        return signal

    def respond(self, request: Head, data: bytes, addr: Addr) -> None:
        """Send a response to `request`; kept for retransmissions (a 2xx to INVITE resent until ACK)."""
        now = self.clock.time()
        self.core.respond(request, data, addr, now)
        self.send(data, addr)
        if self._timer_at is None or now + self.t1 < self._timer_at:
            self._arm()

    def acked(self, call_id: bytes, cseq: bytes) -> bool:
        return self.core.acked(call_id, cseq)

    def _arm(self) -> None:
        at = self.core.next_deadline()
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None if at is None else self.clock.at(at, self._expire)
        self._timer_at = at

    def _expire(self) -> None:
        self._timer = self._timer_at = None
        core = self.core
        core.expire(self.clock.time())
        self._flush()
        for branch in core.timed_out:
            signal = self._waiting.pop(branch, None)
            if signal is not None:
                signal.fail(TransactionTimeout(f"no final response within {64 * self.t1:g} s"))
        core.timed_out.clear()
        if self.sock is not None:
            self._arm()

    def _flush(self) -> None:
        outbox = self.core.outbox
        if outbox:
            for data, addr in outbox:
                self.send(data, addr)
            outbox.clear()

    def _datagram(self, data: bytes, addr: Addr) -> None:
        got = self.core.receive(data, addr, self.clock.time())
        if got is None:
            self._flush()
            return
        kind, head = got
        try:
            if kind is RESPONSE:
                signal = self._waiting.pop(head.branch, None)
                if signal is not None:
                    signal.set(head)  # its waiter runs now, inside this callback
            elif kind is REQUEST:
                self.on_request(head, addr)
            else:
                self.on_stray(head)
        except Exception as exc:  # noqa: BLE001 - one message the agent chokes on must not cost the
            # rest of the socket's burst (UdpSocket reads up to READ_BURST per readiness)
            self.errors.append(f"{(head.method or str(head.status).encode())!r}: {type(exc).__name__}: {exc}")
