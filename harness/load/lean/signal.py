"""What the lean engine waits with: a Signal (a value that arrives once), a Clock (every deadline of
a run in one heap under one loop timer) and a Play (a generator that yields Signals and is resumed
in the very call that sets one).

Why not asyncio's futures and tasks: a load run is thousands of short waits (a final response, an
ACK, a NOTIFY), and each await costs a task, a `call_soon` and an event-loop pass before the waiter
runs. A Play resumes synchronously when its Signal is set - inside the datagram callback that
brought the answer - so a message costs a function call, not a loop hop. The shape stays that of a
coroutine: an action reads top to bottom (`response = yield endpoint.request(...)`), and `yield from`
composes them. Only the event loop's socket readiness and one timer remain asynchronous.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

from harness.agents.errors import FlowTimeout

T = TypeVar("T")
Flow = Generator["Signal[Any]", Any, T]  # what a Play runs: yields Signals, returns its result


class FlowCancelled(Exception):
    """A Play closed before its flow finished (its instance ran out of time)."""


class Signal(Generic[T]):
    """A value or an error that arrives once; `then(callback)` runs now if it already has."""

    __slots__ = ("done", "value", "error", "_waiters", "bound")

    def __init__(self) -> None:
        self.done = False
        self.value: T | None = None
        self.error: BaseException | None = None
        self._waiters: list[Callable[[Signal[T]], None]] | None = None
        # Clock.within's timeout, dropped once the signal is done: its callback holds this Signal
        # (and so its value, a whole received Head) for the wait's full bound otherwise, seconds
        # after the instance has ended; the objects kept alive are what the GC pays for.
        self.bound: Timer | None = None

    def set(self, value: T) -> None:
        if not self.done:
            self.done, self.value = True, value
            self._wake()

    def fail(self, error: BaseException) -> None:
        if not self.done:
            self.done, self.error = True, error
            self._wake()

    def then(self, callback: Callable[[Signal[T]], None]) -> None:
        if self.done:
            callback(self)
        elif self._waiters is None:
            self._waiters = [callback]
        else:
            self._waiters.append(callback)

    def result(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]

    def _wake(self) -> None:
        """Done: the bound, if any, is dropped (its callback let go), then the waiters run."""
        if self.bound is not None:
            self.bound.callback = None
            self.bound = None
        waiters, self._waiters = self._waiters, None
        for callback in waiters or ():
            callback(self)

    @classmethod
    def of(cls, value: T) -> Signal[T]:
        signal: Signal[T] = cls()
        signal.set(value)
        return signal


class Clock:
    """The deadlines of one event loop under ONE loop timer: a heap of (when, sequence, timer) for
    any deadline (`at`), and a FIFO per delay for the bounds of waits (`after`, `within`).
    A handle's `cancel()` leaves its entry in place, skipped when it comes up (a wait ends far more
    often than it times out).

    Why the FIFOs: a load run keeps thousands of wait bounds pending (every wait of every running
    instance, each for `wait` seconds), and a heap that size costs a few us a push and a pop; deadlines
    set with one delay come due in the order they were set, so a deque per delay holds them at O(1).
    Entries still fire in time order across the heap and the FIFOs."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.time = loop.time
        self._heap: list[tuple[float, int, Timer]] = []
        self._fifos: dict[float, deque[tuple[float, Timer]]] = {}
        self._sequence = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._handle_at = float("inf")

    def at(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(callback)
        heapq.heappush(self._heap, (when, next(self._sequence), timer))
        if when < self._handle_at:
            self._arm(when)
        return timer

    def after(self, delay: float, callback: Callable[[], None]) -> Timer:
        """`at(now + delay)` for a delay used over and over (a wait's bound): queued in that delay's FIFO."""
        when = self.time() + delay
        fifo = self._fifos.get(delay)
        if fifo is None:
            fifo = self._fifos[delay] = deque()
        timer = Timer(callback)
        fifo.append((when, timer))
        if when < self._handle_at:
            self._arm(when)
        return timer

    def sleep(self, seconds: float) -> Signal[None]:
        signal: Signal[None] = Signal()
        self.at(self.time() + seconds, lambda: signal.set(None))
        return signal

    def within(self, signal: Signal[T], timeout: float, what: str) -> Signal[T]:
        """`signal`, failed with FlowTimeout("<what> within <timeout> s") if still pending by then."""
        if not signal.done:
            signal.bound = self.after(timeout, lambda: signal.fail(FlowTimeout(f"{what} within {timeout:g} s")))
        return signal

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self._handle_at = self.loop.call_at(when, self._fire), when

    def _fire(self) -> None:
        self._handle, self._handle_at = None, float("inf")
        heap, fifos, now = self._heap, self._fifos, self.time()
        while True:  # the earliest entry due, from the heap or a FIFO's head
            when, source = (heap[0][0] if heap else now + 1.0), None
            for fifo in fifos.values():
                if fifo and fifo[0][0] < when:
                    when, source = fifo[0][0], fifo
            if when > now:
                break
            timer = heapq.heappop(heap)[2] if source is None else source.popleft()[1]
            if timer.callback is not None:
                callback, timer.callback = timer.callback, None
                callback()
        while heap and heap[0][2].callback is None:
            heapq.heappop(heap)
        following = heap[0][0] if heap else float("inf")
        for delay, fifo in list(fifos.items()):
            while fifo and fifo[0][1].callback is None:
                fifo.popleft()
            if not fifo:
                del fifos[delay]  # a delay not used again leaves nothing behind
            elif fifo[0][0] < following:
                following = fifo[0][0]
        if following < self._handle_at:  # a callback above may have armed a later one
            self._arm(following)


class Timer:
    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        self.callback = None


_CLOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Clock] = weakref.WeakKeyDictionary()


def clock() -> Clock:
    """The Clock of the running event loop (the last one found is kept at hand: a load run asks for it
    per endpoint)."""
    loop = asyncio.get_running_loop()
    last = _LAST_CLOCK[0]
    if last is not None and last.loop is loop:
        return last
    found = _CLOCKS.get(loop)
    if found is None:
        found = _CLOCKS[loop] = Clock(loop)
    _LAST_CLOCK[0] = found
    return found


_LAST_CLOCK: list[Clock | None] = [None]


class Play(Generic[T]):
    """Runs `flow` to its end; `done` gets what it returns or raises. Each Signal it yields resumes it
    when set (at once when already set, in a loop rather than by recursion)."""

    __slots__ = ("flow", "done")

    def __init__(self, flow: Flow[T]) -> None:
        self.flow = flow
        self.done: Signal[T] = Signal()
        self._run(None, None)

    def close(self) -> None:
        """End the flow where it waits (GeneratorExit there: its `finally` blocks run)."""
        self.flow.close()
        self.done.fail(FlowCancelled("the flow was ended before it finished"))

    def _resume(self, signal: Signal[Any]) -> None:
        self._run(signal.value, signal.error)

    def _run(self, value: Any, error: BaseException | None) -> None:
        flow = self.flow
        while True:
            try:
                waited = flow.send(value) if error is None else flow.throw(error)
            except StopIteration as end:
                self.done.set(end.value)
                return
            except Exception as exc:  # noqa: BLE001 - the flow's failure is its result
                self.done.fail(exc)
                return
            if not waited.done:
                waited.then(self._resume)
                return
            value, error = waited.value, waited.error


def all_done(signals: list[Signal[Any]]) -> Signal[None]:
    """Set once every one of `signals` is done, whatever their outcome."""
    together: Signal[None] = Signal()
    pending = [len(signals)]

    def one(_: Signal[Any]) -> None:
        pending[0] -= 1
        if pending[0] == 0:
            together.set(None)

    if not signals:
        together.set(None)
    for signal in signals:
        signal.then(one)
    return together


def play(flow: Flow[T]) -> Signal[T]:
    """Start `flow` now; its outcome as a Signal."""
    return Play(flow).done


def from_coroutine(coro: Coroutine[Any, Any, T]) -> Signal[T]:
    """A coroutine run as a task, its outcome as a Signal (what the engine awaits of asyncio code:
    media legs stopping)."""
    signal: Signal[T] = Signal()

    def finished(task: asyncio.Task[T]) -> None:
        if task.cancelled():
            signal.fail(FlowCancelled("cancelled"))
        elif task.exception() is not None:
            signal.fail(task.exception())  # type: ignore[arg-type]
        else:
            signal.set(task.result())

    asyncio.get_running_loop().create_task(coro).add_done_callback(finished)
    return signal


async def wait(signal: Signal[T]) -> T:
    """A Signal awaited from asyncio code (the edges of the engine: an instance's start and end)."""
    if not signal.done:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        signal.then(lambda _: fut.done() or fut.set_result(None))
        await fut
    return signal.result()
