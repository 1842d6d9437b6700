"""A robustness run against a role the harness plays (its whole embedded network is started on a
reserved loopback subnet, every socket guarded) or against a SIP URI on loopback."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.agents.focus import ConferenceServer
from harness.agents.mrfp import Mrfp
from harness.agents.placement import reserve_loopback
from harness.agents.proxy import Proxy
from harness.agents.topology import ROLES, UES, USER, Topology
from harness.agents.ue import UserEquipment
from harness.net.udp import BINDER, UdpSocket
from harness.robustness.corpus import CASES, Case
from harness.robustness.guard import guarded_binder, guarded_socket
from harness.robustness.runner import (
    PROBE_OCTET,
    SINK_OCTET,
    WINDOW,
    CaseResult,
    Prober,
    Sink,
    Target,
    loopback_only,
    run_cases,
)
from harness.sip.headers import SipUri

LOOPBACK = "127.0.0.0/8"
PROXIES = ("P-CSCF", "S-CSCF")
EXTERNAL_SINK = "127.254.254.254"


@dataclass
class RobustnessReport:
    target: str
    results: list[CaseResult]
    internal_errors: dict[str, list[str]] = field(default_factory=dict)  # caught, answered 400/500
    refused_destinations: list[str] = field(default_factory=list)        # what the guard stopped

    @property
    def survived(self) -> bool:
        return all(r.alive and not r.crashes for r in self.results)

    @property
    def ok(self) -> bool:
        return self.survived and all(r.met for r in self.results)

    def summary(self) -> dict[str, Any]:
        outcomes = Counter(r.outcome.split(" only")[0] if r.outcome.startswith("answered") else r.outcome
                           for r in self.results)
        return {"target": self.target, "cases": len(self.results),
                "dead": sum(not r.alive for r in self.results), "crashes": sum(bool(r.crashes) for r in self.results),
                "mismatches": [r.name for r in self.results if not r.met],
                "outcomes": dict(sorted(outcomes.items())), "refused_destinations": sorted(set(self.refused_destinations))}

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary(), "cases": [r.to_json() for r in self.results],
                "internal_errors": self.internal_errors}

    def render(self) -> str:
        lines = [f"{'case':<34} {'source':<8} {'expect':<6} {'outcome':<22} {'alive':<5} verdict"]
        for r in self.results:
            lines.append(f"{r.name:<34} {r.source:<8} {r.expect:<6} {r.outcome:<22} {'yes' if r.alive else 'NO':<5} "
                         f"{r.verdict}")
        s = self.summary()
        lines.append(f"robustness {self.target}: {s['cases']} cases, {s['dead']} dead, {s['crashes']} crashed, "
                     f"{len(s['mismatches'])} not as RFC 3261 asks" +
                     (f" ({', '.join(s['mismatches'])})" if s["mismatches"] else ""))
        return "\n".join(lines)


def run_robustness(target: str, *, seed: int = 0, mutation_count: int = 50, window: float = WINDOW,
                   cases: tuple[Case, ...] = CASES,
                   progress: Callable[[CaseResult], None] | None = None) -> RobustnessReport:
    """`target`: a role name (UE-1, CS, P-CSCF, ...) or a loopback SIP URI."""
    role = target.upper()
    if role in ROLES and role != "MRFP":
        return asyncio.run(_against_role(role, seed, mutation_count, window, cases, progress))
    if role == "MRFP":
        raise ValueError("the MRFP speaks no SIP: pick a SIP role or a URI")
    return asyncio.run(_against_uri(target, seed, mutation_count, window, cases, progress))


async def _against_uri(text: str, seed: int, mutation_count: int, window: float, cases: tuple[Case, ...],
                       progress: Callable[[CaseResult], None] | None) -> RobustnessReport:
    uri = SipUri.parse(text)
    host, port = uri.host_port
    loopback_only(host)
    token = BINDER.set(guarded_binder([LOOPBACK]))
    try:
        sock = await UdpSocket.bind("127.0.0.1", 0)
    finally:
        BINDER.reset(token)
    try:
        prober = Prober(sock)
        where = Target(text, (host, port), False, host, EXTERNAL_SINK, "127.0.0.1", text)
        results = await run_cases(where, prober, None, cases, mutation_count, seed, window, None, progress)
    finally:
        sock.close()
    return RobustnessReport(text, results)


async def _against_role(role: str, seed: int, mutation_count: int, window: float, cases: tuple[Case, ...],
                        progress: Callable[[CaseResult], None] | None) -> RobustnessReport:
    made = []
    guard = guarded_binder([LOOPBACK], made)
    start = secrets.randbelow(254)
    reservation = reserve_loopback(((start + k) % 254 + 1 for k in range(254)),
                                   make=lambda: guarded_socket([LOOPBACK]))
    topology = Topology(subnet=reservation.subnet)
    token = BINDER.set(lambda ip, port: reservation.binder(ip, port) or guard(ip, port))
    loop = asyncio.get_running_loop()
    crashes: list[str] = []

    def on_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        crashes.append(f"{context.get('message')}: {type(exc).__name__}: {exc}" if exc else str(context.get("message")))
        loop.default_exception_handler(context)

    loop.set_exception_handler(on_error)
    proxies = [Proxy(name, topology.ip(name), topology.sip_port) for name in PROXIES]
    mrfp = Mrfp(topology.ip("MRFP"))
    cs = ConferenceServer(topology, mrfp)
    ues = [UserEquipment(name, topology) for name in UES]
    net = f"127.{topology.subnet}.0"
    sockets: list[UdpSocket] = []
    try:
        for proxy in proxies:
            await proxy.start()
        await mrfp.start()
        for agent in (cs, *ues):
            await agent.start()
        prober_sock = await UdpSocket.bind(f"{net}.{PROBE_OCTET}", 5060)
        sink_sock = await UdpSocket.bind(f"{net}.{SINK_OCTET}", 5060)
        sockets += [prober_sock, sink_sock]
        ip = topology.ip(role)
        is_proxy = role in PROXIES
        where = Target(role, topology.sip_addr(role), is_proxy, f"{net}.{SINK_OCTET}" if is_proxy else ip,
                       f"{net}.{SINK_OCTET}", f"{net}.{PROBE_OCTET}",
                       f"sip:{ip}" if is_proxy or role == "CS" else f"sip:{USER[role]}@{ip}")
        results = await run_cases(where, Prober(prober_sock), Sink(sink_sock), cases, mutation_count, seed, window,
                                  crashes, progress)
    finally:
        for sock in sockets:
            sock.close()
        for agent in (*ues, cs):
            await agent.stop()
        await mrfp.stop()
        for proxy in proxies:
            await proxy.stop()
        BINDER.reset(token)
        reservation.close()
    errors = {a.role: list(a.errors) for a in (*ues, cs) if a.errors}
    refused = [host for sock in made for host in sock.refused]
    return RobustnessReport(role, results, errors, refused)
