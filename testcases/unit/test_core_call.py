"""Transactions, dialogs and the REFER subscription together: a whole call between two in-memory UAs,
with the first 200 OK lost, on a fake clock."""

from __future__ import annotations

from harness.sip.build import add_standard, add_via, make_response
from harness.sip.dialog import CONFIRMED, TERMINATED, Dialog
from harness.sip.message import SipMessage
from harness.sip.subscription import ReferNotifier, ReferSubscriber
from harness.sip.transaction import (
    AckTimeout,
    MessageDropped,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
)
from testcases.unit.test_core_transaction import Wire

UE1 = ("127.9.0.1", 5060)
UE2 = ("127.9.0.2", 5060)


def send(wire: Wire, layer: TransactionLayer, msg: SipMessage, dst: tuple[str, int]) -> str:
    add_via(msg, *layer.local, rport=True)
    add_standard(msg)
    key = layer.send_request(msg, dst, wire.now)
    wire.flush()
    return key


def last(wire: Wire, addr: tuple[str, int], kind: type, method: str | None = None) -> object:
    found = [e for e in wire.of(addr, kind) if method is None or e.message.method == method
             or e.message.cseq[1] == method]
    return found[-1]


def test_call_refer_notify_bye() -> None:
    ue1, ue2 = TransactionLayer(UE1), TransactionLayer(UE2)
    wire = Wire(ue1, ue2)
    lost = [True]

    def lose_first_200(src: tuple[str, int], dst: tuple[str, int], msg: SipMessage) -> bool:
        if msg.status == 200 and msg.cseq[1] == "INVITE" and lost[0]:
            lost[0] = False
            return True
        return False

    wire.drop = lose_first_200

    invite = SipMessage.request("INVITE", "sip:ue2@127.9.0.2", [
        ("From", "<sip:ue1@127.9.0.1>;tag=a1"), ("To", "<sip:ue2@127.9.0.2>"),
        ("Call-ID", "call@127.9.0.1"), ("CSeq", "1 INVITE")])
    send(wire, ue1, add_standard(invite, contact="sip:ue1@127.9.0.1"), UE2)
    req = last(wire, UE2, RequestReceived, "INVITE")
    uas = Dialog.uas(req.message, "b2", "<sip:ue2@127.9.0.2>")
    wire.run_until(0.3)  # 100 Trying went out at 0.2
    ue2.send_response(req.message, make_response(req.message, 200, "OK", to_tag="b2",
                                                  headers=[("Contact", "<sip:ue2@127.9.0.2>")]), 0.3)
    wire.run_until(1.0)  # lost at 0.3, retransmitted at 0.8
    ok = last(wire, UE1, ResponseReceived)
    assert ok.message.status == 200 and wire.times(UE2, lambda m: m.status == 200) == [0.3, 0.8]
    uac = Dialog.uac(invite, ok.message)
    ack = uac.create_ack(1)
    send(wire, ue1, ack, UE2)
    acked = last(wire, UE2, RequestReceived, "ACK")
    assert acked.key == req.key
    uas.receive_request(acked.message)

    refer = uac.create_request("REFER", [("Refer-To", "<sip:conf-1@127.9.0.4>")])
    send(wire, ue1, refer, UE2)
    refer_in = last(wire, UE2, RequestReceived, "REFER").message
    uas.receive_request(refer_in)
    ue2.send_response(refer_in, make_response(refer_in, 202, "Accepted"), wire.now)
    subscriber = ReferSubscriber(uac, refer)
    notifier = ReferNotifier(uas, refer_in)

    for status, reason, final in [(100, "Trying", False), (200, "OK", True)]:
        wire.run_until(notifier.next_allowed(wire.now))
        send(wire, ue2, notifier.notify(status, reason, final, wire.now), UE1)
        notify = last(wire, UE1, RequestReceived, "NOTIFY").message
        uac.receive_request(notify)
        update = subscriber.receive_notify(notify)
        assert (update.status_code, update.final) == (status, final)
        ue1.send_response(notify, make_response(notify, 200, "OK"), wire.now)
        wire.flush()
    assert subscriber.terminated and uac.state == CONFIRMED

    bye = uac.create_request("BYE")
    assert bye.cseq == (3, "BYE")
    send(wire, ue1, bye, UE2)
    bye_in = last(wire, UE2, RequestReceived, "BYE").message
    uas.receive_request(bye_in)
    ue2.send_response(bye_in, make_response(bye_in, 200, "OK"), wire.now)
    wire.flush()
    uac.receive_response(last(wire, UE1, ResponseReceived).message)
    assert uac.state == TERMINATED and uas.state == TERMINATED

    wire.run_until(wire.now + 40.0)
    assert ue1.get_timer() is None and ue2.get_timer() is None  # every transaction is gone
    for addr in (UE1, UE2):
        assert not wire.of(addr, MessageDropped) and not wire.of(addr, AckTimeout)
    # Each request surfaced exactly once at its UAS.
    assert [e.message.method for e in wire.of(UE2, RequestReceived)] == ["INVITE", "ACK", "REFER", "BYE"]
    assert [e.message.method for e in wire.of(UE1, RequestReceived)] == ["NOTIFY", "NOTIFY"]
