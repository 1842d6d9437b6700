"""The 20 ms pacer (harness/rtp/stream.py): an absolute grid without drift, the catch-up policy after a
stall (backlog of up to MAX_CATCHUP_FRAMES sent back-to-back, a longer one skipped with the RTP
timestamp kept on the sampling clock and the marker set), the adaptive busy-wait margin and the
real-time priority of the busy-wait and the sends. Clocks here are fakes that move only when read (or when a test says so),
so every count is exact and nothing is timed; pacing speed is measured in benchmarks/rtp_pacing.py."""

from __future__ import annotations

import asyncio
import os
import random
import threading

import pytest

from harness.rtp import RtpPacket, RtpStream, silence
from harness.rtp.stream import (
    LIGHT_SHARE,
    MAX_CATCHUP_FRAMES,
    CpuShare,
    Grid,
    Pacer,
    Realtime,
    SpinMargin,
    spin_until,
    ticks,
)

P = 20_000_000  # 20 ms in ns


class FakeClock:
    """Nanoseconds that advance `step` per read, plus whatever a test adds (a stall)."""

    def __init__(self, start: int = 10**12 + 123_456, step: int = 1_000) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> int:
        self.now += self.step
        return self.now


class Sink:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append(data)


def test_grid_deadlines_are_start_plus_n_periods_whatever_the_service_jitter() -> None:
    grid = Grid(start_ns=987_654_321, period_ns=P)
    rng = random.Random(5)
    for n in range(50_000):  # 1000 s of 20 ms frames, each served up to 19 ms late
        assert grid.deadline_ns == 987_654_321 + n * P
        assert grid.take(grid.deadline_ns + rng.randrange(0, P - 1)) == 0
        grid.advance()


@pytest.mark.parametrize("phase", [0, 7_654_321])
def test_aligned_grids_share_their_deadlines(phase: int) -> None:
    a = Grid.aligned(1_000_000_007, P, phase_ns=phase)
    b = Grid.aligned(1_000_000_007 + 3 * P + 12_345, P, phase_ns=phase)
    assert a.deadline_ns % P == phase and 1_000_000_007 < a.deadline_ns <= 1_000_000_007 + P
    assert (b.deadline_ns - a.deadline_ns) % P == 0


@pytest.mark.parametrize("late_periods", range(0, MAX_CATCHUP_FRAMES + 1))
def test_backlog_up_to_the_bound_is_caught_up_back_to_back(late_periods: int) -> None:
    grid = Grid(0, P)
    now = late_periods * P + P // 2  # the first point served this late: `late_periods` more are due
    served = 0
    while grid.deadline_ns <= now:  # everything due is served at once, nothing skipped
        assert grid.take(now) == 0
        grid.advance()
        served += 1
    assert served == late_periods + 1
    assert grid.deadline_ns == (late_periods + 1) * P  # back on the grid, no point lost


@pytest.mark.parametrize("late_periods", [MAX_CATCHUP_FRAMES + 1, 12, 500])
def test_longer_backlog_is_skipped_not_burst(late_periods: int) -> None:
    grid = Grid(0, P)
    now = late_periods * P + P // 2
    skipped = grid.take(now)
    assert skipped == late_periods  # all due points but the newest given up
    assert grid.deadline_ns == late_periods * P <= now  # the newest due point is served now
    grid.advance()
    assert grid.deadline_ns > now  # ... and the next one is in the future: a single frame, no burst
    assert grid.index == late_periods + 1  # the sampling clock kept count of every point


def test_spin_margin_adapts_between_its_bounds_and_a_fixed_one_does_not() -> None:
    margin = SpinMargin(low=0.0005, high=0.004, guard=0.0003, window=3)
    margin.observe(0)
    assert margin.ns == 500_000  # a punctual timer: the floor
    margin.observe(1_000_000)
    assert margin.ns == 1_300_000  # the longest recent delay plus the guard
    margin.observe(50_000_000)
    assert margin.ns == 4_000_000  # capped
    for _ in range(3):
        margin.observe(100_000)
    assert margin.ns == 500_000  # the stall left the window
    fixed = SpinMargin(fixed=0.002)
    fixed.observe(50_000_000)
    assert fixed.ns == 2_000_000


def test_spin_until_reaches_the_deadline_and_reports_the_longest_gap() -> None:
    clock = FakeClock(start=0, step=1_000)
    reads = iter([0, 1_000, 2_000, 302_000, 303_000, 10_000_000])
    assert spin_until(303_000, lambda: next(reads)) == 300_000
    assert spin_until(5_000_000, clock) == 1_000 and clock.now >= 5_000_000


def _run_ticks(frames: int, stall_after: int, stall_ns: int) -> list[tuple[int, int]]:
    """(skipped, grid index served) per tick of `ticks()` on a fake clock stalled once."""
    clock = FakeClock(step=1_000)

    async def main() -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        start = None
        async for skipped in ticks(0.004, clock_ns=clock, frames=frames):
            now = clock.now
            start = now if start is None else start
            out.append((skipped, now))
            if len(out) == stall_after:
                clock.now += stall_ns
        return out

    rows = asyncio.run(main())
    first = rows[0][1]
    return [(skipped, round((now - first) / 4_000_000)) for skipped, now in rows]


def test_ticks_skip_a_long_stall_and_catch_up_a_short_one() -> None:
    long = _run_ticks(frames=12, stall_after=3, stall_ns=40_000_000)  # 10 periods of 4 ms
    skipped = [s for s, _ in long]
    assert skipped[:3] == [0, 0, 0] and skipped[3] > MAX_CATCHUP_FRAMES and not any(skipped[4:])
    # after the skip each tick is one period after the previous: no burst
    slots = [slot for _, slot in long[3:]]
    assert slots == list(range(slots[0], slots[0] + len(slots)))
    short = _run_ticks(frames=12, stall_after=3, stall_ns=12_500_000)  # served at 20.5 ms: 12, 16, 20 due
    assert not any(s for s, _ in short)
    slots = [slot for _, slot in short]
    assert slots[:3] == [0, 1, 2]
    assert slots[3:6] == [5, 5, 5]  # the backlog, back-to-back
    assert slots[6:] == [6, 7, 8, 9, 10, 11]  # then on the grid again


def _stream_through_a_stall(stall_ns: int, ticks_before: int = 3, ticks_after: int = 3
                            ) -> tuple[list[RtpPacket], Pacer]:
    """An RtpStream on a Pacer with a fake clock; the clock jumps `stall_ns` after `ticks_before`."""
    clock = FakeClock(step=2_000)
    sink = Sink()
    stream = RtpStream(sink, silence, remote=("127.0.0.1", 9))
    pacer = Pacer(clock_ns=clock, spin=0.001, realtime=None)
    wanted = ticks_before + ticks_after

    async def main() -> None:
        done = asyncio.get_running_loop().create_future()
        seen = 0

        def watch(skipped: int) -> None:
            nonlocal seen
            seen += 1
            if seen == ticks_before:
                clock.now += stall_ns
            if len(sink.sent) >= wanted and not done.done():
                done.set_result(None)

        pacer.add(stream.on_tick)
        pacer.add(watch)
        await asyncio.wait_for(done, 10.0)
        pacer.remove(stream.on_tick)
        pacer.remove(watch)

    asyncio.run(main())
    return [RtpPacket.parse(d) for d in sink.sent], pacer


def test_stream_after_a_long_stall_jumps_its_timestamp_and_marks_the_packet() -> None:
    packets, pacer = _stream_through_a_stall(stall_ns=300_000_000)  # 15 frames
    seqs = [p.sequence for p in packets]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))]  # nothing reported lost
    steps = [(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in zip(packets, packets[1:], strict=False)]
    jump = steps[2]
    assert pacer.stats.skipped > MAX_CATCHUP_FRAMES
    assert jump == 160 * (1 + pacer.stats.skipped)  # the sampling clock counted the skipped frames
    assert steps[:2] == [160, 160] and set(steps[3:]) == {160}
    assert [p.marker for p in packets] == [True, False, False, True] + [False] * (len(packets) - 4)


def test_stream_after_a_short_stall_sends_the_backlog_unmarked() -> None:
    packets, pacer = _stream_through_a_stall(stall_ns=70_000_000, ticks_after=8)  # 3.5 frames
    steps = {(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in zip(packets, packets[1:], strict=False)}
    assert steps == {160} and pacer.stats.skipped == 0
    assert [p.marker for p in packets] == [True] + [False] * (len(packets) - 1)


def _in_a_thread(fn):  # type: ignore[no-untyped-def]
    """Run `fn` in a fresh thread (scheduling policy is per thread: pytest's own stays untouched)."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    thread.join(30.0)
    return result[0]


def test_realtime_window_gets_fifo_or_says_why_and_restores() -> None:
    def probe() -> tuple[str, int, int]:
        before = os.sched_getscheduler(0)
        window = Realtime(3)
        window.enter()
        during = os.sched_getscheduler(0)
        window.leave()
        assert os.sched_getscheduler(0) == before
        return window.policy, before, during

    said, before, during = _in_a_thread(probe)
    if said.startswith("SCHED_FIFO"):
        assert during & ~os.SCHED_RESET_ON_FORK == os.SCHED_FIFO
    else:
        assert "refused" in said and during == before


def test_cpu_share_over_its_window() -> None:
    share = CpuShare(window=3, first=2)
    share.add(0, 0)
    share.add(10, 9)
    assert share.share is None  # fewer than `first` intervals
    share.add(20, 10)
    assert share.share == pytest.approx(0.5)  # 10 of CPU in 20 of wall
    share.add(30, 12)
    assert share.share == pytest.approx(0.4)
    share.add(40, 40)
    assert share.share == pytest.approx(31 / 30)  # the oldest sample left the window


def _pacer_policies(realtime: int | None, light_share: float = LIGHT_SHARE
                    ) -> tuple[str, set[int], list[int], int, int]:
    """Run a Pacer in a fresh thread for a few ticks: (its policy note, the thread's policies seen by a
    subscriber, the policies seen between ticks, before, after)."""
    def run() -> tuple[str, set[int], list[int], int, int]:
        policies: set[int] = set()
        between: list[int] = []
        before = os.sched_getscheduler(0)

        async def main() -> str:
            pacer = Pacer(spin=0.0005, realtime=realtime, light_share=light_share)
            pacer.load_window = 2
            done = asyncio.get_running_loop().create_future()

            def tick(_skipped: int) -> None:
                policies.add(os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK)
                asyncio.get_running_loop().call_soon(
                    lambda: between.append(os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK))
                if len(between) >= 6 and not done.done():
                    done.set_result(None)

            pacer.add(tick)
            await asyncio.wait_for(done, 5.0)
            pacer.remove(tick)
            await asyncio.sleep(0.05)  # the pacer sees no subscriber and ends
            return pacer.stats.policy

        said = asyncio.run(main())
        return said, policies, between, before, os.sched_getscheduler(0)

    return _in_a_thread(run)


def test_realtime_pacer_is_fifo_for_its_sends_and_restores_the_thread() -> None:
    said, policies, between, before, after = _pacer_policies(realtime=2, light_share=-1.0)
    assert set(between) == {before} and after == before  # a busy loop's other work runs as it did
    if said.startswith("SCHED_FIFO"):
        assert policies == {os.SCHED_FIFO}
    else:
        assert "refused" in said and policies == {before}


def test_light_loop_stays_fifo_between_ticks_once_measured() -> None:
    said, policies, between, before, after = _pacer_policies(realtime=2, light_share=2.0)
    assert after == before
    if said.startswith("SCHED_FIFO"):
        assert between[:2] == [before, before]  # the first ticks: share not known yet
        assert between[-1] == os.SCHED_FIFO  # then the wake-up keeps the priority too
    else:
        assert set(between) == {before}


def test_refused_priority_is_reported_and_pacing_goes_on() -> None:
    said, policies, between, before, after = _pacer_policies(realtime=1000)  # no such priority
    assert said.startswith("SCHED_OTHER (SCHED_FIFO 1000 refused")
    assert policies == {before} and set(between) == {before} and after == before


def test_no_realtime_means_no_policy_change() -> None:
    said, policies, _, before, _ = _pacer_policies(realtime=None)
    assert said == "SCHED_OTHER" and policies == {before}
