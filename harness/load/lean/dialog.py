"""What the lean agents share: dialog state as bytes (RFC 3261 §12), request and response
building from the forms, identifiers, and Signals keyed by what the choreography waits for."""

from __future__ import annotations

import os
import random
import re
from collections.abc import Hashable
from typing import Any

from harness.load.lean import forms
from harness.load.lean.endpoint import LeanEndpoint, response_target
from harness.load.lean.head import Head, HeadError, uri_of
from harness.load.lean.signal import Signal
from harness.net.udp import Addr

COOKIE = b"z9hG4bK"
_HOSTPORT = re.compile(rb"^(?:sips?):(?:[^@;>?]*@)?(\[[^\]]+\]|[^:;>?]+)(?::([0-9]+))?", re.I)


_RNG = random.Random(os.urandom(32))  # seeded from the kernel; a draw is ~20x cheaper than os.urandom
os.register_at_fork(after_in_child=lambda: _RNG.seed(os.urandom(32)))  # a forked child draws its own


def session_id() -> int:
    """An SDP o= session id (RFC 4566 §5.2: a numeric string; here 1 .. 2**31 - 1)."""
    return _RNG.randrange(1, 2**31)


def token(n: int) -> bytes:
    """n random bytes as hex (tags: 6, branches: 8, Call-ID: 12; RFC 3261 §19.3, §8.1.1.4)."""
    return b"%0*x" % (2 * n, _RNG.getrandbits(8 * n))


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

    def send(self, data: bytes, branch: bytes, hop: Addr, invite: bool = False) -> Signal[Head]:
        return self.endpoint.request(data, hop, branch, invite)

    def respond(self, request: Head, status: int, reason: bytes, extra: forms.Fields = (), body: bytes = b"",
                to_tag: bytes | None = None, record_route: bool = False) -> None:
        """A response (§8.2.6): Vias, From, To (+ our tag), Call-ID, CSeq copied; Record-Route copied
        for a dialog-creating 2xx (§12.1.1); to the top Via's received/rport (§18.2.2)."""
        to = request.to if to_tag is None or request.to_tag is not None else request.to + b";tag=" + to_tag
        vias = request.via
        routes = request.record_route if record_route else ()
        extra_names, extra_values = zip(*extra, strict=True) if extra else ((), ())
        values = (*vias, request.from_, to, request.call_id, request.cseq + b" " + request.cseq_method, *routes,
                  *extra_values)
        data = forms.response_keyed((status, len(vias), len(routes), extra_names), status, reason, values,
                                    _response_names, body)
        self.endpoint.respond(request, data, response_target(vias[0]))


def _response_names(key: Hashable) -> tuple[str, ...]:
    """The header names of Sender.respond's shape key (status, Vias, Record-Routes, extra names)."""
    _, vias, routes, extra = key  # type: ignore[misc]
    return ("Via",) * vias + ("From", "To", "Call-ID", "CSeq") + ("Record-Route",) * routes + extra


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


class Board:
    """Signals by key, made by whichever comes first: the waiter or the event."""

    __slots__ = ("_signals",)

    def __init__(self) -> None:
        self._signals: dict[Hashable, Signal[Any]] = {}

    def signal(self, key: Hashable) -> Signal[Any]:
        signal = self._signals.get(key)
        if signal is None:
            signal = self._signals[key] = Signal()
        return signal

    def set(self, key: Hashable, value: object) -> None:
        self.signal(key).set(value)

    def fail(self, key: Hashable, error: BaseException) -> None:
        self.signal(key).fail(error)

    def forget(self, key: Hashable) -> None:
        self._signals.pop(key, None)
