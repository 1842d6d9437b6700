"""asyncio TCP for SIP (RFC 3261 §18): a listening socket and its connections, framed by Content-Length.

`TcpSocket` offers the `UdpSocket` interface (`sendto(data, addr)`, one callback per received
message, `local`), so the SIP endpoint and the stateless proxy drive TCP exactly as they drive UDP:
each complete message is one "datagram", addressed by its connection's remote (ip, port).

* `sendto` to an address with no connection opens one from this socket's IP (an ephemeral port,
  so captures still show the role's address) and queues what is sent until it is up.
* A response goes back on the connection its request arrived on (§18.2.2): the transaction layer
  answers the request's source address, which is that connection's key.
* Connection reuse across directions (RFC 5923) is not attempted: a request to a peer's listening
  port opens a connection to that port, as RFC 3261 §18.1.1 allows.
* Broken framing (no Content-Length, a runaway header) closes that connection: on a stream there
  is no way to find the next message once one is lost (§18.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from harness.net.udp import Addr, SipUdpEndpoint, TransactionCore
from harness.sip.errors import SipParseError
from harness.sip.message import SipMessage

log = logging.getLogger(__name__)

MAX_MESSAGE = 256 * 1024  # bytes buffered for one message before the connection is given up
CONNECT_TIMEOUT = 5.0
READ_CHUNK = 65536


class StreamFramer:
    """Bytes in, whole SIP messages out (RFC 3261 §18.3: the body is Content-Length bytes)."""

    def __init__(self, limit: int = MAX_MESSAGE) -> None:
        self.limit = limit
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Every message completed by `data`, as its exact bytes; SipParseError when framing is lost."""
        self._buffer += data
        out: list[bytes] = []
        while True:
            # §7.5: CRLFs before a start line are ignored (also RFC 5626 keep-alives).
            stripped = len(self._buffer) - len(self._buffer.lstrip(b"\r\n"))
            del self._buffer[:stripped]
            if not self._buffer:
                return out
            msg, used = SipMessage.parse_stream(bytes(self._buffer))
            if msg is None:
                if len(self._buffer) > self.limit:
                    raise SipParseError(f"no complete message within {self.limit} bytes")
                return out
            out.append(bytes(self._buffer[:used]))
            del self._buffer[:used]

    @property
    def pending(self) -> int:
        return len(self._buffer)


class _Connection:
    """One TCP connection; writes wait in `pending` until it is connected."""

    def __init__(self, writer: asyncio.StreamWriter | None = None) -> None:
        self.writer = writer
        self.pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if self.writer is None:
            self.pending.append(data)
        elif not self.writer.is_closing():
            self.writer.write(data)

    def connected(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        for data in self.pending:
            writer.write(data)
        self.pending.clear()


class TcpSocket:
    """A listening TCP socket on (ip, port) plus every connection to or from it."""

    def __init__(self, ip: str, on_message: Callable[[bytes, Addr], None] | None) -> None:
        self.ip = ip
        self.on_message = on_message
        self.local: Addr = (ip, 0)
        self.errors: list[str] = []  # connect failures and framing errors, for logs and tests
        self._server: asyncio.Server | None = None
        self._connections: dict[Addr, _Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @classmethod
    async def bind(cls, ip: str, port: int, on_message: Callable[[bytes, Addr], None] | None = None,
                   sock: socket.socket | None = None) -> TcpSocket:
        """Listen on (ip, port), or on `sock` when one is given already bound."""
        self = cls(ip, on_message)
        where: dict[str, Any] = {"sock": sock} if sock is not None else {"host": ip, "port": port,
                                                                         "reuse_address": True}
        self._server = await asyncio.start_server(self._accepted, **where)
        self.local = cast(Addr, self._server.sockets[0].getsockname()[:2])
        return self

    def set_receiver(self, on_message: Callable[[bytes, Addr], None] | None) -> None:
        self.on_message = on_message

    @property
    def connections(self) -> list[Addr]:
        return list(self._connections)

    def sendto(self, data: bytes, addr: Addr) -> None:
        if self._closed:
            return
        addr = (addr[0], addr[1])
        conn = self._connections.get(addr)
        if conn is None:
            conn = self._connections[addr] = _Connection()
            self._spawn(self._connect(addr, conn))
        conn.write(data)

    def close(self) -> None:
        self._closed = True
        if self._server is not None:
            self._server.close()
        for conn in self._connections.values():
            if conn.writer is not None:
                conn.writer.close()
        self._connections.clear()
        for task in self._tasks:
            task.cancel()

    # --- connections -------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = cast(Addr, writer.get_extra_info("peername")[:2])
        if self._closed:
            writer.close()
            return
        conn = _Connection(writer)
        self._connections[peer] = conn
        # Read in a task of our own: the server's callback task then ends at once, and closing this
        # socket cancels only tasks it tracks (a cancelled server callback task logs a traceback).
        self._spawn(self._read(reader, conn, peer))

    async def _connect(self, addr: Addr, conn: _Connection) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(addr[0], addr[1], local_addr=(self.ip, 0)), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            self.errors.append(f"connect to {addr[0]}:{addr[1]} failed: {exc}")
            log.info("%s: %s", self.local, self.errors[-1])
            if self._connections.get(addr) is conn:
                del self._connections[addr]
            return
        conn.connected(writer)
        await self._read(reader, conn, addr)

    async def _read(self, reader: asyncio.StreamReader, conn: _Connection, addr: Addr) -> None:
        framer = StreamFramer()
        try:
            while (data := await reader.read(READ_CHUNK)):
                for message in framer.feed(data):
                    if self.on_message is not None:
                        self.on_message(message, addr)
        except SipParseError as exc:
            self.errors.append(f"framing lost on {addr[0]}:{addr[1]}: {exc.reason}")
            log.info("%s: %s", self.local, self.errors[-1])
        except (ConnectionError, OSError):
            pass
        finally:
            if self._connections.get(addr) is conn:
                del self._connections[addr]
            if conn.writer is not None:
                with contextlib.suppress(Exception):
                    conn.writer.close()


class SipTcpEndpoint(SipUdpEndpoint):
    """The SIP endpoint of net/udp.py on a TcpSocket: same core driving, messages instead of datagrams.
    Give its core `transport="TCP"` so the transaction timers follow the reliable-transport rules."""

    @classmethod
    async def open(cls, ip: str, port: int, core: TransactionCore,
                   on_event: Callable[[Any], None] | None = None,
                   sock: socket.socket | None = None) -> SipTcpEndpoint:
        endpoint = cls(core, on_event)
        endpoint._socket = cast(Any, await TcpSocket.bind(ip, port, endpoint._datagram_received, sock))
        return endpoint
