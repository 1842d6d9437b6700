"""UE-1, UE-2, UE-3: SIP user agents with an asyncio API the choreography awaits.

Active side (what the flow asks a UE to do): `call`, `hold`, `refer`, `bye`.
Passive side (what any conformant UE does when asked): auto-answer INVITE and re-INVITE with an
RFC 3264 §6.1 answer, 200 to BYE, and act on an in-dialog REFER as a transferee (202, NOTIFY 100,
INVITE the Refer-To URI with Referred-By copied, final NOTIFY) — the behaviour baresip shows
(shared/notes-peers.md). As a referrer a UE is a lenient receiver: it answers every NOTIFY of a
referral 200 even when it is malformed, so a fault injected at the peer does not end the flow.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from harness.agents.errors import FlowError, FlowTimeout
from harness.agents.media import MediaLeg
from harness.agents.topology import USER, Topology
from harness.agents.ua import ALLOW, SDP_TYPE, WAIT, SipAgent
from harness.net.udp import UdpSocket
from harness.rtp.g711 import PCMA, PCMU
from harness.rtp.rtcp import INTERVAL
from harness.sip.dialog import Dialog, DialogError
from harness.sip.errors import SipError
from harness.sip.headers import EventHeader, NameAddr, SipUri, uri_without
from harness.sip.ids import new_call_id, new_tag
from harness.sip.message import SipMessage
from harness.sip.sdp import Sdp, answer_direction, offer_audio
from harness.sip.subscription import ReferNotifier, ReferSubscriber, SubscriptionError, SubscriptionUpdate
from harness.sip.transaction import RequestReceived

TONES = {"UE-1": 400.0, "UE-2": 650.0, "UE-3": 1000.0}
NOTIFY_MARGIN = 0.05  # seconds beyond RFC 3515 §3.10's one NOTIFY per second
# How long stop() lets a REFER whose INVITE has its outcome send the final NOTIFY: the NOTIFY spacing
# (one a second) and the first NOTIFY's answer, which the final one waits for.
FINAL_NOTIFY_GRACE = 3.0


@dataclass(eq=False)
class Referral:
    """A REFER this UE sent, and the implicit subscription it created (RFC 3515 §2.4.4)."""

    call: Call
    refer: SipMessage
    subscriber: ReferSubscriber
    response: SipMessage | None = None
    notifies: list[SipMessage] = field(default_factory=list)
    updates: list[SubscriptionUpdate | None] = field(default_factory=list)  # None: NOTIFY we could not read
    problems: list[str] = field(default_factory=list)
    final_status: int | None = None

    @property
    def event_id(self) -> str:
        return self.subscriber.id

    async def wait_first_notify(self, timeout: float = WAIT) -> SipMessage:
        agent = self.call.agent
        return await agent.wait_until(lambda: self.notifies[0] if self.notifies else None, timeout,
                                      f"{agent.role} did not receive a NOTIFY for its REFER")

    async def wait_final(self, timeout: float = WAIT) -> int:
        """The sipfrag status of the final NOTIFY (e.g. 200), once it arrived."""
        agent = self.call.agent
        await agent.wait_until(lambda: self.final_status is not None, timeout,
                               f"{agent.role} did not receive the final NOTIFY for its REFER")
        assert self.final_status is not None
        return self.final_status


@dataclass(eq=False)
class IncomingReferral:
    """A REFER this UE received and is acting on (the transferee's side)."""

    call: Call
    refer: SipMessage
    target: str
    notifier: ReferNotifier
    join: Call | None = None
    final_status: int | None = None
    notifies_sent: int = 0
    last_notify: asyncio.Future[SipMessage] | None = None  # the latest NOTIFY's final response
    acting: asyncio.Task[None] | None = None  # the INVITE and the final NOTIFY (RFC 3515 §2.4.2)


@dataclass(eq=False)
class Call:
    """One dialog leg of a UE, with its media."""

    agent: UserEquipment
    peer: str  # the remote party's AoR (To of our INVITE, From of theirs)
    invite: SipMessage
    media: MediaLeg
    local_sdp: Sdp
    outgoing: bool
    dialog: Dialog | None = None
    remote_sdp: Sdp | None = None
    remote_contact: str | None = None  # the Contact header value the peer gave (isfocus lives here)
    acked: bool = False  # UAS: the ACK for our 2xx arrived; UAC: we sent the ACK
    ended: bool = False
    referrals: list[Referral] = field(default_factory=list)

    @property
    def call_id(self) -> str:
        return str(self.invite.call_id)


class UserEquipment(SipAgent):
    """A UE on its own loopback IP, reaching the network through its preloaded outbound route."""

    def __init__(self, role: str, topology: Topology, faults: frozenset[str] = frozenset(),
                 tone_hz: float | None = None, wait: float = WAIT, rtcp_interval: float = INTERVAL) -> None:
        super().__init__(role, topology.ip(role), topology.port(role), faults, topology.rtp_base_port,
                         topology.transport(role))
        self.topology = topology
        self.aor = topology.user_uri(role)
        self.contact = f"<{topology.contact(role)}>"
        self.route = topology.outbound_route(role)
        self.payload_type = PCMU  # G.711 flavour offered (a SUT profile's [media] codec may say PCMA)
        # Header fields for every out-of-dialog request, e.g. P-Preferred-Identity (a SUT profile's [ims]).
        self.initial_headers: list[tuple[str, str]] = []
        self.tone_hz = tone_hz if tone_hz is not None else TONES.get(role, 400.0)
        self.wait = wait
        self.rtcp_interval = rtcp_interval
        self.calls: list[Call] = []
        self.referred: list[IncomingReferral] = []
        self._rng = random.Random()

    def fault(self, name: str, peer: str | None = None) -> bool:
        """Commit fault `name` only if it is ours ("ue2-..." for UE-2); UE-1's faults apply only on its
        leg towards UE-2 (faults.py), so the UE-3 branch stays clean for comparison."""
        if name not in self.faults or not name.startswith(self.role.lower().replace("-", "") + "-"):
            return False
        if name.startswith("ue1-") and peer is not None:
            return peer == self.topology.user_uri("UE-2")
        return True

    async def stop(self) -> None:
        # RFC 3515 §2.4.5: a REFER acted on ends with a final NOTIFY, also when the flow stops first (a
        # failed join reported at once); its INVITE has its outcome, only the NOTIFY spacing is left.
        # A join still under way is abandoned with the agent: its wait may be a minute on a lossy link.
        owed = [r.acting for r in self.referred
                if r.acting is not None and not r.acting.done() and r.final_status is not None]
        if owed:
            await asyncio.wait(owed, timeout=FINAL_NOTIFY_GRACE)
        await asyncio.gather(*(c.media.stop() for c in self.calls), return_exceptions=True)
        await super().stop()

    # --- helpers ----------------------------------------------------------------------------------

    def _find_call(self, msg: SipMessage) -> Call | None:
        for call in self.calls:
            if call.dialog is not None and call.dialog.matches(msg):
                return call
        return None

    def _new_request(self, method: str, uri: str, headers: list[tuple[str, str]], body: bytes,
                     to: str | None = None) -> SipMessage:
        """An out-of-dialog request: new Call-ID and From tag, preloaded outbound Route (§8.1.1).
        `to`: the To URI when it is not the Request-URI (a tel URI identity, §8.1.1.2)."""
        out: list[tuple[str, str]] = []
        if self.route:
            out.append(("Route", ", ".join(self.route)))
        out += [("From", f"<{self.aor}>;tag={new_tag()}"), ("To", f"<{to or uri}>"),
                ("Call-ID", new_call_id(self.ip)), ("CSeq", f"1 {method}")]
        return SipMessage.request(method, uri, out + self.initial_headers + headers, body, content_length=True)

    def _new_sdp(self, port: int, direction: str) -> Sdp:
        return offer_audio(self.ip, port, self._rng.randrange(1, 2**31), 1, direction, pt=self.payload_type)

    # --- active side ------------------------------------------------------------------------------

    def _media_leg(self, rtp: UdpSocket, rtcp: UdpSocket) -> MediaLeg:
        return MediaLeg(rtp, rtcp, self.tone_hz, cname=f"{USER[self.role]}@{self.ip}",
                        rtcp_interval=self.rtcp_interval)

    def _join_media_faults(self, media: MediaLeg, joining: IncomingReferral) -> None:
        """Media faults committed only on the leg a transferee opens to the conference."""
        if self.fault("ue2-wrong-payload-type"):
            media.payload_type_override = PCMA  # and A-law encoded, on a leg that negotiated PCMU
        if self.fault("ue3-rtp-to-stale-address") and joining.call.remote_sdp is not None:
            media.remote_override = joining.call.remote_sdp.media_address(0)  # the referrer's old leg

    async def call(self, target_uri: str, extra_headers: list[tuple[str, str]] | None = None,
                   timeout: float | None = None, joining: IncomingReferral | None = None,
                   to: str | None = None) -> Call:
        """INVITE with a sendrecv offer, await 200 (1xx tolerated), ACK; media starts.
        `joining`: the REFER this call acts on (RFC 3515 §2.4.2), if any; `to`: the callee's identity
        when it is not the Request-URI (e.g. its tel URI)."""
        timeout = timeout or self.wait
        media = self._media_leg(*await self.bind_rtp())
        if joining is not None:
            self._join_media_faults(media, joining)
        sdp = self._new_sdp(media.port, "sendrecv")
        headers = [("Contact", self.contact), ("Allow", ALLOW), *(extra_headers or []),
                   ("Content-Type", SDP_TYPE)]
        invite = self._new_request("INVITE", target_uri, headers, bytes(sdp), to)
        call = Call(self, to or str(SipUri.parse(target_uri)), invite, media, sdp, outgoing=True)
        self.calls.append(call)
        response = await self.request(invite, timeout, f"{self.role} did not receive a final response to "
                                                       f"INVITE {target_uri}")
        if not 200 <= (response.status or 0) < 300:
            call.ended = True
            await media.stop()
            raise FlowError(f"{self.role}: INVITE {target_uri} answered {response.status} {response.reason}",
                            response.status, response.reason)
        call.dialog = Dialog.uac(invite, response, local_contact=self.contact)
        contacts = response.get_all("Contact")
        call.remote_contact = contacts[0] if contacts else None
        call.remote_sdp = Sdp.parse(response.body) if response.body else None
        media.apply(call.local_sdp, call.remote_sdp)
        self.send_ack(call.dialog.create_ack(invite.cseq[0]))
        call.acked = True
        media.start()
        self.changed()
        return call

    async def hold(self, call: Call, timeout: float | None = None) -> SipMessage:
        """re-INVITE with a=sendonly and o= version + 1 (RFC 3264 §8.4); returns the 200."""
        assert call.dialog is not None
        sdp = call.local_sdp.with_direction("sendonly").bump_version()
        reinvite = call.dialog.create_request(
            "INVITE", [("Contact", self.contact), ("Allow", ALLOW), ("Content-Type", SDP_TYPE)], bytes(sdp))
        response = await self.request(reinvite, timeout or self.wait,
                                      f"{self.role} did not receive a final response to the hold re-INVITE")
        if not 200 <= (response.status or 0) < 300:
            raise FlowError(f"{self.role}: hold re-INVITE answered {response.status} {response.reason}")
        call.dialog.receive_response(response)
        self.send_ack(call.dialog.create_ack(reinvite.cseq[0]))
        call.local_sdp = sdp
        call.remote_sdp = Sdp.parse(response.body) if response.body else call.remote_sdp
        call.media.apply(call.local_sdp, call.remote_sdp)
        self.changed()
        return response

    async def refer(self, call: Call, refer_to: str, timeout: float | None = None) -> Referral:
        """In-dialog REFER (one Refer-To, Referred-By, Contact); returns once 202/200 arrived."""
        assert call.dialog is not None
        headers = [("Refer-To", f"<{refer_to}>")]
        if self.fault("ue1-two-refer-to", call.peer):
            headers.append(("Refer-To", f"<{refer_to}>"))
        headers.append(("Referred-By", f"<{self.aor}>"))
        if self.fault("ue1-two-referred-by", call.peer):
            headers.append(("Referred-By", f"<{self.aor}>"))
        if not self.fault("ue1-refer-no-contact", call.peer):
            headers.append(("Contact", self.contact))
        refer = call.dialog.create_request("REFER", headers)
        # Registered before sending: the first NOTIFY may overtake the 202 (RFC 3515 §2.4.4).
        referral = Referral(call, refer, ReferSubscriber(call.dialog, refer))
        call.referrals.append(referral)
        response = await self.request(refer, timeout or self.wait,
                                      f"{self.role} did not receive a final response to REFER")
        referral.response = response
        if not 200 <= (response.status or 0) < 300:
            raise FlowError(f"{self.role}: REFER answered {response.status} {response.reason}")
        call.dialog.receive_response(response)
        self.changed()
        return referral

    async def bye(self, call: Call, timeout: float | None = None) -> bool:
        """BYE in the call's dialog; False when a fault says to skip it."""
        if self.fault("ue1-skip-bye-ue2", call.peer):
            return False
        assert call.dialog is not None
        bye = call.dialog.create_request("BYE")
        call.ended = True
        await call.media.stop()
        response = await self.request(bye, timeout or self.wait,
                                      f"{self.role} did not receive a final response to BYE")
        if not 200 <= (response.status or 0) < 300:
            raise FlowError(f"{self.role}: BYE answered {response.status} {response.reason}")
        self.changed()
        return True

    # --- waits for the choreography ---------------------------------------------------------------

    async def wait_call_from(self, peer: str, timeout: float | None = None) -> Call:
        """An incoming call from `peer` whose ACK arrived."""
        def found() -> Call | None:
            return next((c for c in self.calls if not c.outgoing and c.peer == peer and c.acked), None)
        return await self.wait_until(found, timeout or self.wait,
                                     f"{self.role} did not receive an INVITE and ACK from {peer}")

    async def wait_join(self, timeout: float | None = None) -> Call:
        """The call this UE placed to the Refer-To target, once established (ACK sent)."""
        def joined() -> Call | None:
            for incoming in self.referred:
                if incoming.join is not None and incoming.join.acked:
                    return incoming.join
                if incoming.final_status is not None and incoming.final_status >= 300:
                    raise FlowError(f"{self.role}: joining {incoming.target} failed with {incoming.final_status}")
            return None
        return await self.wait_until(joined, timeout or self.wait,
                                     f"{self.role} did not establish the call to the Refer-To target")

    # --- passive side -----------------------------------------------------------------------------

    def handle_request(self, msg: SipMessage, event: RequestReceived) -> None:
        method = msg.method
        if method == "INVITE" and msg.to_tag is None:
            self.spawn(self._answer_new(msg), "answer INVITE")
            return
        call = self._find_call(msg)
        if method == "ACK":
            if call is not None:
                call.acked = True
                self.changed()
            return
        if call is None or call.dialog is None:
            self.respond(msg, 481, "Call/Transaction Does Not Exist")
            return
        try:
            call.dialog.receive_request(msg)
        except DialogError as exc:
            self.respond(msg, exc.status, "Server Internal Error" if exc.status == 500 else "Rejected")
            return
        if method == "INVITE":
            self._answer_reinvite(msg, call)
        elif method == "BYE":
            self.respond(msg, 200, "OK")
            call.ended = True
            self.spawn(call.media.stop(), "stop media")
            self.changed()
        elif method == "REFER":
            self._accept_refer(msg, call)
        elif method == "NOTIFY":
            self._on_notify(msg, call)
        elif method == "OPTIONS":
            self.respond(msg, 200, "OK", headers=[("Allow", ALLOW)])
        else:
            self.respond(msg, 405, "Method Not Allowed", headers=[("Allow", ALLOW)])

    async def _answer_new(self, invite: SipMessage) -> None:
        """200 with an RFC 3264 §6.1 answer; media to the offer's c=/m= address."""
        offer = Sdp.parse(invite.body)
        media = self._media_leg(*await self.bind_rtp())
        sdp = self._new_sdp(media.port, answer_direction(offer.direction(0)))
        tag = new_tag()
        dialog = Dialog.uas(invite, tag, self.contact)
        contacts = invite.get_all("Contact")
        call = Call(self, str(invite.from_addr.uri), invite, media, sdp, outgoing=False, dialog=dialog,
                    remote_sdp=offer, remote_contact=contacts[0] if contacts else None)
        self.calls.append(call)
        self.respond(invite, 200, "OK", to_tag=tag, body=bytes(sdp), headers=[
            ("Contact", self.contact), ("Allow", ALLOW), ("Content-Type", SDP_TYPE)])
        media.apply(sdp, offer)
        media.start()
        self.changed()

    def _answer_reinvite(self, msg: SipMessage, call: Call) -> None:
        offer = Sdp.parse(msg.body) if msg.body else None
        sdp = call.local_sdp
        if offer is not None:
            offered = offer.direction(0)
            direction = answer_direction(offered)
            if offered == "sendonly" and self.fault("ue2-hold-answer-sendrecv"):
                direction = "sendrecv"
            if direction != sdp.direction(0):
                sdp = sdp.with_direction(direction).bump_version()  # RFC 3264 §8: changed SDP, version + 1
            if direction == "recvonly" and self.fault("ue2-keeps-sending-on-hold"):
                call.media.force_send = True
        self.respond(msg, 200, "OK", body=bytes(sdp), headers=[
            ("Contact", self.contact), ("Allow", ALLOW), ("Content-Type", SDP_TYPE)])
        call.local_sdp = sdp
        if offer is not None:
            call.remote_sdp = offer
        call.media.apply(call.local_sdp, call.remote_sdp)
        self.changed()

    # --- transferee (REFER received) -------------------------------------------------------------

    def _accept_refer(self, refer: SipMessage, call: Call) -> None:
        assert call.dialog is not None
        if self.fault("ue2-ignores-refer"):
            return  # a silent peer: the REFER's server transaction never gets a response
        if self.fault("ue3-dies-on-refer"):
            self.die()
            return
        refer_tos = refer.get_all("Refer-To")
        if not refer_tos:
            self.respond(refer, 400, "Missing Refer-To")  # RFC 3515 §2.4.1
            return
        # Lenient: several Refer-To values (RFC 3515 §2.4.2 says 400) are still acted on, first one,
        # so the flow continues and the verifier, not this UE, reports REF-1.
        target = NameAddr.parse(refer_tos[0]).uri
        if not isinstance(target, SipUri):
            self.respond(refer, 416, "Unsupported URI Scheme")
            return
        self.respond(refer, 202, "Accepted", headers=[("Contact", self.contact)])
        notifier = ReferNotifier(call.dialog, refer, expires=60, contact=self.contact)
        incoming = IncomingReferral(call, refer, str(uri_without(target, ("method",))), notifier)
        self.referred.append(incoming)
        self._send_notify(incoming, 100, "Trying", final=False)
        incoming.acting = self.spawn(self._act_on_refer(incoming), "act on REFER")
        self.changed()

    def _send_notify(self, incoming: IncomingReferral, status: int, reason: str, final: bool) -> None:
        now = asyncio.get_running_loop().time()
        notify = incoming.notifier.notify(status, reason, final, now)
        if self.fault("ue2-notify-omit-event"):
            notify.remove("Event")
        if incoming.notifies_sent == 0 and self.fault("ue2-bad-sipfrag"):
            notify.body = b"SIP/2.0\r\n"  # a Status-Line with no code (RFC 3515 §2.4.5 violated)
        incoming.notifies_sent += 1
        if final and self.fault("ue2-final-notify-active"):
            notify.set("Subscription-State", "active;expires=60")
        fut = self.send_request(notify)
        incoming.last_notify = fut
        self.spawn(self._expect_2xx(fut, "NOTIFY"), "NOTIFY")

    async def _expect_2xx(self, fut: asyncio.Future[SipMessage], what: str) -> None:
        response = await asyncio.wait_for(fut, self.wait)
        if not 200 <= (response.status or 0) < 300:
            self.errors.append(f"{what} answered {response.status} {response.reason}")

    async def _act_on_refer(self, incoming: IncomingReferral) -> None:
        """RFC 3515 §2.4.2: INVITE the Refer-To URI (new dialog, outbound route), Referred-By copied
        unchanged (RFC 3892 §2.2); report the outcome in the final NOTIFY."""
        extra: list[tuple[str, str]] = []
        if not self.fault("ue2-join-drop-referred-by"):
            extra = [(h.name, h.unfolded) for h in incoming.refer.headers if h.canonical == "Referred-By"]
        status, reason = 500, "Server Internal Error"
        try:
            incoming.join = await self.call(incoming.target, extra_headers=extra, joining=incoming)
            status, reason = 200, "OK"
        except FlowTimeout:
            status, reason = 408, "Request Timeout"
        except FlowError as exc:
            if exc.status is not None and exc.status >= 300:
                status, reason = exc.status, exc.reason or "Failed"
        finally:
            incoming.final_status = status
            self.changed()
        # RFC 3515 §3.10: no more than one NOTIFY per second, the final one included.
        loop = asyncio.get_running_loop()
        # A small margin: the rate is judged at every hop of the capture, where the first NOTIFY may
        # have waited for a TCP connection that the final one finds open.
        await asyncio.sleep(max(0.0, incoming.notifier.next_allowed(loop.time()) - loop.time()) + NOTIFY_MARGIN)
        # One NOTIFY outstanding per subscription: over a lossy link a final NOTIFY overtaking the
        # unanswered first one would make the subscriber refuse that one's retransmissions with 500
        # (its CSeq is now lower, RFC 3261 §12.2.2). Bounded: the transaction ends by Timer F.
        if incoming.last_notify is not None and not incoming.last_notify.done():
            await asyncio.wait({incoming.last_notify}, timeout=self.wait)
        self._send_notify(incoming, status, reason, final=True)

    # --- referrer (NOTIFY received) --------------------------------------------------------------

    def _on_notify(self, notify: SipMessage, call: Call) -> None:
        referral = self._referral_for(notify, call)
        if referral is None:
            self.respond(notify, 481, "Subscription Does Not Exist")
            return
        update: SubscriptionUpdate | None
        try:
            update = referral.subscriber.receive_notify(notify)
        except SubscriptionError as exc:
            referral.problems.append(exc.reason)
            update = self._lenient_update(referral, notify)
        self.respond(notify, 200, "OK")
        referral.notifies.append(notify)
        referral.updates.append(update)
        if update is not None and referral.final_status is None and (update.final or update.status_code >= 200):
            referral.final_status = update.status_code
        self.changed()

    @staticmethod
    def _lenient_update(referral: Referral, notify: SipMessage) -> SubscriptionUpdate | None:
        """Read what a malformed NOTIFY still says (no Event; a sipfrag status line ended by a bare LF,
        as baresip sends), or None when nothing is readable. The verifier, not this UE, judges the form."""
        patched = notify
        if notify.get("Event") is None:
            patched = notify.copy()
            patched.set("Event", f"refer;id={referral.event_id}")
        subscriber = referral.subscriber
        subscriber.strict = False
        try:
            return subscriber.receive_notify(patched)
        except (SubscriptionError, SipError):
            return None
        finally:
            subscriber.strict = True

    @staticmethod
    def _referral_for(notify: SipMessage, call: Call) -> Referral | None:
        """The referral a NOTIFY reports on: by Event id, else the latest (no id, or no Event at all)."""
        try:
            event_id = EventHeader.parse(notify.get("Event") or "").id if notify.get("Event") else None
        except SipError:
            event_id = None
        for referral in reversed(call.referrals):
            if event_id is None or referral.event_id == event_id:
                return referral
        return None
