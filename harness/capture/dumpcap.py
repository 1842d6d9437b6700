"""dumpcap lifecycle: start a pcapng capture, know when it is really capturing, stop it cleanly.

dumpcap prints "Capturing on ..." even for an interface that then fails, so readiness is judged on
the file: it is ready once the pcapng Interface Description Block is on disk. Stopping sends SIGTERM
to dumpcap's own PID (never a process-name match) and waits, because dumpcap flushes on SIGTERM;
SIGKILL is the last resort. The file is always left in place for the verifier.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from harness.procs import terminate

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
# dumpcap reads the kernel ring with a 250 ms timeout; a SIGTERM before the current block is handed
# over loses it (measured: packets sent 0.1 s before stop were missing, 0.3 s before were kept).
SETTLE = 0.35
_SHB = 0x0A0D0D0A
_IDB = 0x00000001


class CaptureError(RuntimeError):
    """dumpcap failed to start or to stop; the message carries dumpcap's stderr."""


class ToolMissing(RuntimeError):
    """tshark or dumpcap is not installed."""


def require_tools() -> None:
    """Fail early, with the package to install, when the capture tools are absent."""
    if shutil.which("dumpcap") is None or shutil.which("tshark") is None:
        raise ToolMissing("tshark/dumpcap not found: install the Debian package 'tshark' (apt-get install -y tshark)")


def settle(seconds: float = SETTLE) -> None:
    """Give the kernel time to hand the last packets to dumpcap before it is stopped."""
    time.sleep(seconds)


def _has_interface_block(path: Path) -> bool:
    """True once the pcapng file holds a Section Header Block followed by an Interface Description Block."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if len(data) < 12:
        return False
    block_type, _length, bom = struct.unpack_from("<III", data, 0)
    if block_type != _SHB:
        return False
    endian = "<" if bom == 0x1A2B3C4D else ">"
    offset = 0
    while offset + 8 <= len(data):
        block_type, length = struct.unpack_from(endian + "II", data, offset)
        if length < 12 or offset + length > len(data):
            return False
        if block_type == _IDB:
            return True
        offset += length
    return False


def _status(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        return f"killed by signal {-returncode}"
    return f"status {returncode}"


class Capture:
    """A running dumpcap writing pcapng to ``path``; use as a context manager or start()/stop()."""

    def __init__(self, path: Path | str, interface: str = "lo", bpf: str | None = None,
                 ready_timeout: float = READY_TIMEOUT, stop_timeout: float = STOP_TIMEOUT,
                 settle_time: float = SETTLE, netns: str | None = None) -> None:
        self.path = Path(path)
        # Capture inside a network namespace (e.g. a Testbed's bridge). `ip netns exec` execs dumpcap
        # in place, so the PID we stop is still dumpcap's own.
        self.netns = netns
        self.settle_time = settle_time
        self.interface = interface
        self.bpf = bpf
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self.failure: str | None = None  # set by stop() when dumpcap had already exited on its own
        self._stderr: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self) -> list[str]:
        cmd = ["dumpcap", "-i", self.interface, "-w", str(self.path), "-q"]
        if self.bpf:
            cmd[3:3] = ["-f", self.bpf]
        return ["ip", "netns", "exec", self.netns, *cmd] if self.netns else cmd

    def start(self) -> Capture:
        """Start dumpcap and block until it writes packets to the file (bounded by ready_timeout)."""
        require_tools()
        if self._proc is not None:
            raise CaptureError("capture already started")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.path.unlink()
        self._stderr = tempfile.NamedTemporaryFile(prefix="dumpcap-", suffix=".err")  # noqa: SIM115 - lives until stop()
        self._proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=self._stderr)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise CaptureError(f"dumpcap exited with status {self._proc.returncode}: {self.stderr_text()}")
            if _has_interface_block(self.path):
                return
            time.sleep(0.02)
        raise CaptureError(f"dumpcap not ready after {self.ready_timeout:g} s: {self.stderr_text()}")

    def stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        try:
            with open(self._stderr.name, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.splitlines() if line.strip())

    def stop(self) -> int | None:
        """Let the last packets reach dumpcap (settle_time), SIGTERM it, wait for it to flush and
        exit, SIGKILL if it does not; return its exit status (None if it was not running)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        try:
            if proc.poll() is not None:  # died before we asked: killed, disk full, interface gone
                self.failure = (f"dumpcap exited during the capture ({_status(proc.returncode)}): "
                                f"{self.stderr_text() or 'no message'}; the capture holds what was written before")
            elif self.settle_time > 0:
                settle(self.settle_time)
            return terminate(proc, self.stop_timeout)
        finally:
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
