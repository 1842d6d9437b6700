"""The implicit subscription a REFER creates (RFC 3515, RFC 6665 §4), both ends.

The notifier reports the referred request's progress as NOTIFYs with a
message/sipfrag body; the subscriber checks each one and says when the
subscription ends. Both walk the subscription-state tables below, so an
out-of-order NOTIFY (anything after "terminated") is a ProtocolError, which the
subscriber turns into a SubscriptionError with the status to answer (481).
"""

from __future__ import annotations

from dataclasses import dataclass

from .dialog import Dialog
from .errors import SipError
from .fsm import ProtocolError, check_table, transition
from .headers import EventHeader, SubscriptionState, parse_status_line
from .message import SipMessage

INIT = "init"  # subscriber: REFER accepted, no NOTIFY yet
PENDING = "pending"
ACTIVE = "active"
TERMINATED = "terminated"

# RFC 6665 §4.1.3 (subscriber) / §4.2.2 (notifier): the substate a NOTIFY carries drives the machine;
# nothing follows "terminated".
SUBSCRIBER = {
    INIT: {PENDING: PENDING, ACTIVE: ACTIVE, TERMINATED: TERMINATED},
    PENDING: {PENDING: PENDING, ACTIVE: ACTIVE, TERMINATED: TERMINATED},
    ACTIVE: {ACTIVE: ACTIVE, TERMINATED: TERMINATED},
    TERMINATED: {},
}
NOTIFIER = {
    ACTIVE: {ACTIVE: ACTIVE, TERMINATED: TERMINATED},
    TERMINATED: {},
}
check_table(SUBSCRIBER, TERMINATED)
check_table(NOTIFIER, TERMINATED)

SIPFRAG_TYPE = "message/sipfrag"
#: RFC 3515 §3.10: "NOTIFY requests MUST NOT be sent more frequently than once per second"
#: (applied to the non-final ones; the final NOTIFY may follow at once).
MIN_NOTIFY_INTERVAL = 1.0


class SubscriptionError(SipError):
    """A NOTIFY (or a request to send one) that breaks the rules; `status` is the response to send."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class SubscriptionUpdate:
    """What one NOTIFY said: subscription state plus the sipfrag status of the referred request."""

    state: str
    reason: str | None
    expires: int | None
    status_code: int
    final: bool
    status_reason: str = ""


class ReferNotifier:
    """Notifier side of the implicit subscription, within `dialog` (RFC 3515 §2.4.4-§2.4.7)."""

    def __init__(self, dialog: Dialog, refer: SipMessage, expires: int = 60, contact: str | None = None,
                 started: float | None = None) -> None:
        self.dialog = dialog
        self.id = str(refer.cseq[0])  # RFC 3515 §2.4.6: id = the REFER's CSeq sequence number
        self.expires = expires
        self.contact = contact if contact is not None else dialog.local_contact
        self.started = started  # None: the first notify() starts the clock
        self.state = ACTIVE
        self.last_sent: float | None = None  # time of the last non-final NOTIFY

    @property
    def terminated(self) -> bool:
        return self.state == TERMINATED

    def next_allowed(self, now: float) -> float:
        """Earliest time a non-final NOTIFY may go out (RFC 3515 §3.10)."""
        if self.last_sent is None:
            return now
        return max(now, self.last_sent + MIN_NOTIFY_INTERVAL)

    def remaining(self, now: float) -> int:
        start = now if self.started is None else self.started
        return max(0, int(self.expires - (now - start)))

    def notify(self, status: int, reason: str, final: bool, now: float,
               contact: str | None = None) -> SipMessage:
        """The next NOTIFY: `Subscription-State: active;expires=N` or, when `final`,
        `terminated;reason=noresource` (RFC 3515 §2.4.7), with a sipfrag status line body."""
        if not 100 <= status <= 699:
            raise ValueError(f"sipfrag status {status} is not in 100..699")
        if "\r" in reason or "\n" in reason:
            raise ValueError(f"reason phrase {reason!r} contains CR/LF")
        try:
            next_state = transition(NOTIFIER, "REFER notifier", self.state, TERMINATED if final else ACTIVE)
        except ProtocolError as exc:
            raise SubscriptionError(f"{exc} (the final NOTIFY was already sent)", status=481) from None
        if self.started is None:
            self.started = now
        if not final:
            if self.last_sent is not None and now < self.last_sent + MIN_NOTIFY_INTERVAL:
                raise SubscriptionError(
                    f"non-final NOTIFY at {now:.3f} s, before {self.next_allowed(now):.3f} s (RFC 3515 §3.10)")
            remaining = self.remaining(now)
            if remaining <= 0:
                raise SubscriptionError("subscription expired: send the final NOTIFY (RFC 6665 §4.2.2)")
            sub_state = f"active;expires={remaining}"
        else:
            sub_state = "terminated;reason=noresource"
        headers = [
            ("Event", f"refer;id={self.id}"),
            ("Subscription-State", sub_state),
            ("Content-Type", f"{SIPFRAG_TYPE};version=2.0"),
        ]
        contact = contact if contact is not None else self.contact
        if contact is not None:
            headers.append(("Contact", contact if "<" in contact else f"<{contact}>"))
        body = f"SIP/2.0 {status} {reason}\r\n".encode()
        msg = self.dialog.create_request("NOTIFY", headers, body)
        self.state = next_state
        if not final:
            self.last_sent = now
        return msg


class ReferSubscriber:
    """Subscriber side: checks each NOTIFY about one REFER (RFC 3515 §2.4.5, RFC 6665 §4.1.3).

    `dialog_or_ids` is the Dialog the REFER was sent in, or `(call_id, local_tag)` /
    `(call_id, local_tag, remote_tag)` when the REFER was sent outside one (the remote
    tag is then learnt from the first NOTIFY). The caller still runs the NOTIFY
    through `Dialog.receive_request` for the CSeq check.
    """

    def __init__(self, dialog_or_ids: Dialog | tuple[str, ...], refer: SipMessage,
                 require_id: bool = False, strict: bool = True) -> None:
        if isinstance(dialog_or_ids, Dialog):
            self.dialog: Dialog | None = dialog_or_ids
            self.call_id, self.local_tag, self.remote_tag = dialog_or_ids.id
        else:
            self.dialog = None
            ids = tuple(dialog_or_ids)
            if len(ids) not in (2, 3):
                raise ValueError("ids are (call_id, local_tag) or (call_id, local_tag, remote_tag)")
            self.call_id, self.local_tag = ids[0], ids[1]
            self.remote_tag = ids[2] if len(ids) == 3 else None
        self.id = str(refer.cseq[0])
        self.require_id = require_id  # RFC 3515 §2.4.6 lets the first REFER's NOTIFYs omit id
        self.strict = strict  # sipfrag status line must end in CRLF (RFC 3420 §2)
        self.state = INIT
        self.last_status: int | None = None
        self.updates: list[SubscriptionUpdate] = []

    @property
    def terminated(self) -> bool:
        return self.state == TERMINATED

    def matches(self, msg: SipMessage) -> bool:
        """A NOTIFY in this subscription's dialog carrying Event: refer with our id (or none)."""
        try:
            if msg.method != "NOTIFY" or msg.call_id != self.call_id or msg.to_tag != self.local_tag:
                return False
            if self.remote_tag is not None and msg.from_tag != self.remote_tag:
                return False
            event = EventHeader.parse(msg.get("Event") or "")
        except SipError:
            return False
        return event.package.lower() == "refer" and (event.id is None or event.id == self.id)

    def receive_notify(self, msg: SipMessage) -> SubscriptionUpdate:
        """Check one NOTIFY and return what it says; raises SubscriptionError(status) to reject it,
        also for header values that do not parse (400), so callers catch one error type."""
        try:
            return self._receive_notify(msg)
        except SubscriptionError:
            raise
        except SipError as exc:
            raise SubscriptionError(f"malformed NOTIFY: {exc}", status=400) from None

    def _receive_notify(self, msg: SipMessage) -> SubscriptionUpdate:
        if msg.method != "NOTIFY":
            raise SubscriptionError(f"{msg.method} is not a NOTIFY", status=405)
        if msg.call_id != self.call_id or msg.to_tag != self.local_tag or (
            self.remote_tag is not None and msg.from_tag != self.remote_tag
        ):
            raise SubscriptionError("NOTIFY is outside the REFER's dialog", status=481)
        event_text = msg.get("Event")
        if event_text is None:
            raise SubscriptionError("NOTIFY has no Event header (RFC 6665 §8.1.2)", status=400)
        event = EventHeader.parse(event_text)
        if event.package.lower() != "refer":
            # RFC 6665 §4.1.3: an unknown event package gets 489 (Bad Event).
            raise SubscriptionError(f"Event package {event.package!r} is not refer", status=489)
        if event.id is None and self.require_id:
            raise SubscriptionError("Event: refer has no id parameter (RFC 3515 §2.4.6)", status=481)
        if event.id is not None and event.id != self.id:
            raise SubscriptionError(f"Event id {event.id} is not the REFER's CSeq {self.id}", status=481)
        state_text = msg.get("Subscription-State")
        if state_text is None:
            raise SubscriptionError("NOTIFY has no Subscription-State (RFC 6665 §4.2.2)", status=400)
        sub = SubscriptionState.parse(state_text)
        if sub.state not in (PENDING, ACTIVE, TERMINATED):
            raise SubscriptionError(f"unknown substate {sub.state!r}", status=400)
        status, phrase = self._sipfrag_status(msg)
        try:
            next_state = transition(SUBSCRIBER, "REFER subscriber", self.state, sub.state, status=481)
        except ProtocolError as exc:
            raise SubscriptionError(str(exc), status=481) from None
        self.state = next_state
        if self.remote_tag is None:
            self.remote_tag = msg.from_tag
        self.last_status = status
        update = SubscriptionUpdate(sub.state, sub.reason, sub.expires, status, sub.state == TERMINATED, phrase)
        self.updates.append(update)
        return update

    def _sipfrag_status(self, msg: SipMessage) -> tuple[int, str]:
        if msg.content_type != SIPFRAG_TYPE:
            raise SubscriptionError(f"NOTIFY body is {msg.content_type!r}, not {SIPFRAG_TYPE} (RFC 3515 §2.4.5)",
                                    status=415)
        line, crlf, _ = msg.body.partition(b"\r\n")
        if not crlf:
            if self.strict:
                raise SubscriptionError(f"sipfrag {msg.body[:60]!r} has no CRLF after the status line (RFC 3420)")
            line = msg.body.split(b"\n", 1)[0]  # lenient: a bare LF ends the line too (baresip 1.0)
        try:
            version, code, phrase = parse_status_line(line.decode("utf-8"))
        except (UnicodeDecodeError, SipError) as exc:
            raise SubscriptionError(f"sipfrag body is not a status line: {exc}") from None
        if version != "SIP/2.0":
            raise SubscriptionError(f"sipfrag version {version!r} is not SIP/2.0")
        return code, phrase
