"""The lean engine's waiting machinery (harness/load/lean/signal.py): Signals resume their Plays in
the call that sets them, one Clock keeps every deadline of a loop in order, a closed Play runs its
`finally` blocks; and a lean load instance that runs out of time closes its flows and says why."""

from __future__ import annotations

import asyncio

import pytest

from harness.agents.errors import FlowTimeout
from harness.load.lean.signal import (
    Clock,
    Flow,
    FlowCancelled,
    Play,
    Signal,
    all_done,
    clock,
    from_coroutine,
    play,
    wait,
)


def test_a_play_resumes_in_the_call_that_sets_its_signal() -> None:
    first: Signal[int] = Signal()
    second: Signal[int] = Signal()
    trace: list[str] = []

    def flow() -> Flow[int]:
        trace.append("start")
        a = yield first
        trace.append(f"a={a}")
        b = yield second
        return a + b

    done = play(flow())
    assert trace == ["start"] and not done.done
    first.set(1)
    assert trace == ["start", "a=1"] and not done.done  # resumed inside set(), no loop involved
    second.set(2)
    assert done.done and done.result() == 3


def test_errors_reach_the_flow_and_its_outcome() -> None:
    failing: Signal[int] = Signal()

    def caught() -> Flow[str]:
        try:
            yield failing
        except FlowTimeout as exc:
            return f"caught {exc}"
        return "not reached"

    def uncaught() -> Flow[None]:
        yield failing

    a, b = play(caught()), play(uncaught())
    failing.fail(FlowTimeout("x"))
    assert a.result() == "caught x"
    assert isinstance(b.error, FlowTimeout)
    with pytest.raises(FlowTimeout):
        b.result()


def test_a_signal_already_set_does_not_suspend_and_sets_once() -> None:
    ready = Signal.of(5)
    ready.set(6)  # a second outcome is ignored
    ready.fail(RuntimeError("late"))

    def flow() -> Flow[int]:
        total = 0
        for _ in range(10_000):  # a loop, not recursion: no RecursionError
            total += yield ready
        return total

    assert play(flow()).result() == 50_000


def test_all_done_waits_for_every_outcome() -> None:
    signals: list[Signal[int]] = [Signal(), Signal()]
    together = all_done(signals)
    signals[0].fail(RuntimeError("one failed"))
    assert not together.done
    signals[1].set(1)
    assert together.done and together.error is None
    assert all_done([]).done


def test_closing_a_play_runs_its_finally_and_fails_its_outcome() -> None:
    never: Signal[None] = Signal()
    cleaned: list[str] = []

    def flow() -> Flow[None]:
        try:
            yield never
        finally:
            cleaned.append("finally")

    running = Play(flow())
    running.close()
    assert cleaned == ["finally"] and isinstance(running.done.error, FlowCancelled)
    never.set(None)  # a late outcome does not bring it back
    assert cleaned == ["finally"]


def test_the_clock_fires_in_order_also_when_a_callback_arms_a_later_deadline() -> None:
    """One loop timer for every deadline: a callback that adds a later deadline must not postpone
    an earlier one already waiting (the timer is re-armed for the earliest)."""
    async def main() -> list[tuple[str, float]]:
        ticks = Clock(asyncio.get_running_loop())
        start = ticks.time()
        fired: list[tuple[str, float]] = []

        def first() -> None:
            fired.append(("first", ticks.time() - start))
            ticks.at(start + 0.5, lambda: fired.append(("late", ticks.time() - start)))

        ticks.at(start + 0.02, first)
        ticks.at(start + 0.1, lambda: fired.append(("second", ticks.time() - start)))
        cancelled = ticks.at(start + 0.05, lambda: fired.append(("cancelled", 0.0)))
        cancelled.cancel()
        await asyncio.sleep(0.7)
        return fired

    fired = asyncio.run(main())
    assert [name for name, _ in fired] == ["first", "second", "late"]
    assert 0.1 <= fired[1][1] < 0.4, fired  # not held back to the later deadline


def test_the_clock_fires_wait_bounds_and_other_deadlines_in_one_time_order() -> None:
    """Wait bounds queue per delay (FIFOs), other deadlines in the heap: they still fire in time
    order together; a bound whose signal is done is dropped with its callback (nothing kept alive)."""
    async def main() -> tuple[list[str], Signal[int], Signal[int]]:
        ticks = Clock(asyncio.get_running_loop())
        start = ticks.time()
        fired: list[str] = []
        ticks.at(start + 0.06, lambda: fired.append("heap 0.06"))
        ticks.after(0.02, lambda: fired.append("fifo 0.02"))
        ticks.after(0.08, lambda: fired.append("fifo 0.08"))
        ticks.at(start + 0.04, lambda: fired.append("heap 0.04"))
        ticks.after(0.02, lambda: fired.append("fifo 0.02 again"))
        timed_out: Signal[int] = Signal()
        answered: Signal[int] = Signal()
        ticks.within(timed_out, 0.03, "the answer")
        ticks.within(answered, 0.03, "the answer")
        bound = answered.bound
        answered.set(1)
        assert bound is not None and bound.callback is None and answered.bound is None
        await asyncio.sleep(0.2)
        return fired, timed_out, answered

    fired, timed_out, answered = asyncio.run(main())
    assert fired == ["fifo 0.02", "fifo 0.02 again", "heap 0.04", "heap 0.06", "fifo 0.08"]
    assert isinstance(timed_out.error, FlowTimeout) and answered.result() == 1


def test_within_and_sleep_on_the_running_loops_clock() -> None:
    async def main() -> None:
        ticks = clock()
        assert clock() is ticks
        pending: Signal[int] = Signal()
        with pytest.raises(FlowTimeout, match="the answer within 0.05 s"):
            await wait(ticks.within(pending, 0.05, "the answer"))
        answered = ticks.within(Signal.of(3), 0.05, "the answer")
        await asyncio.sleep(0.1)
        assert answered.result() == 3
        started = ticks.time()
        await wait(ticks.sleep(0.05))
        assert ticks.time() - started >= 0.045

    asyncio.run(main())


def test_a_coroutine_awaited_by_a_flow() -> None:
    async def main() -> tuple[str, BaseException | None]:
        async def work() -> str:
            await asyncio.sleep(0.01)
            return "done"

        async def broken() -> None:
            raise ValueError("broken")

        def flow() -> Flow[str]:
            result = yield from_coroutine(work())
            return result

        ok = await wait(play(flow()))
        bad = from_coroutine(broken())
        await asyncio.sleep(0.02)
        return ok, bad.error

    ok, error = asyncio.run(main())
    assert ok == "done" and isinstance(error, ValueError)


def test_a_lean_instance_out_of_time_closes_its_flows_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CS never hears the conference INVITE (it is dropped): the instance ends at its own
    timeout, before the step's wait would; the step is recorded as cancelled, not left running."""
    from harness.agents.placement import reserve_loopback
    from harness.load.lean.cs import LeanCs
    from harness.load.runner import LoadRun

    monkeypatch.setattr(LeanCs, "_new_invite", lambda self, invite: None)
    reservation = reserve_loopback(range(170, 254))
    subnet = reservation.subnet
    reservation.close()
    run = LoadRun(subnet, 1, 1, media_seconds=0.0, wait=20.0, instance_timeout=2.0, media=False)
    record, = asyncio.run(run.run())
    assert record.error == "instance did not finish within 2 s"
    step = record.steps["12~14"]
    assert step.status == "failed" and "cancelled" in step.detail, step
    assert step.ended is not None and record.ended is not None and record.ended - record.started < 10
    assert record.steps["1"].status == "done" and record.steps["16~21"].status == "not-run"


def test_a_step_action_without_a_lean_flow_is_refused_before_any_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    """A step table that gains an action conduct.py has no flow for stops the lean load at once, by
    name, instead of a KeyError inside every instance."""
    from harness.load.lean import conduct
    from harness.load.runner import LoadRun

    assert conduct.unknown_actions() == set()
    monkeypatch.delitem(conduct.ACTIONS, "hold")
    with pytest.raises(ValueError, match=r"no lean flow: \['hold'\]"):
        LoadRun(1, 1, 1)
    LoadRun(1, 1, 1, engine="agents")  # the reference agents' choreography has its own table
