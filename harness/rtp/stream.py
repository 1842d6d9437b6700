"""Paced RTP: one frame every 20 ms on an absolute grid, without drift.

Grid. Deadlines are start + n*ptime in integer nanoseconds of `time.monotonic_ns()` (`Grid`), never
"now + ptime": scheduling jitter and float rounding cannot accumulate, a stream is as long as the wall
clock says after any number of ticks.

One pacer per event loop. Every stream of a loop ticks on one shared grid (`Pacer`): one wake-up per
20 ms for any number of streams, and at the deadline every subscriber sends its frame, back to back
(30 streams: ~0.5 ms from the first to the last `sendto` on loopback). Each pacer has a random phase,
so the pacers of parallel processes (xdist workers) do not all busy-wait at the same instants.

Hitting the deadline. The wake-up is an asyncio timer set `margin` before the deadline; epoll counts
in whole milliseconds and asyncio rounds up, so the request is floored to whole milliseconds and never
lands after that point. The rest is a busy-wait on the clock. A sleeping vCPU of this VM class wakes
~0.1 ms late typically but 1-3 ms late at p99, so the margin adapts (`SpinMargin`): the longest wake-up
delay of the last 5 s plus 0.3 ms, between 0.5 and 4 ms (a fixed margin can be set instead). The price
is CPU while streams run: margin + ~0.5 ms of spinning per 20 ms, i.e. 5-20 % of one CPU per process.

Priority. A busy-waiting SCHED_OTHER thread is the first one the kernel preempts when anything else
wants its CPU (another test, dumpcap, a kworker), and its wake-up waits behind them: that, not the
timer, made most late ticks here. So the pacer runs its busy-wait and sends under SCHED_FIFO
(`Realtime`, priority `REALTIME_PRIORITY`), and keeps the loop's thread SCHED_FIFO between ticks too,
so that the wake-up preempts, but only while that thread used at most `LIGHT_SHARE` (50 %) of a CPU
over the last second (`CpuShare`). A loop busier than that (load runs, heavy SIP) goes back to its own
policy after each batch, so real-time work stays bounded and dumpcap, whose capture is the evidence,
cannot be starved; children forked meanwhile start SCHED_OTHER (SCHED_RESET_ON_FORK); the thread's
policy is restored when the pacer stops. Without the privilege (not root, no CAP_SYS_NICE) the pacer
says so in `stats.policy` and paces as SCHED_OTHER.

Why the event loop and not a pacing thread: the loop already owns the sockets, and a thread would need
the GIL back at every deadline from a loop thread that is parsing SIP or receiving our own RTP; CPython
hands it over only when the holder blocks or after `sys.getswitchinterval()` (5 ms), and `sendto`
releases it, so a batch would be interleaved with the loop's work.

Catch-up policy (RFC 3550 keeps the timestamp on the sampling clock either way). When the loop was
late, every grid point that has passed is still owed a frame. Up to `MAX_CATCHUP_FRAMES` (5 = 100 ms)
of backlog are sent back-to-back: frames that late still fit a receiver's jitter buffer (typically
60-200 ms), the audio stays continuous and the receiver sees delay jitter, not a gap. A longer backlog
(a stopped VM, a blocked loop) is skipped: those frames would arrive too late to be played, and a burst
of them would only flood the receiver. The stream resumes on the current grid point with the timestamp
advanced by the skipped frames, the sequence number continuing (nothing was lost) and the marker bit
set, since packets were not sent contiguously (RFC 3551 §4.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from harness.rtp.packet import RtpSender

log = logging.getLogger(__name__)

PTIME = 0.020
MAX_CATCHUP_FRAMES = 5  # backlog sent back-to-back after a late tick; a longer one is skipped
SPIN = 0.002  # the busy-wait margin before the first wake-up has been measured
SPIN_MIN = 0.0005
SPIN_MAX = 0.004
SPIN_GUARD = 0.0003  # added to the longest recent wake-up delay
SPIN_WINDOW = 250  # ticks (5 s) of wake-up delays the margin is taken from
REALTIME_PRIORITY = 10  # SCHED_FIFO priority of the busy-wait and the sends, when the system allows it
LIGHT_SHARE = 0.5  # the loop thread stays SCHED_FIFO between ticks while it uses at most this much CPU
LOAD_WINDOW = 50  # ticks (1 s) over which that share is measured
LOAD_FIRST = 10  # ... and judged first after this many ticks (0.2 s of SCHED_OTHER between ticks)
STALL_NS = 200_000  # a gap this long between two clock reads of the busy-wait: the process did not run
_MS = 1_000_000

ClockNs = Callable[[], int]


class Grid:
    """Deadlines start + index*period (ns) and the catch-up policy; sans-IO, the caller brings `now`."""

    def __init__(self, start_ns: int, period_ns: int, max_catchup: int = MAX_CATCHUP_FRAMES) -> None:
        self.start_ns = start_ns
        self.period_ns = period_ns
        self.max_catchup = max_catchup
        self.index = 0  # the next grid point owed a frame

    @classmethod
    def aligned(cls, now_ns: int, period_ns: int, max_catchup: int = MAX_CATCHUP_FRAMES, phase_ns: int = 0) -> Grid:
        """The grid phase + k*period, starting at its first point after `now_ns` (grids started at
        different times with the same phase share their deadlines)."""
        return cls(((now_ns - phase_ns) // period_ns + 1) * period_ns + phase_ns, period_ns, max_catchup)

    @property
    def deadline_ns(self) -> int:
        return self.start_ns + self.index * self.period_ns

    def take(self, now_ns: int) -> int:
        """The point at `deadline_ns` is being served at `now_ns`. Returns how many points are skipped
        first (0 normally): when more than `max_catchup` later points have passed too, all of them but
        the newest are given up and `deadline_ns` moves to the newest (see the module doc)."""
        backlog = (now_ns - self.deadline_ns) // self.period_ns
        skipped = backlog if backlog > self.max_catchup else 0
        self.index += skipped
        return skipped

    def advance(self) -> None:
        self.index += 1


class SpinMargin:
    """How long before a deadline to wake up and busy-wait: fixed, or adapted to recent wake-up delays."""

    def __init__(self, fixed: float | None = None, initial: float = SPIN, low: float = SPIN_MIN,
                 high: float = SPIN_MAX, guard: float = SPIN_GUARD, window: int = SPIN_WINDOW) -> None:
        self.fixed = fixed
        self.low_ns, self.high_ns, self.guard_ns = round(low * 1e9), round(high * 1e9), round(guard * 1e9)
        self.ns = round((initial if fixed is None else fixed) * 1e9)
        self._recent: deque[int] = deque(maxlen=window)

    def observe(self, delay_ns: int) -> None:
        """A timer asked for instant t fired at t + `delay_ns`."""
        self._recent.append(delay_ns)
        if self.fixed is None:
            self.ns = min(self.high_ns, max(self.low_ns, max(self._recent) + self.guard_ns))


def spin_until(deadline_ns: int, clock_ns: ClockNs = time.monotonic_ns) -> int:
    """Busy-wait until `deadline_ns`; returns the longest gap between two clock reads (ns): time this
    process was not running (preemption, host steal), the floor under any pacing on this machine."""
    last = now = clock_ns()
    gap = 0
    while now < deadline_ns:
        now = clock_ns()
        if now - last > gap:
            gap = now - last
        last = now
    return gap


async def wake_before(deadline_ns: int, margin: SpinMargin, clock_ns: ClockNs = time.monotonic_ns) -> None:
    """Sleep on the loop until `margin` before `deadline_ns` (never later: asyncio's epoll timeout
    rounds up to whole ms, so the request is floored to whole ms), and teach `margin` how late the
    timer fired. Yields to the loop once even when already due."""
    now = clock_ns()
    wake = deadline_ns - margin.ns
    if wake - now >= _MS:
        asked = now + (wake - now) // _MS * _MS
        await asyncio.sleep((asked - now) / 1e9)
        margin.observe(max(0, clock_ns() - asked))
    elif deadline_ns <= now:
        await asyncio.sleep(0)


async def ticks(ptime: float = PTIME, clock_ns: ClockNs = time.monotonic_ns, frames: int | None = None,
                margin: SpinMargin | None = None) -> AsyncIterator[int]:
    """Yield once per grid point start + k*ptime (the first at once). Each value is how many points
    were skipped before this one by the catch-up policy (0 normally): callers advance their RTP
    timestamps by that much instead of sending a burst."""
    margin = margin or SpinMargin()
    grid = Grid(clock_ns(), round(ptime * 1e9))
    done = 0
    while frames is None or done < frames:
        await wake_before(grid.deadline_ns, margin, clock_ns)
        spin_until(grid.deadline_ns, clock_ns)
        yield grid.take(clock_ns())
        grid.advance()
        done += 1


TickFn = Callable[[int], None]


@dataclass
class PacerStats:
    """What a pacer saw. `trace` (None unless set to a list) gets one row per tick:
    (deadline ns, first subscriber called ns, longest busy-wait gap ns, margin ns, subscribers)."""

    ticks: int = 0
    late: int = 0  # ticks whose first frame left more than 0.5 ms after the deadline
    skipped: int = 0  # grid points given up by the catch-up policy
    spin_ns: int = 0  # time spent busy-waiting
    stalls: list[int] = field(default_factory=list)  # busy-wait gaps > STALL_NS (the last 1000)
    trace: list[tuple[int, int, int, int, int]] | None = None
    policy: str = "SCHED_OTHER"  # the scheduling policy the pacer obtained for its thread
    fifo_between: int = 0  # ticks after which the thread stayed SCHED_FIFO (its loop was light)


class Pacer:
    """A 20 ms grid shared by every stream of one event loop; runs while anyone is subscribed.

    Subscribers are called in subscription order with the number of skipped grid points (see `Grid`);
    one that raises is logged and dropped so it cannot stop the others' media. `spin`: a fixed
    busy-wait margin in seconds, None to adapt it (`SpinMargin`). `realtime`: the SCHED_FIFO priority
    of the busy-wait and the sends, and between ticks while the loop uses at most `light_share` of a
    CPU (None: never; see the module doc); `stats.policy` says what was obtained, also when the system
    refused it.
    """

    def __init__(self, ptime: float = PTIME, clock_ns: ClockNs = time.monotonic_ns,
                 spin: float | None = None, max_catchup: int = MAX_CATCHUP_FRAMES,
                 realtime: int | None = REALTIME_PRIORITY, light_share: float = LIGHT_SHARE) -> None:
        self.ptime = ptime
        self.period_ns = round(ptime * 1e9)
        self.clock_ns = clock_ns
        self.max_catchup = max_catchup
        self.margin = SpinMargin(spin)
        self.stats = PacerStats()
        self.realtime = realtime
        self.light_share = light_share
        self.load_window = LOAD_WINDOW
        # Every grid of this pacer has this phase: its streams stay on one grid across restarts, while
        # the pacers of other processes (xdist workers) busy-wait at other instants than this one.
        self.phase_ns = random.SystemRandom().randrange(self.period_ns)
        self._subscribers: dict[TickFn, None] = {}  # ordered set
        self._task: asyncio.Task[None] | None = None

    @property
    def spin(self) -> float | None:
        """The fixed busy-wait margin (s), None when adaptive; the margin in use is `margin.ns`."""
        return self.margin.fixed

    @spin.setter
    def spin(self, value: float | None) -> None:
        self.margin = SpinMargin(value)

    def add(self, fn: TickFn) -> None:
        self._subscribers[fn] = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="rtp-pacer")

    def remove(self, fn: TickFn) -> None:
        self._subscribers.pop(fn, None)

    def __len__(self) -> int:
        return len(self._subscribers)

    async def _run(self) -> None:
        clock_ns = self.clock_ns
        grid = Grid.aligned(clock_ns(), self.period_ns, self.max_catchup, self.phase_ns)
        stats = self.stats
        priority = Realtime(self.realtime) if self.realtime is not None else None
        load = CpuShare(self.load_window)
        stats.policy = priority.policy if priority is not None else "SCHED_OTHER"
        try:
            while self._subscribers:
                await wake_before(grid.deadline_ns, self.margin, clock_ns)
                if priority is not None:
                    priority.enter()
                spin_from = clock_ns()
                gap = spin_until(grid.deadline_ns, clock_ns)
                start = clock_ns()
                skipped = grid.take(start)
                for fn in list(self._subscribers):
                    try:
                        fn(skipped)
                    except Exception:
                        log.exception("RTP tick subscriber %r failed; dropped", fn)
                        self._subscribers.pop(fn, None)
                if priority is not None:
                    self._between_ticks(priority, load)
                    stats.policy = priority.policy
                self._account(grid, start, spin_from, gap, skipped, priority)
        finally:
            if priority is not None:
                priority.leave()

    def _between_ticks(self, priority: Realtime, load: CpuShare) -> None:
        """Keep SCHED_FIFO until the next tick (its wake-up then preempts whatever else runs) only
        while this thread's CPU share over the last second stays at most `light_share`; otherwise back
        to the thread's own policy until the next busy-wait."""
        load.add(time.monotonic_ns(), time.thread_time_ns())
        share = load.share
        if share is None or share > self.light_share:
            priority.leave()

    def _account(self, grid: Grid, start: int, spin_from: int, gap: int, skipped: int,
                 priority: Realtime | None) -> None:
        """Statistics of the tick just served, and on to the next grid point."""
        stats = self.stats
        deadline = grid.deadline_ns
        grid.advance()
        stats.ticks += 1
        stats.skipped += skipped
        stats.late += start - deadline > _MS // 2
        stats.spin_ns += max(0, start - spin_from)
        stats.fifo_between += priority is not None and priority.active
        if gap > STALL_NS:
            stats.stalls.append(gap)
            del stats.stalls[:-1000]
        if stats.trace is not None:
            stats.trace.append((deadline, start, gap, self.margin.ns, len(self._subscribers)))


_PACERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pacer] = weakref.WeakKeyDictionary()


def pacer() -> Pacer:
    """The running loop's shared 20 ms pacer."""
    loop = asyncio.get_running_loop()
    found = _PACERS.get(loop)
    if found is None:
        found = _PACERS[loop] = Pacer()
    return found


class Realtime:
    """SCHED_FIFO `priority` for the calling thread between `enter()` and `leave()` (children forked
    meanwhile do not inherit it). If the system refuses (not root, no CAP_SYS_NICE, no RLIMIT_RTPRIO),
    `policy` says why and later calls do nothing: the pacer then runs as before, and says so."""

    def __init__(self, priority: int) -> None:
        self.priority = priority
        self.policy = f"SCHED_FIFO {priority}"
        self.enabled = hasattr(os, "sched_setscheduler")
        if not self.enabled:
            self.policy = "SCHED_OTHER (no sched_setscheduler on this platform)"
        self.active = False
        self._fifo = os.sched_param(priority) if self.enabled else None
        self._before: tuple[int, os.sched_param] | None = None

    def enter(self) -> None:
        if not self.enabled or self.active:
            return
        if self._before is None:
            self._before = os.sched_getscheduler(0), os.sched_getparam(0)
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, self._fifo)
        except (OSError, ValueError) as exc:
            self.enabled = False
            self.policy = f"SCHED_OTHER (SCHED_FIFO {self.priority} refused: {exc})"
            log.info("RTP pacer: %s", self.policy)
            return
        self.active = True

    def leave(self) -> None:
        if self.active and self._before is not None:
            with contextlib.suppress(OSError, ValueError):
                os.sched_setscheduler(0, *self._before)
        self.active = False


class CpuShare:
    """How much of one CPU a thread used over its last `window` intervals between samples (wall and
    thread-CPU clocks); known from `first` intervals on."""

    def __init__(self, window: int = LOAD_WINDOW, first: int = LOAD_FIRST) -> None:
        self._samples: deque[tuple[int, int]] = deque(maxlen=window + 1)
        self.first = min(first, window)

    def add(self, wall_ns: int, cpu_ns: int) -> None:
        self._samples.append((wall_ns, cpu_ns))

    @property
    def share(self) -> float | None:
        if len(self._samples) <= self.first:
            return None
        (wall0, cpu0), (wall1, cpu1) = self._samples[0], self._samples[-1]
        return (cpu1 - cpu0) / (wall1 - wall0) if wall1 > wall0 else None


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
        """A grid point, after `skipped` given-up ones: the timestamp jumps over them and, as the
        packets were not contiguous, the next one sent is marked (RFC 3551 §4.1)."""
        if skipped:
            self.sender.skip(skipped)
            self._was_sending = False
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
        """Tick on this stream's own grid until cancelled (or `frames` ticks have happened)."""
        async for skipped in ticks(self.ptime, frames=frames):
            self.on_tick(skipped)
