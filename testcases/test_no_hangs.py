"""No hangs, nothing lost: a silent peer, a peer that dies mid-flow, a capture killed mid-run and a
full disk each end `python -m harness run` within its bounds, with a reason that names the cause,
a pcap tshark can read, and no child process (dumpcap, tshark, ip) left behind, checked by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.flow

RUN_BOUND = 90.0  # seconds: a generous multiple of what these runs take (10-15 s)


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, command name, start time) of a live process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), comm, fields[19]


@dataclass
class Descendants:
    """Every process that descended from `root` while it ran: pid -> (command name, start time)."""

    root: int
    seen: dict[int, tuple[str, str]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def scan(self) -> None:
        parents: dict[int, int] = {}
        info: dict[int, tuple[str, str]] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                stat = _stat(int(entry.name))
                if stat is not None:
                    parents[int(entry.name)] = stat[0]
                    info[int(entry.name)] = stat[1:]
        family = {self.root} | set(self.seen)
        grew = True
        while grew:
            grew = False
            for pid, parent in parents.items():
                if parent in family and pid not in family:
                    family.add(pid)
                    grew = True
        for pid in family - {self.root}:
            if pid in info:
                self.seen.setdefault(pid, info[pid])

    def watch(self) -> None:
        while not self._stop.wait(0.02):
            self.scan()

    def alive(self) -> list[str]:
        """Descendants still running (same pid AND start time: not a recycled pid)."""
        out = []
        for pid, (comm, start) in self.seen.items():
            stat = _stat(pid)
            if stat is not None and stat[2] == start:
                out.append(f"{comm} (pid {pid})")
        return out

    def pids(self, comm: str) -> list[int]:
        return [pid for pid, (name, _) in self.seen.items() if name == comm]


@contextmanager
def harness_run(*args: str) -> Iterator[tuple[subprocess.Popen[str], Descendants]]:
    """`python -m harness run a2.1 ARGS` with its descendants watched; always reaped."""
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "a2.1", "--no-ladder", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    family = Descendants(proc.pid)
    watcher = threading.Thread(target=family.watch, daemon=True)
    watcher.start()
    try:
        yield proc, family
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        family._stop.set()
        watcher.join(5)


def _finish(proc: subprocess.Popen[str], started: float) -> tuple[str, str, float]:
    stdout, stderr = proc.communicate(timeout=RUN_BOUND)
    return stdout, stderr, time.monotonic() - started


def _assert_readable(pcap: Path) -> None:
    """tshark reads the pcap (a truncated last block is tolerated) and finds SIP in it."""
    done = subprocess.run(["tshark", "-r", str(pcap), "-Y", "sip", "-T", "fields", "-e", "frame.number"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 or "cut short" in done.stderr, done.stderr
    assert done.stdout.split(), f"no SIP readable in {pcap}: {done.stderr}"


def _assert_no_orphans(family: Descendants) -> None:
    time.sleep(0.2)
    assert family.seen, "saw no child process at all (the watcher is broken)"
    assert not family.alive(), f"left behind: {family.alive()}"


@pytest.mark.parametrize(("fault", "reason"), [
    ("ue2-ignores-refer", "UE-1 did not receive a final response to REFER within"),
    ("ue3-dies-on-refer", "UE-1 did not receive a final response to REFER within"),
])
def test_silent_or_dead_peer_fails_in_bounds_with_the_reason(tmp_path: Path, capture_tools: None,
                                                              fault: str, reason: str) -> None:
    out = tmp_path / "run"
    started = time.monotonic()
    with harness_run("--fault", fault, "--media-seconds", "0.5", "--out", str(out)) as (proc, family):
        _, stderr, elapsed = _finish(proc, started)
    assert proc.returncode == 1, stderr
    assert elapsed < RUN_BOUND
    assert reason in stderr, stderr
    _assert_readable(out / "a2.1.pcapng")
    _assert_no_orphans(family)


def test_killed_dumpcap_is_reported_and_the_capture_kept(tmp_path: Path, capture_tools: None) -> None:
    out = tmp_path / "run"
    pcap = out / "a2.1.pcapng"
    started = time.monotonic()
    with harness_run("--media-seconds", "4", "--out", str(out)) as (proc, family):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (pcap.exists() and pcap.stat().st_size > 20_000):
            time.sleep(0.05)
        dumpcaps = family.pids("dumpcap")
        assert len(dumpcaps) == 1, family.seen
        os.kill(dumpcaps[0], signal.SIGKILL)
        _, stderr, elapsed = _finish(proc, started)
    assert proc.returncode == 1, stderr
    assert elapsed < RUN_BOUND
    assert "dumpcap exited during the capture (killed by signal 9)" in stderr, stderr
    _assert_readable(pcap)
    _assert_no_orphans(family)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (a run's capture needs about 1 MB), unmounted afterwards whatever happened."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True, timeout=10)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, timeout=10)


def test_full_disk_fails_with_the_reason_and_keeps_what_fit(tiny_disk: Path, capture_tools: None) -> None:
    out = tiny_disk / "run"
    started = time.monotonic()
    with harness_run("--media-seconds", "2", "--out", str(out)) as (proc, family):
        _, stderr, elapsed = _finish(proc, started)
    assert proc.returncode in (1, 2), stderr
    assert elapsed < RUN_BOUND
    assert "No space left on device" in stderr, stderr
    _assert_readable(out / "a2.1.pcapng")
    _assert_no_orphans(family)


@pytest.mark.interop
# Both runs use their profile's own fixed addresses (the CLI does not relocate them): one worker runs them in turn.
@pytest.mark.xdist_group("sut-profile-addresses")
@pytest.mark.parametrize(("profile", "peer"), [("kamailio-core.toml", "kamailio"), ("baresip-ue2-ue3.toml", "baresip")])
def test_sut_killed_mid_flow_fails_in_bounds_and_leaves_nothing(tmp_path: Path, capture_tools: None, profile: str,
                                                                 peer: str) -> None:
    """The real thing: a SUT process (Kamailio's P-CSCF, baresip's UE-2) SIGKILLed mid-flow with its
    whole process group, as a crash would take it: the run ends within its bounds saying what it
    waited for, the capture is readable, and no peer process is left behind."""
    if shutil.which(peer) is None:
        pytest.fail(f"{peer} not found: install the Debian package "
                    f"{'kamailio' if peer == 'kamailio' else 'baresip-core'}", pytrace=False)
    out = tmp_path / "run"
    pcap = out / "a2.1.pcapng"
    started = time.monotonic()
    args = ("--profile", str(Path(__file__).resolve().parents[1] / "profiles" / profile), "--media-seconds", "3",
            "--out", str(out))
    with harness_run(*args) as (proc, family):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (pcap.exists() and pcap.stat().st_size > 8_000):
            time.sleep(0.05)
        leaders = [pid for pid, (name, _) in family.seen.items() if name == peer and
                   (_stat(pid) or (0,))[0] == proc.pid]
        assert leaders, f"no {peer} started: {family.seen}"
        os.killpg(min(leaders), signal.SIGKILL)  # the first one launched, with everything it forked
        _, stderr, elapsed = _finish(proc, started)
    assert proc.returncode == 1, stderr
    assert elapsed < RUN_BOUND
    assert "did not" in stderr, stderr  # which role waited for what
    _assert_readable(pcap)
    _assert_no_orphans(family)
