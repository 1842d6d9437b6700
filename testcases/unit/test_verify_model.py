"""Grouping hop copies into logical messages, exchanges and dialogs, whatever the hop count."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.verify.model import Model
from harness.verify.reader import read_capture
from testcases.data.make_a21_pcap import write

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
UNREACHABLE = Path("/work/shared/captures/baresip-transfer-target-unreachable.pcap")


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> Model:
    return Model(read_capture(write(tmp_path_factory.mktemp("m") / "g.pcap")).messages)


def test_hop_copies_become_one_logical_message(golden: Model) -> None:
    assert len(golden.logicals) == 34
    refer = golden.requests("REFER")[0].request
    assert [len(m.vias) for m in refer.copies] == [1, 2, 3]
    assert refer.path == ["10.21.0.10:5060", "10.21.0.20:5060", "10.21.0.30:5060", "10.21.0.11:5060"]
    ok = golden.requests("REFER")[0].final
    assert ok is not None and [len(m.vias) for m in ok.copies] == [3, 2, 1] and ok.receiver == "10.21.0.10:5060"


def test_exchanges_and_acks(golden: Model) -> None:
    invites = golden.requests("INVITE")
    assert len(invites) == 6  # D12, hold, D13, D1C, D2C, D3C
    for ex in invites:
        assert ex.ok is not None and ex.ack_2xx is not None
        assert ex.ack_2xx.origin.bottom_branch != ex.request.origin.bottom_branch


def test_dialogs_by_call_id_and_tags(golden: Model) -> None:
    d12 = golden.dialogs[0]
    assert d12.call_id.startswith("d12@")
    assert [e.method for e in d12.exchanges] == ["INVITE", "INVITE", "REFER", "NOTIFY", "NOTIFY", "BYE"]
    assert len(golden.dialogs) == 5


def test_direct_topology_single_copies(tmp_path) -> None:
    model = Model(read_capture(write(tmp_path / "d.pcap", proxies=False)).messages)
    assert len(model.logicals) == 34 and all(len(lg.copies) == 1 for lg in model.logicals)


def test_udp_retransmissions_are_not_new_messages() -> None:
    if not UNREACHABLE.exists():
        pytest.skip("shared capture not present")
    model = Model(read_capture(UNREACHABLE).messages)
    join = [e for e in model.requests("INVITE") if e.request.to_tag is None][1]
    assert len(join.request.copies) == 1 and len(join.request.retransmissions) == 5
    assert sum(len(lg.retransmissions) for lg in model.logicals) == 12


def _wire(data: bytes, frame: int, src: str, dst: str, transport: str = "UDP"):
    from harness.verify.wire import WireMessage

    (sip, sport), (dip, dport) = (a.rsplit(":", 1) for a in (src, dst))
    return WireMessage.from_bytes(data, frame=frame, index=0, time=float(frame), src=sip, sport=int(sport),
                                  dst=dip, dport=int(dport), transport=transport)


def _options(vias: list[str], to_tag: str = "") -> bytes:
    head = "".join(f"Via: SIP/2.0/TCP {v};branch=z9hG4bK{v.replace('.', '').replace(':', '')}\r\n" for v in vias)
    return (f"OPTIONS sip:b@10.9.0.2 SIP/2.0\r\n{head}Max-Forwards: 70\r\nFrom: <sip:a@x>;tag=1\r\n"
            f"To: <sip:b@y>{to_tag}\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()


def _ok(vias: list[str]) -> bytes:
    head = "".join(f"Via: SIP/2.0/TCP {v};branch=z9hG4bK{v.replace('.', '').replace(':', '')}\r\n" for v in vias)
    return (f"SIP/2.0 200 OK\r\n{head}From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: o1\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()


def test_tcp_ephemeral_source_port_joins_the_declared_address() -> None:
    from harness.verify.roles import Nodes

    msgs = [_wire(_options(["10.9.0.1:5060"]), 1, "10.9.0.1:41000", "10.9.0.2:5060", "TCP"),
            _wire(_ok(["10.9.0.1:5060"]), 2, "10.9.0.2:5060", "10.9.0.1:41000", "TCP")]
    nodes = Nodes(Model(msgs))
    assert nodes.find("10.9.0.1:41000") == nodes.find("10.9.0.1:5060")


def test_missing_first_hop_still_names_the_sender() -> None:
    # UE 10.9.0.1 -> proxy 10.9.0.5 -> UAS 10.9.0.2, but the first hop is not in the capture.
    msgs = [_wire(_options(["10.9.0.5:5060", "10.9.0.1:5060"]), 2, "10.9.0.5:5060", "10.9.0.2:5060"),
            _wire(_ok(["10.9.0.5:5060", "10.9.0.1:5060"]), 3, "10.9.0.2:5060", "10.9.0.5:5060"),
            _wire(_ok(["10.9.0.1:5060"]), 4, "10.9.0.5:5060", "10.9.0.1:5060"),
            _wire(_options(["10.9.0.9:5060"]), 5, "10.9.0.1:5060", "10.9.0.9:5060")]
    model = Model(msgs)
    ex = model.requests("OPTIONS")[0]
    assert ex.request.sender == "10.9.0.1:5060" and ex.request.receiver == "10.9.0.2:5060"
    assert ex.ok is not None and ex.ok.sender == "10.9.0.2:5060" and ex.ok.receiver == "10.9.0.1:5060"
