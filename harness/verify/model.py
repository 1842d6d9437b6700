"""From hop copies to logical messages, exchanges (transactions) and dialogs.

Theory of operation. A capture taken where every element is visible shows each logical message
once per hop. Proxies add a Via to a request and take one off a response, so:

* a request is identified end to end by Call-ID, CSeq and the branch of its *bottom* Via (the one
  the originating UAC chose, RFC 3261 §8.1.1.7); a response by the same plus its status;
* along the path a request gains Vias and a response loses them, which orders the copies;
* a UDP retransmission is the same logical message on the same hop (same endpoints, same Via
  count and top branch) seen again, and is kept aside rather than counted as a new message;
* a response belongs to the exchange whose request has its bottom branch and CSeq (G10); the
  ACK for a 2xx has its own branch and is matched to its INVITE by Call-ID and CSeq number;
* dialogs are Call-ID plus the two tags; the owner of a tag is whoever sent a request with it as
  From tag or a response with it as To tag.

Hop count is never assumed: a direct call shows one copy, an IMS path shows three.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from harness.sip.errors import SipParseError
from harness.sip.headers import Via
from harness.verify.wire import WireMessage, endpoint

TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})


@dataclass(eq=False)
class Logical:
    """One logical message: every first transmission on each hop, plus retransmissions."""

    key: tuple[object, ...]
    copies: list[WireMessage] = field(default_factory=list)
    retransmissions: list[WireMessage] = field(default_factory=list)
    # Set by the model when the first or last hop is missing from the capture (see _fix_ends).
    sender_ep: str | None = None
    receiver_ep: str | None = None

    def _order(self) -> None:
        sign = 1 if self.copies[0].is_request else -1
        self.copies.sort(key=lambda m: (sign * len(m.vias), m.time, m.frame, m.index))

    @property
    def origin(self) -> WireMessage:
        """The copy its sender put on the wire (fewest Vias for a request, most for a response)."""
        return self.copies[0]

    @property
    def delivered(self) -> WireMessage:
        """The copy that reached the final recipient (the last hop)."""
        return self.copies[-1]

    @property
    def sender(self) -> str:
        return self.sender_ep or self.origin.src_ep

    @property
    def receiver(self) -> str:
        return self.receiver_ep or self.delivered.dst_ep

    @property
    def path(self) -> list[str]:
        hops = [self.copies[0].src_ep]
        for copy in self.copies:
            hops.append(copy.dst_ep)
        return hops

    @property
    def time(self) -> float:
        return min(m.time for m in self.copies)

    @property
    def end_time(self) -> float:
        return max(m.time for m in self.copies)

    @property
    def frames(self) -> list[int]:
        return sorted({m.frame for m in self.copies})

    @property
    def all_frames(self) -> list[int]:
        return sorted({m.frame for m in self.copies + self.retransmissions})

    @property
    def is_request(self) -> bool:
        return self.origin.is_request

    @property
    def method(self) -> str | None:
        return self.origin.method

    @property
    def status(self) -> int | None:
        return self.origin.status

    @property
    def call_id(self) -> str | None:
        return self.origin.call_id

    @property
    def cseq_num(self) -> int | None:
        return self.origin.cseq_num

    @property
    def cseq_method(self) -> str | None:
        return self.origin.cseq_method

    @property
    def from_tag(self) -> str | None:
        return self.origin.from_tag

    @property
    def to_tag(self) -> str | None:
        return self.origin.to_tag

    def label(self) -> str:
        head = self.method if self.is_request else f"{self.status}"
        return f"{head} (CSeq {self.cseq_num} {self.cseq_method}, frame {self.origin.frame})"

    def __repr__(self) -> str:
        return f"<Logical {self.label()} x{len(self.copies)}>"


@dataclass(eq=False)
class Exchange:
    """A request and what answered it: responses, and for an INVITE its ACK(s) (G10)."""

    request: Logical
    responses: list[Logical] = field(default_factory=list)
    acks: list[Logical] = field(default_factory=list)
    cancels: list[Logical] = field(default_factory=list)

    @property
    def method(self) -> str:
        return self.request.method or "?"

    @property
    def final(self) -> Logical | None:
        finals = [r for r in self.responses if (r.status or 0) >= 200]
        return finals[0] if finals else None

    @property
    def ok(self) -> Logical | None:
        oks = [r for r in self.responses if 200 <= (r.status or 0) < 300]
        return oks[0] if oks else None

    @property
    def ack_2xx(self) -> Logical | None:
        """The ACK for the 2xx: same Call-ID and CSeq number, a branch of its own (§13.2.2.4)."""
        if self.ok is None:
            return None
        new = [a for a in self.acks if a.origin.bottom_branch != self.request.origin.bottom_branch]
        return (new or self.acks or [None])[0]

    @property
    def time(self) -> float:
        return self.request.time

    def all_logicals(self) -> list[Logical]:
        return [self.request, *self.responses, *self.acks, *self.cancels]


@dataclass(eq=False)
class Dialog:
    """Call-ID + two tags; `creator` is the exchange that created it when the capture shows it."""

    call_id: str
    uac_tag: str
    uas_tag: str | None
    creator: Exchange | None = None
    exchanges: list[Exchange] = field(default_factory=list)

    @property
    def tags(self) -> frozenset[str]:
        return frozenset(t for t in (self.uac_tag, self.uas_tag) if t)

    @property
    def time(self) -> float:
        if self.creator is not None:
            return self.creator.time
        return min((e.time for e in self.exchanges), default=0.0)

    def in_dialog(self) -> list[Exchange]:
        """Requests inside the dialog (To tag present), in time order."""
        return sorted((e for e in self.exchanges if e is not self.creator), key=lambda e: e.time)

    def __repr__(self) -> str:
        return f"<Dialog {self.call_id} {self.uac_tag}/{self.uas_tag} {len(self.exchanges)} exchanges>"


class Model:
    """All logical messages, exchanges and dialogs of a capture."""

    def __init__(self, messages: list[WireMessage]) -> None:
        self.messages = messages
        self.logicals: list[Logical] = _group(messages)
        self.exchanges: list[Exchange] = _exchanges(self.logicals)
        _fix_ends(self.exchanges, self.endpoints())
        self.tag_owner: dict[str, str] = _tag_owners(self.logicals)
        self.dialogs: list[Dialog] = _dialogs(self.exchanges)
        self._by_logical = {id(lg): ex for ex in self.exchanges for lg in ex.all_logicals()}

    def exchange_of(self, logical: Logical) -> Exchange | None:
        return self._by_logical.get(id(logical))

    def dialog_of(self, exchange: Exchange) -> Dialog | None:
        for dialog in self.dialogs:
            if exchange in dialog.exchanges:
                return dialog
        return None

    def find_dialog(self, call_id: str | None, tags: set[str | None]) -> Dialog | None:
        tags.discard(None)
        for dialog in self.dialogs:
            if dialog.call_id == call_id and tags <= set(dialog.tags) and tags:
                return dialog
        return None

    def requests(self, method: str | None = None) -> list[Exchange]:
        return [e for e in self.exchanges if method is None or e.method == method]

    def endpoints(self) -> set[str]:
        return {ep for m in self.messages for ep in (m.src_ep, m.dst_ep)}


def _logical_key(m: WireMessage) -> tuple[object, ...]:
    if m.is_request:
        return ("req", m.call_id, m.cseq_num, m.cseq_method, m.method, m.bottom_branch)
    return ("rsp", m.call_id, m.cseq_num, m.cseq_method, m.status, m.bottom_branch)


def _group(messages: list[WireMessage]) -> list[Logical]:
    groups: dict[tuple[object, ...], list[WireMessage]] = defaultdict(list)
    for m in messages:
        groups[_logical_key(m)].append(m)
    logicals: list[Logical] = []
    for key, msgs in groups.items():
        msgs.sort(key=lambda m: (m.time, m.frame, m.index))
        # Responses from two UASs behind a forking proxy share everything but the To tag.
        by_tag: dict[str | None, list[WireMessage]] = defaultdict(list)
        for m in msgs:
            by_tag[None if m.is_request else m.to_tag].append(m)
        if not msgs[0].is_request and len(by_tag) > 1 and not _is_fork(by_tag):
            by_tag = {None: msgs}
        for tag, part in by_tag.items():
            logical = Logical(key + ((tag,) if len(by_tag) > 1 else ()))
            seen: set[tuple[object, ...]] = set()
            for m in part:
                hop = (m.src_ep, m.dst_ep, len(m.vias), m.top_branch, m.to_tag)
                (logical.retransmissions if hop in seen else logical.copies).append(m)
                seen.add(hop)
            logical._order()
            logicals.append(logical)
    logicals.sort(key=lambda lg: (lg.time, lg.origin.frame))
    return logicals


def _is_fork(by_tag: dict[str | None, list[WireMessage]]) -> bool:
    """Different To tags are different UASs only if each tag has its own origin copy; otherwise a
    proxy rewrote the tag of one response (G4/G5 report that)."""
    max_vias = [max(len(m.vias) for m in part) for part in by_tag.values()]
    return len(set(max_vias)) == 1


def _exchanges(logicals: list[Logical]) -> list[Exchange]:
    by_key: dict[tuple[object, ...], Exchange] = {}
    exchanges: list[Exchange] = []
    acks: list[Logical] = []
    cancels: list[Logical] = []
    for lg in logicals:
        if lg.is_request and lg.method == "ACK":
            acks.append(lg)
            continue
        if lg.is_request and lg.method == "CANCEL":
            cancels.append(lg)
            continue
        if lg.is_request:
            ex = Exchange(lg)
            exchanges.append(ex)
            by_key[(lg.call_id, lg.cseq_num, lg.cseq_method, lg.origin.bottom_branch)] = ex
    for lg in logicals:
        if not lg.is_request:
            ex = by_key.get((lg.call_id, lg.cseq_num, lg.cseq_method, lg.origin.bottom_branch))
            if ex is not None:
                ex.responses.append(lg)
    invites = [e for e in exchanges if e.method == "INVITE"]
    for ack in acks:
        same = [e for e in invites if e.request.call_id == ack.call_id and e.request.cseq_num == ack.cseq_num]
        exact = [e for e in same if e.request.origin.bottom_branch == ack.origin.bottom_branch]
        target = (exact or same or [None])[-1]
        if target is not None:
            target.acks.append(ack)
        else:
            exchanges.append(Exchange(ack))
    for cancel in cancels:
        same = [e for e in invites if e.request.call_id == cancel.call_id
                and e.request.origin.bottom_branch == cancel.origin.bottom_branch]
        if same:
            same[0].cancels.append(cancel)
    exchanges.sort(key=lambda e: e.time)
    return exchanges


def sent_by(m: WireMessage, index: int = -1) -> str | None:
    """The ip:port a Via declares (bottom Via by default: the originating UAC's own address)."""
    if not m.vias:
        return None
    try:
        via = Via.parse(m.vias[index])
    except SipParseError:
        return None
    return endpoint(*via.sent_by)


def _fix_ends(exchanges: list[Exchange], endpoints: set[str]) -> None:
    """When the capture lacks a first or last hop, name the real sender/receiver anyway.

    A request whose earliest copy already carries several Vias was sent by the element its bottom
    Via names; a 1xx/2xx whose earliest copy has fewer Vias than the request that reached the UAS
    was sent by that UAS (proxies do not make 2xx); a UA receives a response with its own Vias only.
    """
    for ex in exchanges:
        req = ex.request
        if len(req.origin.vias) > 1:
            origin = sent_by(req.origin)
            if origin in endpoints:
                req.sender_ep = origin
        for rsp in ex.responses:
            status = rsp.status or 0
            if len(rsp.origin.vias) > len(req.delivered.vias) and (200 <= status < 300 or 100 < status < 200):
                req.receiver_ep = rsp.origin.src_ep
        for rsp in ex.responses:
            status = rsp.status or 0
            if len(rsp.origin.vias) < len(req.delivered.vias) and (200 <= status < 300 or 100 < status < 200) \
                    and rsp.origin.to_tag is not None:
                rsp.sender_ep = req.receiver
            if len(rsp.delivered.vias) > len(req.origin.vias):
                rsp.receiver_ep = req.sender


def _tag_owners(logicals: list[Logical]) -> dict[str, str]:
    owners: dict[str, str] = {}
    for lg in logicals:
        if lg.is_request and lg.from_tag and lg.method != "ACK":
            owners.setdefault(lg.from_tag, lg.sender)
        elif not lg.is_request and lg.to_tag and (lg.status or 0) > 100:
            owners.setdefault(lg.to_tag, lg.sender)
    return owners


def _dialogs(exchanges: list[Exchange]) -> list[Dialog]:
    dialogs: list[Dialog] = []
    index: dict[tuple[str | None, frozenset[str]], Dialog] = {}
    for ex in exchanges:
        req = ex.request
        if req.to_tag is None and req.method in ("INVITE", "SUBSCRIBE", "REFER"):
            tags = {r.to_tag for r in ex.responses if r.to_tag and (r.status or 0) < 300 and (r.status or 0) > 100}
            for tag in sorted(tags, key=lambda t: min(r.time for r in ex.responses if r.to_tag == t)):
                dialog = Dialog(req.call_id or "", req.from_tag or "", tag, creator=ex, exchanges=[ex])
                dialogs.append(dialog)
                index[(req.call_id, dialog.tags)] = dialog
    for ex in exchanges:
        req = ex.request
        if req.to_tag is None or req.from_tag is None:
            continue
        key = (req.call_id, frozenset({req.from_tag, req.to_tag}))
        dialog = index.get(key)
        if dialog is None:
            dialog = Dialog(req.call_id or "", req.from_tag, req.to_tag)
            dialogs.append(dialog)
            index[key] = dialog
        if ex not in dialog.exchanges:
            dialog.exchanges.append(ex)
    for dialog in dialogs:
        dialog.exchanges.sort(key=lambda e: e.time)
    dialogs.sort(key=lambda d: d.time)
    return dialogs
