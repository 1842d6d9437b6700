"""RFC 3261 §17 transactions on a simulated clock: two layers, an in-memory wire, no sockets, no sleeping.

`Wire` delivers datagrams instantly between layers and fires timers in deadline order, so every
assertion about when something was sent is exact. Loss is simulated by a drop predicate.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.sip.build import add_standard, add_via, make_cancel, make_response
from harness.sip.fsm import ProtocolError
from harness.sip.message import SipMessage
from harness.sip.transaction import (
    ACCEPTED,
    CALLING,
    COMPLETED,
    CONFIRMED,
    PROCEEDING,
    TABLES,
    TERMINATED,
    TRYING,
    AckTimeout,
    MessageDropped,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
)

Addr = tuple[str, int]
A: Addr = ("127.9.0.1", 5060)
B: Addr = ("127.9.0.2", 5060)
NOWHERE: Addr = ("127.9.0.99", 5060)


class Wire:
    """Zero-latency network between layers, driven by a fake clock."""

    def __init__(self, *layers: TransactionLayer) -> None:
        self.layers = {layer.local: layer for layer in layers}
        self.now = 0.0
        self.sent: list[tuple[float, Addr, Addr, SipMessage]] = []  # (time, src, dst, message)
        self.drop: Callable[[Addr, Addr, SipMessage], bool] = lambda src, dst, msg: False
        self.events: dict[Addr, list[object]] = {addr: [] for addr in self.layers}

    def flush(self) -> None:
        moved = True
        while moved:
            moved = False
            for src, layer in self.layers.items():
                for data, dst in layer.datagrams_to_send(self.now):
                    moved = True
                    msg = SipMessage.parse(data)
                    self.sent.append((self.now, src, dst, msg))
                    if dst in self.layers and not self.drop(src, dst, msg):
                        self.layers[dst].receive(data, src, self.now)
            for addr, layer in self.layers.items():
                while (event := layer.next_event()) is not None:
                    self.events[addr].append(event)

    def run_until(self, t: float) -> None:
        """Fire every timer due up to and including t, in order, then set the clock to t."""
        self.flush()
        while True:
            timers = [(at, layer) for layer in self.layers.values() if (at := layer.get_timer()) is not None]
            if not timers:
                break
            at, layer = min(timers, key=lambda pair: pair[0])
            if at > t:
                break
            self.now = max(self.now, at)
            layer.handle_timer(self.now)
            self.flush()
        self.now = t

    def times(self, src: Addr, what: Callable[[SipMessage], bool]) -> list[float]:
        return [t for t, s, _, msg in self.sent if s == src and what(msg)]

    def of(self, addr: Addr, kind: type) -> list:
        return [e for e in self.events[addr] if isinstance(e, kind)]


def is_request(method: str) -> Callable[[SipMessage], bool]:
    return lambda msg: msg.method == method


def is_status(status: int) -> Callable[[SipMessage], bool]:
    return lambda msg: msg.status == status


def request(method: str = "INVITE", branch: str | None = None, cseq: int = 1, src: Addr = A,
            dst: Addr = B) -> SipMessage:
    msg = SipMessage.request(method, f"sip:ue2@{dst[0]}", [
        ("From", f"<sip:ue1@{src[0]}>;tag=ft1"),
        ("To", f"<sip:ue2@{dst[0]}>"),
        ("Call-ID", "call-1@test"),
        ("CSeq", f"{cseq} {method}"),
        ("Contact", f"<sip:ue1@{src[0]}:{src[1]}>"),
    ])
    add_via(msg, src[0], src[1], branch=branch)
    return add_standard(msg)


def pair(**kwargs: object) -> tuple[Wire, TransactionLayer, TransactionLayer]:
    a = TransactionLayer(A, **kwargs)  # type: ignore[arg-type]
    b = TransactionLayer(B, **kwargs)  # type: ignore[arg-type]
    return Wire(a, b), a, b


def diffs(times: list[float]) -> list[float]:
    return [round(y - x, 9) for x, y in zip(times, times[1:], strict=False)]


# --------------------------------------------------------------------------- tables


@pytest.mark.parametrize("role", sorted(TABLES))
def test_every_state_is_reachable_and_terminated_is_final(role: str) -> None:
    table = TABLES[role]
    start = CALLING if role == "INVITE client" else PROCEEDING if role == "INVITE server" else TRYING
    seen, todo = {start}, [start]
    while todo:
        for target in table[todo.pop()].values():
            if target not in seen:
                seen.add(target)
                todo.append(target)
    assert seen == set(table)
    assert table[TERMINATED] == {}


# --------------------------------------------------------------------------- client INVITE


def test_timer_a_doubles_uncapped_and_timer_b_times_out_at_64_t1() -> None:
    a = TransactionLayer(A)
    wire = Wire(a)
    key = a.send_request(request(), NOWHERE, 0.0)
    assert a.get_timer() == 0.5
    wire.run_until(40.0)
    sends = wire.times(A, is_request("INVITE"))
    assert sends == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert diffs(sends) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]  # not capped at T2 (§17.1.1.2)
    timeouts = wire.of(A, TransactionTimeout)
    assert timeouts == [TransactionTimeout(key, "INVITE")]
    assert wire.of(A, TransactionTerminated) == [TransactionTerminated(key)]
    assert a.state(key) is None and a.get_timer() is None


def test_timer_b_fires_exactly_at_32_seconds() -> None:
    a = TransactionLayer(A)
    wire = Wire(a)
    a.send_request(request(), NOWHERE, 0.0)
    wire.run_until(31.999)
    assert not wire.of(A, TransactionTimeout)
    assert a.get_timer() == 32.0
    wire.run_until(32.0)
    assert len(wire.of(A, TransactionTimeout)) == 1


def test_custom_t1_scales_the_schedule() -> None:
    a = TransactionLayer(A, t1=0.1)
    wire = Wire(a)
    wire.now = 10.0
    a.send_request(request(), NOWHERE, 10.0)
    wire.run_until(30.0)
    assert diffs(wire.times(A, is_request("INVITE")))[:4] == [0.1, 0.2, 0.4, 0.8]
    assert wire.of(A, TransactionTimeout) and wire.events[A][-1] == TransactionTerminated(wire.of(
        A, TransactionTerminated)[0].key)


def test_provisional_stops_retransmission_and_timer_b() -> None:
    wire, a, b = pair(auto_100=False)
    inv = request()
    key = a.send_request(inv, B, 0.0)
    wire.flush()
    [req] = wire.of(B, RequestReceived)
    wire.run_until(0.3)
    b.send_response(req.message, make_response(req.message, 180, "Ringing", to_tag="tt"), 0.3)
    wire.run_until(100.0)
    assert wire.times(A, is_request("INVITE")) == [0.0]  # only the original: 0.5 came after the 180
    assert a.state(key) == PROCEEDING  # no Timer B in Proceeding (§17.1.1.2): the TU decides
    assert not wire.of(A, TransactionTimeout)


def test_lost_invite_is_delivered_by_the_retransmission() -> None:
    wire, a, b = pair()
    first = [True]

    def drop_first_invite(src: Addr, dst: Addr, msg: SipMessage) -> bool:
        if msg.method == "INVITE" and first[0]:
            first[0] = False
            return True
        return False

    wire.drop = drop_first_invite
    a.send_request(request(), B, 0.0)
    wire.run_until(0.49)
    assert not wire.of(B, RequestReceived)
    wire.run_until(0.5)
    [req] = wire.of(B, RequestReceived)
    assert req.addr == A
    wire.run_until(0.7)
    assert wire.times(B, is_status(100)) == [0.7]  # auto 100 Trying 200 ms after it arrived


def test_non_2xx_is_acked_by_the_transaction_with_the_invite_branch() -> None:
    wire, a, b = pair(auto_100=False)
    inv = request(branch="z9hG4bK-inv-1")
    key = a.send_request(inv, B, 0.0)
    wire.flush()
    [req] = wire.of(B, RequestReceived)
    b.send_response(req.message, make_response(req.message, 486, "Busy Here", to_tag="tt"), 0.1)
    wire.now = 0.1
    wire.flush()
    acks = [msg for _, src, _, msg in wire.sent if src == A and msg.method == "ACK"]
    assert len(acks) == 1
    ack = acks[0]
    # §17.1.1.3: same branch and Request-URI, CSeq number of the INVITE, To of the response.
    assert ack.branch == "z9hG4bK-inv-1"
    assert ack.uri == inv.uri
    assert ack.cseq == (1, "ACK")
    assert ack.to_tag == "tt"
    assert ack.get_all("Via") == [inv.get_all("Via")[0]]
    assert [type(e) for e in wire.events[A]] == [ResponseReceived]
    # The ACK stays inside the server transaction: the TU never sees it.
    assert not [e for e in wire.of(B, RequestReceived) if e.message.method == "ACK"]
    server_key = req.key
    assert b.state(server_key) == CONFIRMED
    assert a.state(key) == COMPLETED
    wire.run_until(0.1 + 5.0)  # Timer I = T4
    assert b.state(server_key) is None
    wire.run_until(0.1 + 32.0)  # Timer D = 32 s on UDP
    assert a.state(key) is None
    assert wire.of(A, TransactionTerminated) == [TransactionTerminated(key)]


def test_lost_non_2xx_is_retransmitted_with_timer_g_and_reacked() -> None:
    wire, a, b = pair(auto_100=False)
    wire.drop = lambda src, dst, msg: msg.method == "ACK"  # every ACK lost: server keeps resending
    a.send_request(request(), B, 0.0)
    wire.flush()
    [req] = wire.of(B, RequestReceived)
    b.send_response(req.message, make_response(req.message, 603, "Decline", to_tag="tt"), 0.0)
    wire.run_until(40.0)
    sends = wire.times(B, is_status(603))
    # Timer G: T1, 2T1, 4T1, then capped at T2 = 4 s; Timer H ends it at 64*T1.
    assert diffs(sends)[:6] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert sends[-1] < 32.0
    assert wire.of(B, TransactionTimeout) == [TransactionTimeout(req.key, "INVITE")]
    # One ACK per 603 received; the client TU saw the 603 once.
    assert len(wire.times(A, is_request("ACK"))) == len(sends)
    assert len(wire.of(A, ResponseReceived)) == 1


def test_2xx_passes_to_tu_and_retransmissions_reach_it_in_accepted() -> None:
    wire, a, b = pair(auto_100=False)
    wire.drop = lambda src, dst, msg: msg.method == "ACK"
    key = a.send_request(request(), B, 0.0)
    wire.flush()
    [req] = wire.of(B, RequestReceived)
    b.send_response(req.message, make_response(req.message, 200, "OK", to_tag="tt"), 0.0)
    wire.flush()
    assert a.state(key) == ACCEPTED  # RFC 6026
    assert b.state(req.key) == ACCEPTED
    wire.run_until(40.0)
    server_sends = wire.times(B, is_status(200))
    assert diffs(server_sends)[:6] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]  # §13.3.1.4
    # Every 2xx reaches the client TU, also after Timer M ended the client transaction.
    assert len(wire.of(A, ResponseReceived)) == len(server_sends)
    assert wire.of(B, AckTimeout) == [AckTimeout(req.key, "call-1@test", 1)]
    assert b.state(req.key) is None and a.state(key) is None


def test_lost_2xx_is_retransmitted_until_the_ack_arrives() -> None:
    wire, a, b = pair(auto_100=False)
    first = [True]

    def drop_first_200(src: Addr, dst: Addr, msg: SipMessage) -> bool:
        if msg.status == 200 and first[0]:
            first[0] = False
            return True
        return False

    wire.drop = drop_first_200
    inv = request()
    a.send_request(inv, B, 0.0)
    wire.flush()
    [req] = wire.of(B, RequestReceived)
    b.send_response(req.message, make_response(req.message, 200, "OK", to_tag="tt"), 0.0)
    wire.flush()
    assert not wire.of(A, ResponseReceived)
    wire.run_until(0.5)
    [resp] = wire.of(A, ResponseReceived)
    # The TU's ACK for the 2xx: a new branch, sent once, no transaction (§13.2.2.4, §17.1.1.3).
    ack = SipMessage.request("ACK", str(inv.uri), [
        ("From", str(inv.get("From"))), ("To", str(resp.message.get("To"))),
        ("Call-ID", "call-1@test"), ("CSeq", "1 ACK")], content_length=True)
    add_via(ack, *A, branch="z9hG4bK-ack-1")
    a.send_request(ack, B, 0.5)
    wire.flush()
    acks = [e for e in wire.of(B, RequestReceived) if e.message.method == "ACK"]
    assert len(acks) == 1 and acks[0].key == req.key  # tied to the INVITE it acknowledges
    wire.run_until(40.0)
    assert wire.times(B, is_status(200)) == [0.0, 0.5]  # no retransmission after the ACK
    assert not wire.of(B, AckTimeout)
    assert wire.times(A, is_request("ACK")) == [0.5]


def test_stray_2xx_to_invite_reaches_tu_other_stray_responses_are_dropped() -> None:
    a = TransactionLayer(A)
    inv = request(branch="z9hG4bK-gone")
    ok = make_response(inv, 200, "OK", to_tag="tt")
    a.receive(bytes(ok), B, 1.0)
    event = a.next_event()
    assert isinstance(event, ResponseReceived) and event.key == "z9hG4bK-gone;INVITE"
    busy = make_response(inv, 486, "Busy Here", to_tag="tt")
    a.receive(bytes(busy), B, 1.0)
    dropped = a.next_event()
    assert isinstance(dropped, MessageDropped)
    assert "no transaction" in dropped.reason and dropped.data == bytes(busy) and dropped.addr == B
    opt_ok = make_response(request("OPTIONS"), 200, "OK")
    a.receive(bytes(opt_ok), B, 1.0)
    assert isinstance(a.next_event(), MessageDropped)


def test_late_1xx_after_final_is_dropped_naming_the_rule() -> None:
    wire, a, b = pair(auto_100=False)
    key = a.send_request(request(), B, 0.0)
    wire.flush()
    [req] = wire.of(B, RequestReceived)
    b.send_response(req.message, make_response(req.message, 486, "Busy Here", to_tag="tt"), 0.0)
    wire.flush()
    a.receive(bytes(make_response(req.message, 180, "Ringing", to_tag="tt")), B, 0.1)
    dropped = a.next_event()
    assert isinstance(dropped, MessageDropped)
    assert "INVITE client" in dropped.reason and "'recv 1xx'" in dropped.reason and "'Completed'" in dropped.reason
    assert a.state(key) == COMPLETED


# --------------------------------------------------------------------------- client non-INVITE


def test_timer_e_doubles_capped_at_t2_and_timer_f_times_out() -> None:
    a = TransactionLayer(A)
    wire = Wire(a)
    key = a.send_request(request("OPTIONS"), NOWHERE, 0.0)
    wire.run_until(40.0)
    sends = wire.times(A, is_request("OPTIONS"))
    assert diffs(sends) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert sends[-1] == 31.5
    assert wire.of(A, TransactionTimeout) == [TransactionTimeout(key, "OPTIONS")]


def test_timer_e_is_t2_in_proceeding_and_timer_k_absorbs_retransmitted_finals() -> None:
    wire, a, b = pair()
    key = a.send_request(request("BYE"), B, 0.0)
    wire.flush()
    [req] = wire.of(B, RequestReceived)
    wire.drop = lambda src, dst, msg: src == A  # the client's retransmissions are lost
    b.send_response(req.message, make_response(req.message, 100, "Trying"), 0.1)
    wire.run_until(9.0)
    sends = wire.times(A, is_request("BYE"))
    assert sends == [0.0, 0.5, 4.5, 8.5]  # E already armed for 0.5, then T2 in Proceeding
    wire.drop = lambda src, dst, msg: False
    final = make_response(req.message, 200, "OK", to_tag="tt")
    b.send_response(req.message, final, 9.0)
    wire.now = 9.0
    wire.flush()
    assert a.state(key) == COMPLETED
    a.receive(bytes(final), B, 9.1)  # a retransmitted final is absorbed
    assert [e.message.status for e in wire.of(A, ResponseReceived)] == [100, 200]
    assert a.next_event() is None
    wire.run_until(9.0 + 5.0)  # Timer K = T4
    assert a.state(key) is None


# --------------------------------------------------------------------------- server side


def test_100_trying_goes_out_200_ms_after_the_invite_unless_the_tu_answered() -> None:
    b = TransactionLayer(B)
    inv = request()
    b.receive(bytes(inv), A, 5.0)
    event = b.next_event()
    assert isinstance(event, RequestReceived)
    assert b.get_timer() == pytest.approx(5.2)
    b.handle_timer(5.19)
    assert b.datagrams_to_send(5.19) == []
    b.handle_timer(5.2)
    [(data, addr)] = b.datagrams_to_send(5.2)
    trying = SipMessage.parse(data)
    assert (trying.status, trying.reason) == (100, "Trying")
    assert addr == A
    assert trying.get_all("Via") == inv.get_all("Via") and trying.cseq == (1, "INVITE")
    assert trying.to_tag is None

    quick = TransactionLayer(B)
    quick.receive(bytes(request(branch="z9hG4bK-2")), A, 0.0)
    req = quick.next_event()
    assert isinstance(req, RequestReceived)
    quick.send_response(req.message, make_response(req.message, 180, "Ringing", to_tag="t"), 0.1)
    quick.handle_timer(1.0)
    assert [SipMessage.parse(d).status for d, _ in quick.datagrams_to_send(1.0)] == [180]


def test_auto_100_can_be_turned_off() -> None:
    b = TransactionLayer(B, auto_100=False)
    b.receive(bytes(request()), A, 0.0)
    assert b.get_timer() is None


def test_server_absorbs_request_retransmissions_and_resends_last_response() -> None:
    wire, a, b = pair()
    wire.drop = lambda src, dst, msg: msg.status == 100 and len(wire.times(B, is_status(100))) == 1
    a.send_request(request(), B, 0.0)
    wire.run_until(1.0)
    assert len(wire.of(B, RequestReceived)) == 1  # the retransmission at 0.5 never surfaced
    assert wire.times(A, is_request("INVITE")) == [0.0, 0.5]
    assert wire.times(B, is_status(100)) == [0.2, 0.5]  # the first 100 was lost; resent on the retransmission


def test_non_invite_server_resends_final_and_timer_j_ends_it() -> None:
    b = TransactionLayer(B)
    opt = request("OPTIONS")
    b.receive(bytes(opt), A, 0.0)
    req = b.next_event()
    assert isinstance(req, RequestReceived)
    assert b.get_timer() is None  # no 100 Trying for non-INVITE
    b.receive(bytes(opt), A, 0.1)  # before any response: absorbed silently
    assert b.next_event() is None and b.datagrams_to_send(0.1) == []
    b.send_response(opt, make_response(opt, 200, "OK", to_tag="x"), 0.2)
    b.receive(bytes(opt), A, 0.3)
    assert [SipMessage.parse(d).status for d, _ in b.datagrams_to_send(0.3)] == [200, 200]
    assert b.next_event() is None
    assert b.get_timer() == pytest.approx(0.2 + 32.0)  # Timer J = 64*T1 on UDP
    b.handle_timer(32.2)
    assert b.next_event() == TransactionTerminated(req.key)


def test_a_second_final_response_is_a_protocol_error_naming_role_state_event() -> None:
    b = TransactionLayer(B)
    inv = request()
    b.receive(bytes(inv), A, 0.0)
    b.send_response(inv, make_response(inv, 486, "Busy Here", to_tag="t"), 0.0)
    with pytest.raises(ProtocolError) as err:
        b.send_response(inv, make_response(inv, 200, "OK", to_tag="t"), 0.1)
    assert err.value.role.startswith("INVITE server")
    assert (err.value.state, err.value.event) == (COMPLETED, "send 2xx")
    with pytest.raises(KeyError):
        b.send_response(request(branch="z9hG4bK-unknown"), make_response(inv, 200, "OK"), 0.1)


def test_cancel_has_its_own_transaction_and_finds_the_invite() -> None:
    b = TransactionLayer(B)
    inv = request()
    b.receive(bytes(inv), A, 0.0)
    invite_event = b.next_event()
    cancel = make_cancel(inv)
    b.receive(bytes(cancel), A, 0.1)
    cancel_event = b.next_event()
    assert isinstance(invite_event, RequestReceived) and isinstance(cancel_event, RequestReceived)
    assert cancel_event.key != invite_event.key
    assert cancel.branch == inv.branch and cancel.cseq == (1, "CANCEL")
    assert b.find_invite_server(cancel) == invite_event.key
    b.send_response(cancel, make_response(cancel, 200, "OK", to_tag="t"), 0.1)
    b.send_response(inv, make_response(inv, 487, "Request Terminated", to_tag="t"), 0.1)
    statuses = [SipMessage.parse(d).status for d, _ in b.datagrams_to_send(0.1)]
    assert statuses == [200, 487]


def test_ack_for_unknown_2xx_still_reaches_the_tu() -> None:
    b = TransactionLayer(B)
    ack = request("ACK", branch="z9hG4bK-late-ack")
    b.receive(bytes(ack), A, 0.0)
    event = b.next_event()
    assert isinstance(event, RequestReceived) and event.key.endswith(";ACK")


def test_responses_go_to_source_ip_and_sent_by_port_unless_rport() -> None:
    b = TransactionLayer(B, auto_100=False)
    inv = request(src=("127.9.0.1", 5070))
    b.receive(bytes(inv), ("127.9.0.1", 40000), 0.0)
    b.send_response(inv, make_response(inv, 180, "Ringing", to_tag="t"), 0.0)
    assert [addr for _, addr in b.datagrams_to_send(0.0)] == [("127.9.0.1", 5070)]
    opt = SipMessage.parse(bytes(request("OPTIONS")))
    add_via(opt, "127.9.0.1", 5070, rport=True)
    b.receive(bytes(opt), ("127.9.0.1", 40000), 0.0)
    b.send_response(opt, make_response(opt, 200, "OK", to_tag="t"), 0.0)
    assert [addr for _, addr in b.datagrams_to_send(0.0)] == [("127.9.0.1", 40000)]


# --------------------------------------------------------------------------- reliable transport


def test_reliable_transport_never_retransmits_and_zeroes_d_i_j_k() -> None:
    wire, a, b = pair(transport="TCP")
    wire.drop = lambda src, dst, msg: True  # nothing arrives: still no retransmission
    key = a.send_request(request(), B, 0.0)
    wire.run_until(40.0)
    assert wire.times(A, is_request("INVITE")) == [0.0]
    assert wire.of(A, TransactionTimeout) == [TransactionTimeout(key, "INVITE")]

    wire.drop = lambda src, dst, msg: False
    key = a.send_request(request("OPTIONS", branch="z9hG4bK-tcp"), B, 40.0)
    wire.flush()
    [req] = wire.of(B, RequestReceived)
    b.send_response(req.message, make_response(req.message, 200, "OK", to_tag="t"), 40.0)
    wire.flush()
    assert a.get_timer() == 40.0 and b.get_timer() == 40.0  # K and J are zero: due at once
    wire.run_until(40.0)
    assert a.state(key) is None and b.state(req.key) is None


# --------------------------------------------------------------------------- hostile input


_HEAD = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\n"


@pytest.mark.parametrize("data, reason", [
    (b"", "unparseable"),
    (b"garbage\r\n\r\n", "unparseable"),
    (b"INVITE sip:a@b SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n", "no Via"),
    (_HEAD + b"CSeq: 1 BYE\r\nCall-ID: c\r\n\r\n", "differs"),
    (_HEAD + b"CSeq: 1 INVITE\r\n\r\n", "no Call-ID"),
    (_HEAD + b"CSeq: one INVITE\r\nCall-ID: c\r\n\r\n", "CSeq"),
    (_HEAD.replace(b"h;", b"h:99999;") + b"CSeq: 1 INVITE\r\nCall-ID: c\r\n\r\n", "port"),
    (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nCSeq: 1 INVITE\r\n\r\n", "branch"),
])
def test_malformed_input_is_dropped_with_a_reason(data: bytes, reason: str) -> None:
    layer = TransactionLayer(A)
    layer.receive(data, B, 0.0)
    event = layer.next_event()
    assert isinstance(event, MessageDropped) and reason in event.reason
    assert event.data == data and event.addr == B


_VALID = bytes(request())


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=300),
    st.tuples(st.integers(0, len(_VALID)), st.binary(max_size=8)).map(
        lambda cut: _VALID[: cut[0]] + cut[1] + _VALID[cut[0] + len(cut[1]):]),
))
def test_receive_never_raises(data: bytes) -> None:
    layer = TransactionLayer(A)
    layer.receive(_VALID, B, 0.0)  # a live server transaction for mutated retransmissions/ACKs to hit
    layer.send_request(request("OPTIONS", src=A, dst=B), B, 0.0)  # and a client one for responses
    layer.receive(data, B, 0.1)
    layer.receive(data.replace(b"INVITE sip", b"SIP/2.0 200 OK\r\nX: sip"), B, 0.1)
    layer.handle_timer(100.0)
    while layer.next_event() is not None:
        pass
