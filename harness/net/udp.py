"""asyncio UDP: a plain datagram socket (RTP, the stateless proxy) and a SIP endpoint that drives
a sans-IO TransactionLayer (aioquic shape: receive/handle_timer in, datagrams_to_send/next_event out,
ONE `call_at` re-armed for `get_timer()`).

Where a socket is created is not the agents' business: `UdpSocket.bind` takes an explicit `sock=`,
else asks the binder in `BINDER` (a context variable, so concurrent runs in one process do not
share it) for a socket bound to (ip, port). That is how a run places agents in network namespaces
or hands them sockets reserved earlier, without the agents knowing (harness/agents/placement.py).
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

Addr = tuple[str, int]
# (ip, port) -> a non-blocking UDP socket bound there, or None to let asyncio bind one here.
Binder = Callable[[str, int], "socket.socket | None"]
BINDER: ContextVar[Binder | None] = ContextVar("harness_udp_binder", default=None)
# The largest UDP payload (IPv4: 65507; 65535 covers IPv6 without jumbograms). Not asyncio's 256 KiB:
# a read buffer above glibc's initial mmap threshold (128 KiB) may cost an mmap/munmap pair per
# datagram until glibc raises the threshold.
MAX_DATAGRAM = 65535


_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*\r?$", re.I | re.M)


def frame_datagram(data: bytes) -> bytes:
    """RFC 3261 §18.3: octets after the body that Content-Length delimits are discarded on UDP.
    Without exactly one readable Content-Length the datagram is left for the codec to judge."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data
    found = _CONTENT_LENGTH.findall(data[:end])
    if len(found) != 1:
        return data
    stop = end + 4 + int(found[0])
    return data[:stop] if stop < len(data) else data


READ_BURST = 64  # datagrams read per readiness event before the loop gets the CPU back


class UdpSocket:
    """A bound UDP socket: `sendto`, and a callback per received datagram.

    Driven straight from the event loop's selector (`add_reader`) rather than through an asyncio
    DatagramTransport: a readiness event drains up to READ_BURST queued datagrams in one callback,
    and `sendto` goes to the kernel at once, queueing (and waiting for writability) only when the
    socket buffer is full, as the transport would. Errors the kernel reports on a UDP socket (ICMP
    port unreachable after a peer closed) are ignored, as `error_received` did.
    """

    def __init__(self, sock: socket.socket, on_datagram: Callable[[bytes, Addr], None] | None,
                 loop: asyncio.AbstractEventLoop, burst: int = READ_BURST) -> None:
        self._sock = sock
        # Datagrams read per readiness event. 1 suits a socket that mostly gets one at a time (a UE):
        # no second recvfrom only to learn, by an exception, that the queue is empty; the selector is
        # level-triggered, so what is left is reported again at once.
        self.burst = burst
        self._loop = loop
        self._on_datagram = on_datagram
        self._pending: deque[tuple[bytes, Addr]] = deque()  # waiting for the socket to be writable
        self._closed = False
        self.local: Addr = sock.getsockname()[:2]
        loop.add_reader(sock.fileno(), self._read_ready)

    @classmethod
    async def bind(cls, ip: str, port: int, on_datagram: Callable[[bytes, Addr], None] | None = None,
                   sock: socket.socket | None = None, burst: int = READ_BURST) -> UdpSocket:
        """`open()` from a coroutine (the agents' start-up is async)."""
        return cls.open(ip, port, on_datagram, sock, burst)

    @classmethod
    def open(cls, ip: str, port: int, on_datagram: Callable[[bytes, Addr], None] | None = None,
             sock: socket.socket | None = None, burst: int = READ_BURST) -> UdpSocket:
        """Bind (ip, port); `sock` (already bound) or the context's binder may provide the socket."""
        loop = asyncio.get_running_loop()
        binder = BINDER.get()
        if sock is None and binder is not None:
            sock = binder(ip, port)
        if sock is None:
            sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.bind((ip, port))
            except OSError:
                sock.close()
                raise
        else:
            sock.setblocking(False)
        return cls(sock, on_datagram, loop, burst)

    def set_buffers(self, size: int) -> int:
        """Ask for `size`-byte kernel send and receive buffers (a load run's shared elements take
        bursts from hundreds of peers: SIPp's -buff_size); returns the receive buffer granted
        (the kernel caps it at net.core.rmem_max, root may go beyond with SO_RCVBUFFORCE)."""
        for option, forced in ((socket.SO_RCVBUF, getattr(socket, "SO_RCVBUFFORCE", None)),
                               (socket.SO_SNDBUF, getattr(socket, "SO_SNDBUFFORCE", None))):
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, forced or option, size)
            except OSError:  # not root: the capped request
                self._sock.setsockopt(socket.SOL_SOCKET, option, size)
        return self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def set_receiver(self, on_datagram: Callable[[bytes, Addr], None] | None) -> None:
        self._on_datagram = on_datagram

    def _read_ready(self) -> None:
        recvfrom = self._sock.recvfrom
        for _ in range(self.burst):
            if self._closed:
                return
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # ICMP error reported on the socket: nothing to do, read on
            if self._on_datagram is not None:
                self._on_datagram(data, addr[:2])

    def sendto(self, data: bytes, addr: Addr) -> None:
        if self._closed:
            return
        if not self._pending:
            try:
                self._sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                self._loop.add_writer(self._sock.fileno(), self._write_ready)
            except OSError:
                return  # e.g. ICMP port unreachable reported here: like error_received, ignored
        self._pending.append((data, addr))

    def _write_ready(self) -> None:
        while self._pending and not self._closed:
            data, addr = self._pending[0]
            try:
                self._sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                pass
            self._pending.popleft()
        if not self._closed:
            self._loop.remove_writer(self._sock.fileno())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pending.clear()
        if not self._loop.is_closed():
            self._loop.remove_reader(self._sock.fileno())
            self._loop.remove_writer(self._sock.fileno())
        self._sock.close()


async def bind_rtp_pair(ip: str, first_port: int, attempts: int = 500) -> tuple[UdpSocket, UdpSocket]:
    """`open_rtp_pair()` from a coroutine."""
    return open_rtp_pair(ip, first_port, attempts)


def open_rtp_pair(ip: str, first_port: int, attempts: int = 500) -> tuple[UdpSocket, UdpSocket]:
    """An RTP socket on an even port >= `first_port` and its RTCP socket on the port above (RFC 3550 §11)."""
    port = first_port + (first_port & 1)
    for _ in range(attempts):
        try:
            rtp = UdpSocket.open(ip, port)
        except OSError:
            port += 2
            continue
        try:
            rtcp = UdpSocket.open(ip, port + 1)
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
                   on_event: Callable[[Any], None] | None = None,
                   sock: socket.socket | None = None) -> SipUdpEndpoint:
        endpoint = cls(core, on_event)
        endpoint._socket = await UdpSocket.bind(ip, port, endpoint._datagram_received, sock)
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

    def send_raw(self, data: bytes, addr: Addr) -> None:
        """A datagram outside any transaction (a stateless 400 for a request the core refused)."""
        if self._socket is not None:
            self._socket.sendto(data, addr)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._socket is not None:
            self._socket.close()

    def _datagram_received(self, data: bytes, addr: Addr) -> None:
        self.core.receive(frame_datagram(data), addr, self._loop.time())
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
        armed = self._timer_at
        # Re-arm only for an earlier deadline: a wake-up that comes first finds nothing due and
        # re-arms for the real one (no handle churn for every timer a transaction starts).
        if at is not None and (armed is None or at < armed):
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(at, self._handle_timer)
            self._timer_at = at
        while (event := self.core.next_event()) is not None:
            if self.on_event is not None:
                self.on_event(event)
            else:
                self.events.put_nowait(event)
