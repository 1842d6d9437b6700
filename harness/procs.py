"""Stopping child processes (dumpcap, tshark, Kamailio, peers) by their own PID, always bounded.

One place for the SIGTERM -> wait -> SIGKILL ladder so no caller can forget a step or a timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable


def terminate(proc: subprocess.Popen[bytes], timeout: float = 5.0, *, group: bool = False) -> int | None:
    """SIGTERM `proc` by PID, wait up to `timeout`, then SIGKILL it (its whole process group when
    `group`, for daemons whose workers share the leader's session); returns the exit status."""
    try:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
    finally:
        if group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        elif proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    return proc.returncode


def serve_until_signal(alive: Callable[[], bool], poll: float = 0.5) -> None:
    """Block a command-line `serve` loop until SIGTERM/SIGINT or until `alive()` turns false;
    the caller's `with` block then stops its processes."""
    stop = False

    def _on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    while not stop and alive():
        time.sleep(poll)
