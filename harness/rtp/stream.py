"""Paced RTP: one frame every 20 ms from a monotonic clock, without drift.

Deadlines are start + k*ptime, never "now + ptime", so scheduling jitter does not accumulate.

All streams of one event loop tick on one shared grid (`Pacer`): one wake-up per 20 ms for any
number of streams instead of one per stream, and the wake-up can end with a short busy-wait so the
frame leaves at the deadline rather than whenever the kernel's timer slack lets the loop run.
Sockets are the caller's: a stream only calls `sendto`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from harness.rtp.packet import RtpSender

log = logging.getLogger(__name__)

PTIME = 0.020
MAX_LAG_FRAMES = 5  # if the loop stalls longer than this, skip ahead instead of bursting
SPIN = 0.002  # busy-wait this long before each deadline: a sleeping VM CPU wakes up to ~1-4 ms late


def _skipped(lag: float, ptime: float) -> int:
    return int(lag / ptime) if lag > MAX_LAG_FRAMES * ptime else 0


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
        skipped = _skipped(clock() - deadline, ptime)
        deadline += skipped * ptime
        await asyncio.sleep(max(0.0, deadline - clock()))


TickFn = Callable[[int], None]


class Pacer:
    """A 20 ms grid shared by every stream of one event loop; runs while anyone is subscribed.

    Subscribers are called in subscription order with the number of skipped intervals (see `ticks`);
    one that raises is logged and dropped so it cannot stop the others' media.
    """

    def __init__(self, ptime: float = PTIME, clock: Callable[[], float] = time.monotonic,
                 spin: float = SPIN) -> None:
        self.ptime = ptime
        self.clock = clock
        self.spin = spin
        self._subscribers: dict[TickFn, None] = {}  # ordered set
        self._task: asyncio.Task[None] | None = None
        self.lateness: list[float] | None = None  # set to [] to record (tick time - deadline)

    def add(self, fn: TickFn) -> None:
        self._subscribers[fn] = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="rtp-pacer")

    def remove(self, fn: TickFn) -> None:
        self._subscribers.pop(fn, None)

    def __len__(self) -> int:
        return len(self._subscribers)

    async def _sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - self.spin - self.clock()))
        while self.clock() < deadline:  # the last fraction of a millisecond: no timer is that exact
            pass

    async def _run(self) -> None:
        # The first deadline is the next grid point, so streams started at any time share the grid.
        deadline = (int(self.clock() / self.ptime) + 1) * self.ptime
        skipped = 0
        while self._subscribers:
            await self._sleep_until(deadline)
            if self.lateness is not None:
                self.lateness.append(self.clock() - deadline)
            for fn in list(self._subscribers):
                try:
                    fn(skipped)
                except Exception:
                    log.exception("RTP tick subscriber %r failed; dropped", fn)
                    self._subscribers.pop(fn, None)
            deadline += self.ptime
            skipped = _skipped(self.clock() - deadline, self.ptime)
            deadline += skipped * self.ptime


_PACERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pacer] = weakref.WeakKeyDictionary()


def pacer() -> Pacer:
    """The running loop's shared 20 ms pacer."""
    loop = asyncio.get_running_loop()
    found = _PACERS.get(loop)
    if found is None:
        found = _PACERS[loop] = Pacer()
    return found


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
        self.last_tick_at: float | None = None  # when the sampling clock last advanced (for RTCP SR)
        self._was_sending = False
        self._pacer: Pacer | None = None

    @property
    def packets_sent(self) -> int:
        return self.sender.packets_sent

    def start(self) -> None:
        """Tick on the running loop's shared grid until `stop()`."""
        if self._pacer is None:
            self.sender.prepare()  # Scapy's header layout now, not inside the first tick
            self._pacer = pacer()
            self._pacer.add(self.on_tick)

    async def stop(self) -> None:
        self.sending = False
        if self._pacer is not None:
            self._pacer.remove(self.on_tick)
            self._pacer = None

    def rtp_timestamp_at(self, now: float) -> int:
        """The RTP timestamp of instant `now` on this stream's sampling clock (RFC 3550 §6.4.1 SR)."""
        spf = self.sender.samples_per_frame
        if self.last_tick_at is None:
            return self.sender.timestamp
        elapsed = round((now - self.last_tick_at) / self.ptime * spf)
        return (self.sender.timestamp - spf + elapsed) & 0xFFFFFFFF

    def on_tick(self, skipped: int) -> None:
        self.sender.skip(skipped)
        self.tick()

    def tick(self) -> None:
        """One 20 ms frame interval: send a frame, or let the timestamp advance."""
        self.last_tick_at = self.clock()
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
        """Tick on this stream's own deadlines until cancelled (or `frames` ticks have happened)."""
        async for skipped in ticks(self.ptime, self.clock, frames):
            self.on_tick(skipped)
