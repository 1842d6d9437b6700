"""MRFP: the media mixer behind the conference server (RFC 4353 §2 "mixer", TS 24.147 §5.2).

The CS allocates one RTP port per participant (step 15/36/67: not SIP, an in-process call here).
Every 20 ms each participant with a known remote address gets the sum of the OTHER participants'
latest frames (N-1 mix, own SSRC per leg, contributors in the CSRC list per RFC 3550 §7.1), or silence.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from harness.agents.errors import bounded
from harness.net.udp import Addr, UdpSocket
from harness.rtp import PCMU, PTIME, RtpPacket, RtpParseError, RtpStream, silence, ulaw_decode, ulaw_encode
from harness.rtp.stream import ticks

FRESH = 3 * PTIME  # a frame older than this no longer counts as the participant speaking


@dataclass
class Allocation:
    """One participant's port on the MRFP (what step 15 'allocates')."""

    participant: str
    port: int
    remote: Addr | None
    sock: UdpSocket
    stream: RtpStream
    last_frame: npt.NDArray[np.int16] | None = None
    last_ssrc: int | None = None
    last_at: float = 0.0
    received: int = 0
    mix_out: bytes = field(default_factory=silence)


class Mrfp:
    """Media-only role: no SIP. `allocate()` / `release()` are the CS's Mp interface."""

    def __init__(self, ip: str, faults: frozenset[str] = frozenset(), rtp_base_port: int = 20000) -> None:
        self.ip = ip
        self.faults = faults
        self._next_port = rtp_base_port
        self.allocations: dict[int, Allocation] = {}
        self.history: list[tuple[str, int]] = []  # (participant, port) in allocation order
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._mix_loop(), name="mrfp-mixer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for allocation in list(self.allocations.values()):
            allocation.sock.close()
        self.allocations.clear()

    async def allocate(self, participant: str, remote: Addr | None = None) -> int:
        """Bind a fresh even port for `participant`; media to `remote` starts on the next tick."""
        while True:
            port = self._next_port
            self._next_port += 2
            try:
                sock = await UdpSocket.bind(self.ip, port)
            except OSError:
                continue
            break
        allocation = Allocation(participant, port, remote, sock,
                                RtpStream(sock, lambda: b"", remote=remote))
        allocation.stream.source = lambda: allocation.mix_out
        allocation.stream.csrcs = lambda: self._contributors(allocation)
        sock.set_receiver(lambda data, addr: self._received(allocation, data))
        self.allocations[port] = allocation
        async with self._changed:
            self.history.append((participant, port))
            self._changed.notify_all()
        return port

    def set_remote(self, port: int, remote: Addr | None) -> None:
        allocation = self.allocations[port]
        allocation.remote = remote
        allocation.stream.remote = remote
        allocation.stream.sending = remote is not None

    async def release(self, port: int) -> None:
        allocation = self.allocations.pop(port, None)
        if allocation is not None:
            allocation.stream.sending = False
            allocation.sock.close()

    async def wait_allocated(self, participant: str, timeout: float) -> int:
        """The port allocated for `participant` (the evidence of steps 15/36/67)."""
        async def found() -> int:
            async with self._changed:
                while True:
                    for who, port in self.history:
                        if who == participant:
                            return port
                    await self._changed.wait()
        return await bounded(found(), timeout, f"MRFP did not allocate a port for {participant}")

    def _received(self, allocation: Allocation, data: bytes) -> None:
        try:
            packet = RtpPacket.parse(data)
        except RtpParseError:
            return
        if packet.payload_type != PCMU:
            return
        allocation.last_frame = ulaw_decode(packet.payload)
        allocation.last_ssrc = packet.ssrc
        allocation.last_at = time.monotonic()
        allocation.received += 1

    def _speaking(self, now: float) -> list[Allocation]:
        return [a for a in self.allocations.values()
                if a.last_frame is not None and now - a.last_at <= FRESH]

    def _contributors(self, allocation: Allocation) -> list[int]:
        now = time.monotonic()
        return [a.last_ssrc for a in self._speaking(now) if a is not allocation and a.last_ssrc is not None]

    def mix(self, now: float) -> None:
        """Compute each leg's N-1 mix from the latest fresh frames."""
        speaking = self._speaking(now)
        for allocation in self.allocations.values():
            total = np.zeros(160, dtype=np.int32)
            for other in speaking:
                if other is not allocation and other.last_frame is not None:
                    frame = other.last_frame[:160]
                    total[: len(frame)] += frame
            allocation.mix_out = ulaw_encode(np.clip(total, -32768, 32767))

    async def _mix_loop(self) -> None:
        async for skipped in ticks(PTIME):
            self.mix(time.monotonic())
            for allocation in list(self.allocations.values()):
                allocation.stream.sender.skip(skipped)
                allocation.stream.tick()
