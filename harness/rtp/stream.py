"""A paced RTP stream: one frame every 20 ms from a monotonic clock, without drift.

The next deadline is the previous deadline + ptime, never "now + ptime", so scheduling
jitter does not accumulate. Sockets are the caller's: the stream only calls `sendto`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from harness.rtp.packet import RtpSender

PTIME = 0.020
MAX_LAG_FRAMES = 5  # if the loop stalls longer than this, skip ahead instead of bursting


async def ticks(ptime: float = PTIME, clock: Callable[[], float] = time.monotonic,
                frames: int | None = None) -> AsyncIterator[int]:
    """Yield once per `ptime` on deadlines start + k*ptime (no drift). Each value is how many frame
    intervals were skipped before this tick because the loop stalled (0 normally): callers advance
    their RTP timestamps by that much instead of sending a burst."""
    deadline = clock()
    skipped = 0
    done = 0
    while frames is None or done < frames:
        yield skipped
        done += 1
        deadline += ptime
        lag = clock() - deadline
        skipped = int(lag / ptime) if lag > MAX_LAG_FRAMES * ptime else 0
        deadline += skipped * ptime
        await asyncio.sleep(max(0.0, deadline - clock()))


class DatagramSender(Protocol):
    def sendto(self, data: bytes, addr: tuple[str, int]) -> None: ...


class RtpStream:
    """Sends `source()` frames to `remote` while `sending` is true; otherwise time still passes.

    `remote` and `sending` may be changed at any time (re-INVITE, hold, BYE); resuming after a
    pause sets the marker bit. `send_times` keeps the monotonic send instants for pacing tests.
    """

    def __init__(self, sock: DatagramSender, source: Callable[[], bytes], sender: RtpSender | None = None,
                 remote: tuple[str, int] | None = None, ptime: float = PTIME,
                 clock: Callable[[], float] = time.monotonic, csrcs: Callable[[], list[int]] | None = None,
                 keep_send_times: bool = False) -> None:
        self.sock = sock
        self.source = source
        self.sender = sender or RtpSender()
        self.remote = remote
        self.ptime = ptime
        self.clock = clock
        self.csrcs = csrcs
        self.sending = remote is not None
        self.send_times: list[float] | None = [] if keep_send_times else None
        self._was_sending = False
        self._task: asyncio.Task[None] | None = None

    @property
    def packets_sent(self) -> int:
        return self.sender.packets_sent

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="rtp-stream")

    async def stop(self) -> None:
        self.sending = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def tick(self) -> None:
        """One 20 ms frame interval: send a frame, or let the timestamp advance."""
        if self.sending and self.remote is not None:
            if not self._was_sending:
                self.sender.start_spurt()
            csrcs = self.csrcs() if self.csrcs else ()
            data = self.sender.packet(self.source(), csrcs)
            with contextlib.suppress(OSError):  # closed socket or unreachable: media is best-effort
                self.sock.sendto(data, self.remote)
            if self.send_times is not None:
                self.send_times.append(self.clock())
            self._was_sending = True
        else:
            self.sender.skip()
            self._was_sending = False

    async def run(self, frames: int | None = None) -> None:
        """Tick every ptime until cancelled (or `frames` ticks have happened)."""
        async for skipped in ticks(self.ptime, self.clock, frames):
            self.sender.skip(skipped)
            self.tick()
