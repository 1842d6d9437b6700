"""REFER implicit subscription (RFC 3515, RFC 6665 §4): notifier and subscriber round trip on a fake clock."""

from __future__ import annotations

import pytest

from harness.sip.build import add_standard, add_via, make_response
from harness.sip.dialog import Dialog
from harness.sip.headers import EventHeader, SubscriptionState
from harness.sip.message import SipMessage
from harness.sip.subscription import (
    ACTIVE,
    INIT,
    TERMINATED,
    ReferNotifier,
    ReferSubscriber,
    SubscriptionError,
    SubscriptionUpdate,
)


def dialogs() -> tuple[Dialog, Dialog]:
    """UE-1 (referrer, UAC of the INVITE) and UE-2 (referee)."""
    inv = SipMessage.request("INVITE", "sip:ue2@127.9.0.2", [
        ("From", "<sip:ue1@127.9.0.1>;tag=t1"), ("To", "<sip:ue2@127.9.0.2>"),
        ("Call-ID", "sub-1@127.9.0.1"), ("CSeq", "1 INVITE"), ("Contact", "<sip:ue1@127.9.0.1>"),
    ], content_length=True)
    add_via(inv, "127.9.0.1", 5060)
    add_standard(inv)
    referee = Dialog.uas(inv, "t2", "<sip:ue2@127.9.0.2>")
    referrer = Dialog.uac(inv, make_response(inv, 200, "OK", to_tag="t2", headers=[("Contact", "<sip:ue2@127.9.0.2>")]))
    return referrer, referee


def refer_exchange() -> tuple[Dialog, Dialog, SipMessage]:
    referrer, referee = dialogs()
    refer = referrer.create_request("REFER", [("Refer-To", "<sip:conf-1@127.9.0.4>")])
    referee.receive_request(refer)
    return referrer, referee, refer


def wire(msg: SipMessage) -> SipMessage:
    return SipMessage.parse(bytes(msg))


def test_notify_round_trip_trying_then_final() -> None:
    referrer, referee, refer = refer_exchange()
    notifier = ReferNotifier(referee, refer, expires=60)
    subscriber = ReferSubscriber(referrer, refer)

    first = wire(notifier.notify(100, "Trying", final=False, now=10.0))
    assert first.method == "NOTIFY" and first.cseq == (1, "NOTIFY")
    assert EventHeader.parse(str(first.get("Event"))).id == "2"  # the REFER's CSeq number
    assert first.get("Event") == "refer;id=2"
    assert first.get("Subscription-State") == "active;expires=60"
    assert first.get("Content-Type") == "message/sipfrag;version=2.0"
    assert first.body == b"SIP/2.0 100 Trying\r\n"
    assert first.get("Contact") == "<sip:ue2@127.9.0.2>"  # defaults to the dialog's local contact
    referrer.receive_request(first)
    update = subscriber.receive_notify(first)
    assert update == SubscriptionUpdate(ACTIVE, None, 60, 100, False, "Trying")
    assert not subscriber.terminated and subscriber.last_status == 100

    final = wire(notifier.notify(200, "OK", final=True, now=10.2))  # the final may follow at once
    assert final.cseq == (2, "NOTIFY")
    sub = SubscriptionState.parse(str(final.get("Subscription-State")))
    assert (sub.state, sub.reason, sub.expires) == ("terminated", "noresource", None)
    assert final.body == b"SIP/2.0 200 OK\r\n"
    referrer.receive_request(final)
    update = subscriber.receive_notify(final)
    assert update.final and update.status_code == 200 and update.reason == "noresource"
    assert subscriber.terminated and notifier.terminated
    assert [u.status_code for u in subscriber.updates] == [100, 200]

    with pytest.raises(SubscriptionError) as err:
        notifier.notify(503, "Service Unavailable", final=True, now=11.0)
    assert err.value.status == 481
    with pytest.raises(SubscriptionError) as err:
        subscriber.receive_notify(final)  # nothing follows terminated
    assert err.value.status == 481


def test_non_final_notifies_at_most_once_per_second() -> None:
    _, referee, refer = refer_exchange()
    notifier = ReferNotifier(referee, refer)
    assert notifier.next_allowed(5.0) == 5.0
    notifier.notify(100, "Trying", final=False, now=5.0)
    assert notifier.next_allowed(5.3) == 6.0
    with pytest.raises(SubscriptionError, match="3515"):
        notifier.notify(180, "Ringing", final=False, now=5.9)
    assert referee.local_seq == 1  # the refused NOTIFY consumed no CSeq
    msg = notifier.notify(180, "Ringing", final=False, now=6.0)
    assert msg.get("Subscription-State") == "active;expires=59"  # counted from the first NOTIFY
    notifier.notify(200, "OK", final=True, now=6.1)


def test_expires_counts_down_from_an_explicit_start_and_contact_override() -> None:
    _, referee, refer = refer_exchange()
    notifier = ReferNotifier(referee, refer, expires=30, contact="sip:ue2@127.9.0.2:5062", started=100.0)
    msg = notifier.notify(100, "Trying", final=False, now=112.5)
    assert msg.get("Subscription-State") == "active;expires=17"
    assert msg.get("Contact") == "<sip:ue2@127.9.0.2:5062>"
    with pytest.raises(SubscriptionError, match="expired"):
        notifier.notify(180, "Ringing", final=False, now=131.0)


def _notify(referee: Dialog, event: str = "refer;id=2", state: str = "active;expires=60",
            body: bytes = b"SIP/2.0 100 Trying\r\n", ctype: str = "message/sipfrag;version=2.0") -> SipMessage:
    headers = [("Event", event), ("Subscription-State", state), ("Content-Type", ctype)]
    return wire(referee.create_request("NOTIFY", [h for h in headers if h[1]], body))


@pytest.mark.parametrize("kwargs, status, text", [
    ({"event": "presence"}, 489, "not refer"),
    ({"event": "refer;id=99"}, 481, "99"),
    ({"event": ""}, 400, "no Event"),
    ({"event": "refer;;id=2"}, 400, "malformed"),
    ({"state": "active;expires=60;=x"}, 400, "malformed"),
    ({"state": ""}, 400, "Subscription-State"),
    ({"state": "waiting"}, 400, "substate"),
    ({"ctype": "text/plain"}, 415, "sipfrag"),
    ({"body": b"SIP/2.0 100 Trying"}, 400, "CRLF"),
    ({"body": b"100 Trying\r\n"}, 400, "status line"),
    ({"body": b"SIP/2.1 100 Trying\r\n"}, 400, "version"),
    ({"body": b"SIP/2.0 1000 Trying\r\n"}, 400, "status line"),
])
def test_subscriber_rejects_bad_notifies(kwargs: dict, status: int, text: str) -> None:
    referrer, referee, refer = refer_exchange()
    subscriber = ReferSubscriber(referrer, refer)
    with pytest.raises(SubscriptionError) as err:
        subscriber.receive_notify(_notify(referee, **kwargs))
    assert err.value.status == status and text in err.value.reason
    assert subscriber.state == INIT


def test_missing_id_is_accepted_unless_required_and_lenient_sipfrag() -> None:
    referrer, referee, refer = refer_exchange()
    assert ReferSubscriber(referrer, refer).receive_notify(_notify(referee, event="refer")).status_code == 100
    with pytest.raises(SubscriptionError):
        ReferSubscriber(referrer, refer, require_id=True).receive_notify(_notify(referee, event="refer"))
    lenient = ReferSubscriber(referrer, refer, strict=False)
    assert lenient.receive_notify(_notify(referee, body=b"SIP/2.0 180 Ringing")).status_code == 180


def test_subscriber_by_ids_learns_the_notifier_tag() -> None:
    referrer, referee, refer = refer_exchange()
    subscriber = ReferSubscriber(("sub-1@127.9.0.1", "t1"), refer)
    notify = _notify(referee)
    assert subscriber.matches(notify)
    subscriber.receive_notify(notify)
    assert subscriber.remote_tag == "t2"
    stranger = SipMessage.parse(bytes(_notify(referee)).replace(b"tag=t2", b"tag=zz"))
    assert not subscriber.matches(stranger)
    with pytest.raises(SubscriptionError) as err:
        subscriber.receive_notify(stranger)
    assert err.value.status == 481


def test_pending_then_terminated_by_the_notifier_error_status() -> None:
    referrer, referee, refer = refer_exchange()
    subscriber = ReferSubscriber(referrer, refer)
    assert subscriber.receive_notify(_notify(referee, state="pending")).state == "pending"
    update = subscriber.receive_notify(_notify(referee, state="terminated;reason=noresource",
                                               body=b"SIP/2.0 486 Busy Here\r\n"))
    assert update.final and update.status_code == 486 and subscriber.state == TERMINATED
