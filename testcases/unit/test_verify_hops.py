"""Per-hop truth: every copy is judged against the copy it was forwarded from, and UDP
retransmissions are recognised as such (counted in the step's notes), never as new steps."""

from __future__ import annotations

import shutil

import pytest

from harness.verify import verify_capture
from harness.verify.model import Model
from harness.verify.reader import read_capture
from harness.verify.wire import WireMessage
from testcases.data.make_a21_pcap import write

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")


def _wire(data: bytes, frame: int, src: str, dst: str, transport: str = "UDP") -> WireMessage:
    (sip, sport), (dip, dport) = (a.rsplit(":", 1) for a in (src, dst))
    return WireMessage.from_bytes(data, frame=frame, index=0, time=float(frame), src=sip, sport=int(sport),
                                  dst=dip, dport=int(dport), transport=transport)


def _bye(vias: list[str], mf: int = 70, call_id: str = "b1") -> bytes:
    head = "".join(f"Via: SIP/2.0/UDP {v};branch=z9hG4bK{v.replace('.', '').replace(':', '')}\r\n" for v in vias)
    return (f"BYE sip:b@10.9.0.2 SIP/2.0\r\n{head}Max-Forwards: {mf}\r\nFrom: <sip:a@x>;tag=1\r\n"
            f"To: <sip:b@y>;tag=2\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n").encode()


UE, P, S, UAS = "10.9.0.1:5060", "10.9.0.5:5060", "10.9.0.6:5060", "10.9.0.2:5060"


def test_hops_pair_each_copy_with_the_one_it_was_forwarded_from() -> None:
    msgs = [_wire(_bye([UE]), 1, UE, P), _wire(_bye([P, UE], 69), 2, P, S), _wire(_bye([S, P, UE], 68), 3, S, UAS)]
    (bye,) = Model(msgs).logicals
    assert [(a.frame, b.frame, adjacent) for a, b, adjacent in bye.hops()] == [(1, 2, True), (2, 3, True)]


def test_missing_hop_is_not_adjacent_and_a_proxy_without_via_still_is() -> None:
    gap = Model([_wire(_bye([UE]), 1, UE, P), _wire(_bye([S, P, UE], 68), 3, S, UAS)]).logicals[0]
    assert [adjacent for *_, adjacent in gap.hops()] == [False]
    no_via = Model([_wire(_bye([UE]), 1, UE, P), _wire(_bye([UE], 69), 2, P, S)]).logicals[0]
    assert [(a.frame, b.frame, adjacent) for a, b, adjacent in no_via.hops()] == [(1, 2, True)]


def test_a_proxy_that_changes_call_id_does_not_split_the_message() -> None:
    msgs = [_wire(_bye([UE]), 1, UE, P), _wire(_bye([P, UE], 69, call_id="other"), 2, P, S)]
    (bye,) = Model(msgs).logicals
    assert [m.frame for m in bye.copies] == [1, 2] and bye.call_id == "b1"


def test_duplicate_datagram_is_a_retransmission_not_a_copy() -> None:
    msgs = [_wire(_bye([UE]), 1, UE, P), _wire(_bye([P, UE], 69), 2, P, S), _wire(_bye([UE]), 7, UE, P)]
    (bye,) = Model(msgs).logicals
    assert [m.frame for m in bye.copies] == [1, 2] and [m.frame for m in bye.retransmissions] == [7]


@pytest.fixture(scope="module")
def retrans(tmp_path_factory):
    out = tmp_path_factory.mktemp("hops")
    return {name: verify_capture(write(out / f"{name}.pcap", mutations=(name,)))
            for name in ("retransmissions", "retransmission-first-lost")}


def test_capture_with_retransmissions_passes_and_counts_them_per_step(retrans) -> None:
    result = retrans["retransmissions"]
    assert result.verdict == "pass"
    notes = {s.step: s.notes for s in result.steps if s.notes}
    assert set(notes) == {"3~11", "53~58"}
    assert notes["53~58"][0].startswith("12 UDP retransmissions") and "REFER x2 on UE-1->P-CSCF" in notes["53~58"][0]
    assert "202 x2 on P-CSCF->UE-1" in notes["53~58"][0]
    assert notes["3~11"][0].startswith("6 UDP retransmissions") and "ACK x1 on S-CSCF->UE-3" in notes["3~11"][0]
    assert any("(36 retransmissions)" in n or "18 retransmissions" in n for n in result.notes)


def test_first_copy_lost_on_one_hop_still_passes(retrans) -> None:
    result = retrans["retransmission-first-lost"]
    assert result.verdict == "pass", {s.step: s.checks for s in result.steps if s.verdict != "pass"}
    notes = {s.step: s.notes for s in result.steps if s.notes}
    assert "NOTIFY x1 on UE-3->S-CSCF" in notes["59~64"][0]      # UE-3 resent it along the whole path
    assert "REFER x1 on UE-1->P-CSCF" in notes["22~27"][0]       # UE-1 resent the REFER whose 202 was lost


def test_retransmissions_are_not_new_logical_messages(tmp_path) -> None:
    data = read_capture(write(tmp_path / "r.pcap", mutations=("retransmissions",)))
    model = Model(data.messages)
    assert len(model.logicals) == 34 and sum(len(lg.retransmissions) for lg in model.logicals) == 18
