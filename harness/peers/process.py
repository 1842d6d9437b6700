"""A third-party SIP program run in the foreground for one test: baresip, linphonec.

Started in its own session with stdout and stderr in a log next to the capture, ready once it
answers an OPTIONS on its SIP address (bounded wait), stopped by its own PID: SIGTERM, then
SIGKILL to its process group (harness.procs.terminate). Whatever happens, `stop()` in `finally`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from harness.capture.dumpcap import ToolMissing
from harness.peers.probe import hostport, options_status
from harness.procs import terminate

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
PROBE_INTERVAL = 0.2


class PeerError(RuntimeError):
    """The peer did not start or did not answer; the message ends with its log tail."""


def require(binary: str, package: str) -> str:
    """Path of `binary`, or ToolMissing naming the Debian package that provides it."""
    path = shutil.which(binary)
    if path is None:
        raise ToolMissing(f"{binary} not found: apt-get install -y --no-install-recommends {package}")
    return path


def loopback(host: str) -> str:
    """A peer is only ever bound to loopback here (the harness targets nothing else)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError as exc:
        raise ValueError(f"{host!r} is not an IP address") from exc
    if not ip.is_loopback:
        raise ValueError(f"{host} is not a loopback address; peers are only started on 127.0.0.0/8 or ::1")
    return str(ip)


class PeerProcess:
    """One foreground process answering SIP on host:port (UDP); a context manager."""

    error: type[PeerError] = PeerError   # what start() raises (Kamailio narrows it)
    ready_status: int | None = None      # the OPTIONS answer that means ready; None: any final response

    def __init__(self, name: str, argv: list[str], host: str, port: int, log_path: Path, *,
                 cwd: Path | None = None, env: Mapping[str, str] | None = None, keep_stdin: bool = False,
                 ready_timeout: float = READY_TIMEOUT, stop_timeout: float = STOP_TIMEOUT) -> None:
        self.name = name
        self.argv = argv
        self.host = loopback(host)
        self.port = port
        self.log_path = log_path
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.keep_stdin = keep_stdin  # linphonec quits on stdin EOF, so its stdin stays an open pipe
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.quit_line: str | None = None  # a stdin command that makes the program exit cleanly
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> PeerProcess:
        if self._proc is not None:
            raise self.error(f"{self.name} is already running (pid {self._proc.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"=== {' '.join(self.argv)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.PIPE if self.keep_stdin else subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.ready_timeout
        last: int | None = None
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise self.error(f"{self.name} exited with status {code} while starting{self._tail_text()}")
            last = options_status(self.host, self.port, min(2 * PROBE_INTERVAL, max(deadline - time.monotonic(), 0.01)))
            if last is not None and self.ready_status in (None, last):
                return
            time.sleep(PROBE_INTERVAL)
        seen = f"last answer {last}" if last is not None else "no answer"
        raise self.error(f"{self.name} did not answer OPTIONS on udp {hostport(self.host, self.port)} within "
                         f"{self.ready_timeout:g} s ({seen}){self._tail_text()}")

    def send(self, line: str) -> None:
        """A command line on the peer's stdin (when kept open)."""
        if self._proc is not None and self._proc.stdin is not None and self._proc.poll() is None:
            self._proc.stdin.write(line.encode() + b"\n")
            self._proc.stdin.flush()

    def stop(self) -> int | None:
        """SIGTERM by PID, SIGKILL to its process group after `stop_timeout`; returns the exit status."""
        if self.quit_line is not None:
            self.send(self.quit_line)  # the program's own clean exit first
            if self._proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(self.stop_timeout / 2)
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        try:
            return terminate(proc, self.stop_timeout, group=True)
        finally:
            if proc.stdin is not None:
                proc.stdin.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _tail_text(self) -> str:
        tail = self.log_tail()
        return f"\n--- last lines of {self.log_path} ---\n{tail}" if tail else f" (no log at {self.log_path})"

    def __enter__(self) -> PeerProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
