"""The lean agents of the load mode (harness/load/lean): their head reader, their Scapy-built forms
and their UDP transactions (retransmissions, duplicates, 2xx until ACK) on real loopback sockets."""

from __future__ import annotations

import asyncio
import socket

import hypothesis
import hypothesis.strategies as st
import pytest

from harness.agents.wire import scapy_build
from harness.load.lean import forms
from harness.load.lean import head as head_module
from harness.load.lean.dialog import LeanDialog, hop_of, token
from harness.load.lean.endpoint import LeanEndpoint, TransactionTimeout, response_target
from harness.load.lean.head import HeadError, read, split_list, tag_of, uri_of
from harness.load.lean.signal import wait
from harness.sip.message import SipMessage
from harness.sip.sdp import offer_audio

INVITE = (b"INVITE sip:ue2@127.9.1.2 SIP/2.0\r\n"
          b"v: SIP/2.0/UDP 127.9.0.12:5060;branch=z9hG4bKs1, SIP/2.0/UDP 127.9.0.11:5060;branch=z9hG4bKp1\r\n"
          b"VIA: SIP/2.0/UDP 127.9.1.1:5060;branch=z9hG4bKu1;rport=5060;received=127.9.1.1\r\n"
          b"Max-Forwards: 68\r\n"
          b'f: "Alice, A" <sip:ue1@127.9.1.1>;tag=aa11\r\n'
          b"t:<sip:ue2@127.9.1.2>\r\n"
          b"i: abc@127.9.1.1\r\n"
          b"CSeq:  7   INVITE\r\n"
          b"Record-Route: <sip:127.9.0.12;lr>, <sip:127.9.0.11;lr>\r\n"
          b"m: <sip:ue1@127.9.1.1:5060>\r\n"
          b"X-Unknown: whatever, with, commas\r\n"
          b"l: 4\r\n\r\nbodyEXTRA")


def test_head_reads_compact_forms_case_and_comma_lists() -> None:
    head = read(INVITE)
    assert (head.method, head.uri, head.status) == (b"INVITE", b"sip:ue2@127.9.1.2", 0)
    assert len(head.via) == 3 and head.branch == b"z9hG4bKs1"
    assert head.record_route == [b"<sip:127.9.0.12;lr>", b"<sip:127.9.0.11;lr>"]
    assert head.from_tag == b"aa11" and head.to_tag is None
    assert (head.call_id, head.cseq, head.cseq_method) == (b"abc@127.9.1.1", b"7", b"INVITE")
    assert head.contact == b"<sip:ue1@127.9.1.1:5060>"
    assert head.body == b"body"  # RFC 3261 §18.3: octets beyond Content-Length are discarded


@pytest.mark.parametrize("data, why", [
    (INVITE.replace(b"i: abc@127.9.1.1\r\n", b""), "Call-ID"),
    (INVITE.replace(b"l: 4", b"l: 40"), "Content-Length"),
    (INVITE.replace(b"CSeq:  7", b"CSeq: x"), "CSeq"),
    (INVITE.replace(b"t:<sip:ue2@127.9.1.2>\r\n", b"t:<sip:ue2@127.9.1.2>\r\nTo: <sip:x@y>\r\n"), "twice"),
    (INVITE.replace(b"Max-Forwards: 68\r\n", b"Max-Forwards: 68\r\n folded\r\n"), "folded"),
    (INVITE.replace(b"\r\n\r\n", b"\r\n"), "end of header"),
    (b"HELLO\r\n\r\n", "start line"),
    (b"SIP/2.0 2000 OK\r\n\r\n", "status"),
])
def test_head_refuses_what_it_cannot_act_on(data: bytes, why: str) -> None:
    with pytest.raises(HeadError, match=why):
        read(data)


_LINES = [line + b"\r\n" for line in INVITE.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]] + [
    b"Route: <sip:127.9.0.11;lr>\r\n", b"Event: refer;id=7\r\n", b"o: refer\r\n", b"Subscription-State: active\r\n",
    b"r: <sip:conf@cs>\r\n", b"Referred-By: <sip:ue1@x>\r\n", b"CONTACT : <sip:x@y>\r\n", b" folded: x\r\n",
    b"\tfolded\r\n", b": empty name\r\n", b"no colon here\r\n", b"To: <sip:dup@x>\r\n", b"Allow: INVITE, ACK\r\n"]


def _fields(head: object) -> tuple[object, ...]:
    return tuple(getattr(head, name) for name in head_module.FIELDS)


@hypothesis.settings(max_examples=400, deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow])
@hypothesis.given(st.lists(st.sampled_from(range(len(_LINES))), max_size=18), st.booleans())
def test_shape_plans_read_what_the_line_reader_reads(picks: list[int], response: bool) -> None:
    """read() looks up a head's shape once and then reads only its fields; whatever the lines (compact
    forms, odd spacing, folding, duplicates, no colon), it must say exactly what the line-by-line
    reader says, or refuse it with the same error."""
    start = b"SIP/2.0 200 OK\r\n" if response else b"INVITE sip:ue2@127.9.1.2 SIP/2.0\r\n"
    data = start + b"".join(_LINES[i] for i in picks) + b"\r\n"
    end = data.find(b"\r\n\r\n")
    for attempt in range(2):  # the second read finds the shape remembered
        try:
            expected: object = _fields(head_module._read_lines(data, end, data[:end].split(b"\r\n")))
        except HeadError as exc:
            expected = str(exc)
        try:
            got: object = _fields(read(data))
        except HeadError as exc:
            got = str(exc)
        assert got == expected, (attempt, data)


def test_name_addr_helpers() -> None:
    assert tag_of(b'"a;tag=x" <sip:a@b;tag=no>;tag=yes') == b"yes"
    assert tag_of(b"sip:a@b;tag=t1") == b"t1"
    assert tag_of(b"<sip:a@b>") is None
    assert uri_of(b'"A" <sip:a@b;lr>;x=1') == b"sip:a@b;lr" and uri_of(b"sip:a@b;tag=1") == b"sip:a@b"
    assert split_list(b'<sip:a,b@c>, "x,y" <sip:d>') == [b"<sip:a,b@c>", b'"x,y" <sip:d>']
    assert hop_of(b"sip:127.0.0.1;lr") == ("127.0.0.1", 5060)
    assert hop_of(b"sip:conf-1@127.0.0.4:5070") == ("127.0.0.4", 5070)
    assert response_target(b"SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKx;received=127.0.0.2;rport=4000") == \
        ("127.0.0.2", 4000)
    assert response_target(b"SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx") == ("10.0.0.1", 5060)
    assert len({token(8) for _ in range(1000)}) == 1000 and len(token(6)) == 12


def test_forms_are_what_the_scapy_layer_builds() -> None:
    fields = [("Via", b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKa;rport"), ("Max-Forwards", b"70"),
              ("From", b"<sip:a@127.0.0.1>;tag=1"), ("To", b"<sip:b@127.0.0.2>"), ("Call-ID", b"c@127.0.0.1"),
              ("CSeq", b"1 INVITE"), ("Content-Type", b"application/sdp")]
    body = bytes(offer_audio("127.0.0.1", 20000, 5, 1))
    data = forms.request("INVITE", b"sip:b@127.0.0.2", fields, body)
    again = forms.request("INVITE", b"sip:b@127.0.0.2", fields, body)  # from the cached template
    expected = scapy_build(SipMessage.request("INVITE", "sip:b@127.0.0.2", [(n, v.decode()) for n, v in fields],
                                              body, content_length=True))
    assert data == again == expected
    response = forms.response(202, b"Accepted", fields[:1] + fields[2:6])
    assert response.startswith(b"SIP/2.0 202 Accepted\r\nVia: ") and response.endswith(b"Content-Length: 0\r\n\r\n")
    for pt in (0, 8):
        for direction in (b"sendrecv", b"sendonly", b"recvonly", b"inactive"):
            assert forms.SDP_FORMS[pt].render(b"127.3.4.5", 20002, 77, 3, direction) == \
                bytes(offer_audio("127.3.4.5", 20002, 77, 3, direction.decode(), pt=pt))


def test_dialog_route_set_and_cseq_rules() -> None:
    invite = read(INVITE)
    uas = LeanDialog.uas(invite, b"bb22")
    assert uas.route == b"<sip:127.9.0.12;lr>, <sip:127.9.0.11;lr>" and uas.hop == ("127.9.0.12", 5060)
    assert uas.from_value == b"<sip:ue2@127.9.1.2>;tag=bb22" and uas.to_value.endswith(b";tag=aa11")
    assert uas.accepts(read(INVITE.replace(b"CSeq:  7", b"CSeq: 9"))) is None
    assert uas.accepts(read(INVITE.replace(b"CSeq:  7", b"CSeq: 8"))) == 500  # §12.2.2: lower than the last
    ok = read(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.9.1.1:5060;branch=z9hG4bKu1\r\n"
              b"From: <sip:ue1@127.9.1.1>;tag=aa11\r\nTo: <sip:ue2@127.9.1.2>;tag=bb22\r\nCall-ID: abc@127.9.1.1\r\n"
              b"CSeq: 7 INVITE\r\nRecord-Route: <sip:127.9.0.12;lr>\r\nRecord-Route: <sip:127.9.0.11;lr>\r\n"
              b"Contact: <sip:ue2@127.9.1.2:5060>\r\nContent-Length: 0\r\n\r\n")
    uac = LeanDialog.uac(b"<sip:ue1@127.9.1.1>;tag=aa11", b"aa11", ok)
    assert uac.route == b"<sip:127.9.0.11;lr>, <sip:127.9.0.12;lr>" and uac.hop == ("127.9.0.11", 5060)
    assert uac.target == b"sip:ue2@127.9.1.2:5060" and uac.local_cseq == 7


# --- transactions on real sockets -----------------------------------------------------------------

def _peer() -> tuple[socket.socket, tuple[str, int]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock, sock.getsockname()


async def _drain(sock: socket.socket, seconds: float) -> list[tuple[float, bytes]]:
    loop = asyncio.get_running_loop()
    got: list[tuple[float, bytes]] = []
    end = loop.time() + seconds
    while loop.time() < end:
        try:
            got.append((loop.time(), sock.recv(65535)))
        except BlockingIOError:
            await asyncio.sleep(0.002)
    return got


def test_client_transaction_retransmits_and_times_out() -> None:
    """Exact schedules are the sans-IO core's tests (below, on a clock of our own); on real sockets
    under a busy machine timers only fire late, so this checks lower bounds and counts."""
    async def main() -> None:
        peer, addr = _peer()
        endpoint = await LeanEndpoint("127.0.0.1", 0, lambda h, a: None, lambda h: None, t1=0.05, t2=0.1).open()
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            invite = endpoint.request(INVITE, addr, b"z9hG4bKs1", invite=True)
            times = [t - started for t, _ in await _drain(peer, 0.6)]
            # Timer A: 0, T1, 3*T1, 7*T1 (doubling; the next, 15*T1 = 0.75 s, is beyond the window)
            assert len(times) == 4, times
            assert all(t >= want - 0.005 for t, want in zip(times, (0, 0.05, 0.15, 0.35), strict=True)), times
            with pytest.raises(TransactionTimeout):  # Timer B: 64*T1 = 3.2 s
                await asyncio.wait_for(wait(invite), 10.0)
            endpoint.request(INVITE.replace(b"INVITE", b"BYE"), addr, b"z9hG4bKb", invite=False)
            # Timer E capped at T2: 0, .05, .15, .25, ... - about 10 sends in 1 s, where doubling gives 5
            assert len(await _drain(peer, 1.0)) >= 8
        finally:
            endpoint.close()
            peer.close()
    asyncio.run(main())


def test_server_answers_a_retransmission_again_and_2xx_until_ack() -> None:
    async def main() -> None:
        peer, addr = _peer()
        seen = []

        def on_request(head, source):  # type: ignore[no-untyped-def]
            seen.append(head.method)
            if head.method == b"INVITE":
                endpoint.respond(head, b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", source)

        endpoint = await LeanEndpoint("127.0.0.1", 0, on_request, lambda h: None, t1=0.02, t2=0.04).open()
        try:
            target = endpoint.sock.local  # type: ignore[union-attr]
            peer.sendto(INVITE, target)
            peer.sendto(INVITE, target)  # a retransmission: answered again, not handed to the TU
            got = await _drain(peer, 0.3)
            assert seen == [b"INVITE"]
            assert len(got) >= 4 and {data for _, data in got} == {b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"}
            assert endpoint.acked(b"abc@127.9.1.1", b"7")  # the TU saw the ACK: retransmissions stop
            await _drain(peer, 0.05)  # one may have left just before
            assert await _drain(peer, 0.2) == []
            assert not endpoint.acked(b"abc@127.9.1.1", b"7")
            peer.sendto(b"garbage\r\n\r\n", target)
            await asyncio.sleep(0.02)
            assert endpoint.unreadable == 1 and seen == [b"INVITE"]
        finally:
            endpoint.close()
            peer.close()
    asyncio.run(main())


# --- the sans-IO transaction core, on a clock of our own ---------------------------------------------

def _advance(core, until: float) -> list[float]:  # type: ignore[no-untyped-def]
    """Fire the core's deadlines up to `until`; the times at which it resent something."""
    sent = []
    while (at := core.next_deadline()) is not None and at <= until:
        core.expire(at)
        if core.outbox:
            sent.append(round(at, 6))
            core.outbox.clear()
    return sent


def test_core_timers_a_b_e_f() -> None:
    from harness.load.lean.transactions import Transactions

    core = Transactions(t1=0.5, t2=4.0)
    core.request(INVITE, ("127.0.0.1", 5060), b"z9hG4bKs1", invite=True, now=0.0)
    assert _advance(core, 31.9) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # Timer A doubles
    assert core.timed_out == []
    _advance(core, 32.0)
    assert core.timed_out == [b"z9hG4bKs1"]  # Timer B = 64*T1
    core = Transactions(t1=0.5, t2=4.0)
    core.request(b"BYE", ("127.0.0.1", 5060), b"z9hG4bKb", invite=False, now=0.0)
    assert _advance(core, 16.0) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]  # Timer E capped at T2


def test_core_responses_duplicates_and_2xx_until_ack() -> None:
    from harness.load.lean.transactions import REQUEST, RESPONSE, STRAY, Transactions

    core = Transactions(t1=0.5, t2=4.0)
    core.request(INVITE, ("127.0.0.1", 5060), b"z9hG4bKs1", invite=True, now=0.0)
    trying = read(INVITE)  # any head will do for the branch: build a 100 and a 200 for it
    ringing = INVITE.replace(b"INVITE sip:ue2@127.9.1.2 SIP/2.0", b"SIP/2.0 100 Trying")
    assert core.receive(ringing, ("127.0.0.1", 5060), 0.1) is None  # provisional: no more Timer A
    assert _advance(core, 31.0) == []
    ok = INVITE.replace(b"INVITE sip:ue2@127.9.1.2 SIP/2.0", b"SIP/2.0 200 OK")
    assert core.receive(ok, ("127.0.0.1", 5060), 1.0)[0] == RESPONSE  # type: ignore[index]
    assert core.receive(ok, ("127.0.0.1", 5060), 1.1)[0] == STRAY  # type: ignore[index]  # a 2xx retransmission
    assert core.next_deadline() is None

    server = Transactions(t1=0.5, t2=4.0)
    kind, head = server.receive(INVITE, ("127.0.0.1", 5060), 0.0)  # type: ignore[misc]
    assert kind == REQUEST and head.branch == trying.branch
    assert server.receive(INVITE, ("127.0.0.1", 5060), 0.2) is None and server.outbox == []  # still deciding
    server.respond(head, b"SIP/2.0 200 OK\r\n\r\n", ("127.0.0.1", 5060), now=0.3)
    assert server.receive(INVITE, ("127.0.0.1", 5060), 0.4) is None
    assert server.outbox == [(b"SIP/2.0 200 OK\r\n\r\n", ("127.0.0.1", 5060))]  # answered again
    server.outbox.clear()
    assert _advance(server, 8.0) == [0.8, 1.8, 3.8, 7.8]  # §13.3.1.4: 2xx from T1 doubling, capped at T2
    assert server.acked(head.call_id, head.cseq)
    assert _advance(server, 40.0) == []
    assert server.receive(b"junk", ("127.0.0.1", 5060), 1.0) is None and server.unreadable == 1


def test_core_acks_a_non_2xx_final_and_its_retransmissions() -> None:
    from harness.load.lean.transactions import RESPONSE, Transactions

    invite = INVITE.replace(b"Max-Forwards: 68\r\n", b"Max-Forwards: 68\r\nRoute: <sip:127.9.0.11;lr>\r\n")
    core = Transactions()
    core.request(invite, ("127.9.0.11", 5060), b"z9hG4bKs1", invite=True, now=0.0)
    busy = invite.replace(b"INVITE sip:ue2@127.9.1.2 SIP/2.0", b"SIP/2.0 486 Busy Here").replace(
        b"t:<sip:ue2@127.9.1.2>", b"t:<sip:ue2@127.9.1.2>;tag=b2")
    kind, _ = core.receive(busy, ("127.9.0.11", 5060), 0.1)  # type: ignore[misc]
    assert kind == RESPONSE
    (ack, where), = core.outbox
    head = read(ack)
    assert where == ("127.9.0.11", 5060) and head.method == b"ACK" and head.uri == b"sip:ue2@127.9.1.2"
    assert head.branch == b"z9hG4bKs1" and len(head.via) == 1  # §17.1.1.3: the INVITE's top Via only
    assert head.to_tag == b"b2" and (head.cseq, head.cseq_method) == (b"7", b"ACK")
    assert head.route == [b"<sip:127.9.0.11;lr>"] and head.call_id == b"abc@127.9.1.1"
    core.outbox.clear()
    assert core.receive(busy, ("127.9.0.11", 5060), 1.0) is None  # retransmitted: absorbed, ACKed again
    assert core.outbox == [(ack, ("127.9.0.11", 5060))]


def test_the_spelled_names_shortcut_never_hides_a_field() -> None:
    from harness.load.lean.head import _NAMES, _SPELLED

    for name, key in _SPELLED.items():
        assert key == _NAMES.get(name.lower()), name


def test_a_forked_child_draws_other_tokens() -> None:
    import os

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write its token and leave at once
        os.write(write_end, token(8))
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 64)
    os.waitpid(pid, 0)
    os.close(read_end)
    assert len(child) == 16 and child != token(8)
