"""RTP pacing under load: 30 concurrent PCMU streams for 10 s on loopback, judged from a dumpcap capture.

The capture, not the senders' own clocks, is the evidence: a timestamp there is taken when the packet
crosses the loopback device, i.e. inside `sendto`. For every stream, consecutive packets (in sequence
order) give an inter-departure time; the figure of merit is |inter-departure - 20 ms| pooled over all
streams (p50, p99), and loss is sequence numbers missing from the capture. A single stream measured
in the same run first is the reference, so the ratio says what the load costs on this machine.

    .venv/bin/python benchmarks/rtp_pacing.py [--streams 30] [--seconds 10] [--reference-seconds 5]
                                              [--spin SECONDS] [--priority pacer|window|none|thread] [--pin]

Needs root (or dumpcap's capabilities) to capture on `lo`. Target: p99 <= 1 ms with 30 streams.
On a shared 2-vCPU VM the tail is set by preemption (other processes, host steal), which no pacing
code can undo. So the machine's own jitter is printed next to the figures, measured in the same run:
a busy loop for 2 s before and 2 s after the streams, and the pacer's own busy-waits during them (a
gap between two clock reads there is time the process did not run). The CPU line says how busy the
machine was. `--priority`: `pacer` (the default, as the harness runs) lets the pacer use SCHED_FIFO
as harness/rtp/stream.py says (busy-wait and sends, and between ticks while the loop is light), when
the system allows it; `window` only for the busy-wait and sends; `none` never; `thread` keeps the
whole event-loop thread SCHED_FIFO while the streams run, whatever its load. `--spin` fixes the busy-wait margin
(default: adaptive, see harness/rtp/stream.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.agents.topology import pick_subnet  # noqa: E402
from harness.net.udp import UdpSocket  # noqa: E402
from harness.rtp import PTIME, RtpPacket, RtpParseError, RtpStream, ToneGenerator  # noqa: E402
from harness.rtp.stream import LIGHT_SHARE, REALTIME_PRIORITY, STALL_NS, PacerStats, Realtime, pacer  # noqa: E402

RECEIVER_PORT = 40000
PRIORITY = "pacer"  # --priority
SENDER_PORT = 30000


@dataclass
class Figures:
    streams: int
    packets: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    lost: int
    expected: int
    sent: int

    def line(self, label: str) -> str:
        loss = 100.0 * self.lost / self.expected if self.expected else 0.0
        return (f"{label:<10} streams={self.streams:>3} packets={self.packets:>6} (sent {self.sent}) "
                f"|inter-departure - 20 ms|: p50 {self.p50_ms:.3f} ms  p95 {self.p95_ms:.3f} ms  "
                f"p99 {self.p99_ms:.3f} ms  "
                f"max {self.max_ms:.3f} ms  loss {self.lost}/{self.expected} ({loss:.3f} %)")


def stall_probe(seconds: float = 2.0, threshold: float = STALL_NS / 1e9) -> list[float]:
    """Gaps longer than `threshold` seen by a busy loop: time this process was not running at all
    (host steal, interrupts, preemption). The floor under any pacing measured on this machine."""
    gaps: list[float] = []
    start = last = time.monotonic()
    while last - start < seconds:
        now = time.monotonic()
        if now - last > threshold:
            gaps.append(now - last)
        last = now
    return gaps


def stall_line(label: str, gaps: list[float], seconds: float) -> str:
    g = np.array(gaps) * 1000.0
    if not len(g):
        return f"{label}: no gap > {STALL_NS / 1e6:g} ms in {seconds:.1f} s"
    return (f"{label}: gaps > {STALL_NS / 1e6:g} ms: {len(g)} in {seconds:.1f} s ({(g > 1.0).sum()} > 1 ms), "
            f"longest {g.max():.2f} ms, not running {g.sum() / seconds / 10:.2f} % of the time")


def cpu_times() -> list[int]:
    """The aggregate `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal ..."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def cpu_line(before: list[int], after: list[int]) -> str:
    delta = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(delta[:8]) or 1
    busy = delta[0] + delta[1] + delta[2] + delta[5] + delta[6]
    return f"machine during the run: busy {100 * busy / total:.0f} % of all CPUs, steal {100 * delta[7] / total:.1f} %"


# --- capture ----------------------------------------------------------------------------------------

def start_dumpcap(path: Path, bpf: str, cpus: set[int] | None = None) -> subprocess.Popen[bytes]:
    """dumpcap on lo (on `cpus` if given); ready once the pcapng file holds its interface block."""
    proc = subprocess.Popen(["dumpcap", "-q", "-i", "lo", "-f", bpf, "-w", str(path), "-B", "16"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dumpcap exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        if path.exists() and path.stat().st_size >= 28 + 20:  # SHB + IDB at least
            time.sleep(0.3)  # let the kernel filter attach before traffic starts
            return proc
        time.sleep(0.05)
    stop_dumpcap(proc)
    raise RuntimeError("dumpcap did not start writing within 10 s")


def stop_dumpcap(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to dumpcap's own PID (it flushes on SIGTERM), SIGKILL if it hangs."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def read_pcapng(path: Path) -> list[tuple[float, str, int, bytes]]:
    """(timestamp, src ip, src port, UDP payload) for every IPv4/UDP packet of an Ethernet pcapng."""
    from scapy.utils import RawPcapNgReader

    out: list[tuple[float, str, int, bytes]] = []
    with RawPcapNgReader(str(path)) as reader:
        for data, meta in reader:
            if len(data) < 42 or data[12:14] != b"\x08\x00" or data[23] != 17:
                continue
            ihl = (data[14] & 0x0F) * 4
            src = ".".join(str(b) for b in data[26:30])
            (sport,) = struct.unpack_from("!H", data, 14 + ihl)
            ts = ((meta.tshigh << 32) | meta.tslow) / meta.tsresol
            out.append((ts, src, sport, data[14 + ihl + 8:]))
    return out


# --- streams ----------------------------------------------------------------------------------------

async def run_streams(subnet: int, first_host: int, count: int, seconds: float,
                      spin: float | None) -> tuple[dict[tuple[str, int], int], PacerStats]:
    """`count` tone streams from 127.subnet.0.<first_host..> to one receiver; returns packets sent per
    source and what the pacer saw on its own clock (with a per-tick trace)."""
    pacer().spin = spin
    pacer().realtime = REALTIME_PRIORITY if PRIORITY in ("pacer", "window") else None
    pacer().light_share = LIGHT_SHARE if PRIORITY == "pacer" else -1.0
    stats = pacer().stats = PacerStats(trace=[])
    thread = Realtime(REALTIME_PRIORITY) if PRIORITY == "thread" else None
    if thread is not None:
        thread.enter()
    received = 0

    def on_rx(_data: bytes, _addr: tuple[str, int]) -> None:
        nonlocal received
        received += 1

    rx = await UdpSocket.bind(f"127.{subnet}.0.200", RECEIVER_PORT + first_host, on_rx)
    socks = [await UdpSocket.bind(f"127.{subnet}.0.{first_host + i}", SENDER_PORT) for i in range(count)]
    streams = [RtpStream(s, ToneGenerator(300.0 + 20 * i).next_frame, remote=rx.local)
               for i, s in enumerate(socks)]
    try:
        for stream in streams:
            stream.start()
        await asyncio.sleep(seconds)
    finally:
        for stream in streams:
            await stream.stop()
        await asyncio.sleep(0.1)
        for sock in socks:
            sock.close()
        rx.close()
        if thread is not None:
            thread.leave()
            stats.policy = f"{thread.policy.split(' while')[0]} for the whole loop thread"
    return {s.local: st.packets_sent for s, st in zip(socks, streams, strict=True)}, stats


def figures(packets: list[tuple[float, str, int, bytes]], sent: dict[tuple[str, int], int]) -> Figures:
    by_source: dict[tuple[str, int], list[tuple[int, float]]] = {key: [] for key in sent}
    for ts, src, sport, payload in packets:
        if (src, sport) in by_source:
            try:
                rtp = RtpPacket.parse(payload)
            except RtpParseError:
                continue
            by_source[(src, sport)].append((rtp.sequence, ts))
    deviations: list[np.ndarray] = []
    lost = expected = total = 0
    for seqs in by_source.values():
        if len(seqs) < 2:
            continue
        # unwrap 16-bit sequence numbers, then order by them (capture order is departure order anyway)
        raw = np.array([s for s, _ in seqs], dtype=np.int64)
        unwrapped = raw + 65536 * np.concatenate([[0], np.cumsum(np.diff(raw) < -32768)])
        order = np.argsort(unwrapped, kind="stable")
        seq = unwrapped[order]
        times = np.array([t for _, t in seqs])[order]
        consecutive = np.diff(seq) == 1
        deviations.append(np.abs(np.diff(times)[consecutive] - PTIME))
        expected += int(seq[-1] - seq[0] + 1)
        lost += int(seq[-1] - seq[0] + 1) - len(np.unique(seq))
        total += len(seqs)
    dev = np.concatenate(deviations) * 1000.0 if deviations else np.zeros(1)
    p50, p95, p99 = (float(x) for x in np.percentile(dev, [50, 95, 99]))
    return Figures(len(sent), total, p50, p95, p99, float(dev.max()), lost, expected, sum(sent.values()))


async def scenario(subnet: int, streams: int, seconds: float, reference_seconds: float, spin: float | None
                   ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int], PacerStats]:
    reference, _ = await run_streams(subnet, 1, 1, reference_seconds, spin)
    loaded, stats = await run_streams(subnet, 10, streams, seconds, spin)
    return reference, loaded, stats


def pacer_lines(stats: PacerStats, seconds: float) -> list[str]:
    """The sender's side of the load run, on its own clock."""
    trace = stats.trace or []
    if len(trace) < 2:
        return []
    rows = np.array(trace[1:], dtype=np.int64)
    late = (rows[:, 1] - rows[:, 0]) / 1e6
    margin = rows[:, 3] / 1e6
    p50, p99 = np.percentile(late, [50, 99])
    spun = stats.spin_ns / 1e9
    return [f"load, sender side: first send after the deadline p50 {p50:.3f} ms  p99 {p99:.3f} ms  "
            f"({int((late > 0.5).sum())} of {len(late)} ticks > 0.5 ms late, {stats.skipped} grid points skipped); "
            f"busy-wait margin p50 {np.median(margin):.2f} ms, max {margin.max():.2f} ms; "
            f"spinning {100 * spun / seconds:.0f} % of one CPU; SCHED_FIFO between ticks after "
            f"{stats.fifo_between} of {stats.ticks} ticks",
            stall_line(f"busy-wait during the load run ({spun:.1f} s of it)",
                       [g / 1e9 for g in stats.stalls], spun)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--reference-seconds", type=float, default=5.0)
    parser.add_argument("--spin", type=float, default=None,
                        help="fixed busy-wait margin before each deadline, seconds (default: adaptive)")
    parser.add_argument("--priority", choices=("pacer", "window", "none", "thread"), default="pacer",
                        help="SCHED_FIFO as the pacer does it (default), for the busy-wait and sends only, "
                             "never, or for the whole loop thread")
    parser.add_argument("--pin", action="store_true",
                        help="senders on the first CPU, dumpcap on the others (helps on an idle machine, "
                             "hurts when other processes compete for the senders' CPU)")
    parser.add_argument("--keep", type=Path, help="keep the capture at this path")
    args = parser.parse_args()
    if args.streams > 180:
        parser.error("at most 180 streams (one loopback address each)")
    global PRIORITY
    PRIORITY = args.priority

    gaps_before = stall_probe()
    subnet = pick_subnet(seed=os.getpid() % 97 + 150)
    workdir: Path | None = None
    if args.keep is not None:
        pcap: Path = args.keep
    else:
        workdir = Path(tempfile.mkdtemp(prefix="rtp-pacing-"))
        pcap = workdir / "pacing.pcapng"
    cpus = sorted(os.sched_getaffinity(0))
    pinned = args.pin and len(cpus) > 1
    if pinned:
        os.sched_setaffinity(0, {cpus[0]})
    proc = start_dumpcap(pcap, f"udp and net 127.{subnet}.0.0/24", set(cpus[1:]) if pinned else None)
    before = cpu_times()
    try:
        reference, loaded, stats = asyncio.run(scenario(subnet, args.streams, args.seconds,
                                                        args.reference_seconds, args.spin))
        after = cpu_times()
        gaps_after = stall_probe()
    finally:
        stop_dumpcap(proc)
    packets = read_pcapng(pcap)
    ref = figures(packets, reference)
    load = figures(packets, loaded)
    placement = f"senders on CPU {cpus[0]}, dumpcap on {cpus[1:]}" if pinned else "unpinned"
    spin = "adaptive" if args.spin is None else f"{args.spin * 1000:g} ms"
    policy = f"pacer {stats.policy}"
    print(f"RTP pacing on 127.{subnet}.0.0/24, {os.cpu_count()} CPUs ({placement}), {policy}, "
          f"busy-wait margin {spin}, capture {pcap}")
    print(cpu_line(before, after))
    print(stall_line("machine jitter, busy loop before the run", gaps_before, 2.0))
    print(stall_line("machine jitter, busy loop after the run ", gaps_after, 2.0))
    print(ref.line("reference"))
    print(load.line("load"))
    for line in pacer_lines(stats, args.seconds):
        print(line)
    ratio = load.p99_ms / ref.p99_ms if ref.p99_ms > 0 else float("inf")
    print(f"p99 ratio load/reference {ratio:.2f}; target p99 <= 1 ms: "
          f"{'met' if load.p99_ms <= 1.0 else 'NOT met'}")
    if workdir is not None:
        pcap.unlink(missing_ok=True)
        workdir.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
