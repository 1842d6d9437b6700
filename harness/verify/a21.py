"""Bind each A.2.1 step to the exchanges in the capture that are its evidence.

Correlation follows the checklist's [checker] rules: branches UE-2 and UE-3 are found by REFER
target, never by order; the first NOTIFY of a subscription is 28~33 and the last `terminated` one is
41~46 (intermediate ones are allowed and not bound); the join INVITE is the referee's new INVITE to
the Refer-To URI (or, failing that, to the CS); a NOTIFY may precede the 202 and the INVITE may
precede the first NOTIFY.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from harness.flows.step import Step
from harness.sip.errors import SipParseError
from harness.sip.headers import EventHeader, NameAddr, SipUri, SubscriptionState, parse_status_line
from harness.verify.model import Dialog, Exchange, Logical, Model
from harness.verify.roles import Roles, has_isfocus, is_hold_offer, refer_to, same_target
from harness.verify.verdict import Verdict
from harness.verify.wire import CaptureData, RtpPacket, WireMessage, name_addr


def event_of(m: WireMessage) -> EventHeader | None:
    return _event(m.get("Event"))


def sub_state(m: WireMessage) -> SubscriptionState | None:
    return _sub_state(m.get("Subscription-State"))


@lru_cache(maxsize=4096)
def _event(value: str | None) -> EventHeader | None:
    try:
        return EventHeader.parse(value) if value is not None else None
    except SipParseError:
        return None


@lru_cache(maxsize=4096)
def _sub_state(value: str | None) -> SubscriptionState | None:
    try:
        return SubscriptionState.parse(value) if value is not None else None
    except SipParseError:
        return None


# 64*T1 (Timer B/F, RFC 3261 §17.1): what is missing this close to the end of the capture may simply
# have come after it was cut, so its absence is inconclusive rather than a failure.
CUT_WINDOW = 32.0


def refer_sub_false(m: WireMessage) -> bool:
    """RFC 4488: `Refer-Sub: false` in the 2xx to a REFER means there is no implicit subscription."""
    return (m.get("Refer-Sub") or "").strip().lower() == "false"


def refer_rejected(e: Exchange) -> bool:
    """A REFER answered with a final non-2xx only (a 401/407 challenge, a rejection): it created no
    subscription (RFC 3515 §2.4.6), so it neither makes a later REFER "the second" nor owns NOTIFYs.
    A REFER whose answer is not in the capture still counts."""
    return e.final is not None and e.ok is None


def sipfrag_status(m: WireMessage) -> int | None:
    if not m.sipfrag_lines:
        return None
    try:
        return parse_status_line(m.sipfrag_lines[0].strip())[1]
    except SipParseError:
        return None


@dataclass
class Branch:
    """Evidence for one REFER target: 22~52 for UE-2, 53~83 for UE-3."""

    target: str
    dialog: Dialog | None = None            # D12 / D13
    refer: Exchange | None = None
    notifies: list[Exchange] = field(default_factory=list)
    join: Exchange | None = None
    bye: Exchange | None = None
    why: dict[str, str] = field(default_factory=dict)

    @property
    def refer_to(self) -> NameAddr | None:
        return refer_to(self.refer) if self.refer else None

    @property
    def first_notify(self) -> Exchange | None:
        return self.notifies[0] if self.notifies else None

    @property
    def final_notify(self) -> Exchange | None:
        """The last `terminated` NOTIFY; without one, the last NOTIFY after the first, if any."""
        terminated = [n for n in self.notifies if (s := sub_state(n.request.origin)) and s.state == "terminated"]
        if terminated:
            return terminated[-1]
        if len(self.notifies) > 1:
            return self.notifies[-1]
        return None

    @property
    def final_status(self) -> int | None:
        final = self.final_notify
        return sipfrag_status(final.request.origin) if final else None


@dataclass
class Evidence:
    """Everything the checks read: capture, model, roles and the bound exchanges."""

    data: CaptureData
    model: Model
    roles: Roles
    factory_uri: str | None = None
    d12: Dialog | None = None
    d13: Dialog | None = None
    hold: Exchange | None = None
    conf: Exchange | None = None
    redirect: Exchange | None = None        # UE-1's INVITE the focus redirected (3xx) to conf's Request-URI
    branches: dict[str, Branch] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    _memo: dict[tuple[str, str], object] = field(default_factory=dict, repr=False)   # per step, once bound

    # --- helpers used by the checks ---------------------------------------------------------
    def unanswered_cut(self, ex: Exchange) -> str | None:
        """Why a request without a final response may just have been cut off the capture, or None: not
        when its sender retransmitted it or went on sending after it (the answer was due and did not come)."""
        if ex.request.retransmissions:
            return None
        return self.cut_short(ex.request.time, self.node(ex.request.sender))

    @property
    def capture_point(self) -> str | None:
        """The node at one end of every SIP copy in the capture: it was taken at that element (or that
        element is on every path), so a message that need not cross it may be missing without having
        been unsent. None when no such node exists."""
        point = self.data.__dict__.get("_capture_point", False)
        if point is False:
            common: set[str] | None = None
            for m in self.data.messages:
                ends = {self.node(m.src_ep), self.node(m.dst_ep)}
                common = ends if common is None else common & ends
                if not common:
                    break
            point = self.data.__dict__["_capture_point"] = next(iter(common)) if common and len(common) == 1 else None
        return point  # type: ignore[no-any-return]

    @property
    def capture_end(self) -> float:
        """Time of the last SIP message in the whole capture (computed once per capture)."""
        end = self.data.__dict__.get("_sip_end")
        if end is None:
            end = self.data.__dict__["_sip_end"] = max((m.time for m in self.data.messages), default=0.0)
        return end  # type: ignore[no-any-return]

    def cut_short(self, since: float, by: str | None = None) -> str | None:
        """Why what should follow `since` may be missing because the capture ends too soon, or None.
        It is not cut short when `by` (the node that owed the message) sent other requests or
        responses (not an ACK) after `since`, or when the capture goes on for 64*T1 after it."""
        if by is not None and any(
                lg.time > since and lg.method != "ACK" and self.node(lg.sender) == by for lg in self.model.logicals):
            return None
        left = self.capture_end - since
        if left < CUT_WINDOW:
            return f"the capture ends {left:.1f} s later (less than 64*T1 = {CUT_WINDOW:.0f} s): cut short?"
        return None

    def node(self, ep: str) -> str:
        return self.roles.nodes.find(ep)

    def role(self, ep: str) -> str:
        return self.roles.role_of(ep)

    def creator(self, dialog: Dialog | None) -> Exchange | None:
        """The dialog-creating INVITE, also when its 2xx lacked the To tag that should name it."""
        if dialog is None:
            return None
        if dialog.creator is not None:
            return dialog.creator
        for ex in self.model.requests("INVITE"):
            if ex.request.call_id == dialog.call_id and ex.request.to_tag is None and ex.request.from_tag in dialog.tags:
                return ex
        return None

    @property
    def conf_uri(self) -> SipUri | None:
        """CONF-URI: the Contact of the CS's 2xx to the conference-creating INVITE."""
        for ex in (self.conf, *(b.join for b in self.branches.values())):
            if ex is not None and ex.ok is not None:
                contact = ex.ok.origin.name_addr("Contact")
                if contact is not None and isinstance(contact.uri, SipUri):
                    return contact.uri
        return None

    def dialog_of_step(self, step: Step) -> Dialog | None:
        peer = step.actors[1] if step.actors[0] == "UE-1" else step.actors[0]
        return self.d12 if peer == "UE-2" else self.d13 if peer == "UE-3" else None

    def subject(self, step: Step) -> tuple[Exchange | None, str]:
        """The exchange a step is about, or None and why it is absent."""
        key = ("subject", step.id)
        if key not in self._memo:
            self._memo[key] = self._subject(step)
        return self._memo[key]  # type: ignore[return-value]

    def _subject(self, step: Step) -> tuple[Exchange | None, str]:
        branch = self.branches.get(step.branch or "")
        action = step.action
        if action == "call":
            dialog = self.dialog_of_step(step)
            ex = self.creator(dialog)
            key = "d12" if step.actors[1] == "UE-2" else "d13"
            return ex, self.why.get(key, f"no INVITE dialog between UE-1 and {step.actors[1]}")
        if action == "hold":
            return self.hold, self.why.get("hold", "no hold offer")
        if action in ("create-conf", "conf-answer") or (action == "media-alloc" and branch is None):
            return self.conf, self.why.get("conf", "no conference-creating INVITE")
        if branch is None:
            return None, f"{step.branch}: no REFER from UE-1 to {step.branch} in the capture"
        if action == "refer":
            return branch.refer, branch.why.get("refer", "no REFER")
        if action == "notify-trying":
            return branch.first_notify, branch.why.get("notify", f"no NOTIFY from {branch.target}")
        if action in ("join", "join-answer", "media-alloc"):
            return branch.join, branch.why.get("join", f"no INVITE from {branch.target} to the Refer-To URI")
        if action == "notify-final":
            return branch.final_notify, branch.why.get(
                "final", f"no final (terminated) NOTIFY from {branch.target}")
        if action == "bye":
            return branch.bye, branch.why.get("bye", f"no BYE in the UE-1/{branch.target} dialog")
        return None, f"unknown action {action}"

    def absent_reason(self, step: Step) -> tuple[Verdict, str, list[int]] | None:
        """When a step's message is absent because of what happened before (checklist §8c, §8g),
        the verdict that absence deserves and why: "pass" when absence is the right behaviour,
        "inconclusive" when the step can no longer happen. None: absence is not explained."""
        branch = self.branches.get(step.branch or "")
        if branch is None or branch.refer is None:
            return None
        refer, action, target = branch.refer, step.action, branch.target
        final = refer.final
        if final is not None and not 200 <= (final.status or 0) < 300:
            frames = [refer.request.origin.frame, final.origin.frame]
            if action == "bye":
                return ("pass", f"the REFER (frame {frames[0]}) was rejected with {final.status}: UE-1 keeping its "
                        f"call with {target} is expected", frames)
            return ("inconclusive", f"the REFER (frame {frames[0]}) was rejected with {final.status} "
                    f"{final.origin.reason or ''}: no subscription and no join follow (REF-5 judges the rejection)",
                    frames)
        ok = refer.ok
        if action in ("notify-trying", "notify-final") and ok is not None and refer_sub_false(ok.origin):
            return ("pass", f"the 2xx to the REFER (frame {ok.origin.frame}) says Refer-Sub: false: no implicit "
                    "subscription, so no NOTIFY is expected (RFC 4488 §4)", [ok.origin.frame])
        if action in ("notify-trying", "notify-final") and ok is not None and not branch.notifies:
            # The 2xx created the implicit subscription (RFC 4488 §4: without Refer-Sub: false "an implicit
            # subscription is created as in the default case"), and then NOTIFYs are due (RFC 3515 §2.4.4).
            since = max([ok.time] + ([branch.join.final.time] if branch.join and branch.join.final else []))
            cut = self.cut_short(since, self.roles.node(target))
            said = (ok.origin.get("Refer-Sub") or "").strip()
            what = f"Refer-Sub: {said}" if said else "no Refer-Sub: false"
            if cut is None:
                return ("fail", f"no NOTIFY from {target} to UE-1 although its {ok.status} to the REFER (frame "
                        f"{ok.origin.frame}) has {what}, so an implicit subscription exists and NOTIFYs are "
                        "required (RFC 3515 §2.4.4, RFC 4488 §4, checklist §8c)", [ok.origin.frame])
            return ("inconclusive", f"no NOTIFY from {target} to UE-1 after its {ok.status} to the REFER (frame "
                    f"{ok.origin.frame}); {cut}", [ok.origin.frame])
        status, notify = branch.final_status, branch.final_notify
        if status is None or status < 300 or notify is None:
            return None
        frames = [notify.request.origin.frame]
        if action == "bye":
            return ("pass", f"the join failed ({target}'s final NOTIFY, frame {frames[0]}, reports {status}): UE-1 "
                    f"keeping the held call with {target} is expected (RFC 5589 §6, checklist §8g)", frames)
        if action in ("join", "join-answer", "media-alloc"):
            return ("inconclusive", f"{target} reports {status} in its final NOTIFY (frame {frames[0]}) and sent no "
                    "INVITE to the CS: the join was declined or failed before reaching the CS (checklist §8g)", frames)
        return None

    def step_logicals(self, step: Step) -> list[Logical]:
        """The hop copies a step's G checks judge: its request and/or responses/ACK per step.messages."""
        key = ("logicals", step.id)
        if key not in self._memo:
            self._memo[key] = self._step_logicals(step)
        return list(self._memo[key])  # type: ignore[call-overload]

    def rtp_to(self, dst: tuple[str, int]) -> list[RtpPacket]:
        """RTP packets sent to an address, in time order (indexed once per instance)."""
        return self._rtp_by("to").get(dst, [])

    def rtp_from(self, src: tuple[str, int]) -> list[RtpPacket]:
        """RTP packets sent from an address, in time order (indexed once per instance)."""
        return self._rtp_by("from").get(src, [])

    def _rtp_by(self, end: str) -> dict[tuple[str, int], list[RtpPacket]]:
        index = self._memo.get(("rtp", end))
        if index is None:
            built: dict[tuple[str, int], list[RtpPacket]] = {}
            for p in self.data.rtp:
                built.setdefault((p.dst, p.dport) if end == "to" else (p.src, p.sport), []).append(p)
            index = self._memo[("rtp", end)] = built
        return index  # type: ignore[return-value]

    @property
    def last_time(self) -> float:
        """Time of the last SIP message or RTP packet (where media windows end; computed once).
        ValueError, as max() of nothing, when there is neither."""
        end = self._memo.get(("last-time", ""))
        if end is None:
            end = self._memo[("last-time", "")] = max([m.time for m in self.data.messages] +
                                                       [p.time for p in self.data.rtp])
        return end  # type: ignore[return-value]

    def _step_logicals(self, step: Step) -> list[Logical]:
        ex, _ = self.subject(step)
        if ex is None or not step.messages:
            return []
        out: list[Logical] = []
        if not step.messages[0].isdigit():  # the step starts with its request (hold may be an UPDATE)
            out.append(ex.request)
        if any(m.isdigit() for m in step.messages):
            out += ex.responses
        if "ACK" in step.messages:
            out += ex.acks
        return out


def bind(data: CaptureData, model: Model, roles: Roles, factory_uri: str | None = None) -> Evidence:
    ev = Evidence(data, model, roles, factory_uri)
    ue1 = roles.node("UE-1")
    for target in ("UE-2", "UE-3"):
        ev.branches[target] = _branch(ev, target)
    ev.d12 = ev.branches["UE-2"].dialog
    ev.d13 = ev.branches["UE-3"].dialog
    for key, d in (("d12", ev.d12), ("d13", ev.d13)):
        if d is not None and ev.creator(d) is None:
            ev.why[key] = (f"the dialog (Call-ID {d.call_id}) is in the capture but its initial INVITE is not "
                           "(capture started mid-call)")
    if ev.d12 is None:
        ev.why["d12"] = "no INVITE dialog between UE-1 and UE-2 in the capture"
    if ev.d13 is None:
        ev.why["d13"] = ("UE-3 not in the capture (no second REFER target)" if roles.node("UE-3") is None
                         else "no INVITE dialog between UE-1 and UE-3 in the capture")
    ev.conf = _conf(ev, ue1)
    ev.hold = _hold(ev)
    return ev


def _parties(ev: Evidence, dialog: Dialog) -> set[str]:
    creator = ev.creator(dialog)
    if creator is not None:
        return {ev.node(creator.request.sender), ev.node(creator.request.receiver)}
    return {ev.node(ep) for tag in dialog.tags if (ep := ev.model.tag_owner.get(tag))}


def _invite_dialog(ev: Evidence, a: str | None, b: str | None, refer: Exchange | None) -> Dialog | None:
    if a is None or b is None:
        return None
    if refer is not None and refer.request.to_tag:
        d = ev.model.find_dialog(refer.request.call_id, {refer.request.from_tag, refer.request.to_tag})
        if d is not None and (d.creator is None or d.creator.method == "INVITE"):
            return d
    dialogs = [d for d in ev.model.dialogs if _parties(ev, d) == {a, b}
               and any(e.method == "INVITE" for e in d.exchanges)]
    return dialogs[0] if dialogs else None


def _branch(ev: Evidence, target: str) -> Branch:
    br = Branch(target)
    ue1, node = ev.roles.node("UE-1"), ev.roles.node(target)
    if node is None:
        br.why["refer"] = f"{target} not in the capture (UE-1 sent no REFER to a second element)" \
            if target == "UE-3" else f"{target} not in the capture"
        return br
    refers = [e for e in ev.model.requests("REFER") if ev.node(e.request.sender) == ue1
              and ev.node(e.final.sender if e.final else e.request.receiver) == node]
    accepted = [e for e in refers if e.ok is not None]
    br.refer = (accepted or refers or [None])[0]
    br.dialog = _invite_dialog(ev, ue1, node, br.refer)
    if br.refer is None:
        br.why["refer"] = f"no REFER from UE-1 to {target}"
        for key in ("notify", "join", "final"):
            br.why[key] = f"no REFER from UE-1 to {target}, so no subscription or join to look for"
    else:
        br.notifies = _notifies(ev, br)
        br.join = _join(ev, br)
    if br.refer is not None and not br.notifies:
        br.why["notify"] = f"no NOTIFY from {target} to UE-1 for the REFER in frame {br.refer.request.origin.frame}"
        br.why["final"] = br.why["notify"]
    if br.dialog is not None:
        byes = [e for e in br.dialog.exchanges if e.method == "BYE"]
        if not byes:
            # A BYE with a broken From/To tag is not matched to the dialog by tags, but it is still
            # the attempt to end this call: judge it (G1, DLG-1 say what is wrong with it).
            byes = [e for e in ev.model.requests("BYE") if e.request.call_id == br.dialog.call_id
                    and e.request.time >= br.dialog.time]
        mine = [e for e in byes if ev.node(e.request.sender) == ue1]
        br.bye = (mine or byes or [None])[0]
    else:
        br.why["bye"] = f"no INVITE dialog between UE-1 and {target}, so no BYE to look for"
    return br


def _notifies(ev: Evidence, br: Branch) -> list[Exchange]:
    refer = br.refer
    assert refer is not None
    node, ue1 = ev.roles.node(br.target), ev.roles.node("UE-1")
    # Addressed to UE-1, or in the REFER's dialog (Call-ID and To tag, RFC 6665 §4.4.1) when the capture
    # lacks the hop that delivered it (cut short, or taken at a proxy).
    candidates = [e for e in ev.model.requests("NOTIFY")
                  if ev.node(e.request.sender) == node and e.request.time >= refer.request.time
                  and (ev.node(e.request.receiver) == ue1 or (e.request.call_id == refer.request.call_id
                                                             and e.request.to_tag == refer.request.from_tag))]

    # Several REFERs in one dialog are told apart by Event id (RFC 3515 §2.4.6); with a single one,
    # a wrong id is still this subscription's NOTIFY and NOT-1 says what is wrong with it.
    # Only REFERs that got a 2xx created a subscription: a 401/407-challenged copy does not count.
    several = sum(1 for e in ev.model.requests("REFER") if e.request.call_id == refer.request.call_id
                  and not refer_rejected(e)) > 1

    def in_refer_dialog(e: Exchange) -> bool:
        r = e.request
        return r.call_id == refer.request.call_id and r.to_tag == refer.request.from_tag
    subscribed = {ev_.package.lower() for s in ev.model.requests("SUBSCRIBE")
                  if s.request.call_id == refer.request.call_id and s.request.from_tag == refer.request.from_tag
                  and (ev_ := event_of(s.request.origin)) is not None}

    def is_refer_event(e: Exchange) -> bool:
        event = event_of(e.request.origin)
        if event is None:
            return True  # a NOTIFY without Event is still this subscription's, and NOT-1 says so
        if event.package.lower() != "refer":
            # Another package's NOTIFY only when a SUBSCRIBE set that package up in this dialog;
            # otherwise it is this subscription's NOTIFY with a wrong Event (NOT-1 fails it).
            return in_refer_dialog(e) and event.package.lower() not in subscribed
        return event.id is None or not several or event.id == str(refer.request.cseq_num)
    same_call = [e for e in candidates if e.request.call_id == refer.request.call_id and is_refer_event(e)]
    if same_call:
        return same_call
    return [e for e in candidates if (ev_ := event_of(e.request.origin)) is not None and ev_.package.lower() == "refer"]


def _join(ev: Evidence, br: Branch) -> Exchange | None:
    refer = br.refer
    assert refer is not None
    node, cs = ev.roles.node(br.target), ev.roles.node("CS")
    target = br.refer_to
    invites = [e for e in ev.model.requests("INVITE") if ev.node(e.request.sender) == node
               and e.request.to_tag is None and e.request.time >= refer.request.time]
    exact = [e for e in invites if same_target(e.request.origin.uri, target)]
    to_cs = [e for e in invites if cs is not None and ev.node(e.final.sender if e.final else e.request.receiver) == cs]
    join = (exact or to_cs or [None])[0]
    if join is None:
        br.why["join"] = (f"no new INVITE from {br.target} after the REFER (frame {refer.request.origin.frame}) "
                          f"to the Refer-To URI {target.uri if target else '?'}")
    return join


def _hold(ev: Evidence) -> Exchange | None:
    d12, ue1 = ev.d12, ev.roles.node("UE-1")
    if d12 is None:
        ev.why["hold"] = ev.why.get("d12", "no D12")
        return None
    offers = [e for e in d12.in_dialog() if e.method in ("INVITE", "UPDATE") and ev.node(e.request.sender) == ue1]
    holds = [e for e in offers if is_hold_offer(e)]
    if holds:
        return holds[0]
    # No hold-looking offer: UE-1's offer in D12 made before it called UE-3 / the factory is the hold
    # attempt of step 2 (checklist O1), and HOLD-1 fails it for its direction.
    starts = [ex.request.time for ex in (ev.creator(ev.d13), ev.conf) if ex is not None]
    attempts = [e for e in offers if e.request.origin.sdp is not None
                and (not starts or e.request.time < min(starts))]
    if attempts:
        return attempts[0]
    seen = ", ".join(f"{e.method} frame {e.request.origin.frame} "
                     f"({e.request.origin.sdp.direction() if e.request.origin.sdp else 'no SDP'})" for e in offers)
    others = [e for e in d12.in_dialog() if e.method in ("INVITE", "UPDATE") and is_hold_offer(e)]
    extra = f"; UE-2 sent its own hold offer (frame {others[0].request.origin.frame})" if others else ""
    ev.why["hold"] = ("no re-INVITE/UPDATE from UE-1 in D12 with a hold offer (a=sendonly/inactive or c=0.0.0.0)"
                      + (f"; seen: {seen}" if seen else "") + extra)
    return None


def _conf(ev: Evidence, ue1: str | None) -> Exchange | None:
    cs = ev.roles.node("CS")
    if cs is None:
        ev.why["conf"] = "no CS in the capture (no 2xx with ;isfocus and no INVITE to a Refer-To URI)"
        return None
    invites = [e for e in ev.model.requests("INVITE") if ev.node(e.request.sender) == ue1
               and e.request.to_tag is None and ev.node(e.final.sender if e.final else e.request.receiver) == cs]
    focus = [e for e in invites if e.ok is not None and has_isfocus(e.ok.origin.name_addr("Contact"))]
    answered = [e for e in invites if e.ok is not None]
    conf = (focus or answered or invites or [None])[0]
    if conf is None:
        ev.why["conf"] = "no INVITE from UE-1 to the CS in the capture"
    else:
        ev.redirect = _redirect(ev, conf)
    return conf


def _redirect(ev: Evidence, conf: Exchange) -> Exchange | None:
    """RFC 4579 §5.4 (checklist 12~14, MAY): the focus answered an earlier INVITE of UE-1 (same Call-ID,
    or to another URI) with a 3xx whose Contact is conf's Request-URI with isfocus; UE-1 asked for
    the conference at that earlier INVITE's Request-URI."""
    r = conf.request
    for e in ev.model.requests("INVITE"):
        final = e.final
        if e is conf or e.request.to_tag is not None or e.request.time >= r.time or final is None \
                or not 300 <= (final.status or 0) < 400:
            continue
        if e.request.call_id != r.call_id and ev.node(e.request.sender) != ev.node(r.sender):
            continue
        contacts = (name_addr(v) for v in final.origin.get_all("Contact"))
        if any(has_isfocus(c) and same_target(r.origin.uri, c) for c in contacts):
            return e
    return None
