"""SIP messages per second: harness agents + reference CS + proxies against a SIPp UAC<->UAS pair.

Both are measured in the same run on loopback, as wall-clock rate and per CPU-second:

- SIPp: `sipp -sn uas` and `sipp -sn uac` (-buff_size 4194304) for --calls calls, from
  --sipp-rate down (halved while more than 0.5 % of the calls fail: the rate this machine sustains
  now); 6 messages per successful call (INVITE, 180, 200, ACK, BYE, 200); CPU = user+system of
  both processes (from wait4), wall = the UAC's run.
- Harness: A.2.1 instances through the P-CSCF and S-CSCF to the CS (harness.load.runner.LoadRun, no
  capture), --concurrency at a time from 400 down (halved while an instance fails or more than
  0.5 % of the datagrams are retransmissions: the load it sustains, as SIPp's rate above), at least
  twice that many instances (--instances), with the load mode's --engine (lean: the bytes-level
  agents of harness/load/lean, the default; agents: the reference agents of a single run);
  messages = distinct SIP datagrams sent on the SIP sockets (a retransmission, and a proxy's
  forward of it, repeat the first sending byte for byte and are reported apart, not counted, as
  SIPp counts successful calls only); CPU = this process's user+system time during the run. Media
  is off by default (signalling only, like SIPp's uac/uas): the lean agents then bind no RTP
  socket and the MRFP is not started; --media keeps the RTP/RTCP every leg sends.
- Two floors, in the same run: "python", SIPp's call played by the least Python that can (two
  asyncio sockets, a find for the Call-ID, byte templates); "py-a2.1", A.2.1's 34 requests and
  responses per instance through two forwarders that add and drop a Via line, between three fresh
  UE sockets per instance and a CS socket, by the least Python (no parsing beyond finds, no
  transactions, timers, dialogs or SDP). The second is this traffic's floor: hundreds of sockets,
  three sendings per message.

    .venv/bin/python benchmarks/vs_sipp.py [--calls 30000] [--sipp-rate 10000] [--instances 800]
                                           [--concurrency 400] [--engine lean|agents] [--media]

Prints the rates and both ratios (harness / SIPp). The issue's target is >= 0.5 per CPU-second.

History, each step measured with this script (2 vCPUs shared with other jobs, +-10-20 % run to run):

- 0.021-0.026: reference agents, every proxy forward parsed and re-serialised through Scapy;
- 0.072: proxies patching the received bytes (agents/proxy.py FastPath), agents serialising from
  Scapy-built templates (agents/wire.py), codec parse caches, sockets on add_reader;
- 0.24-0.29 (200 instances, 40 at a time): the lean engine - UEs and CS on bytes end to end, a
  sans-IO transaction core, waits bounded by one deadline heap; the proxy fast path 2.5x cheaper;
- 0.27-0.29 (2026-11-24, 800 instances, 200-400 at a time; ~0.4 in a harness run alone on a quieter
  guest): the lean choreography without a task or
  future per wait (harness/load/lean/signal.py: generator flows resumed in the datagram callback
  that answers them, every deadline on one Clock), a UE socket reading one datagram per readiness,
  the head reader keeping per-shape plans, the proxy fast path 1.5-1.8x cheaper again
  (benchmarks/proxy_forward.py), and the load measured where it is sustained (a loop that sleeps
  between messages pays a wakeup and cold caches per message: 40 at a time gave ~11k msg/CPU-s,
  400 at a time ~16k, on the same code).
- 0.27 (2026-11-24, later): wait bounds on a FIFO per delay instead of the heap (~5 % less CPU in
  paired runs); the load run now starts instances one per loop turn and only while its loop is at
  most 50 ms late, and its shared elements read all they hold per readiness, which took 800 at a
  time from a retransmission collapse to 0-1.8k retransmissions, but not under the 0.5 % rule.
- 0.32 (2026-11-25, no engine change): 400 at a time sustained with 0 retransmissions in this run,
  SIPp measured lower (38k msg/CPU-s against 44k the day before): within the run-to-run spread.

getrusage puts the kernel at 13-16 % of the harness's CPU (system time), the interpreter at the rest.

Where the time goes (lean, 800 instances 400 at a time, media off, py-spy, an earlier session's
split; getrusage since: system time is only 13-16 % of the CPU, so most of the time py-spy shows on
the socket lines is the interpreter's side of the calls): the lines that call sendto and recvfrom
~36 % (about 20 us a datagram in this run, 6.5 us in a loop of two sockets), the proxies' Python
~15 %, the UEs and CS reading, deciding and answering ~29 % (head reading ~11 %), instance set-up and
the flows resumed by the Clock ~13 %, GC ~3 %. The "py-a2.1" floor does this traffic at ~50-60k
msg/CPU-s (1.2-1.4x SIPp) and the harness at ~0.2-0.3 of it: 0.5 of SIPp means the whole SIP stack
(transactions, dialogs, SDP, REFER/NOTIFY, a checking proxy) within ~2.5x of bare sends and receives.
A prototype with the harness's own proxies, transaction core, head reader and templates but no
dialog or choreography state reached ~18-28k msg/CPU-s: the proxies and the per-message parsing are
what is left, not the choreography. Tried and not adopted: the proxies in a process of their own
(more CPU: a cross-process wakeup per datagram), uvloop (within the noise here), larger or smaller GC
thresholds (the cost is the surviving objects, not the frequency), connected UDP sockets (no cheaper),
the lean engine compiled to C with mypyc (2026-11-25: the same rate within the noise - the cost is in
what each message does in C, allocation, dicts, bytes, socket calls, the event loop, not in bytecode).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.agents.placement import reserve_loopback  # noqa: E402
from harness.agents.topology import UES  # noqa: E402
from harness.load.runner import SHARED_BUFFER, LoadRun  # noqa: E402
from harness.net.udp import BINDER  # noqa: E402
from harness.procs import terminate  # noqa: E402

SIPP_MESSAGES_PER_CALL = 6
BUFF = "4194304"


@dataclass
class Rate:
    messages: int
    wall: float
    cpu: float

    @property
    def per_second(self) -> float:
        return self.messages / self.wall

    @property
    def per_cpu_second(self) -> float:
        return self.messages / self.cpu

    def line(self, name: str) -> str:
        return (f"{name:8} {self.messages:8d} messages in {self.wall:6.2f} s wall, {self.cpu:6.2f} CPU-s: "
                f"{self.per_second:9.0f} msg/s, {self.per_cpu_second:9.0f} msg/CPU-s")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_media_base() -> int:
    """An even port P below the ephemeral range with P..P+13 free (two SIPp instances' media ports)."""
    for _ in range(200):
        base = 20000 + 2 * secrets.randbelow(5000)
        socks = []
        try:
            for port in range(base, base + 14):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise SystemExit("no free media port range for SIPp")


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Wait for `proc` (bounded) and return its user+system CPU seconds (wait4's rusage)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        time.sleep(0.01)
    raise TimeoutError(f"{proc.args[0]} (pid {proc.pid}) still running after {timeout:g} s")


def measure_sipp(calls: int, rate: int) -> SippRun | None:
    """One SIPp run; None when the UAC did not finish in time (calls stuck in retransmissions)."""
    timeout = calls / rate + 45.0
    if shutil.which("sipp") is None:
        raise SystemExit("sipp not found: install the Debian package 'sip-tester' (apt-get install -y sip-tester)")
    uas_port, uac_port = _free_port(), _free_port()
    media = _free_media_base()  # SIPp binds its RTP echo ports (-mp, -mp + 2) even when unused
    with tempfile.TemporaryDirectory(prefix="vs-sipp-") as tmp:
        common = ["-i", "127.0.0.1", "-buff_size", BUFF, "-nostdin"]
        # The UAS gets no -m: it would leave as soon as its count is reached, before the last BYEs;
        # it is stopped by PID once the UAC is done (its CPU time still comes back from wait4).
        uas = subprocess.Popen(["sipp", "-sn", "uas", "-p", str(uas_port), "-mp", str(media), *common], cwd=tmp,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        uac = None
        try:
            time.sleep(0.3)  # the UAS binds before the first INVITE
            started = time.monotonic()
            uac = subprocess.Popen(["sipp", "-sn", "uac", f"127.0.0.1:{uas_port}", "-p", str(uac_port), "-r",
                                    str(rate), "-l", str(rate), "-mp", str(media + 10), "-m", str(calls),
                                    "-trace_stat", "-stf", "stats.csv", "-fd", "1", *common], cwd=tmp,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                uac_cpu = _reap(uac, timeout)
            except TimeoutError:
                return None
            wall = time.monotonic() - started
            os.kill(uas.pid, signal.SIGTERM)
            uas_cpu = _reap(uas, 10.0)
        finally:
            for proc in (uac, uas):
                if proc is not None and proc.returncode is None:
                    terminate(proc, 5.0)
        ok, failed, resent = _calls(Path(tmp) / "stats.csv")
    return SippRun(Rate(ok * SIPP_MESSAGES_PER_CALL, wall, uac_cpu + uas_cpu), rate, ok, failed, resent)


@dataclass
class SippRun:
    rate: Rate
    calls_per_second: int
    ok: int
    failed: int
    resent: int  # the UAC's retransmissions


def _calls(stats: Path) -> tuple[int, int, int]:
    """(successful calls, failed calls, retransmissions) from the last line of SIPp's -trace_stat CSV
    (the UAC's: the INVITEs and BYEs it sent again)."""
    lines = stats.read_text().splitlines()
    head, last = lines[0].split(";"), lines[-1].split(";")
    return (int(last[head.index("SuccessfulCall(C)")]), int(last[head.index("FailedCall(C)")]),
            int(last[head.index("Retransmissions(C)")]))


def sustained_sipp(calls: int, rate: int, tries: int = 5) -> SippRun:
    """SIPp at `rate`, halving it while more than 0.5 % of the calls fail: the rate it sustains here."""
    for _ in range(tries):
        run = measure_sipp(calls, rate)
        if run is not None and run.failed <= 0.005 * calls:
            return run
        what = f"{run.failed} of {calls} calls failed" if run else "the UAC did not finish in time"
        print(f"SIPp at {rate} calls/s: {what}; halving the rate", file=sys.stderr)
        rate //= 2
    raise SystemExit("SIPp sustained no rate tried here")


class _Counting(socket.socket):
    """A SIP socket that counts what it sends: every datagram, and the distinct ones. A UDP
    retransmission is byte-identical to its first sending, and so is a stateless proxy's forward of
    it (its branch derives from the incoming one): only first sendings count as messages, as only
    successful calls' messages count on SIPp's side."""

    sent = 0
    seen: set[int] = set()

    def sendto(self, data, *args):  # type: ignore[no-untyped-def, override]
        _Counting.sent += 1
        _Counting.seen.add(hash(data))
        return super().sendto(data, *args)


def _counting_binder(ip: str, port: int) -> socket.socket | None:
    if port != 5060:
        return None  # RTP/RTCP: not SIP messages
    sock = _Counting(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ip, port))
    sock.setblocking(False)
    return sock


def measure_harness(instances: int, concurrency: int, media: bool, engine: str = "lean") -> HarnessRun:
    if not media and engine == "agents":  # signalling only: no leg, MRFP mix or RTCP report is ever started
        from harness.agents import media as media_mod
        from harness.agents import mrfp as mrfp_mod
        from harness.agents import rtcp as rtcp_mod

        async def no_pacer(self: mrfp_mod.Mrfp) -> None:
            """The MRFP's 20 ms mixing tick (and the pacer's busy-wait before each) has nothing to do."""

        class NoTone:
            """No leg ever sends RTP, so no tone table is prepared for it either."""

            def __init__(self, hz: float) -> None:
                self.hz = hz

        media_mod.ToneGenerator = NoTone  # type: ignore[assignment, misc]
        media_mod.MediaLeg.start = lambda self: None  # type: ignore[method-assign]
        mrfp_mod.Mrfp.start = no_pacer  # type: ignore[method-assign]
        mrfp_mod.Mrfp._on_tick = lambda self, skipped: None  # type: ignore[method-assign]
        rtcp_mod.RtcpLeg.start = lambda self: None  # type: ignore[method-assign]
        rtcp_mod.RtcpLeg.send_report = lambda self, bye=False: None  # type: ignore[method-assign]
    start = secrets.randbelow(200)
    reservation = reserve_loopback((start + k) % 254 + 1 for k in range(254))
    subnet = reservation.subnet
    reservation.close()  # the counting binder binds the SIP sockets itself
    token = BINDER.set(_counting_binder)
    _Counting.sent = 0
    _Counting.seen = set()
    run = LoadRun(subnet, instances, concurrency, media_seconds=0.0, engine=engine,
                  media=media or engine == "agents")
    try:
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.monotonic()
        records = asyncio.run(run.run())
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        BINDER.reset(token)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    resent = _Counting.sent - len(_Counting.seen)
    lag = run.lag.report()
    print(f"harness: {_Counting.sent} SIP datagrams sent, {resent} of them retransmissions (not counted); "
          f"event loop late p50 {lag.get('p50', 0):g} p99 {lag.get('p99', 0):g} max {lag['max']:g} ms, "
          f"starts held {lag['starts_held_s']:g} s",
          file=sys.stderr)
    return HarnessRun(Rate(len(_Counting.seen), wall, cpu), instances, concurrency, sum(not r.ok for r in records),
                      resent)


@dataclass
class HarnessRun:
    rate: Rate
    instances: int
    concurrency: int
    failed: int  # instances the agents saw fail
    resent: int  # retransmitted datagrams (and their forwards)

    @property
    def sustained(self) -> bool:
        """No instance failed and at most 0.5 % of the datagrams were retransmissions: the loop kept
        up (beyond, T1 expires while answers wait in socket buffers and retransmissions snowball)."""
        return self.failed == 0 and self.resent <= 0.005 * self.rate.messages


def sustained_harness(instances: int, concurrency: int, media: bool, engine: str, tries: int = 5) -> HarnessRun:
    """The harness at `concurrency` instances at a time (at least two rounds of them), halving it
    while it does not sustain the load: SIPp's rate search, for instances."""
    for _ in range(tries):
        run = measure_harness(max(instances, 2 * concurrency), concurrency, media, engine)
        if run.sustained or concurrency == 1:
            return run
        print(f"harness at {concurrency} instances at a time: {run.failed} failed, {run.resent} datagrams "
              f"retransmitted; halving", file=sys.stderr)
        concurrency = max(1, concurrency // 2)
    return run


# The same call as SIPp's uac/uas scenario, by the least Python that can play it on asyncio sockets:
# no parsing beyond a find, no transactions, no timers, no dialog state (a floor, not a SIP stack).
_FLOOR_HEAD = (b"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s\r\nFrom: <sip:uac@127.0.0.1>;tag=1\r\n"
               b"To: <sip:uas@127.0.0.1>%s\r\nCall-ID: %s\r\nCSeq: %d %s\r\nContact: <sip:uac@127.0.0.1:%d>\r\n"
               b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")


async def _floor_pair(calls: int, concurrency: int) -> int:
    """INVITE, 180, 200, ACK, BYE, 200 per call between two sockets of this process; returns the
    messages sent."""
    loop = asyncio.get_running_loop()
    uas, uac = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    try:
        for sock in (uas, uac):
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(BUFF))
        to_uas, port = uas.getsockname(), uac.getsockname()[1]
        done: asyncio.Future[None] = loop.create_future()
        count = {"started": 0, "ended": 0, "sent": 0}

        def invite() -> None:
            call_id = b"%d@127.0.0.1" % count["started"]
            count["started"] += 1
            count["sent"] += 1
            uac.sendto(b"INVITE sip:uas@127.0.0.1 SIP/2.0\r\n"
                       + _FLOOR_HEAD % (port, call_id, b"", call_id, 1, b"INVITE", port), to_uas)

        def on_uas() -> None:
            while True:
                try:
                    data, addr = uas.recvfrom(65535)
                except BlockingIOError:
                    return
                if data.startswith(b"ACK "):
                    continue
                head = data[data.find(b"\r\n") + 2:data.find(b"\r\n\r\n") + 4].replace(
                    b"To: <sip:uas@127.0.0.1>", b"To: <sip:uas@127.0.0.1>;tag=2", 1)
                if data.startswith(b"INVITE "):
                    uas.sendto(b"SIP/2.0 180 Ringing\r\n" + head, addr)
                    count["sent"] += 1
                uas.sendto(b"SIP/2.0 200 OK\r\n" + head, addr)
                count["sent"] += 1

        def on_uac() -> None:
            while True:
                try:
                    data, _ = uac.recvfrom(65535)
                except BlockingIOError:
                    return
                if not data.startswith(b"SIP/2.0 200"):
                    continue
                at = data.find(b"\r\nCall-ID: ") + 11
                call_id = data[at:data.find(b"\r\n", at)]
                if data.find(b" INVITE\r\n") > 0:
                    for cseq, method in ((1, b"ACK"), (2, b"BYE")):
                        uac.sendto(method + b" sip:uas@127.0.0.1 SIP/2.0\r\n" + _FLOOR_HEAD % (
                            port, call_id + method, b";tag=2", call_id, cseq, method, port), to_uas)
                    count["sent"] += 2
                    continue
                count["ended"] += 1
                if count["started"] < calls:
                    invite()
                elif count["ended"] == calls and not done.done():
                    done.set_result(None)

        loop.add_reader(uas.fileno(), on_uas)
        loop.add_reader(uac.fileno(), on_uac)
        try:
            for _ in range(min(concurrency, calls)):
                invite()
            await asyncio.wait_for(done, 120.0)
        finally:
            loop.remove_reader(uas.fileno())
            loop.remove_reader(uac.fileno())
        return count["sent"]
    finally:
        uas.close()
        uac.close()


def measure_python_floor(calls: int, concurrency: int = 200) -> Rate:
    """SIPp's call by the least Python (`_floor_pair`): what the interpreter and asyncio cost per
    message on their own, measured in the same run."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    sent = asyncio.run(_floor_pair(calls, concurrency))
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    return Rate(sent, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))


# A.2.1's traffic by the least Python: its 34 requests and responses per instance (two calls and a
# hold, the conference INVITE, two REFERs with their NOTIFYs, joins and BYEs), each through two
# forwarders (P-CSCF, S-CSCF) that add or drop a Via line and decrement Max-Forwards, between three
# fresh UE sockets per instance and a CS socket. No parsing beyond finds, no transactions, timers,
# dialogs or SDP: the floor of this topology (hundreds of sockets, three sendings per message).
def _a21_script() -> list[tuple[str, str, bytes, bool]]:
    """(sender, receiver, method, request?) in A.2.1's order."""
    out: list[tuple[str, str, bytes, bool]] = []
    for caller, callee in (("UE-1", "UE-2"), ("UE-1", "UE-2"), ("UE-1", "UE-3"), ("UE-1", "CS")):
        out += [(caller, callee, b"INVITE", True), (callee, caller, b"INVITE", False), (caller, callee, b"ACK", True)]
    for ue in ("UE-2", "UE-3"):
        out += [("UE-1", ue, b"REFER", True), (ue, "UE-1", b"REFER", False), (ue, "UE-1", b"NOTIFY", True),
                ("UE-1", ue, b"NOTIFY", False), (ue, "CS", b"INVITE", True), ("CS", ue, b"INVITE", False),
                (ue, "CS", b"ACK", True), (ue, "UE-1", b"NOTIFY", True), ("UE-1", ue, b"NOTIFY", False),
                ("UE-1", ue, b"BYE", True), (ue, "UE-1", b"BYE", False)]
    return out


_A21 = _a21_script()
_A21_HEAD = (b"Via: SIP/2.0/UDP %s:5060;branch=z9hG4bK%d.%d;rport\r\nMax-Forwards: 70\r\n"
             b"From: <sip:a@%s>;tag=f%d\r\nTo: <sip:b@%s>\r\nCall-ID: %d.%d@h\r\nCSeq: 1 %s\r\n"
             b"Contact: <sip:a@%s>\r\nX-Hop: %s\r\nContent-Length: 0\r\n\r\n")


async def _a21_floor(subnet: int, instances: int, concurrency: int) -> int:
    """Play `instances` of A.2.1's traffic, `concurrency` at a time; returns the datagrams sent."""
    from harness.load.topology import ue_address

    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    p_cscf, s_cscf, cs = (f"127.{subnet}.0.{n}" for n in (11, 12, 4))
    sockets: dict[str, socket.socket] = {}
    count = {"sent": 0, "started": 0, "ended": 0}

    def bind(ip: str, on: Callable[[socket.socket], Callable[[], None]]) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((ip, 5060))
        sock.setblocking(False)
        sockets[ip] = sock
        loop.add_reader(sock.fileno(), on(sock))

    def forwarder(me: str) -> Callable[[socket.socket], Callable[[], None]]:
        via = b"Via: SIP/2.0/UDP %s:5060;branch=z9hG4bK" % me.encode()

        def reader(sock: socket.socket) -> Callable[[], None]:
            def on() -> None:
                while True:
                    try:
                        data, source = sock.recvfrom(65535)
                    except BlockingIOError:
                        return
                    at = data.find(b"\r\nVia: ") + 2
                    hop = data.find(b"\r\nX-Hop: ") + 9
                    target = data[hop:data.find(b"\r\n", hop)].decode()
                    if data.startswith(b"SIP/2.0"):
                        if me == p_cscf and source[0] != s_cscf:
                            out, target = data, s_cscf  # a UE's answer, on its way in
                        else:
                            out = data[:at] + data[data.find(b"\r\n", at) + 2:]  # our Via off
                    else:
                        if me == p_cscf and source[0] != s_cscf:
                            target = s_cscf
                        mf = data.find(b"\r\nMax-Forwards: ") + 16
                        end = data.find(b"\r\n", mf)
                        out = (data[:at] + via + b"%d\r\n" % count["sent"] + data[at:mf]
                               + b"%d" % (int(data[mf:end]) - 1) + data[end:])
                    sock.sendto(out, (target, 5060))
                    count["sent"] += 1
            return on
        return reader

    def send(k: int, position: int) -> None:
        sender, receiver, method, _ = _A21[position]
        src = cs if sender == "CS" else ue_address(subnet, k, sender)
        dst = (cs if receiver == "CS" else ue_address(subnet, k, receiver)).encode()
        start = method + b" sip:b@" + dst + b" SIP/2.0\r\n" if _A21[position][3] else b"SIP/2.0 200 OK\r\n"
        sockets[src].sendto(start + _A21_HEAD % (src.encode(), k, position, src.encode(), k, dst, k, position,
                                                 method, src.encode(), dst), (p_cscf, 5060))
        count["sent"] += 1

    def advance(k: int, position: int) -> None:
        """Message `position` of instance k arrived: send what follows it, or end the instance."""
        while position + 1 < len(_A21):
            position += 1
            send(k, position)
            if _A21[position][2] != b"ACK":
                return
        count["ended"] += 1
        for role in UES:
            sock = sockets.pop(ue_address(subnet, k, role))
            loop.remove_reader(sock.fileno())
            sock.close()
        if count["started"] < instances:
            begin()
        elif count["ended"] == instances and not done.done():
            done.set_result(None)

    def endpoint(sock: socket.socket) -> Callable[[], None]:
        def on() -> None:
            while True:
                try:
                    data = sock.recv(65535)
                except BlockingIOError:
                    return
                if data.startswith(b"ACK "):
                    continue  # its sender went on already
                at = data.find(b"\r\nCall-ID: ") + 11
                k, _, position = data[at:data.find(b"@", at)].partition(b".")
                advance(int(k), int(position))
                if sock.fileno() < 0:
                    return  # the instance ended: its sockets are closed
        return on

    def begin() -> None:
        count["started"] += 1
        k = count["started"]
        for role in UES:
            bind(ue_address(subnet, k, role), endpoint)
        send(k, 0)

    try:
        bind(p_cscf, forwarder(p_cscf))
        bind(s_cscf, forwarder(s_cscf))
        bind(cs, endpoint)
        for shared in (p_cscf, s_cscf, cs):  # as the harness's shared elements (no retransmission here)
            sockets[shared].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SHARED_BUFFER)
        for _ in range(min(concurrency, instances)):
            begin()
        await asyncio.wait_for(done, 120.0)
        return count["sent"]
    finally:
        for sock in sockets.values():
            loop.remove_reader(sock.fileno())
            sock.close()


def measure_a21_floor(instances: int, concurrency: int) -> Rate:
    """A.2.1's traffic by the least Python (`_a21_floor`), in the same run: what this topology costs
    in the kernel and the interpreter before any SIP is read."""
    reservation = reserve_loopback((secrets.randbelow(200) + k) % 254 + 1 for k in range(254))
    subnet = reservation.subnet
    reservation.close()
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    sent = asyncio.run(_a21_floor(subnet, instances, concurrency))
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    return Rate(sent, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30000)
    parser.add_argument("--sipp-rate", type=int, default=10000,
                        help="SIPp calls per second to start from (halved while calls fail)")
    parser.add_argument("--instances", type=int, default=800,
                        help="A.2.1 instances for the harness (at least twice the concurrency)")
    parser.add_argument("--concurrency", type=int, default=400,
                        help="instances at a time to start from (halved while the harness does not keep up)")
    parser.add_argument("--media", action="store_true", help="keep RTP/RTCP on in the harness run")
    parser.add_argument("--engine", choices=("lean", "agents"), default="lean",
                        help="the load mode's engine for the harness run (see README, Load)")
    args = parser.parse_args()
    run = sustained_sipp(args.calls, args.sipp_rate)
    sipp = run.rate
    floor = measure_python_floor(args.calls)
    topology_floor = measure_a21_floor(args.instances, args.concurrency)
    run_h = sustained_harness(args.instances, args.concurrency, args.media, args.engine)
    harness = run_h.rate
    print(sipp.line("SIPp") + f"  ({run.ok} calls at {run.calls_per_second} calls/s, {run.failed} failed, "
                                  f"{run.resent} retransmitted)")
    print(floor.line("python") + f"  ({args.calls} calls of SIPp's scenario by the least Python, no SIP stack)")
    print(topology_floor.line("py-a2.1") + f"  ({args.instances} instances of A.2.1's traffic through two forwarders "
                                          f"by the least Python, {args.concurrency} at a time, no SIP stack)")
    print(harness.line("harness") + f"  ({run_h.instances} A.2.1 instances, {run_h.concurrency} at a time, "
                                    f"{run_h.failed} failed, {run_h.resent} retransmitted, {args.engine} engine, "
                                    f"media {'on' if args.media else 'off'})")
    wall_ratio = harness.per_second / sipp.per_second
    cpu_ratio = harness.per_cpu_second / sipp.per_cpu_second
    print(f"ratio harness/SIPp: wall-clock {wall_ratio:.4f}, per CPU-second {cpu_ratio:.4f} (target >= 0.5)")
    print(f"ratio python/SIPp per CPU-second {floor.per_cpu_second / sipp.per_cpu_second:.2f} (SIPp's call), "
          f"{topology_floor.per_cpu_second / sipp.per_cpu_second:.2f} (A.2.1's traffic); "
          f"harness/python on A.2.1's traffic {harness.per_cpu_second / topology_floor.per_cpu_second:.3f}")
    with contextlib.suppress(OSError):
        load = os.getloadavg()
        print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0 if run_h.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
