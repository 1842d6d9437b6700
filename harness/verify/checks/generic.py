"""G1-G5, G8: per-message rules of RFC 3261, judged on every hop copy of a step's messages."""

from __future__ import annotations

import re
from functools import lru_cache

from harness.flows.step import Step
from harness.sip.errors import SipParseError
from harness.sip.headers import NameAddr, SipUri
from harness.verify.a21 import Evidence
from harness.verify.checks.base import Findings, inconclusive, where
from harness.verify.model import Logical
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


def g1(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3261 §8.1.1: To, From (with tag, §8.1.1.3), Call-ID, CSeq, Max-Forwards, Via in every request."""
    logicals = _logicals(ev, step, "G1")
    if isinstance(logicals, CheckResult):
        return logicals
    f = Findings("G1")
    copies = [m for lg in logicals if lg.is_request for m in lg.copies]
    for m in copies:
        missing = [h for h in ("To", "From", "Call-ID", "CSeq", "Max-Forwards", "Via") if not m.has(h)]
        if m.has("From") and m.from_tag is None:
            missing.append("From tag")
        if m.has("CSeq") and m.cseq is None:
            missing.append(f"a valid CSeq (saw {m.get('CSeq')!r})")
        if missing:
            f.fail(f"{where(ev, m)} lacks {', '.join(missing)}", m.frame)
    for m in (m for lg in logicals for m in lg.copies):
        twice = [f"{name} x{n}" for name in SINGLE if (n := len(m.lines(name))) > 1]
        if twice:
            f.fail(f"{where(ev, m)} repeats {', '.join(twice)} (RFC 3261 §7.3.1: these header fields appear "
                   "once)", m.frame)
    f.ok(f"{len(copies)} request copies carry To, From;tag, Call-ID, CSeq, Max-Forwards, Via",
         *[m.frame for m in copies])
    return f.result()


def _branch_index(ev: Evidence) -> dict[tuple[str, str | None], dict[int, float]]:
    """(sending node, top branch) -> {id of the logical request that used it: when it was first sent}."""
    cached = getattr(ev, "_branch_index", None)
    if cached is not None:
        return cached
    index: dict[tuple[str, str | None], dict[int, float]] = {}
    for ex in ev.model.exchanges:
        for lg in [ex.request, *ex.acks, *ex.cancels]:
            # CANCEL and the ACK for a non-2xx reuse the INVITE's branch (§8.1.1.7): same owner.
            owner = id(ex.request) if lg in ex.cancels or (lg in ex.acks and ex.ok is None) else id(lg)
            for m in lg.copies:
                users = index.setdefault((ev.node(m.src_ep), m.top_branch), {})
                users[owner] = min(users.get(owner, m.time), m.time)
    ev._branch_index = index  # type: ignore[attr-defined]
    return index


def _earlier_user(ev: Evidence, lg: Logical, m: WireMessage) -> bool:
    """True when another request used this branch from the same element before this one did."""
    ex = ev.model.exchange_of(lg)
    me = id(ex.request) if ex is not None and (lg in ex.cancels or (lg in ex.acks and ex.ok is None)) else id(lg)
    users = _branch_index(ev).get((ev.node(m.src_ep), m.top_branch), {})
    return any(owner != me and when <= m.time for owner, when in users.items())


def g2(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3261 §8.1.1.7, §16.6 step 8: every Via branch starts z9hG4bK and is unique per request."""
    logicals = _logicals(ev, step, "G2")
    if isinstance(logicals, CheckResult):
        return logicals
    f = Findings("G2")
    checked = 0
    for lg in logicals:
        if not lg.is_request:
            continue
        for m in lg.copies:
            checked += 1
            for value, branch in zip(m.vias, m.branches, strict=False):
                if branch is None or not branch.startswith(MAGIC):
                    f.fail(f"{where(ev, m)}: Via {value!r} has branch {branch!r}, not starting {MAGIC}", m.frame)
            if _earlier_user(ev, lg, m):
                f.fail(f"{where(ev, m)}: branch {m.top_branch} was already used by an earlier request", m.frame)
        ex = ev.model.exchange_of(lg)
        if lg.method == "ACK" and ex is not None and ex.ok is not None \
                and lg.origin.bottom_branch == ex.request.origin.bottom_branch:
            f.fail(f"{where(ev, lg.origin)}: the ACK for a 2xx reuses the INVITE's branch "
                   f"{lg.origin.bottom_branch} (§13.2.2.4: it is a new transaction)", lg.origin.frame)
    f.ok(f"{checked} request copies: every Via branch starts {MAGIC} and is unique")
    return f.result()


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
        for a, b, adjacent in lg.hops():
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
    hop = f"{where(ev, b)} vs frame {a.frame}"
    if lg.is_request and adjacent and b.branches[1:] != a.branches:
        added = len(b.vias) - len(a.vias)
        what = "added no Via" if added == 0 else f"added {added} Vias" if added > 1 else "changed the Vias below its own"
        f.fail(f"{hop}: {ev.role(b.src_ep)} {what}; expected exactly one new Via on top "
               f"(branches {a.branches} -> {b.branches})", a.frame, b.frame)
    elif not lg.is_request and adjacent and b.branches != a.branches[1:]:
        removed = len(a.vias) - len(b.vias)
        f.fail(f"{hop}: {ev.role(a.dst_ep)} removed {removed} Via(s), expected exactly its own top Via "
               f"(branches {a.branches} -> {b.branches})", a.frame, b.frame)
    elif not adjacent:
        inner, outer = (a, b) if lg.is_request else (b, a)
        if len(outer.vias) > len(inner.vias) and outer.branches[-len(inner.branches):] != inner.branches:
            f.fail(f"{hop}: the Vias below the proxies' ones changed (branches {a.branches} -> {b.branches})",
                   a.frame, b.frame)


# What the event and transfer logic of the end points reads; a proxy has no business changing it.
END_TO_END = ("Event", "Subscription-State", "Refer-To", "Content-Type")


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
        for a, b, adjacent in lg.hops():
            pairs += 1
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
            _via_rule(ev, f, lg, a, b, adjacent)
    if not pairs:
        return _ok(f, "single hop: nothing forwarded by a proxy")
    return _ok(f, f"{pairs} forwarded copies keep Call-ID, From, To, CSeq, Event, Subscription-State, Refer-To, "
                  "Content-Type and body; one Via added/removed per proxy")


_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_MEDIA_TYPE = re.compile(rf"\s*{_TOKEN}\s*/\s*{_TOKEN}\s*(;.*)?$", re.DOTALL)


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
            lengths = m.lines("Content-Length")
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
            if m.body and not m.has("Content-Type"):
                f.fail(f"{where(ev, m)} has a {len(m.body)}-byte body but no Content-Type", m.frame)
            elif m.body and not _MEDIA_TYPE.match(m.get("Content-Type") or ""):
                f.fail(f"{where(ev, m)}: Content-Type {m.get('Content-Type')!r} is not a media type "
                       "(type/subtype, RFC 3261 §20.15, §25.1) for its body", m.frame)
    return _ok(f, f"{count} copies: Content-Length matches the body, Content-Type present with a body")
