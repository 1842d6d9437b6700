"""A media leg obeys the negotiated SDP (RFC 3264): destination, payload type, direction, `c=0.0.0.0`,
rejected streams; and streams share one drift-free 20 ms grid. Sockets are fakes: no I/O here
except the pacer test's event loop."""

from __future__ import annotations

import asyncio

import pytest

from harness.agents.media import MediaLeg, send_payload_type
from harness.rtp import PCMA, PCMU, RtpPacket, RtpSender, RtpStream, ToneGenerator, silence
from harness.rtp.stream import pacer
from harness.sip.sdp import Sdp, offer_audio


class FakeSocket:
    def __init__(self, port: int) -> None:
        self.local = ("127.0.0.9", port)
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.closed = False

    def set_receiver(self, fn: object) -> None:
        self.receiver = fn

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def close(self) -> None:
        self.closed = True


def _leg() -> tuple[MediaLeg, FakeSocket, FakeSocket]:
    rtp, rtcp = FakeSocket(20000), FakeSocket(20001)
    return MediaLeg(rtp, rtcp, 650.0, "ue2@127.0.0.9"), rtp, rtcp  # type: ignore[arg-type]


def _sdp(addr: str = "127.0.0.7", port: int = 30000, direction: str = "sendrecv", fmts: str = "0") -> Sdp:
    text = bytes(offer_audio(addr, port, 1, 1, direction)).decode()
    text = text.replace("RTP/AVP 0", f"RTP/AVP {fmts}")
    if "8" in fmts.split():
        text = text.replace("a=ptime", "a=rtpmap:8 PCMA/8000\r\na=ptime")
    return Sdp.parse(text.encode())


def test_sends_to_the_peer_sdp_address_with_its_payload_type() -> None:
    leg, rtp, _ = _leg()
    leg.apply(_sdp(port=40000), _sdp("127.0.0.8", 30000))
    leg.stream.tick()
    leg.stream.tick()
    (first, addr), (second, _) = rtp.sent
    assert addr == ("127.0.0.8", 30000)
    a, b = RtpPacket.parse(first), RtpPacket.parse(second)
    assert a.payload_type == PCMU and a.marker and not b.marker and len(a.payload) == 160
    assert leg.rtcp.target == ("127.0.0.8", 30001)  # RTCP on port + 1


@pytest.mark.parametrize(("ours", "theirs", "expected"), [
    ("0", "8 0", PCMU),  # the peer prefers PCMA, but we did not list it
    ("0 8", "8 0", PCMA),  # the peer's order wins among common encodings
    ("0", "18", None),  # nothing in common: send nothing
])
def test_payload_type_comes_from_the_negotiated_sdp(ours: str, theirs: str, expected: int | None) -> None:
    assert send_payload_type(_sdp(fmts=ours), _sdp(fmts=theirs)) == expected


def test_pcma_negotiated_sends_alaw() -> None:
    leg, rtp, _ = _leg()
    leg.apply(_sdp(fmts="8 0"), _sdp(fmts="8"))
    leg.stream.tick()
    packet = RtpPacket.parse(rtp.sent[0][0])
    assert packet.payload_type == PCMA and packet.payload == ToneGenerator(650.0).next_frame(payload_type=PCMA)


@pytest.mark.parametrize(("local", "remote", "sends"), [
    ("sendrecv", "sendrecv", True), ("sendonly", "recvonly", True), ("recvonly", "sendonly", False),
    ("inactive", "inactive", False), ("sendrecv", "sendonly", False)])
def test_rtp_only_when_both_directions_allow_rtcp_always(local: str, remote: str, sends: bool) -> None:
    leg, _, _ = _leg()
    leg.apply(_sdp(direction=local), _sdp("127.0.0.8", direction=remote))
    assert leg.stream.sending is sends
    assert leg.rtcp.target == ("127.0.0.8", 30001)  # RFC 3264 §5.1: RTCP continues while held


def test_legacy_hold_address_gets_neither_rtp_nor_rtcp() -> None:
    leg, _, _ = _leg()
    leg.apply(_sdp(), _sdp("0.0.0.0"))
    assert not leg.stream.sending and leg.rtcp.target is None


def test_rejected_stream_gets_nothing() -> None:
    leg, _, _ = _leg()
    leg.apply(_sdp(), _sdp(port=0))
    assert not leg.stream.sending and leg.rtcp.target is None


def test_faults_override_payload_type_and_destination() -> None:
    leg, rtp, _ = _leg()
    leg.payload_type_override = PCMA
    leg.remote_override = ("127.0.0.1", 22222)
    leg.apply(_sdp(), _sdp("127.0.0.8"))
    leg.stream.tick()
    data, addr = rtp.sent[0]
    assert addr == ("127.0.0.1", 22222) and RtpPacket.parse(data).payload_type == PCMA
    assert leg.payload_type == PCMU  # what was negotiated, for the record


def test_received_rtp_is_recorded_and_feeds_rtcp() -> None:
    leg, _, _ = _leg()
    sender = RtpSender(ssrc=77)
    for _ in range(3):
        leg._received(sender.packet(silence()), ("127.0.0.8", 30000))
    leg._received(b"junk", ("127.0.0.8", 30000))
    assert leg.rx.packets == 3 and leg.rx.payload_types == {PCMU} and len(leg.rx.tail) == 3
    assert leg.rtcp.session.sources[77].received == 3


def test_streams_share_one_grid_and_the_pacer_stops_when_idle() -> None:
    async def main() -> tuple[list[float], list[float], int]:
        a, b = FakeSocket(1), FakeSocket(2)
        sa = RtpStream(a, silence, remote=("127.0.0.1", 9), keep_send_times=True)  # type: ignore[arg-type]
        sb = RtpStream(b, silence, remote=("127.0.0.1", 9), keep_send_times=True)  # type: ignore[arg-type]
        sa.start()
        await asyncio.sleep(0.031)
        sb.start()
        assert len(pacer()) == 2
        await asyncio.sleep(0.1)
        await sa.stop()
        await sb.stop()
        await asyncio.sleep(0.05)
        assert sa.send_times is not None and sb.send_times is not None
        return sa.send_times, sb.send_times, len(pacer())

    times_a, times_b, left = asyncio.run(main())
    assert left == 0
    # b joined later but ticks on a's grid: each of b's sends is within a few ms of one of a's
    for t in times_b:
        assert min(abs(t - u) for u in times_a) < 0.005
    assert len(times_a) >= 5


def test_rtp_timestamp_at_follows_the_sampling_clock() -> None:
    now = [100.0]
    stream = RtpStream(FakeSocket(1), silence, remote=("127.0.0.1", 9), clock=lambda: now[0])  # type: ignore[arg-type]
    stream.tick()
    sent_ts = RtpPacket.parse(stream.sock.sent[0][0]).timestamp  # type: ignore[attr-defined]
    assert stream.rtp_timestamp_at(100.010) == (sent_ts + 80) & 0xFFFFFFFF
