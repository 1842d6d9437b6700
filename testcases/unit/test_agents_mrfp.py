"""The MRFP mixer: each participant hears the others (N-1), never itself, under the mixer's SSRC."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from harness.agents.mrfp import Mrfp
from harness.net.udp import UdpSocket
from harness.rtp import RtpPacket, RtpStream, ToneGenerator, ulaw_decode


@pytest.fixture
def subnet(subnets: Iterator[int]) -> int:
    return next(subnets)


def _peak_hz(frames: list[bytes]) -> float:
    samples = np.concatenate([ulaw_decode(f) for f in frames]).astype(float)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * 8000 / len(samples))


def test_two_participants_hear_each_other_not_themselves(subnet: int) -> None:
    n = subnet

    async def main() -> tuple[list[RtpPacket], list[RtpPacket], Mrfp]:
        heard: dict[str, list[RtpPacket]] = {"a": [], "b": []}
        a = await UdpSocket.bind(f"127.{n}.0.1", 30000, lambda d, _: heard["a"].append(RtpPacket.parse(d)))
        b = await UdpSocket.bind(f"127.{n}.0.2", 30000, lambda d, _: heard["b"].append(RtpPacket.parse(d)))
        mrfp = Mrfp(f"127.{n}.0.5")
        streams: list[RtpStream] = []
        try:
            await mrfp.start()
            port_a = await mrfp.allocate("A", a.local)
            port_b = await mrfp.allocate("B", b.local)
            streams = [RtpStream(a, ToneGenerator(400).next_frame, remote=(mrfp.ip, port_a)),
                       RtpStream(b, ToneGenerator(1000).next_frame, remote=(mrfp.ip, port_b))]
            for stream in streams:
                stream.start()
            await asyncio.sleep(0.6)
            assert await mrfp.wait_allocated("B", 0.1) == port_b
            return heard["a"], heard["b"], mrfp
        finally:
            for stream in streams:
                await stream.stop()
            await mrfp.stop()
            a.close()
            b.close()

    at_a, at_b, mrfp = asyncio.run(main())
    assert len(at_a) > 10 and len(at_b) > 10
    # skip the first frames: silence until the other side's first frame arrived
    assert _peak_hz([p.payload for p in at_a[-10:]]) == pytest.approx(1000, abs=60)
    assert _peak_hz([p.payload for p in at_b[-10:]]) == pytest.approx(400, abs=60)
    assert len({p.ssrc for p in at_a}) == 1 and at_a[0].ssrc != at_b[0].ssrc
    assert at_a[-1].csrcs and at_a[-1].csrcs != (at_a[-1].ssrc,)  # contributor listed (RFC 3550 §7.1)
    assert mrfp.allocations == {}  # stop() released everything


def test_wait_allocated_times_out_cleanly(subnet: int) -> None:
    async def main() -> None:
        mrfp = Mrfp(f"127.{subnet}.0.5")
        with pytest.raises(TimeoutError):
            await mrfp.wait_allocated("nobody", 0.05)

    asyncio.run(main())
