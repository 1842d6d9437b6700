"""MRFP: the media mixer behind the conference server (RFC 4353 §2 "mixer", TS 24.147 §5.2).

The CS allocates one RTP/RTCP port pair per participant (step 15/36/67: not SIP, an in-process call
here) and releases it when the participant leaves. On every tick of the shared 20 ms grid each leg
with a known remote address gets the N-1 mix (`harness.rtp.mix`) of the other participants' latest
frames, re-encoded for the leg's payload type, under the leg's own SSRC with the contributors in the
CSRC list (RFC 3550 §7.1). Jitter tolerance: a participant's latest frame counts for up to three
ticks, so a late or doubled-up packet neither gaps nor bursts the mix. Each leg also sends and reads
RTCP like any RTP endpoint.

Received payloads are decoded by their static payload type (PCMU or PCMA) even when the SDP said
otherwise: the MRFP is a lenient receiver, so a wrong payload type shows as MEDIA-3, not as a
missing mix.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from harness.agents.errors import bounded
from harness.agents.rtcp import RtcpLeg
from harness.net.udp import Addr, UdpSocket, bind_rtp_pair
from harness.rtp import PCMU, PTIME, RtpPacket, RtpParseError, RtpSender, RtpStream, silence
from harness.rtp.g711 import CODECS, decode, encode
from harness.rtp.mix import mix_n_minus_1
from harness.rtp.rtcp import INTERVAL, RtcpSession
from harness.rtp.stream import Pacer, pacer

FRESH = 3 * PTIME  # a frame older than this no longer counts as the participant speaking


@dataclass(eq=False)
class Allocation:
    """One participant's port pair on the MRFP (what step 15 'allocates')."""

    participant: str
    port: int
    remote: Addr | None
    sock: UdpSocket
    stream: RtpStream
    rtcp: RtcpLeg
    last_frame: npt.NDArray[np.int16] | None = None
    last_ssrc: int | None = None
    last_at: float = 0.0
    received: int = 0
    payload_types: set[int] = field(default_factory=set)
    mix_out: bytes = field(default_factory=silence)
    csrcs: list[int] = field(default_factory=list)
    group: str = ""  # the conference: legs are mixed only with legs of the same group


class Mrfp:
    """Media-only role: no SIP. `allocate()` / `set_remote()` / `release()` are the CS's Mp interface.

    Faults: "mrfp-echo" mixes each participant's own voice back in; "mrfp-silence" sends silence.
    """

    def __init__(self, ip: str, faults: frozenset[str] = frozenset(), rtp_base_port: int = 20000,
                 rtcp_interval: float = INTERVAL) -> None:
        self.ip = ip
        self.faults = faults
        self.rtcp_interval = rtcp_interval
        self._next_port = rtp_base_port
        self.allocations: dict[int, Allocation] = {}
        self.released: list[Allocation] = []  # for the run's report
        self.history: list[tuple[str, int]] = []  # (participant, port) in allocation order
        self._changed = asyncio.Condition()
        self._pacer: Pacer | None = None

    async def start(self) -> None:
        if self._pacer is None:
            self._pacer = pacer()
            self._pacer.add(self._on_tick)

    async def stop(self) -> None:
        if self._pacer is not None:
            self._pacer.remove(self._on_tick)
            self._pacer = None
        for port in list(self.allocations):
            await self.release(port)

    async def allocate(self, participant: str, remote: Addr | None = None, sending: bool = True,
                       payload_type: int = PCMU, group: str = "") -> int:
        """Bind a fresh even port (+1 for RTCP) for `participant`; media to `remote` starts on the next tick."""
        sock, rtcp_sock = await bind_rtp_pair(self.ip, self._next_port)
        port = sock.local[1]
        self._next_port = port + 2
        stream = RtpStream(sock, silence, RtpSender(payload_type))
        rtcp = RtcpLeg(rtcp_sock, RtcpSession(stream.sender.ssrc, f"mrfp@{self.ip}"), stream, self.rtcp_interval)
        allocation = Allocation(participant, port, None, sock, stream, rtcp, group=group)
        stream.source = lambda: allocation.mix_out
        stream.csrcs = lambda: allocation.csrcs
        sock.set_receiver(lambda data, addr: self._received(allocation, data))
        self.allocations[port] = allocation
        self.set_remote(port, remote, sending)
        rtcp.start()
        async with self._changed:
            self.history.append((participant, port))
            self._changed.notify_all()
        return port

    def set_remote(self, port: int, remote: Addr | None, sending: bool = True) -> None:
        """Where the leg's media goes (None: nowhere, e.g. `c=0.0.0.0`); RTP only when `sending`."""
        allocation = self.allocations[port]
        allocation.remote = remote
        allocation.stream.remote = remote
        allocation.stream.sending = remote is not None and sending
        allocation.rtcp.target = None if remote is None else (remote[0], remote[1] + 1)

    async def release(self, port: int) -> None:
        """The participant left: stop its leg (RTCP BYE) and free the ports; the others' mix drops it."""
        allocation = self.allocations.pop(port, None)
        if allocation is not None:
            await allocation.stream.stop()
            await allocation.rtcp.stop(bye=True)
            allocation.sock.close()
            self.released.append(allocation)

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
        allocation.payload_types.add(packet.payload_type)
        allocation.rtcp.on_rtp(packet.ssrc, packet.sequence, packet.timestamp)
        if packet.payload_type not in CODECS:
            return
        allocation.last_frame = decode(packet.payload, packet.payload_type)
        allocation.last_ssrc = packet.ssrc
        allocation.last_at = time.monotonic()
        allocation.received += 1

    def mix(self, now: float) -> None:
        """Compute each leg's N-1 mix (and CSRC list) from the latest fresh frames."""
        echo = "mrfp-echo" in self.faults
        silent = "mrfp-silence" in self.faults
        groups: dict[str, list[Allocation]] = {}
        for leg in self.allocations.values():  # one mix per conference (a CS may run many at once)
            groups.setdefault(leg.group, []).append(leg)
        for legs in groups.values():
            self._mix_group(legs, now, echo, silent)

    def _mix_group(self, legs: list[Allocation], now: float, echo: bool, silent: bool) -> None:
        frames = {a: a.last_frame if a.last_frame is not None and now - a.last_at <= FRESH else None
                  for a in legs}
        mixes = mix_n_minus_1(frames, include_self=echo, silent=silent)
        for allocation in legs:
            allocation.mix_out = encode(mixes[allocation], allocation.stream.sender.payload_type)
            allocation.csrcs = [] if silent else [
                other.last_ssrc for other, frame in frames.items()
                if frame is not None and other.last_ssrc is not None and (echo or other is not allocation)]

    def _on_tick(self, skipped: int) -> None:
        self.mix(time.monotonic())
        for allocation in list(self.allocations.values()):
            allocation.stream.on_tick(skipped)
