"""What the lean agents share: dialog state as bytes (RFC 3261 §12), request and response
building from the forms, identifiers, and futures keyed by what the choreography waits for."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import random
import re
import weakref
from collections.abc import Hashable
from typing import Any, TypeVar

from harness.agents.errors import FlowTimeout
from harness.load.lean import forms
from harness.load.lean.endpoint import LeanEndpoint, response_target
from harness.load.lean.head import Head, HeadError, uri_of
from harness.net.udp import Addr

COOKIE = b"z9hG4bK"
T = TypeVar("T")
_HOSTPORT = re.compile(rb"^(?:sips?):(?:[^@;>?]*@)?(\[[^\]]+\]|[^:;>?]+)(?::([0-9]+))?", re.I)


_RNG = random.Random(os.urandom(32))  # seeded from the kernel; a draw is ~20x cheaper than os.urandom
os.register_at_fork(after_in_child=lambda: _RNG.seed(os.urandom(32)))  # a forked child draws its own


def session_id() -> int:
    """An SDP o= session id (RFC 4566 §5.2: a numeric string; here 1 .. 2**31 - 1)."""
    return _RNG.randrange(1, 2**31)


def token(n: int) -> bytes:
    """n random bytes as hex (tags: 6, branches: 8, Call-ID: 12; RFC 3261 §19.3, §8.1.1.4)."""
    return b"%0*x" % (2 * n, _RNG.getrandbits(8 * n))


class _Deadlines:
    """The bounds of every pending `within()` on one loop: a heap of (deadline, sequence, future,
    what) and one loop timer at the earliest. A future that finished in time is left in the heap
    and skipped when its deadline comes (waits end far more often than they time out)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.heap: list[tuple[float, int, asyncio.Future[Any], str]] = []
        self.sequence = itertools.count()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = float("inf")

    def add(self, fut: asyncio.Future[Any], timeout: float, what: str) -> None:
        at = self.loop.time() + timeout
        heapq.heappush(self.heap, (at, next(self.sequence), fut, what))
        if at < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer, self.timer_at = self.loop.call_at(at, self._fire), at

    def _fire(self) -> None:
        heap, now = self.heap, self.loop.time()
        while heap and heap[0][0] <= now:
            _, _, fut, what = heapq.heappop(heap)
            if not fut.done():
                fut.set_exception(FlowTimeout(what))
        while heap and heap[0][2].done():
            heapq.heappop(heap)
        self.timer, self.timer_at = (self.loop.call_at(heap[0][0], self._fire), heap[0][0]) if heap else \
            (None, float("inf"))


_DEADLINES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = weakref.WeakKeyDictionary()


async def within(fut: asyncio.Future[T], timeout: float, what: str) -> T:
    """`fut`'s result, or FlowTimeout("<what> within <timeout> s"): `bounded()` for a plain future,
    without a task, a second future or a timer of its own. The timeout ends `fut` itself."""
    loop = fut.get_loop()
    deadlines = _DEADLINES.get(loop)
    if deadlines is None:
        deadlines = _DEADLINES[loop] = _Deadlines(loop)
    deadlines.add(fut, timeout, f"{what} within {timeout:g} s")
    return await fut


def hop_of(uri: bytes) -> Addr:
    """(host, port) a SIP URI reaches over UDP (no DNS: the load mode runs on literal addresses)."""
    found = _HOSTPORT.match(uri)
    if found is None:
        raise HeadError(f"not a SIP URI: {uri[:60]!r}")
    return found.group(1).strip(b"[]").decode(), int(found.group(2) or 5060)


class LeanDialog:
    """One dialog as the requests inside it need it: From/To values, route set, target, CSeqs."""

    __slots__ = ("call_id", "from_value", "to_value", "local_tag", "remote_tag", "route", "target", "hop",
                 "local_cseq", "remote_cseq")

    def __init__(self, call_id: bytes, from_value: bytes, to_value: bytes, local_tag: bytes,
                 remote_tag: bytes | None, route: list[bytes], target: bytes, local_cseq: int,
                 remote_cseq: int | None) -> None:
        self.call_id = call_id
        self.from_value, self.to_value = from_value, to_value
        self.local_tag, self.remote_tag = local_tag, remote_tag
        self.route = b", ".join(route)
        self.target = target
        # §12.2.1.1 with loose routing (§16.12): the first route element, else the remote target.
        self.hop = hop_of(uri_of(route[0])) if route else hop_of(target)
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq

    @classmethod
    def uac(cls, request_from: bytes, local_tag: bytes, response: Head) -> LeanDialog:
        """§12.1.2: route set = the 2xx's Record-Route reversed, target = its Contact."""
        if not response.contact or response.to_tag is None:
            raise HeadError("2xx without Contact or To tag")
        return cls(response.call_id, request_from, response.to, local_tag, response.to_tag,
                   response.record_route[::-1], uri_of(response.contact), int(response.cseq), None)

    @classmethod
    def uas(cls, request: Head, local_tag: bytes) -> LeanDialog:
        """§12.1.1: route set = the request's Record-Route in order, target = its Contact."""
        if not request.contact or request.from_tag is None:
            raise HeadError("dialog-creating request without Contact or From tag")
        return cls(request.call_id, request.to + b";tag=" + local_tag, request.from_, local_tag,
                   request.from_tag, list(request.record_route), uri_of(request.contact), 0, int(request.cseq))

    def accepts(self, request: Head) -> int | None:
        """§12.2.2: None when the in-dialog request's CSeq is acceptable (and remember it), else the
        status to refuse it with (500 for a lower CSeq)."""
        cseq = int(request.cseq)
        if self.remote_cseq is not None and cseq < self.remote_cseq:
            return 500
        self.remote_cseq = cseq
        return None


class Sender:
    """Builds and sends requests and responses for one lean endpoint (Via, Max-Forwards 70, CSeq)."""

    def __init__(self, endpoint: LeanEndpoint, ip: str, port: int) -> None:
        self.endpoint = endpoint
        host = f"[{ip}]" if ":" in ip else ip
        self.via = f"SIP/2.0/UDP {host}:{port};branch=".encode()

    def new_request(self, method: bytes, uri: bytes, route: list[bytes], from_value: bytes, to_value: bytes,
                    call_id: bytes, cseq: int, extra: forms.Fields = (), body: bytes = b"",
                    branch: bytes | None = None) -> tuple[bytes, bytes]:
        """(datagram, branch) of a request; the branch is fresh unless given."""
        branch = branch or COOKIE + token(8)
        fields: list[tuple[str, bytes]] = [("Via", self.via + branch + b";rport"), ("Max-Forwards", b"70")]
        if route:
            fields.append(("Route", b", ".join(route)))
        fields += [("From", from_value), ("To", to_value), ("Call-ID", call_id),
                   ("CSeq", b"%d %s" % (cseq, method)), *extra]
        return forms.request(method.decode(), uri, fields, body), branch

    def in_dialog(self, dialog: LeanDialog, method: bytes, extra: forms.Fields = (), body: bytes = b"",
                  cseq: int | None = None) -> tuple[bytes, bytes]:
        """A request inside `dialog` (§12.2.1.1): the next local CSeq unless `cseq` is given (ACK)."""
        if cseq is None:
            dialog.local_cseq += 1
            cseq = dialog.local_cseq
        route = [dialog.route] if dialog.route else []
        return self.new_request(method, dialog.target, route, dialog.from_value, dialog.to_value,
                                dialog.call_id, cseq, extra, body)

    def send(self, data: bytes, branch: bytes, hop: Addr, invite: bool = False) -> asyncio.Future[Head]:
        return self.endpoint.request(data, hop, branch, invite)

    def respond(self, request: Head, status: int, reason: bytes, extra: forms.Fields = (), body: bytes = b"",
                to_tag: bytes | None = None, record_route: bool = False) -> None:
        """A response (§8.2.6): Vias, From, To (+ our tag), Call-ID, CSeq copied; Record-Route copied
        for a dialog-creating 2xx (§12.1.1); to the top Via's received/rport (§18.2.2)."""
        to = request.to if to_tag is None or request.to_tag is not None else request.to + b";tag=" + to_tag
        fields: list[tuple[str, bytes]] = [("Via", via) for via in request.via]
        fields += [("From", request.from_), ("To", to), ("Call-ID", request.call_id),
                   ("CSeq", request.cseq + b" " + request.cseq_method)]
        if record_route:
            fields += [("Record-Route", value) for value in request.record_route]
        fields += extra
        data = forms.response(status, reason, fields, body)
        self.endpoint.respond(request, data, response_target(request.via[0]))


def answer_other(out: Sender, request: Head, allow: bytes) -> None:
    """What a UA answers an in-dialog request it does not act on: 200 with Allow to OPTIONS (§11.2),
    405 with Allow to anything else (§8.2.1)."""
    if request.method == b"OPTIONS":
        out.respond(request, 200, b"OK", [("Allow", allow)])
    else:
        out.respond(request, 405, b"Method Not Allowed", [("Allow", allow)])


def refuse(out: Sender, request: Head, problem: Exception, errors: list[str]) -> None:
    """A request the agent could not act on (a value it cannot read): noted, and 400 unless an ACK."""
    errors.append(f"{request.method!r}: {problem}")
    if request.method != b"ACK":
        out.respond(request, 400, b"Bad Request")


class Waits:
    """Futures by key, made by whichever comes first: the waiter or the event."""

    def __init__(self) -> None:
        self._futures: dict[Hashable, asyncio.Future[object]] = {}

    def future(self, key: Hashable) -> asyncio.Future[object]:
        fut = self._futures.get(key)
        if fut is None:
            fut = self._futures[key] = asyncio.get_running_loop().create_future()
        return fut

    def set(self, key: Hashable, value: object) -> None:
        fut = self.future(key)
        if not fut.done():
            fut.set_result(value)

    def fail(self, key: Hashable, error: BaseException) -> None:
        fut = self.future(key)
        if not fut.done():
            fut.set_exception(error)

    def forget(self, key: Hashable) -> None:
        fut = self._futures.pop(key, None)
        if fut is not None and not fut.done():
            fut.cancel()

