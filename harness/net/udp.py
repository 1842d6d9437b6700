"""asyncio UDP: a plain datagram socket (RTP, the stateless proxy) and a SIP endpoint that drives
a sans-IO TransactionLayer (aioquic shape: receive/handle_timer in, datagrams_to_send/next_event out,
ONE `call_at` re-armed for `get_timer()`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, cast

Addr = tuple[str, int]


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Addr], None] | None) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        if self.on_datagram is not None:
            self.on_datagram(data, addr[:2])

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable on loopback after a peer closed: nothing to do


class UdpSocket:
    """A bound UDP socket: `sendto`, and a callback per received datagram."""

    def __init__(self, transport: asyncio.DatagramTransport, protocol: _Datagrams) -> None:
        self._transport = transport
        self._protocol = protocol
        self.local: Addr = transport.get_extra_info("sockname")[:2]

    @classmethod
    async def bind(cls, ip: str, port: int,
                   on_datagram: Callable[[bytes, Addr], None] | None = None) -> UdpSocket:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Datagrams(on_datagram), local_addr=(ip, port))
        return cls(transport, protocol)

    def set_receiver(self, on_datagram: Callable[[bytes, Addr], None] | None) -> None:
        self._protocol.on_datagram = on_datagram

    def sendto(self, data: bytes, addr: Addr) -> None:
        if not self._transport.is_closing():
            self._transport.sendto(data, addr)

    def close(self) -> None:
        self._transport.close()


async def bind_rtp_pair(ip: str, first_port: int, attempts: int = 500) -> tuple[UdpSocket, UdpSocket]:
    """An RTP socket on an even port >= `first_port` and its RTCP socket on the port above (RFC 3550 §11)."""
    port = first_port + (first_port & 1)
    for _ in range(attempts):
        try:
            rtp = await UdpSocket.bind(ip, port)
        except OSError:
            port += 2
            continue
        try:
            rtcp = await UdpSocket.bind(ip, port + 1)
        except OSError:
            rtp.close()
            port += 2
            continue
        return rtp, rtcp
    raise OSError(f"no free RTP/RTCP port pair on {ip} from {first_port} ({attempts} tried)")


class TransactionCore(Protocol):
    """What the endpoint needs from harness.sip.transaction.TransactionLayer."""

    def receive(self, data: bytes, addr: Addr, now: float) -> None: ...
    def handle_timer(self, now: float) -> None: ...
    def get_timer(self) -> float | None: ...
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]: ...
    def next_event(self) -> Any: ...
    def send_request(self, msg: Any, addr: Addr, now: float) -> str: ...
    def send_response(self, request: Any, response: Any, now: float) -> None: ...


class SipUdpEndpoint:
    """One SIP address: datagrams into the core, its output onto the wire, its events to the agent.

    Every call into the core is followed by `_transmit()`, which flushes datagrams, re-arms the single
    timer and hands events to `on_event` (or the `events` queue when no callback is given).
    """

    def __init__(self, core: TransactionCore, on_event: Callable[[Any], None] | None = None) -> None:
        self.core = core
        self.on_event = on_event
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self._socket: UdpSocket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._busy = False
        self._again = False
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def open(cls, ip: str, port: int, core: TransactionCore,
                   on_event: Callable[[Any], None] | None = None) -> SipUdpEndpoint:
        endpoint = cls(core, on_event)
        endpoint._socket = await UdpSocket.bind(ip, port, endpoint._datagram_received)
        return endpoint

    @property
    def local(self) -> Addr:
        assert self._socket is not None
        return self._socket.local

    def send_request(self, msg: Any, addr: Addr) -> str:
        key = self.core.send_request(msg, addr, self._loop.time())
        self._transmit()
        return key

    def send_response(self, request: Any, response: Any) -> None:
        self.core.send_response(request, response, self._loop.time())
        self._transmit()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._socket is not None:
            self._socket.close()

    def _datagram_received(self, data: bytes, addr: Addr) -> None:
        self.core.receive(data, addr, self._loop.time())
        self._transmit()

    def _handle_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.core.handle_timer(self._loop.time())
        self._transmit()

    def _transmit(self) -> None:
        # Event callbacks may call send_request/send_response, which land here again: the nested
        # call only flags more work and the outer loop drains it, so output stays in order.
        if self._busy:
            self._again = True
            return
        self._busy = True
        try:
            while True:
                self._again = False
                self._flush()
                if not self._again:
                    break
        finally:
            self._busy = False

    def _flush(self) -> None:
        now = self._loop.time()
        sock = self._socket
        for data, addr in self.core.datagrams_to_send(now):
            if sock is not None:
                sock.sendto(data, addr)
        at = self.core.get_timer()
        if at != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(at, self._handle_timer) if at is not None else None
            self._timer_at = at
        while (event := self.core.next_event()) is not None:
            if self.on_event is not None:
                self.on_event(event)
            else:
                self.events.put_nowait(event)
