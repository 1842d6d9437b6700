"""Send the corpus to one target, one case at a time, and after each case ask whether it still lives.

Per case: the datagram goes from the prober to the target; answers are collected until a final
response (or `window` seconds); a 2xx to an INVITE is ACKed and the call hung up again, a non-2xx
is ACKed, so no case leaves work behind for the next. Behind a proxy, what reaches the sink counts
as "forwarded". Then an OPTIONS probe (two tries) decides "alive". For the harness's own agents,
exceptions that escaped into the event loop are collected per case: those are crashes even if the
agent still answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from harness.net.udp import Addr, UdpSocket
from harness.robustness.corpus import CASES, Case, render
from harness.robustness.mutate import Mutation, fill, mutations
from harness.sip.errors import SipError
from harness.sip.message import SipMessage

WINDOW = 0.5          # seconds to wait for an answer to a case
_STATUS = re.compile(rb"SIP/2\.0 (\d{3}) ")
PROBE_WAIT = 1.0      # per OPTIONS try
SINK_OCTET, PROBE_OCTET = 99, 50


class Answer(NamedTuple):
    status: int
    raw: bytes


@dataclass
class CaseResult:
    name: str
    source: str              # "rfc4475" | "mutation"
    description: str
    expect: str
    statuses: list[int] = field(default_factory=list)
    forwarded: int = 0
    alive: bool = True
    crashes: list[str] = field(default_factory=list)

    @property
    def final(self) -> int | None:
        return next((s for s in self.statuses if s >= 200), None)

    @property
    def outcome(self) -> str:
        if self.final is not None:
            return f"answered {self.final}"
        if self.forwarded:
            return "forwarded"
        if self.statuses:
            return f"answered {self.statuses[-1]} only"
        return "ignored"

    @property
    def met(self) -> bool:
        if self.expect == "any":
            return True
        if self.expect == "valid":
            return self.forwarded > 0 or (self.final is not None and self.final != 400)
        return int(self.expect) in self.statuses

    @property
    def verdict(self) -> str:
        if not self.alive or self.crashes:
            return "DEAD" if not self.alive else "CRASH"
        return "ok" if self.met else "mismatch"

    def to_json(self) -> dict[str, Any]:
        return {"case": self.name, "source": self.source, "description": self.description, "expect": self.expect,
                "outcome": self.outcome, "statuses": self.statuses, "forwarded": self.forwarded,
                "alive": self.alive, "crashes": self.crashes, "verdict": self.verdict}


@dataclass
class Target:
    """Where the cases go and how to address them."""

    label: str
    addr: Addr
    proxy: bool
    ruri_host: str           # $RURI: the target itself, or the sink behind a proxy
    sink: str
    probe_ip: str
    options_uri: str


class Prober:
    """The tester's own UDP endpoint: sends cases, collects answers by Call-ID."""

    def __init__(self, sock: UdpSocket) -> None:
        self.sock = sock
        self.inbox: asyncio.Queue[tuple[bytes, Addr]] = asyncio.Queue()
        sock.set_receiver(lambda data, addr: self.inbox.put_nowait((data, addr)))

    @property
    def hostport(self) -> str:
        return f"{self.sock.local[0]}:{self.sock.local[1]}"

    async def exchange(self, data: bytes, to: Addr, call_id: str, window: float,
                       done: Callable[[], bool] | None = None) -> list[Answer]:
        """Send `data`; the responses whose Call-ID is `call_id`, until a final one, `done()` (e.g.
        the sink saw the forward) or `window` s. Read without the codec: an answer may echo the
        very bytes the codec refuses."""
        self._drain()
        self.sock.sendto(data, to)
        got: list[Answer] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window
        while (left := deadline - loop.time()) > 0:
            if done is not None and done():
                break
            try:
                raw, _ = await asyncio.wait_for(self.inbox.get(), min(left, 0.02) if done else left)
            except TimeoutError:
                continue
            status = _STATUS.match(raw)
            if status is None or _call_id(raw) != call_id:
                continue
            got.append(Answer(int(status.group(1)), raw))
            if got[-1].status >= 200:
                break
        return got

    def _drain(self) -> None:
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                self.inbox.get_nowait()

    async def options(self, target: Target) -> bool:
        for _ in range(2):
            call_id = f"probe-{secrets.token_hex(6)}"
            request = (f"OPTIONS {target.options_uri} SIP/2.0\r\n"
                       f"Via: SIP/2.0/UDP {self.hostport};branch=z9hG4bK{secrets.token_hex(8)}\r\n"
                       f"Max-Forwards: 70\r\nFrom: <sip:prober@{self.sock.local[0]}>;tag={secrets.token_hex(4)}\r\n"
                       f"To: <{target.options_uri}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n"
                       f"Content-Length: 0\r\n\r\n").encode()
            if any(r.status >= 200 for r in await self.exchange(request, target.addr, call_id, PROBE_WAIT)):
                return True
        return False

    async def clean_up(self, sent: bytes, responses: list[Answer], target: Target) -> None:
        """ACK an INVITE's final response; for a 2xx also BYE the call it set up."""
        raw = next((r.raw for r in responses if r.status >= 200), None)
        try:
            final = SipMessage.parse(raw) if raw is not None else None
            num, method = final.cseq if final is not None else (0, "")
        except SipError:  # e.g. a 400 echoing the CSeq it could not read: nothing to clean up
            return
        if final is None or method != "INVITE":
            return
        common = (f"Max-Forwards: 70\r\nFrom: {final.get('From')}\r\nTo: {final.get('To')}\r\n"
                  f"Call-ID: {final.call_id}\r\n")
        if (final.status or 0) >= 300:
            uri = sent.split(b" ", 2)[1].decode("latin-1")
            ack = f"ACK {uri} SIP/2.0\r\nVia: {final.get('Via')}\r\n{common}CSeq: {num} ACK\r\nContent-Length: 0\r\n\r\n"
            self.sock.sendto(ack.encode("latin-1"), target.addr)
            return
        contact = final.get("Contact") or f"<sip:{target.addr[0]}:{target.addr[1]}>"
        uri = contact.split("<", 1)[-1].split(">", 1)[0]
        for method, cseq in (("ACK", num), ("BYE", num + 1)):
            msg = (f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {self.hostport};branch=z9hG4bK{secrets.token_hex(8)}"
                   f"\r\n{common}CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n").encode("latin-1")
            if method == "ACK":
                self.sock.sendto(msg, target.addr)
            else:
                await self.exchange(msg, target.addr, str(final.call_id), WINDOW)


class Sink:
    """An address of the test network that only counts what reaches it (a proxy's forwards)."""

    def __init__(self, sock: UdpSocket) -> None:
        self.count = 0
        sock.set_receiver(self._got)

    def _got(self, data: bytes, addr: Addr) -> None:
        self.count += 1


def _values(target: Target, prober: Prober) -> dict[str, str]:
    return {"HOST": target.addr[0], "RURI": target.ruri_host, "PROBE": prober.hostport, "SINK": target.sink,
            "BRANCH": f"z9hG4bK{secrets.token_hex(8)}", "CALLID": secrets.token_hex(8), "TAG": secrets.token_hex(4)}


def _call_id(data: bytes) -> str:
    """The Call-ID as written in the case (answers carry it back), found without the codec."""
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"call-id", b"i"):
            return value.strip().decode("latin-1")
    return ""


async def run_cases(target: Target, prober: Prober, sink: Sink | None, cases: tuple[Case, ...] = CASES,
                    mutation_count: int = 0, seed: int = 0, window: float = WINDOW,
                    crashes: list[str] | None = None,
                    progress: Callable[[CaseResult], None] | None = None) -> list[CaseResult]:
    """Every case then every mutation against `target`; stops early if the target dies."""
    results: list[CaseResult] = []
    work: list[tuple[str, str, str, Callable[[dict[str, str]], bytes], str]] = [
        (c.name, "rfc4475", f"{c.section} {c.description}", (lambda v, c=c: render(c, v)), c.expected(target.proxy))
        for c in cases]
    muts: list[Mutation] = mutations(_values(target, prober), mutation_count, seed) if mutation_count else []
    work += [(m.name, "mutation", m.description, (lambda v, m=m: fill(m.data, v)), m.expect) for m in muts]
    for name, source, description, build, expect in work:
        values = _values(target, prober)
        data = build(values)
        result = CaseResult(name, source, description, expect)
        before_crashes = len(crashes) if crashes is not None else 0
        before_sink = sink.count if sink is not None else 0
        forwarded = (lambda b=before_sink: sink.count > b) if sink is not None and target.proxy else None
        responses = await prober.exchange(data, target.addr, _call_id(data), window, forwarded)
        result.statuses = [r.status for r in responses]
        await prober.clean_up(data, responses, target)
        result.forwarded = (sink.count - before_sink) if sink is not None else 0
        result.alive = await prober.options(target)
        if crashes is not None:
            result.crashes = crashes[before_crashes:]
        results.append(result)
        if progress is not None:
            progress(result)
        if not result.alive:
            break
    return results


def loopback_only(host: str) -> None:
    """Targets must be on loopback: the corpus is hostile by design."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"robustness targets must be loopback addresses, not {host}")
