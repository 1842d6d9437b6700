"""The loop-lag probe tells a load run's own overload from the SUT's: a loop stalled past T1/2, or
late by T1/6 in 1 % of its probes, is reported as overloaded, an idle one is not, and the summary
says so in words."""

from __future__ import annotations

import asyncio
import time

from harness.load.lag import STALL, STEADY, LoopLag
from harness.load.summary import render


async def _probe(busy: float, idle: float = 0.3) -> LoopLag:
    lag = LoopLag(interval=0.02)
    lag.start()
    try:
        await asyncio.sleep(0.05)
        if busy:
            time.sleep(busy)  # the loop's only thread does something else: every datagram would wait
        await asyncio.sleep(idle)
    finally:
        lag.stop()
    return lag


def test_an_idle_loop_runs_its_probes_on_time() -> None:
    lag = asyncio.run(_probe(busy=0.0))
    report = lag.report()
    assert report["probes"] >= 5
    assert report["max"] < STALL * 1000 and report["p50"] < STEADY * 1000


def test_a_loop_blocked_past_half_t1_is_overloaded_once() -> None:
    lag = asyncio.run(_probe(busy=STALL + 0.05))
    report = lag.report()
    assert report["overloaded"] and report["max"] >= STALL * 1000
    # One stall is one late probe: re-armed from when it ran, not a burst of catch-up probes.
    assert sum(s >= STALL / 2 for s in lag.samples) == 1
    assert report["p50"] < STEADY * 1000


def test_overloaded_by_a_stall_or_by_steady_lateness_not_by_one_late_probe() -> None:
    def overloaded(samples: list[float]) -> bool:
        return LoopLag(samples=samples).overloaded

    on_time = [0.001] * 199
    assert not overloaded(on_time) and not overloaded([])
    assert not overloaded(on_time + [STEADY + 0.01])  # one probe in 200 late by T1/6: below p99
    assert overloaded(on_time[:190] + [STEADY + 0.01] * 10)  # 5 % of them: every round trip meets T1
    assert overloaded(on_time + [STALL])  # one stall of T1/2
    assert LoopLag(samples=on_time[:190] + [STEADY] * 10).report()["late_probes"] == 10


def test_stop_disarms_the_probe() -> None:
    async def main() -> int:
        lag = LoopLag(interval=0.01)
        lag.start()
        await asyncio.sleep(0.05)
        lag.stop()
        seen = len(lag.samples)
        await asyncio.sleep(0.05)
        return len(lag.samples) - seen

    assert asyncio.run(main()) == 0


def _summary(lag: dict[str, object]) -> dict[str, object]:
    return {"instances_judged": 4, "instances_started": 4, "passed": 3, "failed": 1, "elapsed_s": 2.0,
            "instances_per_s": 2.0, "engine": "lean", "step_failures": {}, "call_setup_ms": {},
            "flow_duration_ms": {}, "retransmissions": {"total": 7, "per_step": {}}, "agent_errors": {},
            "event_loop_lag_ms": lag}


def test_the_summary_warns_when_the_harness_was_overloaded() -> None:
    late = {"probes": 40, "p50": 1.0, "p90": 3.0, "p99": 300.0, "max": 320.0, "late_probes": 1, "overloaded": True}
    text = render(_summary(late))
    assert "harness event loop late: p50 1 ms p99 300 ms max 320 ms" in text
    assert "warning: the harness was overloaded" in text and "lower --concurrency or --rate" in text
    calm = {**late, "p99": 3.0, "max": 4.0, "late_probes": 0, "overloaded": False}
    assert "overloaded" not in render(_summary(calm))
    assert "event loop" not in render(_summary({}))  # a run that never started its instances


def test_starts_wait_while_the_loop_is_late_and_go_at_once_when_it_is_not() -> None:
    async def main(latest: float) -> tuple[float, float]:
        lag = LoopLag(interval=0.02)
        lag.samples.append(latest)  # as if the last probe had run that late
        lag.start()
        try:
            began = time.monotonic()
            await asyncio.wait_for(lag.settled(0.05), 2.0)  # the idle loop's next probes are on time
            return time.monotonic() - began, lag.held
        finally:
            lag.stop()

    waited, held = asyncio.run(main(0.3))
    assert waited >= 0.02 and held >= 0.02  # held back until a probe ran on time
    waited, held = asyncio.run(main(0.0))
    assert waited < 0.02 and held == 0.0


def test_a_probe_that_is_not_running_holds_nothing_back() -> None:
    lag = LoopLag(samples=[STALL])  # late, and never started: no probe will ever say otherwise
    asyncio.run(asyncio.wait_for(lag.settled(0.05), 1.0))
    assert lag.held < 0.5
