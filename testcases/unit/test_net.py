"""asyncio UDP plumbing and the run topology, over real loopback sockets with bounded waits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from harness.agents.topology import Topology, pick_subnet, subnet_free
from harness.net.udp import SipUdpEndpoint, UdpSocket


def test_topology_addresses_and_routes() -> None:
    topo = Topology(42)
    assert topo.ip("UE-1") == "127.42.0.1" and topo.ip("S-CSCF") == "127.42.0.12"
    assert topo.sip_addr("CS") == ("127.42.0.4", 5060)
    assert topo.user_uri("UE-3") == "sip:ue3@127.42.0.3"
    assert topo.factory_uri == "sip:conference-factory@127.42.0.4"
    assert topo.bpf == "net 127.42.0.0/24"
    assert topo.outbound_route("UE-1") == ["<sip:127.42.0.11;lr>", "<sip:127.42.0.12;lr>"]
    assert topo.outbound_route("UE-2") == ["<sip:127.42.0.12;lr>"]
    assert topo.role_of("127.42.0.5") == "MRFP"
    with pytest.raises(ValueError):
        Topology(0)


def test_pick_subnet_skips_a_bound_one() -> None:
    async def main() -> None:
        first = pick_subnet(200)
        sock = await UdpSocket.bind(f"127.{first}.0.1", 5060)
        try:
            assert not subnet_free(first)
            assert pick_subnet(first - 1) != first
        finally:
            sock.close()

    asyncio.run(main())


def test_udp_socket_send_and_receive() -> None:
    async def main() -> tuple[bytes, tuple[str, int]]:
        got: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        a = await UdpSocket.bind("127.0.0.1", 0, lambda d, addr: got.put_nowait((d, addr)))
        b = await UdpSocket.bind("127.0.0.1", 0)
        try:
            b.sendto(b"hello", a.local)
            data, addr = await asyncio.wait_for(got.get(), 2.0)
            assert addr == b.local
            return data, addr
        finally:
            a.close()
            b.close()

    assert asyncio.run(main())[0] == b"hello"


@pytest.mark.parametrize("burst", [1, 64])
def test_udp_socket_delivers_a_queued_burst_whatever_it_reads_per_readiness(burst: int) -> None:
    """A socket that reads one datagram per readiness (a UE's) still gets every queued datagram, in
    order: the selector reports the rest again (level-triggered)."""
    async def main() -> list[bytes]:
        got: list[bytes] = []
        a = await UdpSocket.bind("127.0.0.1", 0, lambda d, addr: got.append(d), burst=burst)
        b = await UdpSocket.bind("127.0.0.1", 0)
        try:
            for k in range(10):  # all queued before the loop runs a's reader once
                b.sendto(b"%d" % k, a.local)
            for _ in range(200):
                if len(got) == 10:
                    break
                await asyncio.sleep(0.005)
            return got
        finally:
            a.close()
            b.close()

    assert asyncio.run(main()) == [b"%d" % k for k in range(10)]


class _EchoCore:
    """A stand-in TransactionLayer: echoes each datagram once a timer 50 ms after receipt fires."""

    def __init__(self) -> None:
        self.pending: list[tuple[bytes, tuple[str, int], float]] = []
        self.out: list[tuple[bytes, tuple[str, int]]] = []
        self.events: list[Any] = []
        self.timer_calls = 0

    def receive(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        self.pending.append((data, addr, now + 0.05))

    def handle_timer(self, now: float) -> None:
        self.timer_calls += 1
        due = [p for p in self.pending if p[2] <= now]
        self.pending = [p for p in self.pending if p[2] > now]
        for data, addr, _ in due:
            self.out.append((b"echo " + data, addr))
            self.events.append(("echoed", data))

    def get_timer(self) -> float | None:
        return min((p[2] for p in self.pending), default=None)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, tuple[str, int]]]:
        out, self.out = self.out, []
        return out

    def next_event(self) -> Any:
        return self.events.pop(0) if self.events else None

    def send_request(self, msg: Any, addr: tuple[str, int], now: float) -> str:
        self.out.append((msg, addr))
        return "key"

    def send_response(self, request: Any, response: Any, now: float) -> None:
        raise NotImplementedError


def test_sip_endpoint_drives_the_core_timer_and_delivers_events() -> None:
    async def main() -> None:
        core = _EchoCore()
        endpoint = await SipUdpEndpoint.open("127.0.0.1", 0, core)
        got: asyncio.Queue[bytes] = asyncio.Queue()
        peer = await UdpSocket.bind("127.0.0.1", 0, lambda d, addr: got.put_nowait(d))
        try:
            peer.sendto(b"one", endpoint.local)
            assert await asyncio.wait_for(got.get(), 2.0) == b"echo one"
            assert await asyncio.wait_for(endpoint.events.get(), 1.0) == ("echoed", b"one")
            assert core.timer_calls == 1  # one call_at per deadline, not polling
            assert endpoint.send_request(b"raw", peer.local) == "key"
            assert await asyncio.wait_for(got.get(), 2.0) == b"raw"
        finally:
            endpoint.close()
            peer.close()

    asyncio.run(main())
