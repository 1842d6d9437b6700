"""Captures the harness did not make: SIP found by content on any port, SIP over TCP with messages
split across segments and sharing segments, IPv6, pcapng; roles inferred, --role overriding, and
ambiguity refused with the candidates listed (exit 2)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.utils import PcapWriter

from harness.verify import verify_capture
from harness.verify.reader import read_capture
from testcases.data.frames import TcpWire, tcp_frame, udp_frame
from testcases.data.make_a21_pcap import write

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")


def _harness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=120)


def _options(n: int, transport: str = "UDP", port: int = 5060) -> bytes:
    return (f"OPTIONS sip:b@10.9.0.2 SIP/2.0\r\nVia: SIP/2.0/{transport} 10.9.0.1:{port};branch=z9hG4bK{n}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:a@x>;tag={n}\r\nTo: <sip:b@y>\r\nCall-ID: c{n}\r\nCSeq: {n} OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def _write(path: Path, frames: list[bytes]) -> Path:
    with PcapWriter(str(path), linktype=1) as out:
        out.write_header(None)
        for i, data in enumerate(frames):
            out.write_packet(data, sec=1 + i, usec=0)
    return path


@pytest.mark.parametrize("port", [6000, 15060, 53, 80, 1719, 3478])
def test_sip_over_udp_is_found_on_any_port(tmp_path, port: int) -> None:
    path = _write(tmp_path / "u.pcap", [udp_frame("10.9.0.1", port, "10.9.0.2", port, _options(1, port=port))])
    (m,) = read_capture(path).messages
    assert (m.method, m.sport, m.transport) == ("OPTIONS", port, "UDP")


@pytest.mark.parametrize("port", [6000, 80, 15060, 443])
def test_sip_over_tcp_is_found_on_any_port_split_and_coalesced(tmp_path, port: int) -> None:
    """One connection: the first message cut in three, the second and third sharing a segment."""
    frames: list[tuple[float, bytes]] = []
    wire = TcpWire(frames, lambda n, length: [[40, length - 7], [length // 3]][n % 2])
    conn = wire.connect("10.9.0.1", ("10.9.0.2", port), 1.0)
    wire.write(conn, True, _options(1, "TCP", port), 1.0)
    wire.flush()
    wire.write(conn, True, _options(2, "TCP", port), 1.1)
    wire.write(conn, True, _options(3, "TCP", port), 1.1)
    wire.flush()
    path = _write(tmp_path / "t.pcap", [data for _, data in sorted(frames, key=lambda f: f[0])])
    msgs = read_capture(path).messages
    assert [(m.cseq_num, m.transport, m.dport) for m in msgs] == [(1, "TCP", port), (2, "TCP", port), (3, "TCP", port)]
    assert msgs[0].raw == _options(1, "TCP", port) and msgs[2].raw == _options(3, "TCP", port)
    assert msgs[0].frame == 6                                   # handshake 1-3, then three segments
    assert (msgs[1].frame, msgs[2].frame, msgs[2].index) == (8, 8, 1)   # tail of 2 and all of 3 in one segment


def test_tcp_frame_builder_handshake(tmp_path) -> None:
    path = _write(tmp_path / "h.pcap", [tcp_frame("10.9.0.1", 40000, "10.9.0.2", 5060, 1, 0, 0x02)])
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "tcp.flags.syn"], capture_output=True,
                         text=True, timeout=60).stdout
    assert out.strip() in ("1", "True")


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("foreign")
    return {
        "tcp": write(out / "tcp.pcapng", transport="TCP"),
        "tcp6000": write(out / "tcp6000.pcap", transport="TCP", port=6000),
        "udp6000": write(out / "udp6000.pcap", port=6000),
        "udp15060": write(out / "udp15060.pcapng", port=15060),
        "ipv6": write(out / "v6.pcap", ipv6=True),
        "ipv6-tcp": write(out / "v6tcp.pcapng", ipv6=True, transport="TCP"),
        "direct-tcp": write(out / "dtcp.pcap", proxies=False, transport="TCP"),
    }


@pytest.mark.parametrize("name", ["tcp", "tcp6000", "udp6000", "udp15060", "ipv6", "ipv6-tcp", "direct-tcp"])
def test_whole_flow_on_foreign_transports_passes(captures, name: str) -> None:
    result = verify_capture(captures[name])
    assert result.verdict == "pass", {s.step: [c for c in s.checks if c.verdict != "pass"] for s in result.steps
                                      if s.verdict != "pass"}
    assert set(result.roles) >= {"UE-1", "UE-2", "UE-3", "CS"}


def test_tcp_capture_really_has_split_and_shared_segments(captures) -> None:
    path = captures["tcp"]
    multi = subprocess.run(["tshark", "-r", str(path), "-Y", "sip && tcp.segment.count > 1", "-T", "fields",
                            "-e", "frame.number"], capture_output=True, text=True, timeout=60).stdout.split()
    assert len(multi) >= 5  # SIP messages tshark had to reassemble from several segments
    msgs = read_capture(path).messages
    shared = {m.frame for m in msgs if m.index > 0}
    assert shared  # a segment that completes one message and carries another
    result = verify_capture(path)
    assert result.roles["P-CSCF"].count(",") >= 1      # its listening port and its TCP client ports: one element


def test_decode_as_only_when_another_dissector_owns_the_port(captures) -> None:
    assert any("decoded those ports as SIP" in n for n in verify_capture(captures["tcp6000"]).notes)
    assert not any("decoded those ports" in n for n in verify_capture(captures["udp15060"]).notes)


def test_ipv6_roles_are_bracketed(captures) -> None:
    roles = verify_capture(captures["ipv6"]).roles
    assert roles["UE-1"] == "[2001:db8::10]:5060" and roles["CS"] == "[2001:db8::40]:5060"


def test_role_override_on_the_command_line(captures) -> None:
    proc = _harness("verify", str(captures["ipv6"]), "--json", "--role", "UE-1=[2001:db8::10]:5060",
                    "--role", "CS=2001:db8::40")
    assert proc.returncode == 0, proc.stderr
    assert '"UE-1": "[2001:db8::10]:5060"' in proc.stdout and "UE-1 given" in proc.stdout


def _refer(src: str, n: int) -> bytes:
    return (f"REFER sip:x@10.9.0.9 SIP/2.0\r\nVia: SIP/2.0/UDP {src}:5060;branch=z9hG4bK{n}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:a@{src}>;tag=t{n}\r\nTo: <sip:x@10.9.0.9>\r\nCall-ID: r{n}\r\n"
            f"CSeq: 1 REFER\r\nContact: <sip:a@{src}>\r\nRefer-To: <sip:conf@10.9.0.8>\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def test_ambiguous_roles_exit_2_with_the_candidates(tmp_path) -> None:
    path = _write(tmp_path / "two.pcap", [udp_frame(src, 5060, "10.9.0.9", 5060, _refer(src, i))
                                          for i, src in enumerate(("10.9.0.1", "10.9.0.2"))])
    proc = _harness("verify", str(path))
    assert proc.returncode == 2
    assert "10.9.0.1:5060" in proc.stderr and "10.9.0.2:5060" in proc.stderr and "--role UE-1" in proc.stderr
    ok = _harness("verify", str(path), "--role", "UE-1=10.9.0.1")
    assert ok.returncode == 1 and "Traceback" not in ok.stderr
