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

import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from operator import attrgetter

from harness.sip.errors import SipParseError
from harness.sip.headers import Via
from harness.verify.wire import WireMessage, endpoint

_SRC_EP, _DST_EP, _DST = attrgetter("src_ep"), attrgetter("dst_ep"), attrgetter("dst")
# Sort keys (C speed): messages in capture order, logicals by first sight, exchanges by their request.
_CAPTURE_ORDER = attrgetter("time", "frame", "index")
_LOGICAL_ORDER = attrgetter("time", "origin.frame")
_EXCHANGE_ORDER = attrgetter("request.time")
TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})


@dataclass(eq=False)
class Logical:
    """One logical message: every first transmission on each hop, plus retransmissions.

    What the origin copy says (method, status, Call-ID, CSeq, tags, bottom branch) and when the
    message was first seen are plain attributes, set whenever the copies are (re)ordered: the
    checks read them hundreds of thousands of times in a load capture.
    """

    key: tuple[object, ...]
    copies: list[WireMessage] = field(default_factory=list)
    retransmissions: list[WireMessage] = field(default_factory=list)
    # Set by the model when the first or last hop is missing from the capture (see _fix_ends).
    sender_ep: str | None = None
    receiver_ep: str | None = None

    def _order(self, in_time_order: bool = False) -> None:
        """Copies from origin to delivered: by Via count, then in capture order. `in_time_order`:
        the copies already are in capture order, so a stable sort by Via count alone does it."""
        copies = self.copies
        request = copies[0].is_request
        if in_time_order:
            self.time = copies[0].time
            if len(copies) > 1:
                copies.sort(key=_via_count, reverse=not request)   # reverse keeps ties in order too
        else:
            sign = 1 if request else -1
            copies.sort(key=lambda m: (sign * len(m.vias), m.time, m.frame, m.index))
            self.time = min(m.time for m in copies)
        o = self.origin = copies[0]
        self.delivered = copies[-1]
        self.is_request, self.method, self.status = o.is_request, o.method, o.status
        self.call_id, self.cseq_num, self.cseq_method = o.call_id, o.cseq_num, o.cseq_method
        self.from_tag, self.to_tag, self.bottom_branch = o.from_tag, o.to_tag, o.bottom_branch

    # Filled by _order(): origin is the copy its sender put on the wire (fewest Vias for a request,
    # most for a response), delivered the copy that reached the final recipient (the last hop).
    origin: WireMessage = field(init=False, repr=False)
    delivered: WireMessage = field(init=False, repr=False)
    is_request: bool = field(init=False, repr=False)
    method: str | None = field(init=False, repr=False)
    status: int | None = field(init=False, repr=False)
    call_id: str | None = field(init=False, repr=False)
    cseq_num: int | None = field(init=False, repr=False)
    cseq_method: str | None = field(init=False, repr=False)
    from_tag: str | None = field(init=False, repr=False)
    to_tag: str | None = field(init=False, repr=False)
    bottom_branch: str | None = field(init=False, repr=False)
    time: float = field(init=False, repr=False)

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

    def hops(self) -> list[tuple[WireMessage, WireMessage, bool]]:
        """(upstream copy, downstream copy, adjacent) for every copy after the first.

        Adjacent: the downstream copy was sent by the element the upstream one went to, so exactly
        one proxy stands between them. Otherwise a hop is missing from the capture (or the copies
        are siblings of a fork) and only what no hop may change is compared. A 100 Trying is made
        anew by every hop (RFC 3261 §16.7 step 5), never forwarded: it has no hops.
        """
        if self.status == 100:
            return []
        out = []
        for i, b in enumerate(self.copies[1:], start=1):
            parent = next((a for a in reversed(self.copies[:i]) if adjacent(a, b)), None)
            out.append((parent, b, True) if parent is not None else (self.copies[i - 1], b, False))
        return out

    @property
    def end_time(self) -> float:
        return max(m.time for m in self.copies)

    @property
    def frames(self) -> list[int]:
        return sorted({m.frame for m in self.copies})

    @property
    def all_frames(self) -> list[int]:
        return sorted({m.frame for m in self.copies + self.retransmissions})

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
        new = [a for a in self.acks if a.bottom_branch != self.request.bottom_branch]
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
        return sorted((e for e in self.exchanges if e is not self.creator), key=_EXCHANGE_ORDER)

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
        self._index()

    def subset(self, call_ids: set[str | None]) -> Model:
        """The part of this model whose messages carry one of `call_ids` (one A.2.1 instance);
        logical messages and exchanges are shared, not rebuilt."""
        if not hasattr(self, "_parts"):
            parts: dict[str | None, tuple[list[Logical], list[Exchange], list[Dialog]]] = defaultdict(
                lambda: ([], [], []))
            for lg in self.logicals:
                parts[lg.call_id][0].append(lg)
            for ex in self.exchanges:
                parts[ex.request.call_id][1].append(ex)
            for d in self.dialogs:
                parts[d.call_id][2].append(d)
            self._parts = dict(parts)
        empty: tuple[list[Logical], list[Exchange], list[Dialog]] = ([], [], [])
        chosen = [self._parts.get(c, empty) for c in call_ids]
        sub = object.__new__(Model)
        sub.logicals = sorted((lg for p in chosen for lg in p[0]), key=_LOGICAL_ORDER)
        sub.messages = sorted((m for lg in sub.logicals for m in lg.copies + lg.retransmissions),
                              key=_CAPTURE_ORDER)
        sub.exchanges = sorted((e for p in chosen for e in p[1]), key=_EXCHANGE_ORDER)
        sub.tag_owner = _tag_owners(sub.logicals)
        sub.dialogs = sorted((d for p in chosen for d in p[2]), key=lambda d: d.time)
        sub._index()
        return sub

    def _index(self) -> None:
        self._by_logical = {id(lg): ex for ex in self.exchanges for lg in ex.all_logicals()}
        self._dialog_of = {id(ex): d for d in reversed(self.dialogs) for ex in d.exchanges}
        self._by_call: dict[str | None, list[Dialog]] = defaultdict(list)
        for dialog in self.dialogs:
            self._by_call[dialog.call_id].append(dialog)
        self._by_method: dict[str, list[Exchange]] = defaultdict(list)
        for ex in self.exchanges:
            self._by_method[ex.method].append(ex)

    def exchange_of(self, logical: Logical) -> Exchange | None:
        return self._by_logical.get(id(logical))

    def dialog_of(self, exchange: Exchange) -> Dialog | None:
        return self._dialog_of.get(id(exchange))

    def find_dialog(self, call_id: str | None, tags: set[str | None]) -> Dialog | None:
        tags.discard(None)
        for dialog in self._by_call.get(call_id, ()):
            if tags <= set(dialog.tags) and tags:
                return dialog
        return None

    def requests(self, method: str | None = None) -> list[Exchange]:
        return list(self.exchanges) if method is None else list(self._by_method.get(method, ()))

    def endpoints(self) -> set[str]:
        return {*map(_SRC_EP, self.messages), *map(_DST_EP, self.messages)}


def _via_count(m: WireMessage) -> int:
    return len(m.vias)


def _group(messages: list[WireMessage]) -> list[Logical]:
    # The keys (WireMessage.logical_key) were computed while tshark was still reading.
    in_order = sorted(messages, key=_CAPTURE_ORDER) == messages   # as the reader hands them over
    groups: dict[tuple[object, ...], list[WireMessage]] = {}
    anonymous = False   # a message with neither Call-ID nor Via (the messages of a group share both)
    for m in messages:
        key = m.logical_key
        group = groups.get(key)
        if group is None:
            groups[key] = [m]
            anonymous = anonymous or (not m.call_id and not m.bottom_branch)
        else:
            group.append(m)
    logicals: list[Logical] = []
    for key, msgs in groups.items():
        if len(msgs) == 1:
            logical = Logical(key, msgs)
            logical._order(in_time_order=True)
            logicals.append(logical)
            continue
        if not in_order:
            msgs.sort(key=_CAPTURE_ORDER)
        if key[0] == "req":   # every message of a group is a request, or none is
            logicals.append(_logical(key, msgs))
            continue
        # Responses from two UASs behind a forking proxy share everything but the To tag.
        by_tag: dict[str | None, list[WireMessage]] = defaultdict(list)
        for m in msgs:
            by_tag[m.to_tag].append(m)
        if len(by_tag) > 1 and not _is_fork(by_tag):
            by_tag = {None: msgs}
        for tag, part in by_tag.items():
            logicals.append(_logical(key + ((tag,) if len(by_tag) > 1 else ()), part))
    logicals = _adopt_strays(_merge_chains(logicals), anonymous)
    logicals.sort(key=_LOGICAL_ORDER)
    return logicals


def _logical(key: tuple[object, ...], part: list[WireMessage]) -> Logical:
    """The logical message of `part` (in capture order): the first message on each hop is a copy,
    any later one on the same hop a retransmission."""
    logical = Logical(key)
    seen: set[tuple[object, ...]] = set()
    for m in part:
        hop = m.hop_key
        (logical.retransmissions if hop in seen else logical.copies).append(m)
        seen.add(hop)
    logical._order(in_time_order=True)
    return logical


STRAY_WINDOW = 4.0   # seconds between a proxy receiving a message and forwarding it, at most


def _adopt_strays(logicals: list[Logical], anonymous: bool = True) -> list[Logical]:
    """A copy a proxy forwarded with its identity damaged (the sender's Via lost or unreadable,
    the Call-ID emptied) keys a logical of its own that starts at that proxy. Join it to the one
    message that proxy had just received with the same start line and CSeq and did not forward
    otherwise (same From tag: not the other end's own request in that dialog), so G5 judges the
    damage instead of the copy vanishing from the flow."""
    # Candidates share the kind and the Call-ID or the UAC's branch: indexed, not scanned (a load
    # capture has thousands of INVITEs). Those a copy went to matter only for an anonymous origin:
    # `anonymous` False says no copy has neither Call-ID nor Via.
    index: dict[tuple[object, ...], list[Logical]] = defaultdict(list)
    for lg in logicals:
        kind = (lg.is_request, lg.method or lg.status)
        index[(kind, "call", lg.call_id)].append(lg)
        index[(kind, "branch", lg.bottom_branch)].append(lg)
        if anonymous:
            for c in lg.copies:
                index[(kind, "to", c.dst)].append(lg)
    gone: set[int] = set()
    for b in logicals:
        o = b.origin
        if o.src in map(_DST, b.copies):
            continue   # b reached its first sender: it was not forwarded from elsewhere
        kind = (b.is_request, b.method or b.status)
        call, branch = b.call_id, b.bottom_branch
        if call or branch:
            near = chain(index.get((kind, "call", call), ()) if call else (),
                         index.get((kind, "branch", branch), ()) if branch else ())
        else:   # no Call-ID, no Via: a copy cut short; what its sender had just received
            near = iter(index.get((kind, "to", o.src), ()))
        a = _home(b, near, gone)
        if a is not None:
            a.copies += b.copies
            a.retransmissions += b.retransmissions
            a._order()
            gone.add(id(b))
    return [lg for lg in logicals if id(lg) not in gone]


def _home(b: Logical, near: Iterator[Logical], gone: set[int]) -> Logical | None:
    """The one logical among `near` that `b` strayed from, or None (none, or several)."""
    home = None
    seen: set[int] = set()
    for a in near:
        if a is b or id(a) in gone or id(a) in seen:
            continue
        seen.add(id(a))
        if _stray_of(a, b):
            if home is not None:
                return None
            home = a
    return home


def _stray_of(a: Logical, b: Logical) -> bool:
    """`b` looks like `a` forwarded by the element a copy of `a` went to (see _adopt_strays)."""
    if b.cseq_method is not None and (b.cseq_num, b.cseq_method) != (a.cseq_num, a.cseq_method):
        return False
    anonymous = not b.call_id and not b.bottom_branch   # cut short before its identity
    if not anonymous and b.call_id != a.call_id and b.bottom_branch != a.bottom_branch:
        return False
    if b.from_tag != a.from_tag and not (anonymous and b.from_tag is None):
        return False   # the other end's own request or response in the same dialog, not a forward
    o = b.origin
    arrived = [c.time for c in a.copies if c.dst == o.src and c.time <= o.time <= c.time + STRAY_WINDOW]
    return bool(arrived) and not any(c.src == o.src and c.time >= min(arrived) for c in a.copies)


def adjacent(a: WireMessage, b: WireMessage) -> bool:
    """Whether `b` was sent by the element `a` went to (one proxy between them)."""
    if a.dst_ep == b.src_ep:
        return True
    if a.dst == b.src and "TCP" in (a.transport, b.transport):
        return True  # a stream proxy sends from a port of its own
    return b.is_request and len(b.vias) > len(a.vias) and sent_by(b, 0) == a.dst_ep


def _continues(a: Logical, b: Logical) -> bool:
    """`b` is `a` forwarded by one proxy that changed what the key is made of (Call-ID, CSeq):
    its Via stack is `a`'s plus one on top (request) or minus the top one (response)."""
    head, tail = a.delivered.branches, b.origin.branches
    if a.is_request:
        return len(tail) == len(head) + 1 and tail[1:] == head
    return len(head) == len(tail) + 1 and head[1:] == tail


def _merge_chains(logicals: list[Logical]) -> list[Logical]:
    """Join the copies a proxy split off by altering Call-ID or CSeq, so G5 sees the alteration.
    A CSeq made unreadable joins the group of every CSeq method (the branch still ties it)."""
    by_branch: dict[tuple[object, ...], list[Logical]] = defaultdict(list)
    unreadable: list[Logical] = []
    for lg in logicals:   # a logical's is_request ... bottom_branch are its origin's
        if lg.cseq_method is None:
            unreadable.append(lg)
            continue
        by_branch[(lg.is_request, lg.method or lg.status, lg.cseq_method, lg.bottom_branch)].append(lg)
    for lg in unreadable:
        homes = [g for key, g in by_branch.items() if key[:2] == (lg.is_request, lg.method or lg.status)
                 and key[3] == lg.bottom_branch]
        if len(homes) == 1:
            homes[0].append(lg)
        else:
            by_branch[(lg.is_request, lg.method or lg.status, None, lg.bottom_branch)].append(lg)
    gone: set[int] = set()
    for group in by_branch.values():
        merged = True
        while merged and len(group) > 1:
            merged = False
            for a in group:
                b = next((b for b in group if b is not a and _continues(a, b)), None)
                if b is not None:
                    a.copies += b.copies
                    a.retransmissions += b.retransmissions
                    a._order()
                    group.remove(b)
                    gone.add(id(b))
                    merged = True
                    break
    return [lg for lg in logicals if id(lg) not in gone]


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
            by_key[(lg.call_id, lg.cseq_num, lg.cseq_method, lg.bottom_branch)] = ex
    for lg in logicals:
        if not lg.is_request:
            ex = by_key.get((lg.call_id, lg.cseq_num, lg.cseq_method, lg.bottom_branch))
            if ex is not None:
                ex.responses.append(lg)
    invites: dict[tuple[str | None, int | None], list[Exchange]] = defaultdict(list)
    by_call: dict[tuple[str | None, str | None], list[Exchange]] = defaultdict(list)
    for e in exchanges:
        if e.method == "INVITE":
            invites[(e.request.call_id, e.request.cseq_num)].append(e)
            by_call[(e.request.call_id, e.request.bottom_branch)].append(e)
    for ack in acks:
        # An ACK belongs to an INVITE of the same UAC (From tag) sent before it: the other side of a
        # dialog may re-INVITE with the same CSeq number (each UA numbers its own requests, RFC 3261
        # §12.2.1.1), and a non-2xx ACK also shares the INVITE's branch (§17.1.1.3).
        same = [e for e in invites.get((ack.call_id, ack.cseq_num), [])
                if e.request.from_tag == ack.from_tag and e.time <= ack.time]
        exact = [e for e in same if e.request.bottom_branch == ack.bottom_branch]
        target = (exact or same or [None])[-1]
        if target is not None:
            target.acks.append(ack)
        else:
            exchanges.append(Exchange(ack))
    for cancel in cancels:
        same = by_call.get((cancel.call_id, cancel.bottom_branch), [])
        if same:
            same[0].cancels.append(cancel)
    exchanges.sort(key=_EXCHANGE_ORDER)
    return exchanges


def sent_by(m: WireMessage, index: int = -1) -> str | None:
    """The ip:port a Via declares (bottom Via by default: the originating UAC's own address)."""
    return _sent_by(m.vias[index]) if m.vias else None


_SENT_BY_RE = re.compile(r"\s*SIP\s*/\s*2\.0\s*/\s*[A-Za-z]+\s+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?::(\d+))?\s*(?:;|$)")


@lru_cache(maxsize=1 << 16)
def _sent_by(value: str) -> str | None:
    match = _SENT_BY_RE.match(value)   # the common shape, without Via.parse's full grammar (13 us)
    if match:
        return endpoint(match.group(1).strip("[]"), int(match.group(2) or 5060))
    try:
        via = Via.parse(value)
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
        dialog.exchanges.sort(key=_EXCHANGE_ORDER)
    dialogs.sort(key=lambda d: d.time)
    return dialogs
