"""SIP over TCP (RFC 3261 §18): framing by Content-Length, connections, the endpoint, on 127/8 and ::1."""

from __future__ import annotations

import asyncio
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.net.tcp import SipTcpEndpoint, StreamFramer, TcpSocket
from harness.sip.errors import SipParseError
from harness.sip.message import SipMessage
from harness.sip.transaction import RequestReceived, ResponseReceived, TransactionLayer


def _msg(n: int, body: bytes = b"") -> bytes:
    return bytes(SipMessage.request("OPTIONS", "sip:b@127.0.0.1", [
        ("Via", f"SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK{n:08d}"), ("Max-Forwards", "70"),
        ("From", "<sip:a@127.0.0.1>;tag=1"), ("To", "<sip:b@127.0.0.1>"), ("Call-ID", f"c{n}"),
        ("CSeq", f"{n} OPTIONS"), ("Content-Type", "text/plain")], body, content_length=True))


ONE, TWO = _msg(1, b"first body"), _msg(2, b"second\r\n\r\nbody with a blank line")


def test_two_messages_in_one_segment() -> None:
    assert StreamFramer().feed(ONE + TWO) == [ONE, TWO]


def test_one_message_across_three_writes() -> None:
    framer = StreamFramer()
    cut1, cut2 = 20, len(TWO) - 5  # inside the start line, then inside the body
    assert framer.feed(TWO[:cut1]) == []
    assert framer.feed(TWO[cut1:cut2]) == []
    assert framer.feed(TWO[cut2:]) == [TWO]
    assert framer.pending == 0


def test_byte_by_byte_and_keepalive_crlfs() -> None:
    framer = StreamFramer()
    out: list[bytes] = []
    for byte in b"\r\n\r\n" + ONE + b"\r\n" + TWO:  # RFC 5626 keep-alives and §7.5 leading CRLFs
        out += framer.feed(bytes([byte]))
    assert out == [ONE, TWO]


def test_no_content_length_loses_the_framing() -> None:
    without = ONE.replace(b"Content-Length: 10\r\n", b"")
    assert without != ONE
    with pytest.raises(SipParseError, match="Content-Length"):
        StreamFramer().feed(without)


def test_a_runaway_header_is_bounded() -> None:
    with pytest.raises(SipParseError, match="within 64 bytes"):
        StreamFramer(limit=64).feed(b"OPTIONS sip:x SIP/2.0\r\nVia: " + b"x" * 100)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(ONE + TWO) - 1), max_size=6))
def test_any_split_gives_the_same_messages(cuts: list[int]) -> None:
    data, framer, out, last = ONE + TWO, StreamFramer(), [], 0
    for cut in sorted(set(cuts)) + [len(ONE + TWO)]:
        out += framer.feed(data[last:cut])
        last = cut
    assert out == [ONE, TWO]


def _v6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


HOSTS = ["127.0.0.1", pytest.param("::1", marks=pytest.mark.skipif(not _v6(), reason="no IPv6 loopback"))]


@pytest.mark.parametrize("host", HOSTS)
def test_sockets_exchange_and_answer_on_the_same_connection(host: str) -> None:
    async def main() -> None:
        got_a: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        got_b: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        a = await TcpSocket.bind(host, 0, lambda d, addr: got_a.put_nowait((d, addr)))
        b = await TcpSocket.bind(host, 0, lambda d, addr: got_b.put_nowait((d, addr)))
        try:
            a.sendto(ONE + TWO, b.local)  # queued until connected, then one segment
            first, src = await asyncio.wait_for(got_b.get(), 2.0)
            second, _ = await asyncio.wait_for(got_b.get(), 2.0)
            assert (first, second) == (ONE, TWO)
            assert src[0] == host and src[1] != a.local[1]  # from a's address, an ephemeral port
            b.sendto(ONE, src)  # back on the connection the request came in on
            back, via = await asyncio.wait_for(got_a.get(), 2.0)
            assert back == ONE and via == b.local
            assert b.connections == [src]
        finally:
            a.close()
            b.close()

    asyncio.run(main())


def test_connect_failure_is_recorded_not_raised() -> None:
    async def main() -> TcpSocket:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            dead = probe.getsockname()
        a = await TcpSocket.bind("127.0.0.1", 0)
        try:
            a.sendto(ONE, dead)
            for _ in range(100):
                if a.errors:
                    break
                await asyncio.sleep(0.02)
        finally:
            a.close()
        return a

    errors = asyncio.run(main()).errors
    assert errors and "connect to 127.0.0.1" in errors[0]


@pytest.mark.parametrize("host", HOSTS)
def test_sip_endpoints_complete_a_transaction_over_tcp(host: str) -> None:
    """A non-INVITE transaction on two TransactionLayers with TCP rules (no retransmissions)."""
    async def main() -> None:
        events_b: asyncio.Queue[object] = asyncio.Queue()
        events_a: asyncio.Queue[object] = asyncio.Queue()
        a = await SipTcpEndpoint.open(host, 0, TransactionLayer((host, 0), transport="TCP"), events_a.put_nowait)
        b = await SipTcpEndpoint.open(host, 0, TransactionLayer((host, 0), transport="TCP"), events_b.put_nowait)
        try:
            a.send_request(SipMessage.parse(ONE), b.local)
            event = await asyncio.wait_for(events_b.get(), 2.0)
            assert isinstance(event, RequestReceived) and event.message.call_id == "c1"
            b.send_response(event.message, SipMessage.response(200, "OK", [
                (h.name, h.value) for h in event.message.headers
                if h.canonical in ("Via", "From", "To", "Call-ID", "CSeq")], content_length=True))
            answer = await asyncio.wait_for(events_a.get(), 2.0)
            assert isinstance(answer, ResponseReceived) and answer.message.status == 200
            # Reliable transport: no Timer E retransmissions were armed, and Timer K (zero) has fired.
            assert a.core.timers.reliable and a.core.timers.e(0) is None
            assert a.core.get_timer() is None
        finally:
            a.close()
            b.close()

    asyncio.run(main())
