"""RTCP on the wire for one RTP session: a compound report to the peer's RTCP address (RTP port + 1,
RFC 3550 §11) at randomised ~5 s intervals, and the peer's reports read back for LSR/DLSR.

RTCP keeps flowing while the stream is held or inactive (RFC 3264 §5.1), but not to a `c=0.0.0.0`
address (§8.4): the media leg says where by setting `target` (None: send nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

from harness.net.udp import Addr, UdpSocket
from harness.rtp.rtcp import INTERVAL, RtcpParseError, RtcpSession, report_interval
from harness.rtp.stream import RtpStream


class RtcpLeg:
    """Sends `session`'s reports about `stream` from `sock` to `target` until stopped (then a BYE)."""

    def __init__(self, sock: UdpSocket, session: RtcpSession, stream: RtpStream,
                 interval: float = INTERVAL, rng: random.Random | None = None) -> None:
        self.sock = sock
        self.session = session
        self.stream = stream
        self.interval = interval
        self.target: Addr | None = None
        self.received_types: set[int] = set()
        self.malformed = 0
        self._rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        sock.set_receiver(self._received)

    @property
    def reports_sent(self) -> int:
        return self.session.reports_sent

    @property
    def reports_received(self) -> int:
        return self.session.rtcp_received

    def on_rtp(self, ssrc: int, seq: int, rtp_timestamp: int) -> None:
        self.session.on_rtp(ssrc, seq, rtp_timestamp, time.monotonic())

    def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="rtcp")

    async def stop(self, bye: bool = True) -> None:
        """Stop reporting; with `bye`, a last compound packet ending in BYE (RFC 3550 §6.3.7)."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if bye:
            self.send_report(bye=True)
        self.sock.close()

    def send_report(self, bye: bool = False) -> None:
        if self.target is None:
            return
        now = time.monotonic()
        sender = self.stream.sender
        data = self.session.report(now, time.time(), sender.packets_sent, sender.octets_sent,
                                   self.stream.rtp_timestamp_at(now), bye=bye)
        with contextlib.suppress(OSError):
            self.sock.sendto(data, self.target)

    async def _run(self) -> None:
        await asyncio.sleep(report_interval(self._rng, self.interval, initial=True))
        while True:
            self.send_report()
            await asyncio.sleep(report_interval(self._rng, self.interval))

    def _received(self, data: bytes, addr: Addr) -> None:
        try:
            self.received_types.update(self.session.on_rtcp(data, time.monotonic()))
        except RtcpParseError:
            self.malformed += 1
