"""CALL-1, DLG-1, ACK-1: dialog creation and in-dialog requests (RFC 3261 §12, §13.2.2.4)."""

from __future__ import annotations

from functools import lru_cache

from harness.flows.step import Step
from harness.sip.headers import SipUri
from harness.verify.a21 import Evidence
from harness.verify.checks.base import Findings, inconclusive, memo, where
from harness.verify.model import Dialog, Exchange
from harness.verify.verdict import CheckResult
from harness.verify.wire import WireMessage, sip_uri

REFRESH = ("INVITE", "UPDATE")


@lru_cache(maxsize=1 << 14)
def same_uri(a: str | None, b: str | None) -> bool:
    """RFC 3261 §19.1.4 equivalence of two URI texts (cached: every instance repeats its route set)."""
    ua, ub = sip_uri(a), sip_uri(b)
    if ua is None or ub is None:
        return a is not None and a == b
    return ua.equivalent(ub)


def side(ev: Evidence, tag: str | None, ep: str) -> str:
    """Which side of a dialog sent a request: its From tag (a side's own tag in every request it
    sends, §12.2.1.1), else its node. Not the node alone: in a capture taken at one element, one UA's
    requests may enter it through different proxies (those that Record-Route and those that do not)."""
    return f"tag {tag}" if tag else f"node {ev.node(ep)}"


def route_set(ev: Evidence, dialog: Dialog, sender: str) -> list[str] | None:
    """§12.1.2: the 2xx's Record-Route reversed at the UAC; §12.1.1: the request's in order at the UAS.
    `sender` is a `side`. Once per dialog and sender: every in-dialog request and ACK of the sender is
    judged against it."""
    table = memo(ev, "route-set")
    key = (id(dialog), sender)
    if key not in table:
        table[key] = dialog, _route_set(ev, dialog, sender)   # the dialog kept alive: its id stays its own
    routes = table[key][1]
    return None if routes is None else list(routes)


def _route_set(ev: Evidence, dialog: Dialog, sender: str) -> list[str] | None:
    creator = ev.creator(dialog)
    if creator is None:
        return None
    ok = next((r for r in creator.responses if 200 <= (r.status or 0) < 300
               and (r.to_tag in dialog.tags or r.to_tag is None)), None)
    if side(ev, creator.request.from_tag, creator.request.sender) == sender:
        return None if ok is None else list(reversed(ok.delivered.get_all("Record-Route")))
    return creator.request.delivered.get_all("Record-Route")


def remote_target(ev: Evidence, dialog: Dialog, sender: str, before: float) -> tuple[str, int] | None:
    """§12.2.1.2/§12.2.2: the peer's latest Contact from the dialog-creating or target-refresh messages."""
    found: list[tuple[float, str, int]] = []
    for ex in dialog.exchanges:
        if ex.request.time >= before:
            continue
        if ex.method in REFRESH or ex is ev.creator(dialog):
            if side(ev, ex.request.from_tag, ex.request.sender) != sender:
                contact = ex.request.delivered.get("Contact")
                if contact:
                    found.append((ex.request.time, contact, ex.request.delivered.frame))
            else:
                for r in ex.responses:
                    if 200 <= (r.status or 0) < 300 and r.time < before and r.delivered.get("Contact"):
                        found.append((r.time, r.delivered.get("Contact") or "", r.delivered.frame))
    creator = ev.creator(dialog)
    if creator is not None and creator not in dialog.exchanges and creator.request.time < before:
        if side(ev, creator.request.from_tag, creator.request.sender) != sender \
                and creator.request.delivered.get("Contact"):
            found.append((creator.request.time, creator.request.delivered.get("Contact") or "",
                          creator.request.delivered.frame))
        elif creator.ok is not None and creator.ok.delivered.get("Contact"):
            found.append((creator.ok.time, creator.ok.delivered.get("Contact") or "", creator.ok.delivered.frame))
    if not found:
        return None
    _, contact, frame = max(found)
    return contact, frame


def call_1(ev: Evidence, step: Step) -> CheckResult:
    """§8.1.1.8: one SIP Contact in the dialog-creating INVITE; §12.1.1: the 2xx has Contact and a To tag."""
    ex, why = ev.subject(step)
    if ex is None:
        return inconclusive("CALL-1", why)
    f = Findings("CALL-1")
    invite = ex.request.origin
    contacts = invite.get_all("Contact")
    if len(contacts) != 1 or sip_uri(contacts[0]) is None:
        f.fail(f"{where(ev, invite)}: dialog-creating INVITE must carry exactly one SIP/SIPS Contact, "
               f"saw {contacts or 'none'}", invite.frame)
    ok = ex.ok
    if ok is None:
        final = ex.final
        cut = ev.unanswered_cut(ex) if final is None else None
        if cut:
            return inconclusive("CALL-1", f"INVITE of frame {invite.frame} not answered; {cut}", frames=[invite.frame])
        f.fail(f"INVITE of frame {invite.frame} got no 2xx (final: {final.status if final else 'none'}); "
               "the call was never established", invite.frame)
        return f.result()
    for m in ok.copies:
        if not m.get_all("Contact"):
            f.fail(f"{where(ev, m)}: 2xx to INVITE without Contact", m.frame)
        if m.to_tag is None:
            f.fail(f"{where(ev, m)}: 2xx to INVITE without To tag", m.frame)
    f.ok(f"INVITE frame {invite.frame} Contact {contacts[0] if contacts else ''}; 2xx frame {ok.origin.frame} "
         f"Contact {ok.origin.get('Contact')} To tag {ok.origin.to_tag}", invite.frame, ok.origin.frame)
    return f.result()


def _cseq_rule(ev: Evidence, f: Findings, dialog: Dialog, ex: Exchange) -> None:
    """G7 [checker]: +1 over the sender's previous request at its first hop; greater elsewhere."""
    req = ex.request
    mine = [e for e in dialog.exchanges if e is not ex and e.method not in ("ACK", "CANCEL")
            and e.request.from_tag == req.from_tag and e.request.time < req.time and e.request.cseq_num is not None]
    creator = ev.creator(dialog)
    if creator is not None and creator not in mine and creator.request.from_tag == req.from_tag \
            and creator.request.time < req.time:
        mine.append(creator)
    if not mine or req.cseq_num is None:
        f.ok(f"CSeq {req.cseq_num}: first request from this side of the dialog")
        return
    prev = max(mine, key=lambda e: e.request.cseq_num or 0)
    n, p = req.cseq_num, prev.request.cseq_num or 0
    first_hop = len(req.origin.vias) == 1
    if first_hop and n != p + 1:
        f.fail(f"{where(ev, req.origin)}: CSeq {n}, expected {p + 1} (previous request from this side: "
               f"{prev.method} CSeq {p}, frame {prev.request.origin.frame})", req.origin.frame, prev.request.origin.frame)
    elif not first_hop and n <= p:
        f.fail(f"{where(ev, req.origin)}: CSeq {n} not greater than {p} (frame {prev.request.origin.frame})",
               req.origin.frame)
    else:
        f.ok(f"CSeq {n} = {p} + 1" if n == p + 1 else f"CSeq {n} > {p}")


def check_target_and_route(ev: Evidence, f: Findings, dialog: Dialog, m: WireMessage, label: str) -> None:
    """Request-URI = remote target and Route = route set at the sender's hop (§12.2.1.1)."""
    sender = side(ev, m.from_tag, m.src_ep)
    routes = route_set(ev, dialog, sender)
    target = remote_target(ev, dialog, sender, m.time)
    seen_routes = m.get_all("Route")
    strict = bool(routes) and sip_uri(routes[0]) is not None and not (sip_uri(routes[0]) or SipUri(host="x")).lr
    if target is None:
        f.ok(f"{label}: remote target unknown (dialog start not in the capture)")
    elif strict:
        if not same_uri(m.uri, routes[0]) or not seen_routes or not same_uri(seen_routes[-1], target[0]):
            f.fail(f"{where(ev, m)}: strict routing: Request-URI must be the first route {routes[0]} and the "
                   f"remote target {target[0]} the last Route; saw {m.uri} / {seen_routes}", m.frame)
    elif not same_uri(m.uri, target[0]):
        f.fail(f"{where(ev, m)}: Request-URI {m.uri}, expected the remote target {target[0]} "
               f"(Contact of frame {target[1]})", m.frame, target[1])
    else:
        f.ok(f"{label}: Request-URI = remote target {m.uri}")
    if routes is None:
        f.ok(f"{label}: route set unknown (dialog start not in the capture)")
        return
    expect = routes[1:] + [f"<{target[0]}>"] if strict and target else routes
    # The first copy in the capture may be a forwarded one (capture taken past the sender's first
    # hop): each proxy it has passed (one Via each) may have removed its own loose route (§16.4).
    passed = 0 if strict else min(max(len(m.vias) - 1, 0), len(expect))
    skip = next((j for j in range(passed + 1) if _same_routes(seen_routes, expect[j:])), None)
    if skip is None:
        f.fail(f"{where(ev, m)}: Route {seen_routes or 'absent'}, expected the route set {expect or 'empty'}", m.frame)
    elif skip:
        f.ok(f"{label}: Route = route set {expect} minus the {skip} route(s) of the {len(m.vias) - 1} hop(s) this "
             f"copy already passed (the sender's own copy is not in the capture)")
    else:
        f.ok(f"{label}: Route = route set {expect or '(empty)'}")


def _same_routes(seen: list[str], expect: list[str]) -> bool:
    return len(seen) == len(expect) and all(same_uri(a, b) for a, b in zip(seen, expect, strict=False))


def dlg_1(ev: Evidence, step: Step) -> CheckResult:
    """§12.2.1.1: in-dialog request: tags, CSeq +1, Request-URI = remote target, Route = route set."""
    ex, why = ev.subject(step)
    if ex is None:
        return inconclusive("DLG-1", why)
    f = Findings("DLG-1")
    req = ex.request
    m = req.origin
    d1x = ev.dialog_of_step(step)
    if req.to_tag is None:
        others = {d.call_id for d in (ev.d12, ev.d13) if d is not None}
        if req.call_id in others:
            f.fail(f"{where(ev, m)}: out-of-dialog {req.method} (To without tag) reuses the Call-ID {req.call_id} "
                   "of an existing dialog; a new request needs a new Call-ID (§8.1.1.4)", m.frame)
        else:
            f.ok(f"out-of-dialog {req.method} (To without tag, new Call-ID {req.call_id}); allowed (RFC 3515 §2)",
                 m.frame)
        if req.method == "REFER" and not m.has("Target-Dialog"):
            f.warn(f"{where(ev, m)}: out-of-dialog REFER without Target-Dialog (RFC 4538): it may fork or reach "
                   "another device of the user (checklist §8a)", m.frame)
        return f.result()
    dialog = ev.model.find_dialog(req.call_id, {req.from_tag, req.to_tag})
    if dialog is None:
        f.fail(f"{where(ev, m)}: Call-ID {req.call_id} with tags {req.from_tag}/{req.to_tag} matches no dialog",
               m.frame)
        return f.result()
    if d1x is not None and dialog is not d1x and req.method == "BYE":
        f.fail(f"{where(ev, m)}: BYE in dialog {dialog.call_id}, expected the original dialog {d1x.call_id}", m.frame)
    creator = ev.creator(dialog)
    if creator is not None and creator.ok is not None:
        uac_tag, uas_tag = creator.request.from_tag, dialog.uas_tag or creator.ok.to_tag
        mine, theirs = (uac_tag, uas_tag) if ev.node(m.src_ep) == ev.node(creator.request.sender) else (uas_tag, uac_tag)
        if (req.from_tag, req.to_tag) != (mine, theirs):
            f.fail(f"{where(ev, m)}: tags From {req.from_tag} / To {req.to_tag}, expected {mine} / {theirs}", m.frame)
        else:
            f.ok(f"tags {mine}/{theirs}")
    _cseq_rule(ev, f, dialog, ex)
    check_target_and_route(ev, f, dialog, m, req.method or "request")
    target = sip_uri(m.uri)
    if req.method == "REFER" and target is not None and "gr" in target.params:
        f.warn(f"{where(ev, m)}: in-dialog REFER to a GRUU ({m.uri}); RFC 7647 §4 wants it out of dialog "
               "(accepted: 3GPP agreements allow dialog reuse, checklist §8a)", m.frame)
    f.frames.append(m.frame)
    return f.result()


def ack_1(ev: Evidence, step: Step) -> CheckResult:
    """§13.2.2.4: ACK for the 2xx: same CSeq number, method ACK, new branch, built as an in-dialog request."""
    ex, why = ev.subject(step)
    if ex is None:
        return inconclusive("ACK-1", why)
    f = Findings("ACK-1")
    if ex.ok is None:
        final = ex.final
        return inconclusive("ACK-1", f"the INVITE of frame {ex.request.origin.frame} got no 2xx "
                            f"(final: {final.status if final else 'none'}), so no ACK for a 2xx is due")
    ack = ex.ack_2xx
    if ack is None:
        cut = ev.cut_short(ex.ok.time, ev.node(ex.request.sender))
        if cut:
            return inconclusive("ACK-1", f"no ACK for the 2xx of frame {ex.ok.origin.frame}; {cut}",
                                frames=[ex.ok.origin.frame])
        f.fail(f"no ACK for the 2xx of frame {ex.ok.origin.frame}", ex.ok.origin.frame)
        return f.result()
    m = ack.origin
    if m.cseq_num != ex.request.cseq_num or m.cseq_method != "ACK":
        f.fail(f"{where(ev, m)}: CSeq {m.get('CSeq')!r}, expected '{ex.request.cseq_num} ACK'", m.frame)
    if m.bottom_branch == ex.request.origin.bottom_branch:
        f.fail(f"{where(ev, m)}: reuses the INVITE's branch {m.bottom_branch}; the ACK for a 2xx is a new "
               "transaction with a new branch", m.frame, ex.request.origin.frame)
    dialog = ev.model.find_dialog(ex.request.call_id, {ex.request.from_tag, ex.ok.to_tag})
    if dialog is None:
        f.fail(f"{where(ev, m)}: no dialog for the 2xx (To tag {ex.ok.to_tag})", m.frame)
    else:
        check_target_and_route(ev, f, dialog, m, "ACK")
    f.ok(f"ACK frame {m.frame}: CSeq {m.cseq_num} ACK, new branch {m.bottom_branch}", m.frame)
    return f.result()
