"""G.711 µ-law, RTP packet fields (through Scapy) and drift-free pacing on a real loopback socket."""

from __future__ import annotations

import asyncio
import random
import socket

import numpy as np
import pytest
from scapy.layers.rtp import RTP

from harness.rtp import PCMU, RtpPacket, RtpParseError, RtpSender, RtpStream, ToneGenerator, silence
from harness.rtp.g711 import DECODE_TABLE, ulaw_decode, ulaw_encode


def test_ulaw_round_trip_is_within_half_a_quantisation_step() -> None:
    x = np.arange(-32635, 32636, dtype=np.int32)
    y = ulaw_decode(ulaw_encode(x)).astype(np.int32)
    # µ-law steps double per segment: 8, 16, ... 1024 (16-bit scale); error <= half the step.
    step = np.maximum(8, 2 ** (np.floor(np.log2(np.abs(x) + 132)) - 4))
    assert np.all(np.abs(y - x) <= step / 2 + 1)


def test_ulaw_known_codes() -> None:
    assert ulaw_encode([0]) == b"\xff"
    assert ulaw_encode([-1]) == b"\x7f"  # negative zero segment
    assert ulaw_encode([32767]) == b"\x80" and ulaw_encode([-32768]) == b"\x00"
    assert DECODE_TABLE[0xFF] == 0 and DECODE_TABLE[0x80] == 32124 and DECODE_TABLE[0x00] == -32124
    # every code decodes and re-encodes to itself, except µ-law's two zeros (0x7F, 0xFF)
    codes = bytes(range(256))
    again = ulaw_encode(ulaw_decode(codes))
    assert [c for c, d in zip(codes, again, strict=True) if c != d] == [0x7F]


def test_tone_has_its_frequency_and_continuous_phase() -> None:
    tone = ToneGenerator(650.0)
    samples = np.concatenate([tone.next_samples(160) for _ in range(50)]).astype(float)
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.argmax(spectrum) * 8000 / len(samples) == pytest.approx(650.0, abs=1.0)
    assert len(tone.next_frame()) == 160


def test_rtp_sender_fields() -> None:
    sender = RtpSender(rng=random.Random(7))
    first = RtpPacket.parse(sender.packet(silence()))
    second = RtpPacket.parse(sender.packet(silence()))
    assert first.payload_type == PCMU and len(first.payload) == 160
    assert first.marker and not second.marker
    assert first.ssrc == second.ssrc == sender.ssrc
    assert second.sequence == (first.sequence + 1) & 0xFFFF
    assert second.timestamp == (first.timestamp + 160) & 0xFFFFFFFF


def test_rtp_bytes_are_scapy_rtp() -> None:
    sender = RtpSender(ssrc=0x11223344)
    data = sender.packet(b"\x01" * 160, csrcs=[5, 6])
    pkt = RTP(data)
    assert pkt.version == 2 and pkt.sourcesync == 0x11223344 and pkt.sync == [5, 6]
    parsed = RtpPacket.parse(data)
    assert parsed.csrcs == (5, 6) and parsed.payload == b"\x01" * 160


def test_pause_advances_timestamp_and_resume_marks_spurt() -> None:
    sender = RtpSender(rng=random.Random(1))
    a = RtpPacket.parse(sender.packet(silence()))
    sender.skip(10)
    sender.start_spurt()
    b = RtpPacket.parse(sender.packet(silence()))
    assert b.sequence == (a.sequence + 1) & 0xFFFF  # seq counts packets sent
    assert b.timestamp == (a.timestamp + 11 * 160) & 0xFFFFFFFF  # ts counts sampling time
    assert b.marker


@pytest.mark.parametrize("data", [b"", b"\x80" * 11, b"\x40" + b"\x00" * 11, b"\x8f" + b"\x00" * 11])
def test_rtp_parse_rejects_non_rtp(data: bytes) -> None:
    with pytest.raises(RtpParseError):
        RtpPacket.parse(data)


class _Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


def test_stream_pauses_without_sending_and_marks_resume() -> None:
    sink = _Sink()
    stream = RtpStream(sink, silence, remote=("127.0.0.1", 9))
    stream.tick()
    stream.sending = False
    stream.tick()
    stream.sending = True
    stream.tick()
    packets = [RtpPacket.parse(d) for d, _ in sink.sent]
    assert [p.marker for p in packets] == [True, True]
    assert packets[1].timestamp - packets[0].timestamp == 320


def test_stream_paces_25_packets_over_real_loopback() -> None:
    """Correctness only (all arrive, in order, deadlines not drifting); no timing bound asserted."""
    async def main() -> tuple[list[RtpPacket], list[float]]:
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(2.0)
        tx.bind(("127.0.0.1", 0))
        try:
            tone = ToneGenerator(400.0)
            stream = RtpStream(tx, tone.next_frame, remote=rx.getsockname(), keep_send_times=True)
            await asyncio.wait_for(stream.run(frames=25), timeout=5.0)
            got = [RtpPacket.parse(rx.recv(2048)) for _ in range(25)]
            assert stream.send_times is not None
            return got, stream.send_times
        finally:
            rx.close()
            tx.close()

    packets, times = asyncio.run(main())
    assert [p.sequence for p in packets] == [(packets[0].sequence + i) & 0xFFFF for i in range(25)]
    assert [p.timestamp for p in packets] == [(packets[0].timestamp + 160 * i) & 0xFFFFFFFF for i in range(25)]
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    deviation = [t - (times[0] + 0.020 * i) for i, t in enumerate(times)]
    print(f"pacing deviation max {max(deviation) * 1000:.2f} ms, last {deviation[-1] * 1000:.2f} ms")
    assert len(times) == 25


def test_alaw_known_codes_and_round_trip() -> None:
    from harness.rtp.g711 import ALAW_DECODE_TABLE, alaw_decode, alaw_encode

    assert alaw_encode([0]) == b"\xd5" and alaw_encode([-1]) == b"\x55"  # +0 and -0 segments
    assert alaw_encode([32767]) == b"\xaa" and alaw_encode([-32768]) == b"\x2a"
    assert ALAW_DECODE_TABLE[0xD5] == 8 and ALAW_DECODE_TABLE[0xAA] == 32256
    codes = bytes(range(256))
    assert alaw_encode(alaw_decode(codes)) == codes  # A-law has no duplicate codes
    x = np.arange(-32768, 32768, 7)
    error = np.abs(alaw_decode(alaw_encode(x)).astype(np.int32) - x)
    assert np.all(error <= np.maximum(16, np.abs(x) // 32) + 1)


def test_cached_tone_frames_equal_computed_ones() -> None:
    for freq in (400.0, 650.0, 1000.0, 433.3):
        cached, computed = ToneGenerator(freq), ToneGenerator(freq)
        assert [cached.next_frame() for _ in range(60)] == [ulaw_encode(computed.next_samples()) for _ in range(60)]
    mixed = ToneGenerator(650.0)
    mixed.next_samples(80)  # off the frame grid: next_frame must still continue the phase
    reference = ToneGenerator(650.0)
    reference.next_samples(80)
    assert mixed.next_frame() == ulaw_encode(reference.next_samples(160))


def test_rtp_template_tracks_payload_type_and_csrcs() -> None:
    sender = RtpSender(ssrc=9, rng=random.Random(2))
    a = RtpPacket.parse(sender.packet(silence(), csrcs=[1]))
    sender.payload_type = 8
    b = RtpPacket.parse(sender.packet(silence(), csrcs=[1, 2, 3]))
    c = RtpPacket.parse(sender.packet(silence()))
    assert (a.payload_type, a.csrcs) == (0, (1,))
    assert (b.payload_type, b.csrcs) == (8, (1, 2, 3)) and b.sequence == (a.sequence + 1) & 0xFFFF
    assert c.csrcs == () and not c.marker and sender.octets_sent == 480
