"""Test hosts in network namespaces: reachability, capture on the bridge, loss, delay, jitter, cleanup.

Real-kernel tests (root, iproute2, nftables, dumpcap): few, end-to-end, every wait bounded.
The seeded schedule and the checksum fix are also tested without namespaces.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from harness.capture.dumpcap import Capture
from harness.net import netns as netns_mod
from harness.net.impair import DelayModel, LinkProfile, UdpRelay, fix_udp_checksum
from harness.net.netns import REGISTRY, Testbed, TestbedError, cleanup_stale, list_netns, run_in_netns

pytestmark = pytest.mark.netns

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not (IS_ROOT and shutil.which("ip")), reason="needs root and iproute2")
needs_nft = pytest.mark.skipif(shutil.which("nft") is None, reason="needs nftables")
needs_dumpcap = pytest.mark.skipif(not (shutil.which("dumpcap") and shutil.which("tshark")),
                                   reason="needs dumpcap and tshark")
PORT = 5060
SO_RCVBUFFORCE = 33  # Linux; not exported by the socket module


def _recv_all(sock: socket.socket, expected: int, quiet: float = 0.3, limit: float = 5.0) -> list[bytes]:
    """Datagrams until `expected` arrived, `quiet` s passed without one, or `limit` s in all."""
    got: list[bytes] = []
    deadline = time.monotonic() + limit
    while len(got) < expected and time.monotonic() < deadline:
        sock.settimeout(min(quiet, max(0.01, deadline - time.monotonic())))
        try:
            got.append(sock.recv(65535))
        except TimeoutError:
            break
    return got


@pytest.fixture
def bed() -> Iterator[Testbed]:
    with Testbed(["a", "b", "c"], prefix="sht") as tb:
        yield tb


@pytest.fixture
def socks(bed: Testbed) -> Iterator[dict[str, socket.socket]]:
    made = {name: bed.host(name).udp_socket(PORT, blocking=True) for name in bed.hosts}
    try:
        yield made
    finally:
        for sock in made.values():
            sock.close()


# -- without namespaces ------------------------------------------------------------------------


def test_delay_model_is_seeded_and_per_link() -> None:
    profile = LinkProfile(delay=0.1, jitter=0.05, seed=7)

    def draws(label: str) -> list[float | None]:
        model = DelayModel(profile, label)
        return [model.draw() for _ in range(50)]

    assert draws("a>b") == draws("a>b")
    assert draws("a>b") != draws("b>a")
    assert all(d is not None and 0.05 <= d <= 0.15 for d in draws("a>b"))


def test_delay_model_without_reorder_keeps_order_and_seeded_loss() -> None:
    model = DelayModel(LinkProfile(delay=0.05, jitter=0.05, reorder=False, seed=1))
    dues = [model.schedule(i * 0.001) for i in range(200)]
    assert dues == sorted(dues)
    lossy = DelayModel(LinkProfile(loss=10, seed=3))
    lost = sum(lossy.draw() is None for _ in range(2000))
    assert 140 <= lost <= 260  # binomial(2000, 0.1): mean 200, sd 13.4


def test_link_profile_rejects_bad_values() -> None:
    for kwargs in ({"delay": -1}, {"loss": 101}, {"distribution": "pareto"}):
        with pytest.raises(ValueError):
            LinkProfile(**kwargs)  # type: ignore[arg-type]


def test_fix_udp_checksum_matches_scapy() -> None:
    frame = bytes(Ether(dst="02:00:00:00:00:02") / IP(src="198.18.0.1", dst="198.18.0.2") /
                  UDP(sport=5060, dport=5060) / (b"INVITE sip:x SIP/2.0\r\n" + b"x"))  # odd length
    udp = 14 + 20
    broken = frame[:udp + 6] + b"\x12\x34" + frame[udp + 8:]  # a partial (offloaded) checksum
    assert fix_udp_checksum(broken) == frame
    assert fix_udp_checksum(b"\x00" * 20) == b"\x00" * 20


def test_udp_relay_on_loopback_delays_both_ways() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        server.bind(("127.0.0.1", 0))
        client.bind(("127.0.0.1", 0))
        server.settimeout(2)
        client.settimeout(2)
        with UdpRelay(("127.0.0.1", 0), server.getsockname(), LinkProfile(delay=0.05)) as relay:
            start = time.monotonic()
            client.sendto(b"ping", relay.local)
            data, addr = server.recvfrom(100)
            assert addr == relay.local
            server.sendto(b"pong", addr)
            assert client.recvfrom(100) == (b"pong", relay.local)
            assert 0.1 <= time.monotonic() - start < 0.3
        assert relay.forward_stats.forwarded == relay.backward_stats.forwarded == 1
    finally:
        server.close()
        client.close()


def test_clear_errors_without_root_or_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns_mod.os, "geteuid", lambda: 1000)
    with pytest.raises(TestbedError, match="need root"):
        Testbed(["a"]).start()
    monkeypatch.setattr(netns_mod.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns_mod.shutil, "which", lambda name: None)
    with pytest.raises(TestbedError, match="iproute2"):
        Testbed(["a"]).start()


def test_failing_command_is_named_with_its_stderr() -> None:
    with pytest.raises(TestbedError, match=r"ls /nonexistent-sh failed with status \d+: .*No such file"):
        netns_mod.run(["ls", "/nonexistent-sh"])


# -- in namespaces -----------------------------------------------------------------------------


@needs_root
def test_hosts_reach_each_other_with_their_own_addresses(bed: Testbed,
                                                         socks: dict[str, socket.socket]) -> None:
    assert [h.ip for h in bed.hosts.values()] == ["198.18.0.1", "198.18.0.2", "198.18.0.3"]
    assert all(n in list_netns() for n in bed.namespaces())
    for src in bed.hosts:
        for dst in bed.hosts:
            if src != dst:
                socks[src].sendto(src.encode(), (bed.host(dst).ip, PORT))
                socks[dst].settimeout(2)
                assert socks[dst].recvfrom(100) == (src.encode(), (bed.host(src).ip, PORT))
    # The root namespace has no such address: the sockets really live in the hosts.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(OSError):
        probe.bind((bed.host("a").ip, 0))
    probe.close()


@needs_root
@needs_dumpcap
def test_capture_on_bridge_sees_every_hop_once(bed: Testbed, socks: dict[str, socket.socket],
                                                tmp_path: Path) -> None:
    bed.set_delay("a", "b", 0.02)  # relayed frames must not appear twice
    out = tmp_path / "bridge.pcapng"

    class BridgeCapture(Capture):
        def command(self) -> list[str]:
            return bed.capture_command(self.path, self.bpf)

    with BridgeCapture(out, bpf=f"udp and {bed.capture_bpf()}"):
        for _ in range(5):
            socks["a"].sendto(b"x", (bed.host("b").ip, PORT))
            socks["b"].sendto(b"y", (bed.host("c").ip, PORT))
        assert len(_recv_all(socks["b"], 5)) == 5
        assert len(_recv_all(socks["c"], 5)) == 5
        # dumpcap stopped within ~0.25 s of becoming ready lost every packet here (8 runs of 8).
        time.sleep(0.3)
    fields = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "ip.src", "-e", "ip.dst"],
                            capture_output=True, text=True, timeout=20, check=True).stdout.split("\n")
    hops = [tuple(line.split("\t")) for line in fields if line]
    assert hops.count(("198.18.0.1", "198.18.0.2")) == 5
    assert hops.count(("198.18.0.2", "198.18.0.3")) == 5
    assert len(hops) == 10


@needs_root
@needs_nft
def test_loss_with_nftables_on_the_receiver(bed: Testbed, socks: dict[str, socket.socket]) -> None:
    bed.set_loss("b", 10, src="a")
    socks["b"].setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)  # no buffer drops
    sent = 400
    for i in range(sent):
        socks["a"].sendto(struct.pack("!I", i), (bed.host("b").ip, PORT))
        socks["c"].sendto(struct.pack("!I", i), (bed.host("b").ip, PORT + 1))  # c is not impaired
        if i % 50 == 49:
            time.sleep(0.005)
    got = _recv_all(socks["b"], sent)
    lost = sent - len(got)
    assert 0.02 * sent <= lost <= 0.25 * sent  # nft numgen is not seedable: binomial mean 40, sd 6
    assert bed.loss_drops("b") == lost  # only a's datagrams match the rule
    bed.clear_loss("b")
    for i in range(50):
        socks["a"].sendto(struct.pack("!I", i), (bed.host("b").ip, PORT))
    assert len(_recv_all(socks["b"], 50)) == 50


@needs_root
def test_relay_delay_gives_round_trip_of_twice_the_delay(bed: Testbed,
                                                         socks: dict[str, socket.socket]) -> None:
    bed.impair("a", "b", delay=0.1)
    a, b = socks["a"], socks["b"]
    a.settimeout(2)
    b.settimeout(2)
    rtts = []
    for i in range(3):
        start = time.monotonic()
        a.sendto(b"ping%d" % i, (bed.host("b").ip, PORT))
        data, addr = b.recvfrom(100)
        assert addr == (bed.host("a").ip, PORT)  # transparent: the real source address
        b.sendto(data, addr)
        assert a.recvfrom(100) == (data, (bed.host("b").ip, PORT))
        rtts.append(time.monotonic() - start)
    assert min(rtts) >= 0.2 and max(rtts) < 0.4, rtts
    stats = bed.relay_stats()
    assert stats[("a", "b")].forwarded == stats[("b", "a")].forwarded == 3
    # a <-> c is not impaired
    start = time.monotonic()
    a.sendto(b"fast", (bed.host("c").ip, PORT))
    socks["c"].settimeout(2)
    socks["c"].recvfrom(100)
    assert time.monotonic() - start < 0.05


@needs_root
def test_jitter_reorders_unless_told_not_to(bed: Testbed, socks: dict[str, socket.socket]) -> None:
    bed.set_delay("a", "b", 0.03, jitter=0.02, seed=1)
    bed.set_delay("a", "c", 0.03, jitter=0.02, seed=1, reorder=False)
    count = 100
    for i in range(count):
        payload = struct.pack("!I", i)
        socks["a"].sendto(payload, (bed.host("b").ip, PORT))
        socks["a"].sendto(payload, (bed.host("c").ip, PORT))
        time.sleep(0.001)
    to_b = [struct.unpack("!I", d)[0] for d in _recv_all(socks["b"], count)]
    to_c = [struct.unpack("!I", d)[0] for d in _recv_all(socks["c"], count)]
    assert sorted(to_b) == list(range(count)) and to_b != sorted(to_b)
    assert to_c == list(range(count))


@needs_root
def test_cleanup_after_exception_and_interrupt() -> None:
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), Testbed(["x", "y"], prefix="sht") as tb:
            names = tb.namespaces()
            tb.set_delay("x", "y", 0.01)
            assert all(n in list_netns() for n in names)
            raise exc
        assert not set(names) & set(list_netns())
        assert not list(REGISTRY.glob(f"sht-{tb.run_id}"))


@needs_root
def test_cleanup_stale_removes_dead_runs_only(bed: Testbed) -> None:
    run_id = secrets.token_hex(3)
    dead = f"sht-{run_id}-x"
    subprocess.run(["ip", "netns", "add", dead], check=True, timeout=10)
    try:
        (REGISTRY / f"sht-{run_id}").write_text("999999999 0\n")  # no such pid
        removed = cleanup_stale("sht")
        assert dead in removed
        assert dead not in list_netns()
        assert all(n in list_netns() for n in bed.namespaces())  # the live run is untouched
    finally:
        if dead in list_netns():
            subprocess.run(["ip", "netns", "del", dead], timeout=10, check=False)


@needs_root
def test_run_in_missing_namespace_is_a_clear_error() -> None:
    with pytest.raises(TestbedError, match="sht-nothere"):
        run_in_netns("sht-nothere", lambda: None)
