"""The N-1 mixer: in memory (harness.rtp.mix), then the MRFP on loopback with three participants
joining and one leaving, and its two faults; every verdict by tone detection (harness.verify.media)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from harness.agents.mrfp import Mrfp
from harness.net.udp import UdpSocket
from harness.rtp import PCMU, RtpPacket, RtpStream, ToneGenerator, encode
from harness.rtp.mix import contributors, mix_n_minus_1
from harness.verify.media import detect_tones, tone_levels

TONES = {"UE-1": 400.0, "UE-2": 650.0, "UE-3": 1000.0}
FREQS = tuple(TONES.values())


def _mixed(ticks: int = 25, **flags: bool) -> dict[str, list[bytes]]:
    gens = {who: ToneGenerator(f) for who, f in TONES.items()}
    out: dict[str, list[bytes]] = {who: [] for who in TONES}
    for _ in range(ticks):
        frames = {who: g.next_samples() for who, g in gens.items()}
        for who, mix in mix_n_minus_1(frames, **flags).items():
            out[who].append(encode(mix, PCMU))
    return out


def test_each_hears_the_other_two_and_not_itself() -> None:
    for who, frames in _mixed().items():
        levels = tone_levels(frames, PCMU, FREQS)
        assert detect_tones(frames, PCMU, FREQS) == set(FREQS) - {TONES[who]}, (who, levels)
        assert levels[TONES[who]] < -60, (who, levels)


def test_echo_and_silence_faults_in_memory() -> None:
    for frames in _mixed(include_self=True).values():
        assert detect_tones(frames, PCMU, FREQS) == set(FREQS)
    for frames in _mixed(silent=True).values():
        assert detect_tones(frames, PCMU, FREQS) == set()


def test_absent_participants_and_clipping() -> None:
    loud = np.full(160, 30000, dtype=np.int16)
    out = mix_n_minus_1({"a": loud, "b": loud, "c": loud, "d": None})
    assert out["d"].max() == 32767 and out["a"].max() == 32767  # 60000 clipped
    assert out["a"].dtype == np.int16
    short = mix_n_minus_1({"a": np.ones(80, dtype=np.int16), "b": None})
    assert short["b"][:80].tolist() == [1] * 80 and short["b"][80:].tolist() == [0] * 80
    assert contributors({"a": loud, "b": None, "c": loud}, "a") == ["c"]
    assert mix_n_minus_1({}) == {}


@pytest.fixture
def subnet(subnets: Iterator[int]) -> int:
    return next(subnets)


def _conference(subnet: int, faults: frozenset[str] = frozenset()) \
        -> tuple[dict[str, list[RtpPacket]], dict[str, list[RtpPacket]]]:
    """UE-1 and UE-2 in the conference, UE-3 joins, then UE-2 leaves. Returns what each heard with
    everyone present, and after UE-2 left."""
    n = subnet

    async def main() -> tuple[dict[str, list[RtpPacket]], dict[str, list[RtpPacket]]]:
        heard: dict[str, list[RtpPacket]] = {who: [] for who in TONES}
        socks: dict[str, UdpSocket] = {}
        for i, who in enumerate(TONES, start=1):
            socks[who] = await UdpSocket.bind(f"127.{n}.0.{i}", 30000,
                                              lambda d, _, w=who: heard[w].append(RtpPacket.parse(d)))
        mrfp = Mrfp(f"127.{n}.0.5", faults, rtp_base_port=32000)
        streams: list[RtpStream] = []
        ports: dict[str, int] = {}

        async def join(who: str) -> None:
            ports[who] = await mrfp.allocate(who, socks[who].local)
            stream = RtpStream(socks[who], ToneGenerator(TONES[who]).next_frame, remote=(mrfp.ip, ports[who]))
            stream.start()
            streams.append(stream)

        try:
            await mrfp.start()
            await join("UE-1")
            await join("UE-2")
            await asyncio.sleep(0.3)
            await join("UE-3")
            await asyncio.sleep(0.4)
            together = {who: list(h[-10:]) for who, h in heard.items()}
            await streams[1].stop()
            await mrfp.release(ports["UE-2"])
            await asyncio.sleep(0.4)
            after = {who: list(h[-10:]) for who, h in heard.items() if who != "UE-2"}
            return together, after
        finally:
            for stream in streams:
                await stream.stop()
            await mrfp.stop()
            for sock in socks.values():
                sock.close()

    return asyncio.run(main())


def _tones(packets: list[RtpPacket]) -> set[float]:
    return detect_tones([p.payload for p in packets], PCMU, FREQS)


def test_mrfp_three_participants_join_and_one_leaves(subnet: int) -> None:
    together, after = _conference(subnet)
    for who, packets in together.items():
        assert _tones(packets) == set(FREQS) - {TONES[who]}, who
        assert len({p.ssrc for p in packets}) == 1 and len(packets[-1].csrcs) == 2  # own SSRC, 2 contributors
    assert len({together[w][0].ssrc for w in TONES}) == 3  # one SSRC per leg
    assert _tones(after["UE-1"]) == {1000.0} and _tones(after["UE-3"]) == {400.0}
    assert len(after["UE-1"][-1].csrcs) == 1


@pytest.mark.parametrize(("fault", "hears"), [("mrfp-echo", set(FREQS)), ("mrfp-silence", set())])
def test_mrfp_faults_are_committed(subnet: int, fault: str, hears: set[float]) -> None:
    together, _ = _conference(subnet, frozenset({fault}))
    for who, packets in together.items():
        assert _tones(packets) == hears, (fault, who)
