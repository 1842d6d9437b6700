"""The CLI contract other tools rely on: exit codes 0/1/2 and a one-line reason on stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def harness(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          timeout=timeout)


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line reason, got:\n{proc.stderr}"
    return lines[0]


def test_verify_missing_file_is_bad_input(tmp_path: Path) -> None:
    proc = harness("verify", str(tmp_path / "nope.pcap"))
    assert proc.returncode == 2
    assert "nope.pcap" in _one_line_error(proc)


def test_verify_empty_file_is_bad_input(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    proc = harness("verify", str(empty))
    assert proc.returncode == 2
    _one_line_error(proc)


def test_verify_garbage_is_bad_input(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pcapng"
    junk.write_bytes(b"this is not a capture\n" * 50)
    proc = harness("verify", str(junk))
    assert proc.returncode == 2
    _one_line_error(proc)


def test_verify_capture_without_sip_is_bad_input(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    pcap = tmp_path / "dns-only.pcap"
    wrpcap(str(pcap), [IP(src="127.0.0.1", dst="127.0.0.2") / UDP(sport=53, dport=53) / Raw(b"\x00" * 12)])
    proc = harness("verify", str(pcap))
    assert proc.returncode == 2
    assert "SIP" in _one_line_error(proc)


def test_unknown_flow_is_bad_input() -> None:
    proc = harness("run", "a9.9")
    assert proc.returncode == 2
    assert "a9.9" in _one_line_error(proc)


def test_bad_role_option_is_bad_input(tmp_path: Path) -> None:
    proc = harness("verify", str(tmp_path / "x.pcap"), "--role", "UE-1")
    assert proc.returncode == 2
    assert "ROLE=HOST" in proc.stderr


def test_unknown_fault_is_bad_input() -> None:
    proc = harness("run", "a2.1", "--fault", "no-such-fault")
    assert proc.returncode == 2
    assert "no-such-fault" in _one_line_error(proc)


THIRD_PARTY = sorted((Path(__file__).parent / "data" / "thirdparty").glob("*.pcap"))


def test_third_party_captures_are_present() -> None:
    assert len(THIRD_PARTY) >= 5


@pytest.mark.parametrize("pcap", THIRD_PARTY, ids=lambda p: p.stem)
def test_verify_third_party_capture_never_crashes(pcap: Path) -> None:
    """Foreign transfer captures: a verdict (exit 0 or 1) or a clear bad-input exit 2, never a traceback."""
    proc = harness("verify", str(pcap))
    assert proc.returncode in (0, 1, 2), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
