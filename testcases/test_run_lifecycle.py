"""`python -m harness run` keeps its promises when interrupted: the pcap is flushed and readable, no
dumpcap survives, and the exit code says what happened."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.flow


def _dumpcaps_writing(path: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-af", "dumpcap"], capture_output=True, text=True, timeout=10).stdout
    return [line for line in out.splitlines() if str(path) in line]


def test_ctrl_c_mid_flow_keeps_a_readable_capture(tmp_path: Path, capture_tools: None) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "a2.1", "--out", str(out),
                             "--media-seconds", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pcap = out / "a2.1.pcapng"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (pcap.exists() and pcap.stat().st_size > 2000):
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130, stderr
    assert str(pcap) in stderr
    assert not _dumpcaps_writing(pcap), "dumpcap outlived the interrupted run"
    frames = subprocess.run(["tshark", "-r", str(pcap), "-Y", "sip", "-T", "fields", "-e", "frame.number"],
                            capture_output=True, text=True, timeout=60)
    assert frames.returncode == 0, frames.stderr
    assert frames.stdout.split(), "the interrupted capture holds no SIP"
