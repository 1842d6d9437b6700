"""RFC 3261 §12 dialogs: the state two UAs share, and the requests built from it.

A dialog is identified by Call-ID plus the two tags, and carries what every
in-dialog request needs: the route set, the remote target and both CSeq
counters. Its life (early -> confirmed -> terminated) is a table like the
transaction machines; an input the table lacks raises ProtocolError.
Nothing here sends: `create_request` returns a message without Via, which the
sender adds (`build.add_via`) together with Max-Forwards and Contact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .errors import SipError
from .fsm import check_table, transition
from .headers import NameAddr, SipUri
from .message import SipMessage

EARLY = "early"
CONFIRMED = "confirmed"
TERMINATED = "terminated"

# Inputs: what happened to the dialog.
PROVISIONAL = "1xx to the initial INVITE"
SUCCESS = "2xx to the initial INVITE"
FAILURE = "3xx-6xx to the initial INVITE"
GONE = "481/408 in dialog"  # §12.2.1.2: the UAC SHOULD terminate the dialog
RESPONSE = "other response in dialog"
REQUEST = "request in dialog"
BYE = "BYE"  # sent or received (§15)

DIALOG = {
    EARLY: {PROVISIONAL: EARLY, SUCCESS: CONFIRMED, FAILURE: TERMINATED, GONE: TERMINATED, RESPONSE: EARLY,
            REQUEST: EARLY, BYE: TERMINATED},
    # A late 1xx (UDP reordering) or a 2xx retransmission changes nothing once confirmed.
    CONFIRMED: {PROVISIONAL: CONFIRMED, SUCCESS: CONFIRMED, GONE: TERMINATED, RESPONSE: CONFIRMED,
                REQUEST: CONFIRMED, BYE: TERMINATED},
    # Responses to the BYE (and late retransmissions) still arrive after the end; requests do not.
    TERMINATED: {PROVISIONAL: TERMINATED, SUCCESS: TERMINATED, GONE: TERMINATED, RESPONSE: TERMINATED},
}
check_table(DIALOG, TERMINATED)

#: Requests whose Contact replaces the remote target: §12.2 (re-INVITE), RFC 3311 (UPDATE),
#: RFC 6665 §4.1.2 / §4.2.2 (SUBSCRIBE and NOTIFY are target refresh requests).
TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY"})


class DialogError(SipError):
    """A request or response the dialog must refuse; `status` is the response to send (500, 481...)."""

    def __init__(self, reason: str, status: int = 500) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _uri_of(value: str) -> str:
    """The URI inside a name-addr or addr-spec (a Contact or Record-Route value)."""
    return str(NameAddr.parse(value).uri)


def _without_tag(value: str) -> NameAddr:
    addr = NameAddr.parse(value)
    return replace(addr, params={k: v for k, v in addr.params.items() if k != "tag"})


def _with_tag(addr: NameAddr, tag: str | None) -> str:
    return str(addr if tag is None else addr.with_params(tag=tag))


@dataclass(slots=True)
class Dialog:
    """Dialog state (§12.1). Build with `Dialog.uac(...)` or `Dialog.uas(...)`."""

    call_id: str
    local_tag: str
    remote_tag: str | None  # None: an RFC 2543 peer sent no From tag (§12.1.1)
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: list[str] = field(default_factory=list)  # name-addr values, in request order
    local_seq: int | None = None
    remote_seq: int | None = None
    secure: bool = False
    state: str = CONFIRMED
    local_contact: str | None = None
    initial_cseq: int | None = None  # CSeq number of the dialog-creating request (UAC side)
    _local_party: NameAddr | None = field(default=None, repr=False)
    _remote_party: NameAddr | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def uac(cls, request: SipMessage, response: SipMessage, local_contact: str | None = None) -> Dialog:
        """§12.1.2: the dialog a 101-299 response with a To tag creates at the UAC."""
        status = response.status or 0
        if not 101 <= status <= 299:
            raise DialogError(f"a {status} response creates no dialog (§12.1)")
        remote_tag = response.to_tag
        if remote_tag is None:
            raise DialogError(f"{status} response has no To tag: no dialog (§12.1)")
        local_tag = request.from_tag
        if local_tag is None:
            raise DialogError("request has no From tag (§8.1.1.3)")
        contacts = response.get_all("Contact")
        num, _ = request.cseq
        return cls(
            call_id=str(request.call_id),
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=str(request.from_addr.uri),
            remote_uri=str(request.to_addr.uri),
            # "The remote target MUST be set to the URI from the Contact header field of the response."
            remote_target=_uri_of(contacts[0]) if contacts else str(request.uri),
            # "The route set MUST be set to the list of URIs in the Record-Route header field from
            # the response, taken in reverse order and preserving all URI parameters."
            route_set=list(reversed(response.get_all("Record-Route"))),
            local_seq=num,
            remote_seq=None,
            secure=str(request.uri).lower().startswith("sips:"),
            state=EARLY if status < 200 else CONFIRMED,
            local_contact=local_contact or (request.get_all("Contact") or [None])[0],
            initial_cseq=num,
            _local_party=_without_tag(str(request.get("From"))),
            _remote_party=_without_tag(str(request.get("To"))),
        )

    @classmethod
    def uas(cls, request: SipMessage, local_tag: str, local_contact: str | None = None,
            early: bool = False) -> Dialog:
        """§12.1.1: the dialog the UAS creates when it answers `request` with To tag `local_tag`.

        `early=True` when the answer is a 1xx; call `confirm()` once the 2xx is sent.
        """
        contacts = request.get_all("Contact")
        num, _ = request.cseq
        return cls(
            call_id=str(request.call_id),
            local_tag=local_tag,
            remote_tag=request.from_tag,
            local_uri=str(request.to_addr.uri),
            remote_uri=str(request.from_addr.uri),
            remote_target=_uri_of(contacts[0]) if contacts else _uri_of(str(request.get("From"))),
            # "The route set MUST be set to the list of URIs in the Record-Route header field from
            # the request, taken in order and preserving all URI parameters."
            route_set=list(request.get_all("Record-Route")),
            local_seq=None,  # "The local sequence number MUST be empty."
            remote_seq=num,
            secure=str(request.uri).lower().startswith("sips:"),
            state=EARLY if early else CONFIRMED,
            local_contact=local_contact,
            _local_party=_without_tag(str(request.get("To"))),
            _remote_party=_without_tag(str(request.get("From"))),
        )

    # ------------------------------------------------------------------ identity
    @property
    def id(self) -> tuple[str, str, str | None]:
        """§12: Call-ID, local tag, remote tag."""
        return (self.call_id, self.local_tag, self.remote_tag)

    def matches(self, msg: SipMessage) -> bool:
        """Same Call-ID and tags: for a request the From tag is the remote one, for a response the local."""
        try:
            if msg.call_id != self.call_id:
                return False
            if msg.is_request:
                return msg.from_tag == self.remote_tag and msg.to_tag == self.local_tag
            return msg.from_tag == self.local_tag and msg.to_tag == self.remote_tag
        except SipError:
            return False

    # ------------------------------------------------------------------ requests out
    def create_request(self, method: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> SipMessage:
        """§12.2.1.1: a request within the dialog, CSeq = local sequence + 1; no Via."""
        method = method.upper()
        if method in ("ACK", "CANCEL"):
            raise ValueError(f"{method} reuses the INVITE's CSeq: use create_ack() or build.make_cancel()")
        if self.state == TERMINATED:
            raise DialogError(f"dialog {self.id} is terminated; no {method} can be sent", status=481)
        # "If the local sequence number is empty, an initial value MUST be chosen" (§8.1.1.5).
        self.local_seq = 1 if self.local_seq is None else self.local_seq + 1
        msg = self._build(method, self.local_seq, headers, body)
        if method == "BYE":
            self.state = transition(DIALOG, "dialog", self.state, BYE)
        return msg

    def create_ack(self, invite_cseq: int, headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> SipMessage:
        """§13.2.2.4: the ACK for a 2xx, built like any in-dialog request but with the INVITE's CSeq number."""
        return self._build("ACK", invite_cseq, headers, body)

    def _build(self, method: str, cseq: int, headers: Iterable[tuple[str, str]], body: bytes) -> SipMessage:
        uri, routes = self._routing()
        out: list[tuple[str, str]] = []
        if routes:
            out.append(("Route", ", ".join(routes)))
        local = self._local_party or NameAddr(SipUri.parse(self.local_uri))
        remote = self._remote_party or NameAddr(SipUri.parse(self.remote_uri))
        out += [
            ("From", _with_tag(local, self.local_tag)),
            ("To", _with_tag(remote, self.remote_tag)),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        out += list(headers)
        return SipMessage.request(method, uri, out, body, content_length=True)

    def _routing(self) -> tuple[str, list[str]]:
        """§12.2.1.1: Request-URI and Route values for the next request."""
        if not self.route_set:
            return self.remote_target, []
        first = NameAddr.parse(self.route_set[0])
        if isinstance(first.uri, SipUri) and first.uri.lr:
            # Loose routing: "the UAC MUST place the remote target URI into the Request-URI and
            # MUST include a Route header field containing the route set values in order".
            return self.remote_target, list(self.route_set)
        # Strict routing: "the UAC MUST place the first URI from the route set into the
        # Request-URI, stripping any parameters that are not allowed in a Request-URI ...
        # then place the remote target URI into the Route header field as the last value."
        uri = first.uri.replace(params={k: v for k, v in first.uri.params.items() if k != "method"},
                                headers={}) if isinstance(first.uri, SipUri) else first.uri
        return str(uri), [*self.route_set[1:], f"<{self.remote_target}>"]

    # ------------------------------------------------------------------ messages in
    def receive_request(self, msg: SipMessage) -> None:
        """§12.2.2: check the remote CSeq, then apply target refresh and BYE."""
        if not self.matches(msg):
            raise DialogError(f"request does not match dialog {self.id}", status=481)
        if self.state == TERMINATED:
            raise DialogError(f"dialog {self.id} is terminated", status=481)
        method = str(msg.method)
        num, _ = msg.cseq
        if method not in ("ACK", "CANCEL"):
            # "If the remote sequence number was not empty, but the sequence number of the request
            # is lower than the remote sequence number, the request is out of order and MUST be
            # rejected with a 500 (Server Internal Error) response." An equal number on a new
            # request (retransmissions never get here) is just as out of order.
            if self.remote_seq is not None and num <= self.remote_seq:
                raise DialogError(f"{method} CSeq {num} not above remote sequence {self.remote_seq} (§12.2.2)")
            self.remote_seq = num
        self.state = transition(DIALOG, "dialog", self.state, BYE if method == "BYE" else REQUEST)
        if method in TARGET_REFRESH:
            self._refresh(msg)

    def receive_response(self, msg: SipMessage) -> None:
        """§12.2.1.2 / §13.2.2.4: target refresh on a 2xx to a target refresh request; an early
        dialog is confirmed by the 2xx to the initial INVITE (its route set recomputed)."""
        if not self.matches(msg):
            raise DialogError(f"response does not match dialog {self.id}", status=481)
        status = msg.status or 0
        num, method = msg.cseq
        initial = method == "INVITE" and num == self.initial_cseq
        if status in (408, 481):
            event = GONE
        elif initial and status < 200:
            event = PROVISIONAL
        elif initial and status < 300:
            event = SUCCESS
        elif initial and self.state == EARLY:
            event = FAILURE
        else:
            event = RESPONSE
        before = self.state
        self.state = transition(DIALOG, "dialog", before, event)
        if event == SUCCESS and before == EARLY:
            self.route_set = list(reversed(msg.get_all("Record-Route")))
        if 200 <= status < 300 and method in TARGET_REFRESH:
            self._refresh(msg)

    def confirm(self) -> None:
        """UAS side: the 2xx to the initial INVITE was sent."""
        self.state = transition(DIALOG, "dialog", self.state, SUCCESS)

    def _refresh(self, msg: SipMessage) -> None:
        contacts = msg.get_all("Contact")
        if contacts:
            self.remote_target = _uri_of(contacts[0])
