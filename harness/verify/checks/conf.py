"""CONF-1..4 and JOIN-1..3: creating the conference at the CS and joining it (RFC 4579, 24.605 §4.2.1)."""

from __future__ import annotations

from harness.flows.step import Step
from harness.sip.errors import SipParseError
from harness.sip.headers import NameAddr, SipUri, uri_without
from harness.verify.a21 import Evidence
from harness.verify.checks.base import Findings, inconclusive, where
from harness.verify.checks.dialog import same_uri
from harness.verify.roles import has_isfocus, same_target
from harness.verify.verdict import CheckResult


def conf_1(ev: Evidence, step: Step) -> CheckResult:
    """24.605 §4.2.1: the conference-creating INVITE goes to the conference factory URI, not a conference URI."""
    ex, why = ev.subject(step)
    if ex is None:
        return inconclusive("CONF-1", why)
    f = Findings("CONF-1")
    if ev.redirect is not None and ex is ev.conf:
        # The focus redirected UE-1's INVITE to the conference URI (RFC 4579 §5.4): the request for a
        # new conference is the redirected INVITE, the one judged here.
        red, to = ev.redirect, ex.request.origin
        status = red.final.status if red.final else "3xx"
        f.ok(f"the CS answered the INVITE of frame {red.request.origin.frame} with {status} to {to.uri} "
             "(RFC 4579 §5.4); judging the redirected INVITE", red.request.origin.frame, to.frame)
        ex = red
    m = ex.request.origin
    conf = ev.conf_uri
    if ev.factory_uri:
        if same_uri(m.uri, ev.factory_uri):
            f.ok(f"Request-URI {m.uri} = the given factory URI", m.frame)
        else:
            f.fail(f"{where(ev, m)}: Request-URI {m.uri}, expected the factory URI {ev.factory_uri}", m.frame)
    if conf is not None and m.uri is not None:
        try:
            ruri = SipUri.parse(m.uri)
        except SipParseError:
            ruri = None
        if ruri is not None and uri_without(ruri, ("isfocus",)).equivalent(uri_without(conf, ("isfocus",))):
            f.fail(f"{where(ev, m)}: Request-URI {m.uri} is the conference URI the CS returned "
                   f"({conf}); a new conference is created at the factory URI", m.frame)
        else:
            f.ok(f"Request-URI {m.uri} differs from the conference URI {conf} (a factory URI)", m.frame)
    elif not ev.factory_uri:
        return inconclusive("CONF-1", f"the CS returned no Contact, cannot tell factory from conference URI "
                            f"(Request-URI {m.uri}); pass --factory-uri", [m.frame])
    return f.result()


def conf_3(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3261 §8.1.1.2-4: a new dialog: To without tag, From with a new tag, a new Call-ID (not D12/D13)."""
    ex, why = ev.subject(step)
    if ex is None:
        return inconclusive("CONF-3", why)
    f = Findings("CONF-3")
    m = ex.request.origin
    if m.to_tag is not None:
        f.fail(f"{where(ev, m)}: To carries tag {m.to_tag}; a dialog-creating INVITE has none", m.frame)
    if m.from_tag is None:
        f.fail(f"{where(ev, m)}: From has no tag", m.frame)
    for name, d in (("D12", ev.d12), ("D13", ev.d13)):
        if d is not None and d.call_id == m.call_id:
            f.fail(f"{where(ev, m)}: Call-ID {m.call_id} is the Call-ID of {name}; a new dialog needs a new one",
                   m.frame)
        if d is not None and m.from_tag in d.tags:
            f.fail(f"{where(ev, m)}: From tag {m.from_tag} reused from {name}", m.frame)
    f.ok(f"new dialog: Call-ID {m.call_id}, From tag {m.from_tag}, To without tag", m.frame)
    return f.result()


def _focus_contact(ev: Evidence, check_id: str, step: Step, who: str) -> CheckResult:
    ex, why = ev.subject(step)
    if ex is None:
        return inconclusive(check_id, why)
    f = Findings(check_id)
    if ex.ok is None:
        final = ex.final
        if final is None:
            frame = ex.request.origin.frame
            what = f"nothing answered {who}'s INVITE of frame {frame} (sent to {ex.request.receiver})"
            cut = ev.unanswered_cut(ex)
            if check_id == "JOIN-3" or cut:  # a join that fails is a path of the flow (checklist §8g)
                return inconclusive(check_id, f"{what}; {cut or 'no CS 2xx to judge'}", frames=[frame])
            # The answer was due (retransmitted, or UE-1 went on): the CS never created the conference.
            f.fail(f"{what}, though it was retransmitted or {who} went on: the conference was never created",
                   frame)
            return f.result()
        if check_id == "JOIN-3":
            # Checklist §8g: a rejected join is a path of the flow; the final NOTIFY reports it.
            return inconclusive(check_id, f"the CS rejected {who}'s join INVITE (frame {ex.request.origin.frame}) "
                                f"with {final.status} {final.origin.reason or ''}: no 200 OK to judge (checklist §8g)",
                                "MUST", [ex.request.origin.frame, final.origin.frame])
        f.fail(f"the CS answered {who}'s INVITE of frame {ex.request.origin.frame} with {final.status}, "
               "not a 2xx", final.origin.frame)
        return f.result()
    m = ex.ok.origin
    contact = m.name_addr("Contact")
    if not has_isfocus(contact):
        f.fail(f"{where(ev, m)}: Contact {m.get('Contact')!r} lacks the isfocus feature parameter "
               "(RFC 4579 §5.4: the focus's 2xx MUST carry it)", m.frame)
    else:
        f.ok(f"Contact {m.get('Contact')} has isfocus", m.frame)
    return f.result()


def conf_2(ev: Evidence, step: Step) -> CheckResult:
    """RFC 4579 §5.4: the CS's 200 OK Contact is the conference URI with isfocus."""
    return _focus_contact(ev, "CONF-2", step, "UE-1")


def conf_4(ev: Evidence, step: Step) -> CheckResult:
    """RFC 4579 §3.1 (SHOULD): the focus's 200 OK lists `conference` in Allow-Events."""
    ex, why = ev.subject(step)
    if ex is None or ex.ok is None:
        return inconclusive("CONF-4", why if ex is None else "no 2xx from the CS", "SHOULD")
    f = Findings("CONF-4", "SHOULD")
    m = ex.ok.origin
    events = [v.split(";")[0].strip().lower() for v in m.get_all("Allow-Events")]
    if "conference" in events:
        f.ok(f"Allow-Events {m.get('Allow-Events')}", m.frame)
    else:
        f.warn(f"{where(ev, m)}: Allow-Events {m.get('Allow-Events')!r} does not list conference "
               "(RFC 4579 §3.1 SHOULD)", m.frame)
    return f.result()


def join_1(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3515 §2.4.2-2.4.3, RFC 3261 §19.1.5: the referee INVITEs the Refer-To URI in a new dialog."""
    branch = ev.branches.get(step.branch or "")
    ex, why = ev.subject(step)
    f = Findings("JOIN-1")
    if ex is None:
        point = ev.capture_point
        if point is not None and point not in (ev.roles.node(step.actors[0]), ev.roles.node("CS")):
            return inconclusive("JOIN-1", f"{why}: the capture was taken at {point} (an end of every message in "
                                "it), which the join need not pass")
        if branch is not None and branch.refer is not None and branch.refer.ok is not None \
                and (branch.final_status or 0) // 100 == 2:
            f.fail(f"{why}, yet the final NOTIFY (frame {branch.final_notify.request.origin.frame}) reports success",
                   branch.final_notify.request.origin.frame)
            return f.result()
        return inconclusive("JOIN-1", why)
    m = ex.request.origin
    target = branch.refer_to if branch else None
    if target is None:
        return inconclusive("JOIN-1", "the REFER has no parsable Refer-To to compare with", [m.frame])
    if not same_target(m.uri, target):
        f.fail(f"{where(ev, m)}: Request-URI {m.uri} is not the Refer-To URI {target.uri} "
               "(compared without method and URI headers)", m.frame)
    try:
        ruri = SipUri.parse(m.uri or "")
        if "method" in ruri.params or ruri.headers:
            f.fail(f"{where(ev, m)}: Request-URI {m.uri} keeps the method parameter or URI headers "
                   "(RFC 3261 §19.1.5: they MUST NOT be placed in the Request-URI)", m.frame)
    except SipParseError:
        f.fail(f"{where(ev, m)}: Request-URI {m.uri!r} is not a SIP URI", m.frame)
    wanted = (target.uri.params.get("method") or "INVITE").upper() if isinstance(target.uri, SipUri) else "INVITE"
    if (m.method or "").upper() != wanted:
        f.fail(f"{where(ev, m)}: method {m.method}, the Refer-To asks for {wanted}", m.frame)
    if m.to_tag is not None:
        f.fail(f"{where(ev, m)}: To has tag {m.to_tag}; the join is a new dialog", m.frame)
    for name, d in (("D12", ev.d12), ("D13", ev.d13)):
        if d is not None and d.call_id == m.call_id:
            f.fail(f"{where(ev, m)}: Call-ID {m.call_id} reuses {name}'s; the join is a new dialog", m.frame)
    f.ok(f"INVITE {m.uri} (Refer-To {target.uri}), new dialog Call-ID {m.call_id}", m.frame)
    return f.result()


def join_2(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3892 §2.2: the referee copies the REFER's Referred-By into the INVITE unchanged."""
    branch = ev.branches.get(step.branch or "")
    ex, why = ev.subject(step)
    if ex is None or branch is None or branch.refer is None:
        return inconclusive("JOIN-2", why)
    f = Findings("JOIN-2")
    sent = branch.refer.request.delivered.get_all("Referred-By")
    m = ex.request.origin
    got = m.get_all("Referred-By")
    if not sent:
        f.ok("the REFER carried no Referred-By, nothing to copy", m.frame)
        return f.result()
    if not got:
        f.fail(f"{where(ev, m)}: no Referred-By; the REFER (frame {branch.refer.request.delivered.frame}) carried "
               f"{sent[0]!r} and it MUST be copied", m.frame, branch.refer.request.delivered.frame)
    elif got[0] == sent[0]:
        f.ok(f"Referred-By {got[0]} copied unchanged", m.frame)
    else:
        try:
            a, b = NameAddr.parse(sent[0]), NameAddr.parse(got[0])
            same = a.uri.equivalent(b.uri) and a.params == b.params
        except SipParseError:
            same = False
        if same:
            f.ok(f"Referred-By {got[0]} equivalent to the REFER's {sent[0]} (re-formatted)", m.frame)
        else:
            f.fail(f"{where(ev, m)}: Referred-By {got[0]!r} differs from the REFER's {sent[0]!r}", m.frame)
    return f.result()


def join_3(ev: Evidence, step: Step) -> CheckResult:
    """RFC 4579 §4.2, §5.1 via §5.6: the CS's 200 OK to the joining UE has Contact ;isfocus."""
    return _focus_contact(ev, "JOIN-3", step, step.branch or "the referee")
