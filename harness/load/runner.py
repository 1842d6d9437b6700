"""Many A.2.1 instances at once against one reference network: one P-CSCF, one S-CSCF, one CS with
its MRFP, and three fresh UEs per instance. Instances start at most `rate` per second and at most
`concurrency` run at a time; each is the same step-table choreography a single run plays
(harness/flows/a2_1/play.py), so load and single runs cannot drift apart.

What the agents saw is kept per instance (for progress, errors and setup times); verdicts come
from the capture, like everywhere else.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.agents.errors import FlowTimeout
from harness.agents.focus import ConferenceServer
from harness.agents.mrfp import Mrfp
from harness.agents.proxy import Proxy
from harness.agents.topology import UES
from harness.agents.ua import WAIT
from harness.agents.ue import UserEquipment
from harness.flows.a2_1.play import STEADY_SLACK, FlowContext, SteadyPhase, StepRecord, run_table
from harness.flows.a2_1.steps import STEPS
from harness.flows.step import Step
from harness.load.lag import LoopLag
from harness.load.lean import conduct
from harness.load.lean.cs import LeanCs
from harness.load.lean.signal import Play, clock, wait
from harness.load.lean.ue import LeanUe
from harness.load.topology import ExternalCs, InstanceTopology
from harness.net.udp import UdpSocket

# "lean": the bytes-level agents of harness/load/lean (the default: what a load needs); "agents":
# the reference agents of harness/agents, exactly as a single run plays them.
ENGINES = ("lean", "agents")


@dataclass
class InstanceRecord:
    """One instance as its agents saw it."""

    index: int
    ue1: str
    steps: dict[str, StepRecord] = field(default_factory=dict)
    started: float | None = None
    ended: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(s.status in ("done", "skipped") for s in self.steps.values())

    def span(self, first: str, last: str) -> float | None:
        """Seconds from the start of step `first` to the end of step `last`, when both ran."""
        a, b = self.steps.get(first), self.steps.get(last)
        if a is None or b is None or a.started is None or b.ended is None or b.status != "done":
            return None
        return b.ended - a.started


@dataclass
class Progress:
    total: int
    started: int = 0
    done: int = 0
    failed: int = 0  # as the agents saw it; the verifier decides later
    began: float = field(default_factory=time.monotonic)

    @property
    def running(self) -> int:
        return self.started - self.done

    def line(self, width: int = 30) -> str:
        filled = width * self.done // max(1, self.total)
        return (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} done, {self.running} running, "
                f"{self.failed} failed, {time.monotonic() - self.began:.1f} s")


def _branches() -> dict[str, list[Step]]:
    branches: dict[str, list[Step]] = {}
    for step in STEPS:
        if step.branch is not None:
            branches.setdefault(step.branch, []).append(step)
    return branches


SHARED_BUFFER = 4 * 1024 * 1024  # bytes of socket buffer for the shared elements (SIPp's -buff_size)
# Datagrams a shared element reads per readiness: all it holds (a full buffer is ~3600). Read 64 at a
# time, a backlog waits in the kernel for dozens of loop turns that the loop-lag probe never sees.
SHARED_DRAIN = 4096
# A new instance starts only once the loop runs at most this late (T1/10): while the harness is
# behind, starting more only adds its own retransmissions (beyond ~T1/2 they snowball).
ADMIT_LAG = 0.05


def _enlarge(element: Proxy | ConferenceServer | LeanCs) -> None:
    """The proxies and the CS take every instance's traffic: a burst must not overflow their
    receive buffers (on loopback an overflow is a silent drop, then a retransmission), and what
    they hold is read in one loop turn."""
    sock = getattr(element, "_sock", None) or getattr(element.endpoint, "sock", None) or \
        getattr(element.endpoint, "_socket", None)
    if isinstance(sock, UdpSocket):
        sock.set_buffers(SHARED_BUFFER)
        sock.burst = SHARED_DRAIN


class _SparseCollection:
    """While instances run, the cyclic garbage collector runs rarely and skips what existed before
    (gc.freeze): every message allocates a few short-lived objects, and frequent young-generation
    collections over a large live heap cost ~7 % of a run's CPU. Restored on exit (idempotent)."""

    YOUNG = 50_000  # allocations between young collections (CPython's default: 700)

    def __init__(self) -> None:
        self._saved: tuple[int, int, int] | None = None

    def __enter__(self) -> None:
        if self._saved is None:
            self._saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(self.YOUNG, *self._saved[1:])

    def __exit__(self, *_: object) -> None:
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            gc.unfreeze()
            self._saved = None


def _why(exc: Exception, instance_timeout: float) -> str:
    """An instance's error: a step's bounded wait (FlowTimeout) says what it waited for; only the
    instance's own deadline is "did not finish"."""
    if isinstance(exc, TimeoutError) and not isinstance(exc, FlowTimeout):
        return f"instance did not finish within {instance_timeout:g} s"
    return f"{type(exc).__name__}: {exc}"


class LoadRun:
    """The shared network plus N instances; `run()` returns one InstanceRecord per instance."""

    def __init__(self, subnet: int, conferences: int, concurrency: int, rate: float | None = None,
                 media_seconds: float = 1.0, wait: float = WAIT, instance_timeout: float = 60.0,
                 progress: Callable[[Progress], None] | None = None, engine: str = "lean",
                 media: bool = True, sut: ExternalCs | None = None) -> None:
        if conferences < 1 or concurrency < 1:
            raise ValueError("conferences and concurrency must be at least 1")
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be > 0 instances per second, got {rate}")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        if not media and engine != "lean":
            raise ValueError("media can be switched off with the lean engine only")
        if sut is not None and engine != "lean":
            raise ValueError("an external CS is played with the lean engine only")
        unknown = conduct.unknown_actions() if engine == "lean" else set()
        if unknown:
            raise ValueError(f"step table uses actions with no lean flow: {sorted(unknown)}")
        self.base = InstanceTopology(subnet=subnet, sut=sut)
        self.sut = sut
        self.conferences = conferences
        self.concurrency = concurrency
        self.rate = rate
        self.media_seconds = media_seconds
        self.wait = wait
        self.instance_timeout = instance_timeout
        self.on_progress = progress
        self.progress = Progress(conferences)
        self.engine = engine
        self.media = media
        self.lag = LoopLag()  # how late the shared loop ran while instances did: the harness's own overload

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)

    async def run(self) -> list[InstanceRecord]:
        base = self.base
        proxies = [Proxy(role, base.ip(role), base.sip_port) for role in ("P-CSCF", "S-CSCF")]
        mrfp = Mrfp(base.ip("MRFP"), rtp_base_port=base.rtp_base_port)
        cs: ConferenceServer | LeanCs | None
        if self.sut is not None:
            cs = None  # the SUT's: judged from the capture alone
        elif self.engine == "lean":
            cs = LeanCs(base, mrfp if self.media else None)  # the UEs' waits bound every step
        else:
            cs = ConferenceServer(base, mrfp, wait=self.wait)
        records = [InstanceRecord(k, InstanceTopology(subnet=base.subnet, instance=k, sut=self.sut).ip("UE-1"))
                   for k in range(1, self.conferences + 1)]
        slots = asyncio.Semaphore(self.concurrency)
        tasks: list[asyncio.Task[None]] = []
        self.progress = Progress(self.conferences)
        collector = _SparseCollection()
        try:
            for proxy in proxies:
                await proxy.start()
            if self.media and cs is not None:
                await mrfp.start()
            shared: list[Proxy | ConferenceServer | LeanCs] = [*proxies]
            if cs is not None:
                await cs.start()
                shared.append(cs)
            for element in shared:
                _enlarge(element)
            collector.__enter__()
            self.lag.start()
            began = time.monotonic()
            for record in records:
                if self.rate is not None:
                    await asyncio.sleep(max(0.0, began + (record.index - 1) / self.rate - time.monotonic()))
                await slots.acquire()
                await self.lag.settled(ADMIT_LAG)
                await asyncio.sleep(0)  # one start per loop turn: the datagrams waiting are read in between
                tasks.append(asyncio.create_task(self._guarded(record, cs, mrfp, slots), name=f"instance {record.index}"))
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.lag.stop()
            collector.__exit__()
            if cs is not None:
                await cs.stop()
            await mrfp.stop()
            for proxy in proxies:
                await proxy.stop()
        return records

    async def _guarded(self, record: InstanceRecord, cs: ConferenceServer | LeanCs | None, mrfp: Mrfp,
                       slots: asyncio.Semaphore) -> None:
        self.progress.started += 1
        self._report()
        try:
            await self._instance(record, cs, mrfp)
        finally:
            slots.release()
            self.progress.done += 1
            self.progress.failed += not record.ok
            self._report()

    async def _instance(self, record: InstanceRecord, cs: ConferenceServer | LeanCs | None, mrfp: Mrfp) -> None:
        if not isinstance(cs, ConferenceServer):  # the lean CS, or the SUT's (lean engine only)
            await self._lean_instance(record, cs)
            return
        topology = InstanceTopology(subnet=self.base.subnet, instance=record.index)
        ues = {role: UserEquipment(role, topology, wait=self.wait) for role in UES}
        branches = _branches()
        record.steps = {s.id: StepRecord(s.id, s.action, s.actors, s.branch) for s in STEPS}
        steady = SteadyPhase(set(branches), self.media_seconds, max(STEADY_SLACK, 3 * self.wait))
        ctx = FlowContext(topology, ues, cs, mrfp, steady, self.wait)
        record.started = time.monotonic()
        try:
            async with asyncio.timeout(self.instance_timeout):
                for ue in ues.values():
                    await ue.start()
                record.error = await run_table(ctx, record.steps, branches)
        except Exception as exc:
            record.error = _why(exc, self.instance_timeout)
        finally:
            if ctx.conf_task is not None:
                ctx.conf_task.cancel()
                await asyncio.gather(ctx.conf_task, return_exceptions=True)
            await steady.close()
            for ue in ues.values():
                await ue.stop()
            record.ended = time.monotonic()

    async def _lean_instance(self, record: InstanceRecord, cs: LeanCs | None) -> None:
        """The same table played by the lean agents (harness/load/lean/conduct.py): one Play per
        instance and branch, resumed by the datagrams that answer it, no task per step. `cs` None:
        the CS is a SUT's."""
        topology = InstanceTopology(subnet=self.base.subnet, instance=record.index, sut=self.sut)
        ues = {role: LeanUe(role, topology, self.media, wait=self.wait) for role in UES}
        branches = _branches()
        record.steps = {s.id: StepRecord(s.id, s.action, s.actors, s.branch) for s in STEPS}
        loop_clock = clock()
        steady = conduct.SteadyPhase(set(branches), self.media_seconds, max(STEADY_SLACK, 3 * self.wait), loop_clock)
        ctx = conduct.LeanContext(topology, ues, cs, steady, loop_clock, self.wait)
        record.started = time.monotonic()
        try:
            async with asyncio.timeout(self.instance_timeout):
                for ue in ues.values():
                    await ue.start()
                table = Play(conduct.run_table(ctx, record.steps, branches))
                ctx.plays.append(table)
                record.error = await wait(table.done)
        except Exception as exc:
            record.error = _why(exc, self.instance_timeout)
        finally:
            for play in ctx.plays:
                if not play.done.done:
                    play.close()
            for ue in ues.values():
                await ue.stop()
            if cs is not None:
                await cs.forget([topology.user_uri(role) for role in UES])
            record.ended = time.monotonic()
