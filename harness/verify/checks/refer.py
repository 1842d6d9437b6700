"""REF-1..6, NOT-1..6, BYE-1: the REFER, its implicit subscription and the end of the old call."""

from __future__ import annotations

from harness.flows.step import Step
from harness.sip.errors import SipParseError
from harness.sip.headers import SipUri, parse_status_line, uri_without
from harness.verify.a21 import Branch, Evidence, event_of, refer_rejected, sipfrag_status, sub_state
from harness.verify.checks.base import Findings, inconclusive, where
from harness.verify.model import Exchange
from harness.verify.verdict import CheckResult


def _refer(ev: Evidence, step: Step, check_id: str) -> tuple[Exchange, Branch] | CheckResult:
    ex, why = ev.subject(step)
    branch = ev.branches.get(step.branch or "")
    if ex is None or branch is None:
        return inconclusive(check_id, why)
    return ex, branch


def ref_1(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3515 §2.4.1: exactly one Refer-To header field value."""
    got = _refer(ev, step, "REF-1")
    if isinstance(got, CheckResult):
        return got
    ex, _ = got
    f = Findings("REF-1")
    for m in ex.request.copies:
        values = m.get_all("Refer-To")
        if len(values) != 1:
            f.fail(f"{where(ev, m)}: {len(values)} Refer-To values {values}, exactly one required", m.frame)
    f.ok(f"one Refer-To: {ex.request.origin.get('Refer-To')}", ex.request.origin.frame)
    return f.result()


def _plain(uri: SipUri) -> SipUri:
    return uri_without(uri, ("method", "isfocus"))


def ref_2(ev: Evidence, step: Step) -> CheckResult:
    """RFC 4579 §5.6 (SHOULD): Refer-To is the conference URI (not the factory URI); same URI in both REFERs."""
    got = _refer(ev, step, "REF-2")
    if isinstance(got, CheckResult):
        return CheckResult("REF-2", got.verdict, got.detail, got.frames, "SHOULD")
    ex, branch = got
    f = Findings("REF-2", "SHOULD")
    m = ex.request.origin
    target = branch.refer_to
    if target is None or not isinstance(target.uri, SipUri):
        f.warn(f"{where(ev, m)}: Refer-To {m.get('Refer-To')!r} is not a parsable SIP name-addr", m.frame)
        return f.result()
    conf = ev.conf_uri
    if conf is None:
        return inconclusive("REF-2", "no conference URI learnt from a CS 2xx Contact to compare the Refer-To with",
                            "SHOULD", [m.frame])
    if _plain(target.uri).equivalent(_plain(conf)):
        f.ok(f"Refer-To {target.uri} = conference URI {conf} (ignoring method, URI headers, header params)", m.frame)
    elif ev.conf is not None and same_factory(ev, target.uri):
        f.warn(f"{where(ev, m)}: Refer-To {target.uri} is the factory URI the conference was created at, not "
               f"the conference URI {conf}: the referee would create a new conference", m.frame)
    else:
        f.warn(f"{where(ev, m)}: Refer-To {target.uri} is not the conference URI {conf}", m.frame)
    other = ev.branches.get("UE-3" if step.branch == "UE-2" else "UE-2")
    if other is not None and other.refer_to is not None and isinstance(other.refer_to.uri, SipUri) \
            and not _plain(other.refer_to.uri).equivalent(_plain(target.uri)):
        f.warn(f"the REFERs to UE-2 and UE-3 name different conference URIs ({target.uri} vs {other.refer_to.uri})",
               m.frame)
    return f.result()


def same_factory(ev: Evidence, uri: SipUri) -> bool:
    try:
        return ev.conf is not None and _plain(uri).equivalent(_plain(SipUri.parse(ev.conf.request.origin.uri or "")))
    except SipParseError:
        return False


def ref_3(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3515 §2 (table): a REFER carries exactly one Contact."""
    got = _refer(ev, step, "REF-3")
    if isinstance(got, CheckResult):
        return got
    ex, _ = got
    f = Findings("REF-3")
    m = ex.request.origin
    contacts = m.get_all("Contact")
    if len(contacts) != 1:
        f.fail(f"{where(ev, m)}: {len(contacts)} Contact values {contacts}, exactly one required", m.frame)
    else:
        f.ok(f"one Contact {contacts[0]}", m.frame)
    return f.result()


def ref_4(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3892 §2.1: at most one Referred-By."""
    got = _refer(ev, step, "REF-4")
    if isinstance(got, CheckResult):
        return got
    ex, _ = got
    f = Findings("REF-4")
    m = ex.request.origin
    values = m.get_all("Referred-By")
    if len(values) > 1:
        f.fail(f"{where(ev, m)}: {len(values)} Referred-By values {values}, at most one allowed", m.frame)
    else:
        f.ok(f"Referred-By: {values[0] if values else 'absent (MAY)'}", m.frame)
    return f.result()


def ref_5(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3515 §2.4.2 / RFC 7647 §5 ([checker] 200 or 202); the 2xx has Contact (and a To tag out of dialog)."""
    got = _refer(ev, step, "REF-5")
    if isinstance(got, CheckResult):
        return got
    ex, _ = got
    f = Findings("REF-5")
    final = ex.final
    if final is None:
        cut = ev.unanswered_cut(ex)
        if cut:
            return inconclusive("REF-5", f"the REFER of frame {ex.request.origin.frame} got no final response; {cut}",
                                frames=[ex.request.origin.frame])
        f.fail(f"the REFER of frame {ex.request.origin.frame} got no final response", ex.request.origin.frame)
        return f.result()
    m = final.origin
    if final.status not in (200, 202):
        f.fail(f"{where(ev, m)}: REFER answered {final.status} {m.reason}; the referee must accept it "
               "(200 or 202) for the flow to go on", m.frame)
        return f.result()
    for copy in final.copies:
        if not copy.get_all("Contact"):
            f.fail(f"{where(ev, copy)}: 2xx to REFER without Contact (RFC 3515 §2 table: mandatory)", copy.frame)
        if ex.request.to_tag is None and copy.to_tag is None:
            f.fail(f"{where(ev, copy)}: 2xx to an out-of-dialog REFER without To tag", copy.frame)
    refer_sub = (m.get("Refer-Sub") or "").strip().lower()
    note = "; Refer-Sub: false, no implicit subscription (RFC 4488)" if refer_sub == "false" else ""
    f.ok(f"REFER accepted with {final.status}{' (RFC 7647 prefers 200)' if final.status == 202 else ''}{note}",
         m.frame)
    return f.result()


def ref_6(ev: Evidence, step: Step) -> CheckResult:
    """RFC 8217 §3-4: Refer-To and Referred-By use <...> when the URI carries ',', ';' or '?'."""
    got = _refer(ev, step, "REF-6")
    if isinstance(got, CheckResult):
        return got
    ex, _ = got
    f = Findings("REF-6")
    m = ex.request.origin
    for name in ("Refer-To", "Referred-By"):
        for value in m.lines(name):
            text = value.strip()
            if "<" not in text and any(c in text for c in ",;?"):
                f.fail(f"{where(ev, m)}: {name}: {text!r} is an addr-spec containing ',', ';' or '?'; "
                       "it MUST be a name-addr <...>", m.frame)
    f.ok("Refer-To/Referred-By use name-addr where needed", m.frame)
    return f.result()


# --- NOTIFY ------------------------------------------------------------------------------------


def _notify(ev: Evidence, step: Step, check_id: str, level: str = "MUST") -> tuple[Exchange, Branch] | CheckResult:
    ex, why = ev.subject(step)
    branch = ev.branches.get(step.branch or "")
    if branch is not None and branch.refer is not None and ex is None and branch.refer.ok is not None:
        refer_sub = (branch.refer.ok.origin.get("Refer-Sub") or "").strip().lower()
        if refer_sub == "false":
            return CheckResult(check_id, "pass", "Refer-Sub: false in the 2xx to REFER: no subscription, no NOTIFY "
                               "expected (RFC 4488 §4)", [branch.refer.ok.origin.frame], level)  # type: ignore[arg-type]
    if ex is None or branch is None or branch.refer is None:
        return inconclusive(check_id, why, level)  # type: ignore[arg-type]
    return ex, branch


def not_1(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3515 §2.4.4, §2.4.6: Event: refer; id = the REFER's CSeq when present, required from the 2nd REFER."""
    got = _notify(ev, step, "NOT-1")
    if isinstance(got, CheckResult):
        return got
    ex, branch = got
    f = Findings("NOT-1")
    m = ex.request.origin
    event = event_of(m)
    refer = branch.refer
    assert refer is not None
    if event is None:
        f.fail(f"{where(ev, m)}: no (valid) Event header; a NOTIFY for a REFER carries Event: refer "
               f"(saw {m.get('Event')!r})", m.frame)
        return f.result()
    if event.package.lower() != "refer":
        f.fail(f"{where(ev, m)}: Event {event.package}, expected refer", m.frame)
    # Only a REFER that got a 2xx created a subscription (RFC 3515 §2.4.6): a challenged or
    # rejected one does not make this the second REFER of the dialog.
    earlier = [e for e in ev.model.requests("REFER") if e is not refer and e.request.call_id == refer.request.call_id
               and e.request.time < refer.request.time and not refer_rejected(e) and refer.request.to_tag is not None
               and {e.request.from_tag, e.request.to_tag} == {refer.request.from_tag, refer.request.to_tag}]
    if event.id is not None and event.id != str(refer.request.cseq_num):
        f.fail(f"{where(ev, m)}: Event id={event.id}, but the REFER's CSeq is {refer.request.cseq_num}", m.frame)
    elif event.id is None and earlier:
        f.fail(f"{where(ev, m)}: Event without id, but this is not the first REFER in the dialog "
               f"(earlier REFER frame {earlier[0].request.origin.frame}; RFC 3515 §2.4.6)", m.frame)
    else:
        f.ok(f"Event: {m.get('Event')}", m.frame)
    return f.result()


def not_2(ev: Evidence, step: Step) -> CheckResult:
    """RFC 6665 §4.2.2, §4.1.3: Subscription-State present; expires with active/pending, not with terminated."""
    got = _notify(ev, step, "NOT-2")
    if isinstance(got, CheckResult):
        return got
    ex, _ = got
    f = Findings("NOT-2")
    m = ex.request.origin
    state = sub_state(m)
    if state is None:
        f.fail(f"{where(ev, m)}: no (valid) Subscription-State (saw {m.get('Subscription-State')!r})", m.frame)
        return f.result()
    if state.state in ("active", "pending"):
        if state.expires is None:
            f.fail(f"{where(ev, m)}: Subscription-State {state} has no numeric expires", m.frame)
    elif state.state == "terminated":
        if "expires" in state.params:
            f.warn(f"{where(ev, m)}: expires SHOULD NOT appear with terminated ({state})", m.frame)
    else:
        f.fail(f"{where(ev, m)}: Subscription-State {state.state!r} is not active, pending or terminated", m.frame)
    f.ok(f"Subscription-State: {state}", m.frame)
    return f.result()


def not_3(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3515 §2.4.4-2.4.5, RFC 3420 §2: body message/sipfrag starting with a valid Status-Line."""
    got = _notify(ev, step, "NOT-3")
    if isinstance(got, CheckResult):
        return got
    ex, _ = got
    f = Findings("NOT-3")
    m = ex.request.origin
    if m.content_type != "message/sipfrag":
        f.fail(f"{where(ev, m)}: Content-Type {m.get('Content-Type')!r}, expected message/sipfrag", m.frame)
    first = m.sipfrag_lines[0].strip() if m.sipfrag_lines else ""
    try:
        _, code, _ = parse_status_line(first)
    except SipParseError:
        f.fail(f"{where(ev, m)}: body {first!r} does not start with a Status-Line 'SIP/2.0 NNN Reason'", m.frame)
        return f.result()
    # RFC 3420 §2 takes the start-line from RFC 3261 §25.1: a Status-Line ends with CRLF. Many
    # stacks end it with a bare LF or not at all; every reader copes, so this warns only.
    head = m.body.lstrip(b"\r\n")
    eol = head.find(b"\n")
    if eol < 0:
        f.warn(f"{where(ev, m)}: the sipfrag Status-Line {first!r} is not ended by CRLF (RFC 3420 §2, "
               "RFC 3261 §25.1)", m.frame)
    elif head[eol - 1:eol] != b"\r":
        f.warn(f"{where(ev, m)}: the sipfrag Status-Line {first!r} ends with a bare LF, not CRLF (RFC 3420 §2, "
               "RFC 3261 §25.1)", m.frame)
    state = sub_state(m)
    if state is not None and state.state in ("active", "pending") and code >= 200:
        f.warn(f"{where(ev, m)}: {state.state} NOTIFY reports a final status {code}; the final one should "
               "terminate the subscription", m.frame)
    f.ok(f"sipfrag {first!r}", m.frame)
    return f.result()


def not_4(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3515 §2.4.7: the final NOTIFY is terminated;reason=noresource (603 carve-out: other reasons WARN)."""
    got = _notify(ev, step, "NOT-4")
    if isinstance(got, CheckResult):
        return got
    ex, branch = got
    f = Findings("NOT-4")
    m = ex.request.origin
    state = sub_state(m)
    status = sipfrag_status(m)
    if state is None:
        f.fail(f"{where(ev, m)}: final NOTIFY without a valid Subscription-State (saw "
               f"{m.get('Subscription-State')!r})", m.frame)
        return f.result()
    if state.state != "terminated":
        f.fail(f"{where(ev, m)}: the last NOTIFY (sipfrag {status}) has Subscription-State {state}, expected "
               "terminated;reason=noresource", m.frame)
    elif (state.reason or "").lower() != "noresource":   # quoted ABNF literals: case-insensitive
        text = f"{where(ev, m)}: Subscription-State {state}: reason {state.reason!r}, expected 'noresource'"
        if status == 603:
            f.warn(text + " (allowed after 603 Declined, RFC 3515 §2.4.7)", m.frame)
        else:
            f.fail(text, m.frame)
    if status is not None and status < 200:
        f.warn(f"{where(ev, m)}: the final NOTIFY reports a provisional status {status}", m.frame)
    join = branch.join
    if status is not None and status // 100 == 2 and join is not None and join.ok is not None \
            and m.time < join.ok.delivered.time:
        f.warn(f"{where(ev, m)}: reports {status} before {branch.target} received the CS's 2xx "
               f"(frame {join.ok.delivered.frame}; checklist O4)", m.frame, join.ok.delivered.frame)
    f.ok(f"final NOTIFY: {state}, sipfrag {status}", m.frame)
    return f.result()


def not_5(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3515 §2.4.4, RFC 6665 §4.4.1: the NOTIFY is in the REFER's subscription dialog; CSeq grows."""
    got = _notify(ev, step, "NOT-5")
    if isinstance(got, CheckResult):
        return got
    ex, branch = got
    f = Findings("NOT-5")
    refer = branch.refer
    assert refer is not None
    m = ex.request.origin
    r = refer.request
    if m.call_id != r.call_id:
        f.fail(f"{where(ev, m)}: Call-ID {m.call_id}, the REFER's is {r.call_id}", m.frame)
    if m.to_tag != r.from_tag:
        f.fail(f"{where(ev, m)}: To tag {m.to_tag}, must be the REFER's From tag {r.from_tag}", m.frame, r.origin.frame)
    expect_from = r.to_tag or (refer.ok.to_tag if refer.ok else None)
    if expect_from is not None and m.from_tag != expect_from:
        if r.to_tag is None:
            f.ok(f"From tag {m.from_tag} differs from the 2xx To tag {expect_from} (a forked REFER may do this, "
                 "RFC 6665 §4.1.4)")
        else:
            f.fail(f"{where(ev, m)}: From tag {m.from_tag}, the referee's tag in the REFER's dialog is {expect_from}",
                   m.frame)
    first = branch.first_notify
    if first is not None and first is not ex:
        fm = first.request.origin
        if (fm.call_id, fm.from_tag, fm.to_tag) != (m.call_id, m.from_tag, m.to_tag):
            f.fail(f"{where(ev, m)}: dialog ({m.call_id}, {m.from_tag}, {m.to_tag}) differs from the first "
                   f"NOTIFY's (frame {fm.frame})", m.frame, fm.frame)
        if (m.cseq_num or 0) <= (fm.cseq_num or 0):
            f.fail(f"{where(ev, m)}: CSeq {m.cseq_num} not greater than the first NOTIFY's {fm.cseq_num}",
                   m.frame, fm.frame)
    f.ok(f"NOTIFY in the REFER's dialog (Call-ID {m.call_id}, To tag {m.to_tag}), CSeq {m.cseq_num}", m.frame)
    return f.result()


def not_6(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3515 §3.10 (SHOULD NOT): NOTIFYs of one subscription no more often than once per second."""
    branch = ev.branches.get(step.branch or "")
    if branch is None or len(branch.notifies) < 2:
        why = ev.subject(step)[1] if branch is None or not branch.notifies else "a single NOTIFY"
        return CheckResult("NOT-6", "pass" if branch and branch.notifies else "inconclusive", why, [], "SHOULD")
    f = Findings("NOT-6", "SHOULD")
    times = [(n.request.time, n.request.origin.frame) for n in branch.notifies]
    for (t0, f0), (t1, f1) in zip(times, times[1:], strict=False):
        if t1 - t0 < 1.0:
            f.warn(f"NOTIFY frame {f1} {1000 * (t1 - t0):.0f} ms after frame {f0} (SHOULD be >= 1 s apart)", f0, f1)
    f.ok(f"{len(times)} NOTIFYs at least 1 s apart")
    return f.result()


def bye_1(ev: Evidence, step: Step) -> CheckResult:
    """RFC 5589 §5-6 (as drawn): UE-1 ends the original dialog with BYE after the final NOTIFY; 200 OK."""
    branch = ev.branches.get(step.branch or "")
    ex, why = ev.subject(step)
    status = branch.final_status if branch else None
    final = branch.final_notify if branch else None
    f = Findings("BYE-1")
    if ex is None:
        if status is not None and status // 100 == 2:
            frame = final.request.origin.frame if final else 0
            ue1 = ev.roles.node("UE-1")
            # UE-1 ending another call later (and the capture showing that BYE's answer reach it) says
            # the capture was not cut before this BYE could be sent.
            later = [e for e in ev.model.requests("BYE") if ev.node(e.request.sender) == ue1
                     and final is not None and e.time > final.request.time and e.final is not None
                     and ev.node(e.final.delivered.dst_ep) == ue1]
            cut = ev.cut_short(final.request.time) if final is not None else None
            if cut and not later:
                return inconclusive("BYE-1", f"{why} after the final NOTIFY reported {status} (frame {frame}); {cut}",
                                    frames=[frame])
            f.fail(f"{why}: after the final NOTIFY reported {status} (frame {frame}) UE-1 must end the old call",
                   frame)
            return f.result()
        if status is not None:
            f.ok(f"no BYE: the join failed ({status}), UE-1 keeps the old call (RFC 5589 §6)")
            return f.result()
        return inconclusive("BYE-1", why)
    m = ex.request.origin
    sender = ev.role(m.src_ep)
    cut = ev.unanswered_cut(ex) if ex.final is None else None
    if cut:
        return inconclusive("BYE-1", f"{where(ev, m)}: BYE not answered; {cut}", frames=[m.frame])
    if ex.final is None or not 200 <= (ex.final.status or 0) < 300:
        f.fail(f"{where(ev, m)}: BYE answered {ex.final.status if ex.final else 'never'}; a BYE matching the dialog "
               "MUST get a 2xx (RFC 3261 §15.1.2)", m.frame)
    if sender != "UE-1":
        f.ok(f"the old call was ended by {sender} (frame {m.frame}), not UE-1 (variant, RFC 5589)")
    if final is not None and m.time < final.request.time:
        f.ok(f"BYE (frame {m.frame}) before the final NOTIFY (frame {final.request.origin.frame}): blind-style, INFO")
    if status is not None and status // 100 != 2:
        f.warn(f"{where(ev, m)}: BYE although the final NOTIFY reported {status}; the old call was recoverable "
               "(RFC 5589 §6)", m.frame)
    if m.get_all("Contact"):
        f.warn(f"{where(ev, m)}: BYE carries a Contact (RFC 3261 Table 2: not applicable)", m.frame)
    f.ok(f"BYE by {sender} in {ex.request.call_id} answered {ex.final.status if ex.final else '-'}", m.frame)
    return f.result()
