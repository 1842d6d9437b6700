"""Role inference from behaviour, overrides, and one-line refusals when it is ambiguous."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from scapy.utils import PcapWriter

from harness.verify import verify_capture
from harness.verify.errors import BadInput
from harness.verify.model import Model
from harness.verify.reader import read_capture
from harness.verify.roles import infer_roles, parse_role_overrides
from testcases.data.make_a21_pcap import frame, write

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
SHARED = Path("/work/shared/captures")


def _roles(path: Path, overrides: dict[str, str] | None = None) -> dict[str, str]:
    return infer_roles(Model(read_capture(path).messages), overrides).as_dict()


def test_golden_roles(tmp_path) -> None:
    assert _roles(write(tmp_path / "g.pcap")) == {
        "UE-1": "10.21.0.10:5060", "UE-2": "10.21.0.11:5060", "UE-3": "10.21.0.12:5060", "CS": "10.21.0.40:5060",
        "P-CSCF": "10.21.0.20:5060", "S-CSCF": "10.21.0.30:5060", "MRFP": "10.21.0.50"}


def test_direct_roles_and_overrides(tmp_path) -> None:
    path = write(tmp_path / "d.pcap", proxies=False)
    roles = _roles(path)
    assert "P-CSCF" not in roles and roles["CS"] == "10.21.0.40:5060"
    swapped = _roles(path, parse_role_overrides(["UE-2=10.21.0.12", "ue-3=10.21.0.11:5060"]))
    assert (swapped["UE-2"], swapped["UE-3"]) == ("10.21.0.12:5060", "10.21.0.11:5060")


def test_proxy_100_does_not_merge_proxy_and_uas() -> None:
    path = SHARED / "sipp-transferee-via-kamailio.pcap"
    if not path.exists():
        pytest.skip("shared capture not present")
    assert _roles(path) == {"UE-1": "127.0.0.1:5080", "UE-2": "127.0.0.1:5070", "CS": "127.0.0.1:5090",
                            "P-CSCF": "127.0.0.1:5060"}


def _refer(src: str, tag: str, n: int) -> bytes:
    return (f"REFER sip:x@10.9.0.9 SIP/2.0\r\nVia: SIP/2.0/UDP {src}:5060;branch=z9hG4bK{n}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:a@{src}>;tag={tag}\r\nTo: <sip:x@10.9.0.9>\r\nCall-ID: r{n}\r\n"
            f"CSeq: 1 REFER\r\nContact: <sip:a@{src}>\r\nRefer-To: <sip:conf@10.9.0.8>\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def test_two_refer_senders_is_bad_input(tmp_path) -> None:
    path = tmp_path / "two.pcap"
    with PcapWriter(str(path), linktype=1) as out:
        out.write_header(None)
        for i, src in enumerate(("10.9.0.1", "10.9.0.2")):
            out.write_packet(frame(src, 5060, "10.9.0.9", 5060, _refer(src, f"t{i}", i)), sec=1 + i, usec=0)
    with pytest.raises(BadInput, match=r"several REFER senders.*10\.9\.0\.1:5060, 10\.9\.0\.2:5060"):
        verify_capture(path)
    result = verify_capture(path, roles={"UE-1": "10.9.0.1"})
    assert result.roles["UE-1"] == "10.9.0.1:5060" and result.verdict in ("fail", "inconclusive")


def test_bad_override_is_refused(tmp_path) -> None:
    with pytest.raises(BadInput, match="ROLE=HOST"):
        parse_role_overrides(["NOBODY=1.2.3.4"])
    with pytest.raises(BadInput, match="no SIP endpoint"):
        _roles(write(tmp_path / "g.pcap"), {"UE-1": "192.0.2.1"})


def test_given_role_absent_from_capture_is_a_note(tmp_path) -> None:
    path = write(tmp_path / "g.pcap")
    result = verify_capture(path, roles={"UE-1": "10.21.0.10", "UE-3": "192.0.2.3", "MRFP": "10.21.0.50"})
    assert "UE-3" not in result.roles and any("UE-3 given as 192.0.2.3" in n for n in result.notes)
    assert result.step("3~11").verdict == "inconclusive" and result.step("22~27").verdict == "pass"
