"""dumpcap lifecycle: ready before returning, flushed on stop, never left running, errors carry stderr."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

from harness.capture import Capture, CaptureError, ToolMissing, require_tools, settle
from harness.capture.dumpcap import _has_interface_block

pytestmark = pytest.mark.skipif(shutil.which("dumpcap") is None or os.geteuid() != 0,
                                reason="needs dumpcap and root")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _count(path: str) -> int:
    out = subprocess.run(["tshark", "-r", path, "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, check=True).stdout
    return len(out.split())


def test_capture_writes_every_packet_sent_before_stop(tmp_path) -> None:
    port = _free_port()
    path = tmp_path / "cap.pcapng"
    with Capture(path, interface="lo", bpf=f"udp port {port}") as cap:
        assert cap.pid is not None and _has_interface_block(path)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(5):
                s.sendto(b"x%d" % i, ("127.0.0.1", port))
        pid = cap.pid  # stop() settles before SIGTERM, so packets sent just now are kept
    assert cap.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert cap.path == path and _count(str(path)) == 5


def test_bad_interface_raises_with_dumpcap_stderr(tmp_path) -> None:
    cap = Capture(tmp_path / "x.pcapng", interface="no-such-if0")
    with pytest.raises(CaptureError, match="no-such-if0|There is no device"):
        cap.start()
    assert cap.pid is None


def test_stop_is_idempotent_and_start_twice_refused(tmp_path) -> None:
    cap = Capture(tmp_path / "y.pcapng", bpf="udp port 9", settle_time=0).start()
    try:
        with pytest.raises(CaptureError, match="already started"):
            cap.start()
    finally:
        assert cap.stop() == 0
    assert cap.stop() is None


def test_require_tools_names_the_package(monkeypatch) -> None:
    require_tools()
    settle(0)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ToolMissing, match="apt-get install -y tshark"):
        require_tools()


def test_interface_block_detection(tmp_path) -> None:
    path = tmp_path / "partial.pcapng"
    path.write_bytes(b"\x0a\x0d\x0d\x0a" + b"\x1c\x00\x00\x00" + b"\x4d\x3c\x2b\x1a" + b"\x00" * 16)
    assert not _has_interface_block(path)
    assert not _has_interface_block(tmp_path / "missing.pcapng")
