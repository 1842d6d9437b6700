"""Delay, jitter, reordering (and seeded loss) for UDP, in user space.

Why user space: this kernel has no netem (`tc qdisc ... netem` is "unknown"), and although NFQUEUE
is compiled in, Debian 12 ships no Python binding for it (`apt-cache search netfilterqueue` finds
nothing), so the harness ships its own delayer. Loss alone is cheaper in the kernel: see
`Testbed.set_loss` (nftables, input hook of the receiving namespace).

Two forwarders share one seeded schedule (`DelayModel`) and one thread loop (`_Forwarder`):

- `FrameRelay` is transparent and is what a `Testbed` uses. It runs in the switch namespace. An
  AF_PACKET socket on the bridge port of the sending host sees every frame before the bridge does
  (packet taps run before the bridge's receive handler); an nftables rule in the bridge *forward*
  hook drops the bridge's own copy of impaired UDP frames, and the relay sends its copy, once its
  delay has passed, out of the receiving host's port. Addresses, ports and MACs are untouched, so
  SIP Via/Contact and the capture on the bridge show the real hosts. A capture on the bridge sees
  each frame once, when it was sent: the delayed copy leaves through the port, not through br0.
- `UdpRelay` rewrites addresses: it listens on one address, forwards to a target and sends replies
  back to the last sender. For loopback runs without namespaces where the peers can be pointed at
  the relay (an RTP stream, a single UDP peer).

Delay model: per packet `delay + jitter` drawn from `random.Random(seed)` (uniform in [-j, +j] or
normal with standard deviation j), clamped at 0. Packets of one link overtake each other when the
jitter exceeds their spacing; with `reorder=False` a packet never leaves before its predecessor.
Each link has its own generator seeded from (seed, link label), so the delay of the n-th packet of
a link does not depend on other links' traffic. Queues are bounded (overflow is counted, not
raised); stopping discards what is still queued.
"""

from __future__ import annotations

import contextlib
import ctypes
import heapq
import os
import random
import selectors
import socket
import struct
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Addr = tuple[str, int]
Distribution = Literal["uniform", "normal"]

MAX_PENDING = 10_000
STOP_TIMEOUT = 2.0
_IDLE = 0.5            # longest select() when nothing is queued, so a lost wake-up costs little
_BURST = 64            # datagrams read per readable event before serving the heap again
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4    # linux/if_packet.h: a frame this host sent, seen by a tap on the same port
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33    # asm-generic/socket.h: SO_RCVBUF beyond net.core.rmem_max (CAP_NET_ADMIN)
SOL_PACKET = 263
PACKET_STATISTICS = 6  # struct tpacket_stats {tp_packets, tp_drops}; reading resets both
TAP_RCVBUF = 8 << 20
# Classic BPF: keep IPv4 UDP frames that enter the port (pkt_type != OUTGOING), drop the rest in
# the kernel, so the relay thread wakes only for frames it may have to relay.
_UDP_IN_FILTER = [
    (0x28, 0, 0, 12),          # ldh [12]                 ethertype
    (0x15, 0, 5, 0x0800),      # jne #IPv4 -> drop
    (0x30, 0, 0, 23),          # ldb [23]                 IP protocol
    (0x15, 0, 3, 17),          # jne #UDP -> drop
    (0x20, 0, 0, 0xFFFFF004),  # ld pkttype (SKF_AD_OFF + SKF_AD_PKTTYPE)
    (0x15, 1, 0, PACKET_OUTGOING),  # jeq #OUTGOING -> drop
    (0x06, 0, 0, 0x40000),     # ret accept
    (0x06, 0, 0, 0),           # ret drop
]


@dataclass(frozen=True)
class LinkProfile:
    """How one direction of one link is impaired. Times in seconds, loss in percent."""

    delay: float = 0.0
    jitter: float = 0.0
    distribution: Distribution = "uniform"
    loss: float = 0.0
    reorder: bool = True
    seed: int | str = 0

    def __post_init__(self) -> None:
        if self.delay < 0 or self.jitter < 0:
            raise ValueError(f"delay and jitter must be >= 0, got {self.delay}, {self.jitter}")
        if not 0 <= self.loss <= 100:
            raise ValueError(f"loss is a percentage in [0, 100], got {self.loss}")
        if self.distribution not in ("uniform", "normal"):
            raise ValueError(f"distribution must be 'uniform' or 'normal', got {self.distribution!r}")


class DelayModel:
    """Seeded per-packet schedule of one link: when each packet leaves, or None when it is lost."""

    def __init__(self, profile: LinkProfile, label: str = "") -> None:
        self.profile = profile
        # str seeds are hashed with SHA-512 by random.Random: stable across runs and PYTHONHASHSEED.
        self._rng = random.Random(f"{profile.seed}:{label}")
        self._last_due = float("-inf")

    def draw(self) -> float | None:
        """Delay of the next packet in seconds, or None if the seeded loss drops it."""
        p = self.profile
        if p.loss and self._rng.random() * 100 < p.loss:
            return None
        if not p.jitter:
            return p.delay
        if p.distribution == "normal":
            return max(0.0, self._rng.gauss(p.delay, p.jitter))
        return max(0.0, p.delay + self._rng.uniform(-p.jitter, p.jitter))

    def schedule(self, now: float) -> float | None:
        """Absolute departure time of a packet that arrived at `now` (monotonic clock)."""
        delay = self.draw()
        if delay is None:
            return None
        due = now + delay
        if not self.profile.reorder:
            due = max(due, self._last_due)
        self._last_due = due
        return due


@dataclass
class RelayStats:
    """Counters of one relayed direction; read them after stop() for exact values."""

    received: int = 0
    forwarded: int = 0
    lost: int = 0          # dropped by the seeded loss of the profile
    overflow: int = 0      # dropped because MAX_PENDING packets were already queued
    send_errors: int = 0
    errors: list[str] = field(default_factory=list)


Sender = Callable[[bytes], object]


class _Forwarder:
    """One thread: read sockets, hold packets in a heap until due, send them, until stopped."""

    def __init__(self, name: str, max_pending: int = MAX_PENDING) -> None:
        self.name = name
        self.max_pending = max_pending
        self._sel = selectors.DefaultSelector()
        self._heap: list[tuple[float, int, bytes, Sender, RelayStats]] = []
        self._seq = 0
        self._lock = threading.Lock()
        self._to_watch: list[tuple[socket.socket, Callable[[], None]]] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._sockets: list[socket.socket] = []
        self.error: BaseException | None = None

    def watch(self, sock: socket.socket, on_readable: Callable[[], None]) -> None:
        """Serve `sock` from the relay thread; safe to call while it runs."""
        sock.setblocking(False)
        with self._lock:
            self._sockets.append(sock)
            self._to_watch.append((sock, on_readable))
        self._wake()

    def hold(self, model: DelayModel, data: bytes, send: Sender, stats: RelayStats) -> None:
        """Queue `data` for `send` at the time the model draws (relay thread only)."""
        stats.received += 1
        due = model.schedule(time.monotonic())
        if due is None:
            stats.lost += 1
        elif len(self._heap) >= self.max_pending:
            stats.overflow += 1
        else:
            self._seq += 1  # tie-breaker: equal due times leave in arrival order
            heapq.heappush(self._heap, (due, self._seq, data, send, stats))

    @property
    def pending(self) -> int:
        return len(self._heap)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the thread (bounded wait), close every socket, drop what is still queued."""
        self._stopping.set()
        self._wake()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():  # pragma: no cover - the loop never blocks longer than _IDLE
                raise RuntimeError(f"{self.name} did not stop within {timeout:g} s")
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()
        self._sel.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._heap.clear()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # pipe full (already woken) or closed (stopped)
            os.write(self._wake_w, b"\0")

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._register_new()
                timeout = _IDLE
                if self._heap:
                    timeout = min(_IDLE, max(0.0, self._heap[0][0] - time.monotonic()))
                for key, _ in self._sel.select(timeout):
                    if key.data is None:
                        with contextlib.suppress(OSError):
                            os.read(self._wake_r, 4096)
                    else:
                        key.data()
                self._send_due()
        except BaseException as exc:  # pragma: no cover - surfaced to the owner through .error
            self.error = exc

    def _register_new(self) -> None:
        with self._lock:
            new, self._to_watch = self._to_watch, []
        for sock, on_readable in new:
            self._sel.register(sock, selectors.EVENT_READ, on_readable)

    def _send_due(self) -> None:
        now = time.monotonic()
        while self._heap and self._heap[0][0] <= now:
            _, _, data, send, stats = heapq.heappop(self._heap)
            stats.forwarded += 1  # before sending: whoever receives it then reads a true count
            try:
                send(data)
            except OSError as exc:  # ENOBUFS, ECONNREFUSED, a port that went away: count, go on
                stats.forwarded -= 1
                stats.send_errors += 1
                if len(stats.errors) < 10:
                    stats.errors.append(str(exc))


def _recv_burst(sock: socket.socket) -> list[tuple[bytes, tuple[object, ...]]]:
    out = []
    for _ in range(_BURST):
        try:
            data, addr = sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:  # ICMP errors reported on a UDP socket: nothing to relay
            continue
        out.append((data, addr))
    return out


class UdpRelay(_Forwarder):
    """Address-rewriting UDP relay: datagrams to `local` go to `target`; the target's go back.

    Replies go to the last address that sent to the relay. Pass `sock` (e.g. from
    `harness.net.netns.socket_in`) to run it inside a namespace; it is bound to `listen` here.
    """

    def __init__(self, listen: Addr, target: Addr, forward: LinkProfile,
                 backward: LinkProfile | None = None, *, sock: socket.socket | None = None,
                 max_pending: int = MAX_PENDING) -> None:
        super().__init__(f"udp-relay-{listen[0]}:{listen[1]}", max_pending)
        self.target = target
        self._sock = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind(listen)
        except OSError:
            self._sock.close()
            raise
        self.local: Addr = self._sock.getsockname()[:2]
        self.forward_stats = RelayStats()
        self.backward_stats = RelayStats()
        self._forward = DelayModel(forward, "forward")
        self._backward = DelayModel(backward or forward, "backward")
        self._client: Addr | None = None
        self.watch(self._sock, self._on_readable)

    def __enter__(self) -> UdpRelay:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_readable(self) -> None:
        for data, addr in _recv_burst(self._sock):
            src = (str(addr[0]), int(str(addr[1])))
            if src == self.target:
                client = self._client
                if client is not None:
                    self.hold(self._backward, data, self._sender(client), self.backward_stats)
            else:
                self._client = src
                self.hold(self._forward, data, self._sender(self.target), self.forward_stats)

    def _sender(self, addr: Addr) -> Sender:
        return lambda data: self._sock.sendto(data, addr)


@dataclass
class _FrameLink:
    out_port: str
    model: DelayModel
    stats: RelayStats


class FrameRelay(_Forwarder):
    """Transparent relay between bridge ports (see the module docstring).

    `open_port(ifname)` must return an AF_PACKET socket bound to that port, created inside the
    switch namespace (`Testbed` passes one). The caller installs the bridge rule that drops the
    bridge's own copy of each impaired (in_port, dst_mac) UDP flow.
    """

    def __init__(self, open_port: Callable[[str], socket.socket], name: str = "frame-relay",
                 max_pending: int = MAX_PENDING) -> None:
        super().__init__(name, max_pending)
        self._open_port = open_port
        self._ports: dict[str, socket.socket] = {}
        self._links: dict[tuple[str, bytes], _FrameLink] = {}
        self._tap_drops = 0

    def add_link(self, in_port: str, out_port: str, dst_mac: str, profile: LinkProfile,
                 label: str | None = None) -> RelayStats:
        """Relay UDP/IPv4 frames entering `in_port` for `dst_mac` out of `out_port`, impaired."""
        mac = bytes.fromhex(dst_mac.replace(":", ""))
        for port in (in_port, out_port):
            self._port(port)
        link = _FrameLink(out_port, DelayModel(profile, label or f"{in_port}>{out_port}"), RelayStats())
        self._links[(in_port, mac)] = link  # one dict store: atomic for the relay thread
        return link.stats

    def tap_drops(self) -> int:
        """Frames the kernel dropped because a tap's receive buffer was full (never relayed: an
        impairment beyond the profile's), summed over every port since the relay started."""
        for sock in list(self._ports.values()):
            with contextlib.suppress(OSError):
                _packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
                self._tap_drops += drops
        return self._tap_drops

    def _port(self, ifname: str) -> socket.socket:
        sock = self._ports.get(ifname)
        if sock is None:
            sock = self._open_port(ifname)
            self._ports[ifname] = sock
            self.watch(sock, lambda: self._on_readable(ifname, sock))
        return sock

    def _on_readable(self, in_port: str, sock: socket.socket) -> None:
        for data, addr in _recv_burst(sock):
            if addr[2] == PACKET_OUTGOING or len(data) < 34 or data[23] != socket.IPPROTO_UDP:
                continue
            link = self._links.get((in_port, data[:6]))
            if link is None:
                continue
            out = self._ports[link.out_port]
            self.hold(link.model, fix_udp_checksum(data), out.send, link.stats)


def open_packet_socket(ifname: str) -> socket.socket:
    """An AF_PACKET socket on bridge port `ifname` of the calling thread's namespace.

    ETH_P_ALL, not ETH_P_IP: only "all protocols" taps run before the bridge's receive handler;
    a frame the bridge consumes never reaches per-protocol sockets.
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        program = b"".join(struct.pack("HBBI", *insn) for insn in _UDP_IN_FILTER)
        buf = ctypes.create_string_buffer(program)
        fprog = struct.pack("HL", len(_UDP_IN_FILTER), ctypes.addressof(buf))  # struct sock_fprog
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        try:  # a tap that overflows loses frames the bridge copy of which is already dropped
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, TAP_RCVBUF)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TAP_RCVBUF)
        sock.bind((ifname, ETH_P_ALL))
    except OSError:
        sock.close()
        raise
    return sock


def fix_udp_checksum(frame: bytes) -> bytes:
    """Frame with its UDP checksum computed.

    A tap on a veth port sees frames whose UDP checksum the sender left to "hardware" (checksum
    offload): only the pseudo-header sum is there. Sent again through AF_PACKET, the receiver
    would drop them. Fragments are left alone: the kernel checksums in software before fragmenting.
    """
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != socket.IPPROTO_UDP:
        return frame
    ihl = (frame[14] & 0x0F) * 4
    if struct.unpack_from("!H", frame, 20)[0] & 0x3FFF:
        return frame
    udp = 14 + ihl
    (length,) = struct.unpack_from("!H", frame, udp + 4)
    if length < 8 or udp + length > len(frame):
        return frame
    buf = bytearray(frame)
    buf[udp + 6:udp + 8] = b"\0\0"
    data = bytes(buf[26:34]) + b"\0\x11" + buf[udp + 4:udp + 6] + bytes(buf[udp:udp + length])
    if len(data) % 2:
        data += b"\0"
    # Ones' complement sums are byte-order independent (RFC 1071 §2B): sum and store natively.
    total = sum(array("H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    struct.pack_into("=H", buf, udp + 6, (~total & 0xFFFF) or 0xFFFF)
    return bytes(buf)
