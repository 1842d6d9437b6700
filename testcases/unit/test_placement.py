"""Placement: reserved loopback subnets handed to the agents, worker blocks, the netns topology."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from conftest import worker_block
from harness.agents.placement import (
    Impairment,
    LoopbackReservation,
    NetnsTopology,
    ReservationPool,
    agent_wait,
    flow_timeout,
)
from harness.agents.proxy import Proxy
from harness.agents.topology import ROLES, Topology, subnet_free
from harness.net.udp import BINDER, UdpSocket


def test_worker_blocks_are_disjoint_for_any_worker_count() -> None:
    for workers in (1, 2, 4, 8, 16):
        blocks = [set(worker_block(w, workers)) for w in ["master", *(f"gw{i}" for i in range(workers))]]
        assert all(len(b) >= 2 for b in blocks)
        assert sum(len(b) for b in blocks) == len(set().union(*blocks))
        assert max(max(b) for b in blocks) <= 254


def test_a_handed_out_subnet_is_held_until_the_agents_take_its_sockets(subnets: Iterator[int]) -> None:
    subnet = next(subnets)
    assert not subnet_free(subnet)  # reserved: no other process can bind it now

    async def start_proxy() -> tuple[int, int]:
        proxy = Proxy("P-CSCF", f"127.{subnet}.0.11")
        await proxy.start()  # gets the reserved socket through the session's binder
        assert proxy._sock is not None
        port = proxy._sock.local[1]
        await proxy.stop()
        return port, 0

    assert asyncio.run(start_proxy())[0] == 5060


def test_reservation_hands_each_socket_once_and_closes_the_rest() -> None:
    reservation = LoopbackReservation.take(251)
    assert reservation is not None
    assert LoopbackReservation.take(251) is None  # taken: nothing half-reserved is kept
    sock = reservation.binder("127.251.0.1", 5060)
    assert sock is not None and sock.getsockname() == ("127.251.0.1", 5060)
    assert reservation.binder("127.251.0.1", 5060) is None
    reservation.close()
    sock.close()
    assert subnet_free(251)


def test_pool_binder_serves_asyncio_sockets() -> None:
    pool = ReservationPool()
    subnet = pool.reserve([252, 253])

    async def bind() -> tuple[str, int]:
        sock = await UdpSocket.bind(f"127.{subnet}.0.4", 5060)
        sock.close()
        return sock.local

    token = BINDER.set(pool.binder)
    try:
        assert asyncio.run(bind()) == (f"127.{subnet}.0.4", 5060)
    finally:
        BINDER.reset(token)
    pool.release_unused()
    assert subnet_free(subnet)


def test_explicit_socket_wins_over_the_binder() -> None:
    given = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    given.bind(("127.0.0.1", 0))

    async def bind() -> tuple[str, int]:
        sock = await UdpSocket.bind("127.0.0.1", 1, sock=given)
        sock.close()
        return sock.local

    expected = given.getsockname()
    token = BINDER.set(lambda ip, port: pytest.fail("binder asked although a socket was given"))
    try:
        assert asyncio.run(bind()) == expected
    finally:
        BINDER.reset(token)


def test_netns_topology_keeps_the_host_octets() -> None:
    loop, netns = Topology(subnet=9), NetnsTopology(subnet=18)
    for role in ROLES:
        assert netns.ip(role).startswith("198.18.0.")
        assert netns.ip(role).rsplit(".", 1)[1] == loop.ip(role).rsplit(".", 1)[1]
    assert netns.bpf == "net 198.18.0.0/24"
    assert netns.outbound_route("UE-1") == ["<sip:198.18.0.11;lr>", "<sip:198.18.0.12;lr>"]


def test_impairment_is_validated_and_sets_the_waits() -> None:
    for bad in ({"loss": 101}, {"delay": -1}, {"loss_engine": "netem"}):
        with pytest.raises(ValueError):
            Impairment(**bad)  # type: ignore[arg-type]
    assert not Impairment().active and Impairment(jitter=0.01).active
    wait = agent_wait(Impairment(loss=10, delay=0.1), 5.0, t1=0.5)
    assert 32.0 < wait < 45.0
    assert flow_timeout(wait, 60.0) == 6 * wait
    assert "loss 10% (relay), delay 100 ms" in Impairment(loss=10, delay=0.1).describe()
