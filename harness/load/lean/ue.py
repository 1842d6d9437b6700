"""A lean UE: the same A.2.1 behaviour as harness/agents/ue.py (call, hold, refer, bye; answer
INVITE and re-INVITE, accept REFER as a transferee with NOTIFY 100 and a final NOTIFY at most one
per second, answer NOTIFY and BYE), on bytes. What it is asked to do returns a Signal (signal.py):
the lean choreography (conduct.py, driven by the step table) yields them, and each is set in the
datagram callback that brings its answer.

Media: with `media` a call binds its RTP/RTCP sockets and runs the reference MediaLeg exactly as the
reference UE does (the verifier judges it); without, the SDP names a port nobody binds and no RTP
is sent (a signalling-only load, like SIPp's built-in uac/uas).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field

from harness.agents.errors import FlowError, FlowTimeout
from harness.agents.media import MediaLeg
from harness.agents.tasks import TaskSet
from harness.agents.topology import USER, Topology
from harness.agents.ua import ALLOW, SDP_TYPE, WAIT
from harness.agents.ue import NOTIFY_MARGIN, TONES
from harness.load.lean.dialog import (
    Board,
    LeanDialog,
    Sender,
    answer_other,
    hop_of,
    refuse,
    session_id,
    token,
)
from harness.load.lean.endpoint import LeanEndpoint, TransactionTimeout
from harness.load.lean.forms import SDP_FORMS
from harness.load.lean.head import Head, HeadError, uri_of
from harness.load.lean.signal import Flow, Signal, all_done, clock, from_coroutine, play, wait
from harness.net.udp import Addr, open_rtp_pair
from harness.rtp.rtcp import INTERVAL
from harness.sip.sdp import Sdp, answer_direction

ALLOW_B, SDP_B = ALLOW.encode(), SDP_TYPE.encode()
SIPFRAG = b"message/sipfrag;version=2.0"
_DIRECTION = re.compile(rb"^a=(sendrecv|sendonly|recvonly|inactive)[ \t]*\r?$", re.M)
_EVENT_ID = re.compile(rb";[ \t]*id[ \t]*=[ \t]*([^; \t]+)", re.I)


def sdp_direction(body: bytes) -> str:
    """The (first) direction attribute of an SDP body, sendrecv when none (RFC 3264 §5.1)."""
    found = _DIRECTION.search(body)
    return found.group(1).decode() if found else "sendrecv"


@dataclass(eq=False)
class LeanCall:
    """One dialog leg of a lean UE; its SDP as (session id, version, direction) and the body sent."""

    peer: str
    call_id: str
    outgoing: bool
    port: int
    sess: int
    version: int
    direction: bytes
    body: bytes
    dialog: LeanDialog | None = None
    leg: MediaLeg | None = None
    remote_sdp: Sdp | None = None
    remote_contact: str | None = None
    acked: bool = False
    ended: bool = False
    referrals: list[LeanReferral] = field(default_factory=list)


@dataclass(eq=False)
class LeanReferral:
    """A REFER this UE sent and its implicit subscription (RFC 3515 §2.4.4): `first` gets the first
    NOTIFY, `final` the status of the final one's sipfrag."""

    call: LeanCall
    event_id: bytes
    first: Signal[Head] = field(default_factory=Signal)
    final: Signal[int] = field(default_factory=Signal)
    referrer: str = "UE-1"
    response: Head | None = None
    notifies: int = 0


class LeanUe:
    """UE-1, UE-2 or UE-3 of one instance, on its own address."""

    def __init__(self, role: str, topology: Topology, media: bool = True, wait: float = WAIT,
                 rtcp_interval: float = INTERVAL) -> None:
        self.role = role
        self.ip, self.port = topology.ip(role), topology.port(role)
        self.aor = topology.user_uri(role)
        self.local = f"<{self.aor}>".encode()
        self.contact = f"<{topology.contact(role)}>".encode()
        # The extra fields of an offer or answer and of a 202, built once (every INVITE, re-INVITE
        # and their 200s carry the same three).
        self._sdp_fields: tuple[tuple[str, bytes], ...] = (("Contact", self.contact), ("Allow", ALLOW_B),
                                                           ("Content-Type", SDP_B))
        self._contact_field: tuple[tuple[str, bytes], ...] = (("Contact", self.contact),)
        self.route = [value.encode() for value in topology.outbound_route(role)]
        if not self.route:
            raise ValueError(f"{role} has no outbound route: the lean UEs reach the network through a proxy")
        self.first_hop = hop_of(uri_of(self.route[0]))
        self.media = media
        self.wait = wait
        self.tone_hz = TONES.get(role, 400.0)
        self.cname = f"{USER[role]}@{self.ip}"
        self.rtcp_interval = rtcp_interval
        self.calls: list[LeanCall] = []
        self.errors: list[str] = []
        self._next_port = topology.rtp_base_port
        self._dialogs: dict[bytes, LeanCall] = {}  # by Call-ID (one dialog per Call-ID here)
        self._acks: dict[tuple[bytes, bytes], tuple[bytes, Addr]] = {}
        self._board = Board()
        self._tasks = TaskSet(self.role, self.errors)  # media legs stopping (media on)
        self._acting: list[Signal[None]] = []  # REFERs being acted on: each owes a final NOTIFY
        self._ip_b = self.ip.encode()
        self.endpoint: LeanEndpoint | None = None
        self.out: Sender | None = None

    async def start(self) -> None:
        self.clock = clock()  # the running loop's
        self.endpoint = await LeanEndpoint(self.ip, self.port, self._request, self._stray, burst=1).open()
        self.endpoint.errors = self.errors
        self.out = Sender(self.endpoint, self.ip, self.port)

    async def stop(self) -> None:
        # RFC 3515 §2.4.5: a REFER being acted on ends with a final NOTIFY, also when the flow gave up
        # first (a failed join); those flows are bounded by their own waits.
        acting = [signal for signal in self._acting if not signal.done]
        if acting:
            with contextlib.suppress(FlowTimeout):
                await wait(self.clock.within(all_done(acting), 2 * self.wait + 1.0, f"{self.role}'s REFERs"))
        await self._tasks.cancel()
        legs = [c.leg.stop() for c in self.calls if c.leg is not None]
        if legs:  # one leg that fails to stop must not keep the others (or the socket) open
            await asyncio.gather(*legs, return_exceptions=True)
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None

    # --- media ------------------------------------------------------------------------------------

    def _open_media(self) -> tuple[int, MediaLeg | None]:
        if not self.media:
            port, self._next_port = self._next_port, self._next_port + 2
            return port, None
        rtp, rtcp = open_rtp_pair(self.ip, self._next_port)
        self._next_port = rtp.local[1] + 2
        return rtp.local[1], MediaLeg(rtp, rtcp, self.tone_hz, self.cname, self.rtcp_interval)

    def _set_sdp(self, call: LeanCall, version: int, direction: bytes) -> None:
        call.version, call.direction = version, direction
        call.body = SDP_FORMS[0].render(self._ip_b, call.port, call.sess, version, direction)

    def _apply(self, call: LeanCall, remote_body: bytes) -> None:
        """Media follows both SDPs (harness/agents/media.py); parsed only when media runs."""
        if call.leg is not None and remote_body:
            call.remote_sdp = Sdp.parse(remote_body)
            call.leg.apply(Sdp.parse(call.body), call.remote_sdp)

    # --- active side ------------------------------------------------------------------------------

    def call(self, target_uri: str, referred_by: bytes | None = None) -> Signal[LeanCall]:
        """INVITE with a sendrecv offer through the outbound route, the 2xx, ACK; media starts."""
        return play(self._calling(target_uri, referred_by))

    def _calling(self, target_uri: str, referred_by: bytes | None) -> Flow[LeanCall]:
        assert self.out is not None
        port, leg = self._open_media()
        call = LeanCall(str(target_uri), "", True, port, session_id(), 1, b"sendrecv", b"", leg=leg)
        self._set_sdp(call, 1, b"sendrecv")
        call_id = token(12) + b"@" + self._ip_b
        tag = token(6)
        from_value = self.local + b";tag=" + tag
        extra = [("Contact", self.contact), ("Allow", ALLOW_B)]
        if referred_by is not None:
            extra.append(("Referred-By", referred_by))
        extra.append(("Content-Type", SDP_B))
        uri = target_uri.encode()
        data, branch = self.out.new_request(b"INVITE", uri, self.route, from_value, b"<" + uri + b">", call_id, 1,
                                            extra, call.body)
        call.call_id = call_id.decode()
        self.calls.append(call)
        self._dialogs[call_id] = call
        response = yield from self._final(self.out.send(data, branch, self.first_hop, invite=True),
                                          f"{self.role} did not receive a final response to INVITE {target_uri}")
        if not 200 <= response.status < 300:
            call.ended = True
            if leg is not None:
                yield from_coroutine(leg.stop())
            raise FlowError(f"{self.role}: INVITE {target_uri} answered {response.status}", response.status,
                            "Failed")
        call.dialog = LeanDialog.uac(from_value, tag, response)
        call.remote_contact = response.contact.decode()
        self._ack(call, response)
        self._apply(call, response.body)
        call.acked = True
        if leg is not None:
            leg.start()
        return call

    def _ack(self, call: LeanCall, response: Head) -> None:
        """§13.2.2.4: the ACK for a 2xx, own branch, CSeq number of the INVITE; kept for retransmissions."""
        assert self.out is not None and call.dialog is not None
        data, _ = self.out.in_dialog(call.dialog, b"ACK", cseq=int(response.cseq))
        self._acks[(response.call_id, response.cseq)] = (data, call.dialog.hop)
        self.out.endpoint.send(data, call.dialog.hop)

    def _final(self, signal: Signal[Head], what: str) -> Flow[Head]:
        """The final response, within `wait`; Timer B/F's end as a FlowTimeout."""
        try:
            response: Head = yield self.clock.within(signal, self.wait, what)
        except TransactionTimeout:
            raise FlowTimeout(f"{what} (no final response within 64*T1)") from None
        return response

    def hold(self, call: LeanCall) -> Signal[Head]:
        """re-INVITE with a=sendonly and o= version + 1 (RFC 3264 §8.4); its 2xx."""
        return play(self._holding(call))

    def _holding(self, call: LeanCall) -> Flow[Head]:
        assert self.out is not None and call.dialog is not None
        self._set_sdp(call, call.version + 1, b"sendonly")
        data, branch = self.out.in_dialog(call.dialog, b"INVITE", self._sdp_fields, call.body)
        response = yield from self._final(self.out.send(data, branch, call.dialog.hop, invite=True),
                                          f"{self.role} did not receive a final response to the hold re-INVITE")
        if not 200 <= response.status < 300:
            raise FlowError(f"{self.role}: hold re-INVITE answered {response.status}")
        self._ack(call, response)
        self._apply(call, response.body)
        return response

    def refer(self, call: LeanCall, refer_to: str) -> Signal[LeanReferral]:
        """In-dialog REFER (one Refer-To, Referred-By, Contact); set once the 2xx arrived."""
        return play(self._referring(call, refer_to))

    def _referring(self, call: LeanCall, refer_to: str) -> Flow[LeanReferral]:
        assert self.out is not None and call.dialog is not None
        data, branch = self.out.in_dialog(call.dialog, b"REFER", [
            ("Refer-To", f"<{refer_to}>".encode()), ("Referred-By", self.local), ("Contact", self.contact)])
        # Registered before sending: the first NOTIFY may overtake the 202 (RFC 3515 §2.4.4).
        referral = LeanReferral(call, b"%d" % call.dialog.local_cseq, referrer=self.role)
        call.referrals.append(referral)
        response = yield from self._final(self.out.send(data, branch, call.dialog.hop),
                                          f"{self.role} did not receive a final response to REFER")
        referral.response = response
        if not 200 <= response.status < 300:
            raise FlowError(f"{self.role}: REFER answered {response.status}")
        return referral

    def bye(self, call: LeanCall) -> Signal[bool]:
        return play(self._ending(call))

    def _ending(self, call: LeanCall) -> Flow[bool]:
        assert self.out is not None and call.dialog is not None
        data, branch = self.out.in_dialog(call.dialog, b"BYE")
        call.ended = True
        if call.leg is not None:  # media ends before the BYE leaves, as the reference UE does it
            yield from_coroutine(call.leg.stop())
        response = yield from self._final(self.out.send(data, branch, call.dialog.hop),
                                          f"{self.role} did not receive a final response to BYE")
        if not 200 <= response.status < 300:
            raise FlowError(f"{self.role}: BYE answered {response.status}")
        return True

    def _stop_leg(self, call: LeanCall) -> None:
        if call.leg is not None:
            self._tasks.spawn(call.leg.stop(), "stop media")

    # --- what the choreography waits for ----------------------------------------------------------

    def call_from(self, peer: str) -> Signal[LeanCall]:
        """Set when an INVITE from `peer` was answered and ACKed."""
        return self._board.signal(("call", peer))

    def joined(self) -> Signal[LeanCall]:
        """Set when the call to a Refer-To target is up (failed when the join failed)."""
        return self._board.signal("joined")

    # --- passive side -----------------------------------------------------------------------------

    def _stray(self, response: Head) -> None:
        """A response no transaction waits for: ACK a retransmitted 2xx again (§13.2.2.4)."""
        if response.cseq_method == b"INVITE" and 200 <= response.status < 300:
            ack = self._acks.get((response.call_id, response.cseq))
            if ack is not None and self.endpoint is not None:
                self.endpoint.send(*ack)

    def _request(self, head: Head, addr: Addr) -> None:
        out = self.out
        assert out is not None
        method = head.method
        try:
            if method == b"INVITE" and head.to_tag is None:
                self._answer_new(head)
                return
            call = self._dialogs.get(head.call_id)
            if method == b"ACK":
                if call is not None and call.dialog is not None and head.to_tag == call.dialog.local_tag:
                    assert self.endpoint is not None
                    self.endpoint.acked(head.call_id, head.cseq)
                    if not call.acked:
                        call.acked = True
                        self._board.set(("call", call.peer), call)
                return
            if call is None or call.dialog is None or head.to_tag != call.dialog.local_tag:
                out.respond(head, 481, b"Call/Transaction Does Not Exist")
                return
            refused = call.dialog.accepts(head)
            if refused is not None:
                out.respond(head, refused, b"Server Internal Error")
                return
            if method == b"INVITE":
                self._answer_reinvite(head, call)
            elif method == b"BYE":
                out.respond(head, 200, b"OK")
                call.ended = True
                self._stop_leg(call)
            elif method == b"REFER":
                self._accept_refer(head, call)
            elif method == b"NOTIFY":
                self._on_notify(head, call)
            else:
                answer_other(out, head, ALLOW_B)
        except (HeadError, ValueError) as exc:
            refuse(out, head, exc, self.errors)

    def _answer_new(self, invite: Head) -> None:
        """200 with an RFC 3264 §6.1 answer; media to the offer's c=/m= address."""
        assert self.out is not None
        port, leg = self._open_media()
        tag = token(6)
        peer = uri_of(invite.from_).decode()
        call = LeanCall(peer, invite.call_id.decode(), False, port, session_id(), 1, b"", b"",
                        LeanDialog.uas(invite, tag), leg, remote_contact=invite.contact.decode())
        self._set_sdp(call, 1, answer_direction(sdp_direction(invite.body)).encode())
        self.calls.append(call)
        self._dialogs[invite.call_id] = call
        self.out.respond(invite, 200, b"OK", self._sdp_fields, call.body, to_tag=tag, record_route=True)
        self._apply(call, invite.body)
        if leg is not None:
            leg.start()

    def _answer_reinvite(self, head: Head, call: LeanCall) -> None:
        assert self.out is not None
        if head.body:
            direction = answer_direction(sdp_direction(head.body)).encode()
            if direction != call.direction:
                self._set_sdp(call, call.version + 1, direction)  # RFC 3264 §8: changed, version + 1
        self.out.respond(head, 200, b"OK", self._sdp_fields, call.body)
        self._apply(call, head.body)

    # --- transferee -------------------------------------------------------------------------------

    def _accept_refer(self, refer: Head, call: LeanCall) -> None:
        assert self.out is not None and call.dialog is not None
        if not refer.refer_to:
            self.out.respond(refer, 400, b"Missing Refer-To")  # RFC 3515 §2.4.1
            return
        target = uri_of(refer.refer_to)
        if not target.lower().startswith(b"sip:"):
            self.out.respond(refer, 416, b"Unsupported URI Scheme")
            return
        self.out.respond(refer, 202, b"Accepted", self._contact_field)
        event = b"refer;id=" + refer.cseq  # RFC 3515 §2.4.6
        first = self._notify(call, event, b"SIP/2.0 100 Trying\r\n", final=False)
        acting = play(self._act_on_refer(call, event, target.split(b";method=")[0].decode(), refer.referred_by,
                                         first, self.clock.time()))
        acting.then(self._acted)
        self._acting = [signal for signal in self._acting if not signal.done]
        self._acting.append(acting)

    def _acted(self, acting: Signal[None]) -> None:
        if acting.error is not None:
            self.errors.append(f"act on REFER: {type(acting.error).__name__}: {acting.error}")

    def _notify(self, call: LeanCall, event: bytes, sipfrag: bytes, final: bool) -> Signal[Head]:
        assert self.out is not None and call.dialog is not None
        state = b"terminated;reason=noresource" if final else b"active;expires=60"
        data, branch = self.out.in_dialog(call.dialog, b"NOTIFY", [
            ("Event", event), ("Subscription-State", state), ("Content-Type", SIPFRAG),
            ("Contact", self.contact)], sipfrag)
        return self.out.send(data, branch, call.dialog.hop)

    def _act_on_refer(self, call: LeanCall, event: bytes, target: str, referred_by: bytes | None,
                      first: Signal[Head], first_at: float) -> Flow[None]:
        """RFC 3515 §2.4.2: INVITE the Refer-To URI, Referred-By copied (RFC 3892 §2.2); the outcome in
        the final NOTIFY, no sooner than a second after the first (§3.10) and after its answer."""
        status, reason = 500, b"Server Internal Error"
        try:
            join = yield from self._calling(target, referred_by)
            self._board.set("joined", join)
            status, reason = 200, b"OK"
        except FlowTimeout:
            status, reason = 408, b"Request Timeout"
        except FlowError as exc:
            if exc.status is not None and exc.status >= 300:
                status, reason = exc.status, b"Failed"
        except (HeadError, ValueError) as exc:  # a 2xx we cannot build a dialog from: still reported
            self.errors.append(f"joining {target}: {exc}")
        if status >= 300:  # whoever waits for the join learns now that it failed
            self._board.fail("joined", FlowError(f"{self.role}: joining {target} failed with {status}"))
        yield self.clock.sleep(max(0.0, first_at + 1.0 - self.clock.time()) + NOTIFY_MARGIN)
        if not first.done:  # bounded: it ends one way or another
            with contextlib.suppress(FlowTimeout, TransactionTimeout):
                yield self.clock.within(first, self.wait, f"{self.role}: the first NOTIFY's answer")
        response = yield from self._final(self._notify(call, event, b"SIP/2.0 %d %s\r\n" % (status, reason), final=True),
                                          f"{self.role} did not receive a final response to its final NOTIFY")
        if not 200 <= response.status < 300:
            self.errors.append(f"final NOTIFY answered {response.status}")

    # --- referrer ---------------------------------------------------------------------------------

    def _on_notify(self, notify: Head, call: LeanCall) -> None:
        assert self.out is not None
        found = _EVENT_ID.search(notify.event or b"")
        event_id = found.group(1) if found else None
        referral = next((r for r in reversed(call.referrals) if event_id is None or r.event_id == event_id), None)
        if referral is None:
            self.out.respond(notify, 481, b"Subscription Does Not Exist")
            return
        self.out.respond(notify, 200, b"OK")
        referral.notifies += 1
        referral.first.set(notify)
        status_line = notify.body.split(b"\n", 1)[0].split(b" ", 2)
        status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
        final = (notify.substate or b"").lower().startswith(b"terminated") or status >= 200
        if final:
            referral.final.set(status)

