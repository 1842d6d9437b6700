"""G1-G5, G8: per-message rules of RFC 3261, judged on every hop copy of a step's messages."""

from __future__ import annotations

import re
from functools import lru_cache
from operator import itemgetter
from typing import NamedTuple

from harness.flows.step import Step
from harness.sip.errors import SipParseError
from harness.sip.headers import NameAddr, SipUri
from harness.verify.a21 import Evidence
from harness.verify.checks.base import Findings, first_values, inconclusive, memo, where
from harness.verify.model import Exchange, Logical
from harness.verify.verdict import CheckResult
from harness.verify.wire import WireMessage

MAGIC = "z9hG4bK"


def _logicals(ev: Evidence, step: Step, check_id: str) -> list[Logical] | CheckResult:
    logicals = ev.step_logicals(step)
    if not logicals:
        ex, why = ev.subject(step)
        return inconclusive(check_id, f"nothing to judge: {why}")
    return logicals


SINGLE = ("Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Length", "Content-Type")
REQUIRED = ("To", "From", "Call-ID", "CSeq", "Max-Forwards", "Via")
_NAME = itemgetter(0)   # of a (name, value) header line


def g1(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3261 §8.1.1: To, From (with tag, §8.1.1.3), Call-ID, CSeq, Max-Forwards, Via in every request."""
    logicals = _logicals(ev, step, "G1")
    if isinstance(logicals, CheckResult):
        return logicals
    f = Findings("G1")
    lacking: list[tuple[WireMessage, list[str]]] = []
    repeating: list[tuple[WireMessage, list[str]]] = []
    frames: list[int] = []
    for lg in logicals:
        for m in lg.copies:
            shape = _shape(m)
            if lg.is_request:
                frames.append(m.frame)
                missing = _missing(m, shape)
                if missing:
                    lacking.append((m, missing))
            if shape.twice:
                repeating.append((m, list(shape.twice)))
    for m, missing in lacking:
        f.fail(f"{where(ev, m)} lacks {', '.join(missing)}", m.frame)
    for m, twice in repeating:
        f.fail(f"{where(ev, m)} repeats {', '.join(twice)} (RFC 3261 §7.3.1: these header fields appear "
               "once)", m.frame)
    f.ok(f"{len(frames)} request copies carry To, From;tag, Call-ID, CSeq, Max-Forwards, Via", *frames)
    return f.result()


class _Shape(NamedTuple):
    """What G1 reads from the header names of a message, in their order."""

    absent: tuple[str, ...]    # REQUIRED fields with no line
    has_from: bool
    has_cseq: bool
    twice: tuple[str, ...]     # "Name xN" for each SINGLE field with several lines


_SHAPES: dict[tuple[str, ...], _Shape] = {}


def _shape(m: WireMessage) -> _Shape:
    """G1's view of `m`'s header names, looked up by those names: the copies of one message, and
    the same message in every instance of a load capture, have the same names in the same order."""
    names = tuple(map(_NAME, m.headers))
    shape = _SHAPES.get(names)
    if shape is None:
        if len(_SHAPES) > 1 << 12:   # damaged captures make many shapes: keep the table small
            _SHAPES.clear()
        present = set(names)
        shape = _SHAPES[names] = _Shape(
            tuple(h for h in REQUIRED if h not in present), "From" in present, "CSeq" in present,
            tuple(f"{name} x{n}" for name in SINGLE if (n := names.count(name)) > 1))
    return shape


def _missing(m: WireMessage, shape: _Shape) -> list[str]:
    """What G1 wants in a request and `m` lacks."""
    missing = list(shape.absent)
    if shape.has_from and m.from_tag is None:
        missing.append("From tag")
    if shape.has_cseq and m.cseq is None:
        missing.append(f"a valid CSeq (saw {m.get('CSeq')!r})")
    return missing


def _branch_index(ev: Evidence) -> dict[tuple[str, str | None], dict[int, float]]:
    """(sending node, top branch) -> {id of the logical request that used it: when it was first sent}."""
    key = ("branch-index", "")
    cached = ev._memo.get(key)
    if cached is not None:
        return cached  # type: ignore[return-value]
    index: dict[tuple[str, str | None], dict[int, float]] = {}
    for ex in ev.model.exchanges:
        for lg in [ex.request, *ex.acks, *ex.cancels]:
            owner = _owner(ex, lg)
            for m in lg.copies:
                users = index.setdefault((ev.node(m.src_ep), m.top_branch), {})
                users[owner] = min(users.get(owner, m.time), m.time)
    ev._memo[key] = index
    return index


def _owner(ex: Exchange | None, lg: Logical) -> int:
    """Whose branch a request uses: CANCEL and the ACK for a non-2xx reuse the INVITE's (§8.1.1.7)."""
    if ex is not None and (lg in ex.cancels or (lg in ex.acks and ex.ok is None)):
        return id(ex.request)
    return id(lg)


def _used_before(index: dict[tuple[str, str | None], dict[int, float]], ev: Evidence, me: int,
                 m: WireMessage) -> bool:
    """True when another request (not `me`) used m's branch from the same element before m was sent."""
    users = index.get((ev.node(m.src_ep), m.top_branch))
    if users is None or (len(users) == 1 and me in users):   # the usual case: its own branch alone
        return False
    return any(owner != me and when <= m.time for owner, when in users.items())


def g2(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3261 §8.1.1.7, §16.6 step 8: every Via branch starts z9hG4bK and is unique per request."""
    logicals = _logicals(ev, step, "G2")
    if isinstance(logicals, CheckResult):
        return logicals
    f = Findings("G2")
    checked = 0
    index = _branch_index(ev)
    for lg in logicals:
        if not lg.is_request:
            continue
        ex = ev.model.exchange_of(lg)
        me = _owner(ex, lg)
        for m in lg.copies:
            checked += 1
            for value, branch in zip(m.vias, m.branches, strict=False):
                if branch is None or not branch.startswith(MAGIC):
                    f.fail(f"{where(ev, m)}: Via {value!r} has branch {branch!r}, not starting {MAGIC}", m.frame)
            if _used_before(index, ev, me, m):
                f.fail(f"{where(ev, m)}: branch {m.top_branch} was already used by an earlier request", m.frame)
        if lg.method == "ACK" and ex is not None and ex.ok is not None \
                and lg.origin.bottom_branch == ex.request.origin.bottom_branch:
            f.fail(f"{where(ev, lg.origin)}: the ACK for a 2xx reuses the INVITE's branch "
                   f"{lg.origin.bottom_branch} (§13.2.2.4: it is a new transaction)", lg.origin.frame)
    f.ok(f"{checked} request copies: every Via branch starts {MAGIC} and is unique")
    return f.result()


def _hops(ev: Evidence, lg: Logical) -> list[tuple[WireMessage, WireMessage, bool]]:
    """`lg.hops()`, once per instance (G3 and G5 both walk them)."""
    table = memo(ev, "hops")
    hops: list[tuple[WireMessage, WireMessage, bool]] | None = table.get(id(lg))
    if hops is None:
        hops = table[id(lg)] = lg.hops()
    return hops


def g3(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3261 §8.1.1.6 (70 SHOULD at the UAC), §16.6 step 3 (each proxy decrements by one)."""
    logicals = _logicals(ev, step, "G3")
    if isinstance(logicals, CheckResult):
        return logicals
    f = Findings("G3")
    hops = 0
    for lg in logicals:
        if not lg.is_request:
            continue
        for m in lg.copies:
            if m.max_forwards is None:
                f.fail(f"{where(ev, m)} has no valid Max-Forwards (saw {m.get('Max-Forwards')!r})", m.frame)
        origin = lg.origin
        if len(origin.vias) == 1 and origin.max_forwards is not None and origin.max_forwards != 70:
            f.warn(f"{where(ev, origin)}: the UAC sent Max-Forwards {origin.max_forwards}, 70 SHOULD be used",
                   origin.frame)
        for a, b, adjacent in _hops(ev, lg):
            if a.max_forwards is None or b.max_forwards is None:
                continue
            hops += 1
            if adjacent and b.max_forwards != a.max_forwards - 1:
                f.fail(f"{where(ev, b)}: Max-Forwards {b.max_forwards}, expected {a.max_forwards - 1} "
                       f"({a.max_forwards} in frame {a.frame} minus one); {ev.role(b.src_ep)} must decrement it "
                       "by exactly one", a.frame, b.frame)
            elif not adjacent and len(b.vias) > len(a.vias) and \
                    b.max_forwards != a.max_forwards - (len(b.vias) - len(a.vias)):
                gap = len(b.vias) - len(a.vias)
                f.fail(f"{where(ev, b)}: Max-Forwards {b.max_forwards}, expected {a.max_forwards - gap} "
                       f"({a.max_forwards} in frame {a.frame} minus one per each of the {gap} proxies between)",
                       a.frame, b.frame)
    f.ok(f"Max-Forwards present, decremented by exactly one on each of {hops} proxy hops")
    return f.result()


def g4(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3261 §8.2.6.2, §16.7 step 6: UAS responses to a tagless request carry one To tag; proxies keep it."""
    logicals = _logicals(ev, step, "G4")
    if isinstance(logicals, CheckResult):
        return logicals
    f = Findings("G4")
    responses = [lg for lg in logicals if not lg.is_request]
    if not responses:
        return f.result() if f.fails else _ok(f, "no responses in this step")
    for lg in responses:
        ex = ev.model.exchange_of(lg)
        if ex is None or (lg.status or 0) == 100:
            continue
        if ex.request.to_tag is None:
            for m in lg.copies:
                if m.to_tag is None:
                    f.fail(f"{where(ev, m)} answers a request without To tag but carries no To tag", m.frame)
            uas_tags = {r.to_tag for r in ex.responses
                        if (r.status or 0) > 100 and ev.node(r.sender) == ev.node(lg.sender) and r.to_tag}
            if len(uas_tags) > 1:
                f.fail(f"{ev.role(lg.sender)} answered the {ex.method} of frame {ex.request.origin.frame} with "
                       f"different To tags {sorted(uas_tags)}", *lg.frames)
        tags = {m.to_tag for m in lg.copies}
        if len(tags) > 1:
            text = f"{lg.label()}: To tag changed between hops {sorted(map(str, tags))}"
            if (lg.status or 0) < 300:
                f.fail(text + " (a proxy MUST NOT change the To tag of a 1xx/2xx)", *lg.frames)
            else:
                f.warn(text + " (a proxy SHOULD preserve it)", *lg.frames)
    return _ok(f, f"{len(responses)} responses carry a consistent To tag")


def _ok(f: Findings, text: str) -> CheckResult:
    f.ok(text)
    return f.result()


@lru_cache(maxsize=1 << 14)
def _same_addr(a: str | None, b: str | None) -> tuple[bool, bool]:
    """(textually equal, semantically equal) for From/To/Referred-By values."""
    if a == b:
        return True, True
    if a is None or b is None:
        return False, False
    try:
        na, nb = NameAddr.parse(a), NameAddr.parse(b)
    except SipParseError:
        return False, False
    uri_eq = na.uri.equivalent(nb.uri) if isinstance(na.uri, SipUri) else str(na.uri) == str(nb.uri)
    return False, uri_eq and na.params == nb.params


def _via_rule(ev: Evidence, f: Findings, lg: Logical, a: WireMessage, b: WireMessage, adjacent: bool) -> None:
    """§16.6 step 8: a proxy inserts exactly one Via on top of a request; §16.7 step 3: each hop
    takes exactly the top one off a response. Across a hop missing from the capture only the
    bottom of the stack is compared."""
    if lg.is_request and adjacent and b.branches[1:] != a.branches:
        added = len(b.vias) - len(a.vias)
        what = "added no Via" if added == 0 else f"added {added} Vias" if added > 1 else "changed the Vias below its own"
        f.fail(f"{_hop(ev, a, b)}: {ev.role(b.src_ep)} {what}; expected exactly one new Via on top "
               f"(branches {a.branches} -> {b.branches})", a.frame, b.frame)
    elif not lg.is_request and adjacent and b.branches != a.branches[1:]:
        removed = len(a.vias) - len(b.vias)
        f.fail(f"{_hop(ev, a, b)}: {ev.role(a.dst_ep)} removed {removed} Via(s), expected exactly its own top Via "
               f"(branches {a.branches} -> {b.branches})", a.frame, b.frame)
    elif not adjacent:
        inner, outer = (a, b) if lg.is_request else (b, a)
        if len(outer.vias) > len(inner.vias) and outer.branches[-len(inner.branches):] != inner.branches:
            f.fail(f"{_hop(ev, a, b)}: the Vias below the proxies' ones changed (branches {a.branches} -> "
                   f"{b.branches})", a.frame, b.frame)


def _hop(ev: Evidence, a: WireMessage, b: WireMessage) -> str:
    return f"{where(ev, b)} vs frame {a.frame}"


# What the event and transfer logic of the end points reads; a proxy has no business changing it.
END_TO_END = ("Event", "Subscription-State", "Refer-To", "Content-Type")
# Every header G5 compares between hops: copies that agree on all of them (and on the body) pass
# every rule but the Via one, without judging each header on its own.
KEPT = ("Call-ID", "CSeq", "From", "To", "Referred-By", *END_TO_END, "Contact")


def _kept(ev: Evidence, m: WireMessage) -> tuple[str | None, ...]:
    """What `m` says in the KEPT headers (once per copy: most copies are compared twice)."""
    table = memo(ev, "g5-kept")
    kept: tuple[str | None, ...] | None = table.get(id(m))
    if kept is None:
        kept = table[id(m)] = tuple(map(first_values(ev, m).get, KEPT))
    return kept


def _squeeze(value: str | None) -> str | None:
    return None if value is None else "".join(value.split()).lower()


def g5(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3261 §16.6/§16.7, Tables 2-3; RFC 3892 §3: what a proxy must leave untouched between hops,
    judged on every copy against the copy it was forwarded from."""
    logicals = _logicals(ev, step, "G5")
    if isinstance(logicals, CheckResult):
        return logicals
    f = Findings("G5")
    pairs = 0
    for lg in logicals:
        for a, b, adjacent in _hops(ev, lg):
            pairs += 1
            if a.body != b.body or _kept(ev, a) != _kept(ev, b):
                _kept_rules(ev, f, lg, a, b)
            _via_rule(ev, f, lg, a, b, adjacent)
    if not pairs:
        return _ok(f, "single hop: nothing forwarded by a proxy")
    return _ok(f, f"{pairs} forwarded copies keep Call-ID, From, To, CSeq, Event, Subscription-State, Refer-To, "
                  "Content-Type and body; one Via added/removed per proxy")


def _kept_rules(ev: Evidence, f: Findings, lg: Logical, a: WireMessage, b: WireMessage) -> None:
    """G5's header and body rules for one forwarded copy `b` of `a`."""
    for name in ("Call-ID", "CSeq"):
        if (a.get(name) or "").strip() != (b.get(name) or "").strip():
            f.fail(f"{where(ev, b)} vs frame {a.frame}: {name} changed from {a.get(name)!r} to "
                   f"{b.get(name)!r}", a.frame, b.frame)
    for name in ("From", "To", "Referred-By"):
        text, same = _same_addr(a.get(name), b.get(name))
        if text:
            continue
        hop = f"{where(ev, b)} vs frame {a.frame}"
        if same:
            f.warn(f"{hop}: {name} re-written textually ({a.get(name)!r} -> {b.get(name)!r})", b.frame)
        elif name == "To" and not lg.is_request and (lg.status or 0) >= 300 and \
                _same_addr((a.get(name) or "").split(";tag=")[0], (b.get(name) or "").split(";tag=")[0])[1]:
            f.warn(f"{hop}: To tag of a {lg.status} changed (a proxy SHOULD preserve it)", b.frame)
        else:
            f.fail(f"{hop}: {name} changed from {a.get(name)!r} to {b.get(name)!r}", a.frame, b.frame)
    for name in END_TO_END:
        before, after = a.get(name), b.get(name)
        if before == after:
            continue
        hop = f"{where(ev, b)} vs frame {a.frame}"
        if _squeeze(before) == _squeeze(after):
            f.warn(f"{hop}: {name} re-written textually ({before!r} -> {after!r})", b.frame)
        else:
            f.fail(f"{hop}: {name} changed from {before!r} to {after!r} (a proxy forwards it as "
                   "received, RFC 3261 §16.6)", a.frame, b.frame)
    if _squeeze(a.get("Contact")) != _squeeze(b.get("Contact")):
        f.warn(f"{where(ev, b)} vs frame {a.frame}: Contact changed from {a.get('Contact')!r} to "
               f"{b.get('Contact')!r} (a proxy does not rewrite it; an ALG or SBC on the path?)", b.frame)
    if a.body != b.body:
        f.fail(f"{where(ev, b)} vs frame {a.frame}: body changed ({len(a.body)} -> {len(b.body)} bytes; a proxy MUST NOT modify it)",
               a.frame, b.frame)


_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_MEDIA_TYPE = re.compile(rf"\s*{_TOKEN}\s*/\s*{_TOKEN}\s*(;.*)?$", re.DOTALL)


@lru_cache(maxsize=1 << 10)
def _is_media_type(value: str) -> bool:
    """type/subtype with optional parameters (every copy of a message repeats its Content-Type)."""
    return _MEDIA_TYPE.match(value) is not None


def g8(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3261 §20.14 (Content-Length correct; MUST on TCP, SHOULD on UDP), §20.15 (Content-Type with a body)."""
    logicals = _logicals(ev, step, "G8")
    if isinstance(logicals, CheckResult):
        return logicals
    f = Findings("G8")
    count = 0
    for lg in logicals:
        for m in lg.copies:
            count += 1
            present = first_values(ev, m)
            # m.lines("Content-Length"), from the header list the other checks read too
            lengths = [v for n, v in m.headers if n == "Content-Length"] if "Content-Length" in present else []
            if not lengths:
                if m.transport == "TCP":
                    f.fail(f"{where(ev, m)} over TCP has no Content-Length", m.frame)
                else:
                    f.warn(f"{where(ev, m)} has no Content-Length (SHOULD over UDP)", m.frame)
            else:
                values = {v.strip() for v in lengths}
                if len(values) > 1 or not next(iter(values)).isdigit():
                    f.fail(f"{where(ev, m)}: Content-Length {sorted(values)} is not one number", m.frame)
                elif int(next(iter(values))) != m.wire_body_len:
                    f.fail(f"{where(ev, m)}: Content-Length {next(iter(values))} but the body is "
                           f"{m.wire_body_len} bytes", m.frame)
            if not m.body:
                continue
            content_type = present.get("Content-Type")
            if content_type is None:
                f.fail(f"{where(ev, m)} has a {len(m.body)}-byte body but no Content-Type", m.frame)
            elif not _is_media_type(content_type):
                f.fail(f"{where(ev, m)}: Content-Type {content_type!r} is not a media type "
                       "(type/subtype, RFC 3261 §20.15, §25.1) for its body", m.frame)
    return _ok(f, f"{count} copies: Content-Length matches the body, Content-Type present with a body")
