"""Where the roles of a run live: on this host's loopback, or each on its own test host.

- Loopback (the default): every role on its own address of a private 127.N.0.0/24.
  `LoopbackReservation` binds the SIP sockets of all roles up front and hands them to the agents
  when they start (through the `harness.net.udp.BINDER` context variable), so a subnet found free
  cannot be taken by another process between the check and the agents' bind.
- Network namespaces (`NetnsPlacement`): each role is a host of a `harness.net.netns.Testbed`
  (own namespace, own 198.18.0.x address on one bridge); the agents stay in this process and their
  sockets are created inside their role's namespace; dumpcap records on the bridge, so the capture
  shows every hop with the real per-host addresses. Every direction of every link can be impaired
  (loss, delay, jitter, reordering).

The agents do not know about either: they ask `UdpSocket.bind(ip, port)` and the binder answers.
"""

from __future__ import annotations

import contextlib
import errno
import secrets
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from harness.agents.topology import HOST_OCTET, ROLES, SIP_PORT, Topology
from harness.net.netns import Testbed
from harness.net.udp import BINDER
from harness.sip.timers import T1 as DEFAULT_T1

NETNS_NETWORK = "198.18.0"  # the benchmarking range (RFC 2544): exists only inside our namespaces
SIP_ROLES = tuple(role for role in ROLES if role != "MRFP")
WAIT_SLACK = 8.0  # beyond Timer B/F: the hops' delays and a last retransmission's round trip
FLOW_WAITS = 6    # the flow bound, in agent waits: several steps may each need retransmissions

LossEngine = Literal["relay", "nft"]


@dataclass(frozen=True)
class Impairment:
    """The same impairment on every direction of every link. Loss in %, times in seconds.

    loss_engine "relay" draws loss in the seeded relay (reproducible per seed); "nft" drops with
    nftables in the receiver's input hook (kernel random, not seedable).
    """

    loss: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    seed: int = 0
    reorder: bool = True
    loss_engine: LossEngine = "relay"

    def __post_init__(self) -> None:
        if not 0 <= self.loss <= 100:
            raise ValueError(f"loss is a percentage in [0, 100], got {self.loss}")
        if self.delay < 0 or self.jitter < 0:
            raise ValueError(f"delay and jitter must be >= 0, got {self.delay}, {self.jitter}")
        if self.loss_engine not in ("relay", "nft"):
            raise ValueError(f"loss engine is 'relay' or 'nft', got {self.loss_engine!r}")

    @property
    def active(self) -> bool:
        return bool(self.loss or self.delay or self.jitter)

    def describe(self) -> str:
        return (f"loss {self.loss:g}% ({self.loss_engine}), delay {self.delay * 1000:g} ms, "
                f"jitter {self.jitter * 1000:g} ms, seed {self.seed}")


def agent_wait(impairment: Impairment | None, default: float, t1: float = DEFAULT_T1) -> float:
    """How long an agent waits for a peer: its default on a clean network; on an impaired one a
    whole Timer B/F (64*T1, RFC 3261 §17.1.1.2) plus slack, so UDP retransmissions get every chance
    before the flow gives up, and the transaction's own timeout is what reports a dead peer."""
    if impairment is None or not impairment.active:
        return default
    return 64 * t1 + WAIT_SLACK + 4 * (impairment.delay + impairment.jitter)


def flow_timeout(wait: float, requested: float) -> float:
    """The overall bound: at least FLOW_WAITS agent waits."""
    return max(requested, FLOW_WAITS * wait)


# --- loopback ------------------------------------------------------------------------------------


@dataclass(eq=False)
class LoopbackReservation:
    """SIP sockets of every role of 127.N.0.0/24, bound now, handed over when the agents bind."""

    subnet: int
    sockets: dict[tuple[str, int], socket.socket] = field(default_factory=dict)

    @classmethod
    def take(cls, subnet: int, roles: Iterable[str] = SIP_ROLES, port: int = SIP_PORT,
             make: Callable[[], socket.socket] | None = None) -> LoopbackReservation | None:
        """Bind (127.N.0.x, port) for every role; None (nothing kept) when any is taken.
        `make` creates each socket (default: a plain UDP socket)."""
        reservation = cls(subnet)
        for role in roles:
            addr = (f"127.{subnet}.0.{HOST_OCTET[role]}", port)
            sock = make() if make is not None else socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind(addr)
            except OSError as exc:
                sock.close()
                reservation.close()
                if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
                    return None
                raise
            reservation.sockets[addr] = sock
        return reservation

    def binder(self, ip: str, port: int) -> socket.socket | None:
        """The reserved socket for (ip, port), once; None lets the caller bind as usual."""
        return self.sockets.pop((ip, port), None)

    @contextlib.contextmanager
    def bound(self) -> Iterator[LoopbackReservation]:
        """Agents started inside this block get the reserved sockets; leftovers are closed after."""
        token = BINDER.set(self.binder)
        try:
            yield self
        finally:
            BINDER.reset(token)
            self.close()

    def close(self) -> None:
        sockets, self.sockets = self.sockets, {}
        for sock in sockets.values():
            sock.close()


def reserve_loopback(candidates: Iterable[int], make: Callable[[], socket.socket] | None = None,
                     ) -> LoopbackReservation:
    """The first subnet of `candidates` whose SIP addresses are all free, reserved."""
    tried = 0
    for subnet in candidates:
        tried += 1
        reservation = LoopbackReservation.take(subnet, make=make)
        if reservation is not None:
            return reservation
    raise RuntimeError(f"no free 127.N.0.0/24 subnet among {tried} tried")


# --- network namespaces ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NetnsTopology(Topology):
    """The run's topology with 198.18.0.x addresses (same host octets as on loopback)."""

    prefix: str = NETNS_NETWORK

    def ip(self, role: str) -> str:
        return f"{self.prefix}.{HOST_OCTET[role]}"

    @property
    def network(self) -> str:
        return f"{self.prefix}.0/24"


class NetnsPlacement:
    """One test host per role on a Testbed; a context manager that always removes the namespaces.

    Use `bound()` around the run so agents create their sockets inside their host, and `capture()`
    for dumpcap on the bridge.
    """

    def __init__(self, impairment: Impairment | None = None, roles: Iterable[str] = ROLES,
                 prefix: str = "sh") -> None:
        self.impairment = impairment or Impairment()
        self.topology = NetnsTopology(subnet=18)
        self.roles = tuple(roles)
        self.testbed = Testbed({role: self.topology.ip(role) for role in self.roles},
                               subnet=self.topology.network, prefix=prefix)
        self._by_ip: dict[str, str] = {}

    def __enter__(self) -> NetnsPlacement:
        self.testbed.start()
        try:
            self._by_ip = {host.ip: role for role, host in self.testbed.hosts.items()}
            self._impair()
        except BaseException:
            self.testbed.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.testbed.close()

    def _impair(self) -> None:
        imp = self.impairment
        if not imp.active:
            return
        tb = self.testbed
        if imp.loss and imp.loss_engine == "nft":
            for role in self.roles:
                tb.set_loss(role, imp.loss)
        relay_loss = imp.loss if imp.loss_engine == "relay" else 0.0
        if imp.delay or imp.jitter or relay_loss:
            for src in self.roles:
                for dst in self.roles:
                    if src != dst:
                        tb.set_delay(src, dst, imp.delay, imp.jitter, reorder=imp.reorder, loss=relay_loss,
                                     seed=imp.seed)

    def binder(self, ip: str, port: int) -> socket.socket | None:
        """A socket bound to (ip, port) inside the host that owns `ip`; None for other addresses."""
        role = self._by_ip.get(ip)
        if role is None:
            return None
        return self.testbed.host(role).udp_socket(port)

    @contextlib.contextmanager
    def bound(self) -> Iterator[NetnsPlacement]:
        token = BINDER.set(self.binder)
        try:
            yield self
        finally:
            BINDER.reset(token)

    def capture_options(self) -> dict[str, str]:
        """Capture() keywords: dumpcap on the bridge, in the switch namespace, the test network only."""
        tb = self.testbed
        return {"interface": tb.bridge, "bpf": tb.capture_bpf(), "netns": tb.switch}

    def link_stats(self) -> dict[str, int]:
        """Relay counters summed over every direction, plus nftables drops (read before exit)."""
        totals = {"relayed": 0, "lost": 0, "overflow": 0, "send_errors": 0, "nft_dropped": 0,
                  "tap_dropped": self.testbed.relay_tap_drops()}
        for stats in self.testbed.relay_stats().values():
            totals["relayed"] += stats.forwarded
            totals["lost"] += stats.lost
            totals["overflow"] += stats.overflow
            totals["send_errors"] += stats.send_errors
        if self.impairment.loss and self.impairment.loss_engine == "nft":
            totals["nft_dropped"] = sum(self.testbed.loss_drops(role) for role in self.roles)
        return totals


# --- one run ---------------------------------------------------------------------------------------


@dataclass
class PlacedRun:
    """What a captured run needs from its placement: addresses, where to capture, the agents' bounds."""

    topology: Topology
    capture_options: dict[str, str]  # keywords for harness.capture.dumpcap.Capture
    wait: float
    timeout: float
    placement: str
    impairment: Impairment | None = None
    netns: NetnsPlacement | None = None

    def report(self) -> dict[str, object]:
        """Where the run ran and what the links did (call before the placement is left)."""
        out: dict[str, object] = {"placement": self.placement, "wait": round(self.wait, 3),
                                  "timeout": round(self.timeout, 3)}
        if self.impairment is not None:
            out["impairment"] = self.impairment.describe()
        if self.netns is not None:
            out["testbed"] = f"{self.netns.testbed.prefix}-{self.netns.testbed.run_id}"
            out.update(self.netns.link_stats())
        return out


@contextlib.contextmanager
def placed_run(*, placement: str = "loopback", impairment: Impairment | None = None,
               subnet: int | None = None, reservation: LoopbackReservation | None = None,
               timeout: float = 60.0, default_wait: float = 5.0) -> Iterator[PlacedRun]:
    """Set up where the roles run for one captured run, and tear it all down afterwards.

    loopback: `subnet` as given (whoever chose it answers for it), else `reservation` or one taken
    for a random free subnet hands the agents their SIP sockets. netns: a Testbed per run, removed
    on the way out whatever happened.
    """
    if placement == "netns":
        with NetnsPlacement(impairment) as where, where.bound():
            wait = agent_wait(impairment, default_wait)
            yield PlacedRun(where.topology, where.capture_options(), wait, flow_timeout(wait, timeout),
                            placement, impairment, where)
        return
    if placement != "loopback":
        raise ValueError(f"placement is 'loopback' or 'netns', got {placement!r}")
    if impairment is not None and impairment.active:
        raise ValueError("loss, delay and jitter need placement 'netns' (--netns)")
    if subnet is not None and reservation is None:  # the caller's (e.g. the pytest pool's binder)
        topology = Topology(subnet=subnet)
        yield PlacedRun(topology, {"bpf": topology.bpf}, default_wait, timeout, placement)
        return
    if reservation is None:
        start = secrets.randbelow(254)
        reservation = reserve_loopback((start + k) % 254 + 1 for k in range(254))
    with reservation.bound():
        topology = Topology(subnet=reservation.subnet)
        yield PlacedRun(topology, {"bpf": topology.bpf}, default_wait, timeout, placement)


class ReservationPool:
    """Reservations of many subnets served by one binder, for a test session handing out subnets.

    Install `binder` once (`BINDER.set(pool.binder)`); `reserve()` a subnet before giving it to a
    test; `release_unused()` after the test closes what its agents never took, so the subnet can be
    reserved again.
    """

    def __init__(self) -> None:
        self._held: dict[int, LoopbackReservation] = {}

    def reserve(self, candidates: Iterable[int]) -> int:
        reservation = reserve_loopback(candidates)
        self._held[reservation.subnet] = reservation
        return reservation.subnet

    def binder(self, ip: str, port: int) -> socket.socket | None:
        for reservation in self._held.values():
            sock = reservation.binder(ip, port)
            if sock is not None:
                return sock
        return None

    def release_unused(self) -> None:
        held, self._held = self._held, {}
        for reservation in held.values():
            reservation.close()
