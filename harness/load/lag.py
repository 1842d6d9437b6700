"""How late the load run's own event loop runs: the harness's overload, told apart from the SUT's.

Every agent of a load run shares one event loop. When it has more to do than the CPU allows, a
datagram waits in a socket buffer before it is read and a timer fires late: the harness itself
then retransmits (RFC 3261 Timer A/E at T1 = 500 ms) and times out, and the capture shows failures
that are not the system under test's. A probe that asks to run every `interval` seconds and notes
how late it ran measures exactly that wait. A request and its answer through the reference
network are read by the loop six times (UE, P-CSCF, S-CSCF, UE and back through both proxies), so
a loop late by T1/6 at every read makes a round trip meet T1: a run is reported as overloaded when
1 % of its probes ran T1/6 late or worse (its p99), or one ran T1/2 late (a single stall that long
is enough), with the advice to lower the load rather than blame the SUT. The load run also waits for the loop to catch up
(`settled`) before it starts another instance, so a --concurrency beyond what the CPU sustains
slows the starts instead of collapsing in retransmissions.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

T1 = 0.5  # RFC 3261 §17.1.1.1, seconds
STEADY = T1 / 6  # late by this at each of a round trip's six reads through the proxies: T1
STALL = T1 / 2  # one stall this long makes a request and its answer miss T1 on their own


def _quantile(ordered: list[float], q: float) -> float:
    """The nearest-rank quantile of a sorted, non-empty list."""
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


@dataclass
class LoopLag:
    """A probe on the running loop: `start()`, `stop()`, then `report()`."""

    interval: float = 0.05
    samples: list[float] = field(default_factory=list)  # seconds late, one per probe
    held: float = 0.0  # seconds `settled` kept its callers waiting
    _loop: asyncio.AbstractEventLoop | None = None
    _handle: asyncio.TimerHandle | None = None
    _due: float = 0.0

    def start(self) -> None:
        """Arm the probe on the running loop (from inside it)."""
        self._loop = asyncio.get_running_loop()
        self._arm(self._loop.time())

    def _arm(self, now: float) -> None:
        assert self._loop is not None
        self._due = now + self.interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self.samples.append(max(0.0, now - self._due))
        self._arm(now)  # from now, not from _due: a stall is one late sample, not a burst of them

    async def settled(self, bound: float) -> None:
        """Return once the loop's latest probe ran less than `bound` late (at once when it did, or
        when the probe is not running: nothing would ever say it caught up); the time spent waiting
        adds to `held`."""
        if self.samples and self.samples[-1] >= bound:
            began = time.monotonic()
            while self._handle is not None and self.samples[-1] >= bound:
                await asyncio.sleep(self.interval)
            self.held += time.monotonic() - began

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    @property
    def worst(self) -> float:
        return max(self.samples, default=0.0)

    @property
    def overloaded(self) -> bool:
        ordered = sorted(self.samples)
        return bool(ordered) and (ordered[-1] >= STALL or _quantile(ordered, 0.99) >= STEADY)

    def report(self) -> dict[str, object]:
        """Milliseconds late: percentiles and the worst, how many probes were T1/6 late or worse,
        whether the run was overloaded, and the seconds instance starts were held back."""
        ordered = sorted(self.samples)
        stats = {f"p{round(q * 100)}": round(_quantile(ordered, q) * 1000, 1) for q in (0.5, 0.9, 0.99)} \
            if ordered else {}
        return {"probes": len(ordered), **stats, "max": round(self.worst * 1000, 1),
                "late_probes": sum(s >= STEADY for s in ordered), "overloaded": self.overloaded,
                "starts_held_s": round(self.held, 2)}
