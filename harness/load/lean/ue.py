"""A lean UE: the same A.2.1 behaviour as harness/agents/ue.py (call, hold, refer, bye; answer
INVITE and re-INVITE, accept REFER as a transferee with NOTIFY 100 and a final NOTIFY at most one
per second, answer NOTIFY and BYE), on bytes. The choreography awaits the same methods, so the
step table's actions (harness/flows/a2_1/play.py) drive it unchanged but for the few in
harness/load/lean/actions.py.

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
    LeanDialog,
    Sender,
    Waits,
    answer_other,
    hop_of,
    refuse,
    session_id,
    token,
    within,
)
from harness.load.lean.endpoint import LeanEndpoint, TransactionTimeout
from harness.load.lean.forms import SDP_FORMS
from harness.load.lean.head import Head, HeadError, uri_of
from harness.net.udp import Addr, bind_rtp_pair
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
    """A REFER this UE sent and its implicit subscription (RFC 3515 §2.4.4)."""

    call: LeanCall
    event_id: bytes
    first: asyncio.Future[Head]
    final: asyncio.Future[int]
    referrer: str = "UE-1"
    response: Head | None = None
    notifies: int = 0

    async def wait_first_notify(self, timeout: float = WAIT) -> Head:
        return await within(self.first, timeout, f"{self.referrer} did not receive a NOTIFY for its REFER")

    async def wait_final(self, timeout: float = WAIT) -> int:
        return await within(self.final, timeout, f"{self.referrer} did not receive the final NOTIFY for its REFER")


class LeanUe:
    """UE-1, UE-2 or UE-3 of one instance, on its own address."""

    def __init__(self, role: str, topology: Topology, media: bool = True, wait: float = WAIT,
                 rtcp_interval: float = INTERVAL) -> None:
        self.role = role
        self.ip, self.port = topology.ip(role), topology.port(role)
        self.aor = topology.user_uri(role)
        self.local = f"<{self.aor}>".encode()
        self.contact = f"<{topology.contact(role)}>".encode()
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
        self._waits = Waits()
        self._tasks = TaskSet(self.role, self.errors)
        self._acting: set[asyncio.Task[None]] = set()  # REFERs being acted on: each owes a final NOTIFY
        self._ip_b = self.ip.encode()
        self.endpoint: LeanEndpoint | None = None
        self.out: Sender | None = None

    async def start(self) -> None:
        self.endpoint = await LeanEndpoint(self.ip, self.port, self._request, self._stray, burst=1).open()
        self.endpoint.errors = self.errors
        self.out = Sender(self.endpoint, self.ip, self.port)

    async def stop(self) -> None:
        # RFC 3515 §2.4.5: a REFER being acted on ends with a final NOTIFY, also when the flow gave up
        # first (a failed join); those tasks are bounded by their own waits.
        acting = [task for task in self._acting if not task.done()]
        if acting:
            await asyncio.wait(acting, timeout=2 * self.wait + 1.0)
        await self._tasks.cancel()
        await asyncio.gather(*(c.leg.stop() for c in self.calls if c.leg is not None), return_exceptions=True)
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None

    # --- media ------------------------------------------------------------------------------------

    async def _open_media(self) -> tuple[int, MediaLeg | None]:
        if not self.media:
            port, self._next_port = self._next_port, self._next_port + 2
            return port, None
        rtp, rtcp = await bind_rtp_pair(self.ip, self._next_port)
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

    async def call(self, target_uri: str, referred_by: bytes | None = None) -> LeanCall:
        """INVITE with a sendrecv offer through the outbound route, await the 2xx, ACK; media starts."""
        assert self.out is not None
        port, leg = await self._open_media()
        call = LeanCall(str(target_uri), "", True, port, session_id(), 1, b"sendrecv", b"", leg=leg)
        self._set_sdp(call, 1, b"sendrecv")
        call_id = token(12) + b"@" + self.ip.encode()
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
        response = await self._final(self.out.send(data, branch, self.first_hop, invite=True),
                                     f"{self.role} did not receive a final response to INVITE {target_uri}")
        if not 200 <= response.status < 300:
            call.ended = True
            if leg is not None:
                await leg.stop()
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

    async def _final(self, fut: asyncio.Future[Head], what: str) -> Head:
        try:
            return await within(fut, self.wait, what)
        except TransactionTimeout:
            raise FlowTimeout(f"{what} (no final response within 64*T1)") from None

    async def hold(self, call: LeanCall) -> Head:
        """re-INVITE with a=sendonly and o= version + 1 (RFC 3264 §8.4); returns the 2xx."""
        assert self.out is not None and call.dialog is not None
        self._set_sdp(call, call.version + 1, b"sendonly")
        data, branch = self.out.in_dialog(call.dialog, b"INVITE", [
            ("Contact", self.contact), ("Allow", ALLOW_B), ("Content-Type", SDP_B)], call.body)
        response = await self._final(self.out.send(data, branch, call.dialog.hop, invite=True),
                                     f"{self.role} did not receive a final response to the hold re-INVITE")
        if not 200 <= response.status < 300:
            raise FlowError(f"{self.role}: hold re-INVITE answered {response.status}")
        self._ack(call, response)
        self._apply(call, response.body)
        return response

    async def refer(self, call: LeanCall, refer_to: str) -> LeanReferral:
        """In-dialog REFER (one Refer-To, Referred-By, Contact); returns once the 2xx arrived."""
        assert self.out is not None and call.dialog is not None
        data, branch = self.out.in_dialog(call.dialog, b"REFER", [
            ("Refer-To", f"<{refer_to}>".encode()), ("Referred-By", self.local), ("Contact", self.contact)])
        loop = asyncio.get_running_loop()
        # Registered before sending: the first NOTIFY may overtake the 202 (RFC 3515 §2.4.4).
        referral = LeanReferral(call, b"%d" % call.dialog.local_cseq, loop.create_future(), loop.create_future(),
                                self.role)
        call.referrals.append(referral)
        response = await self._final(self.out.send(data, branch, call.dialog.hop),
                                     f"{self.role} did not receive a final response to REFER")
        referral.response = response
        if not 200 <= response.status < 300:
            raise FlowError(f"{self.role}: REFER answered {response.status}")
        return referral

    async def bye(self, call: LeanCall) -> bool:
        assert self.out is not None and call.dialog is not None
        data, branch = self.out.in_dialog(call.dialog, b"BYE")
        call.ended = True
        if call.leg is not None:
            await call.leg.stop()
        response = await self._final(self.out.send(data, branch, call.dialog.hop),
                                     f"{self.role} did not receive a final response to BYE")
        if not 200 <= response.status < 300:
            raise FlowError(f"{self.role}: BYE answered {response.status}")
        return True

    # --- waits ------------------------------------------------------------------------------------

    async def wait_call_from(self, peer: str, timeout: float | None = None) -> LeanCall:
        return await within(self._waits.future(("call", peer)), timeout or self.wait,  # type: ignore[return-value]
                            f"{self.role} did not receive an INVITE and ACK from {peer}")

    async def wait_join(self, timeout: float | None = None) -> LeanCall:
        return await within(self._waits.future("joined"), timeout or self.wait,  # type: ignore[return-value]
                            f"{self.role} did not establish the call to the Refer-To target")

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
                self._tasks.spawn(self._answer_new(head), "answer INVITE")
                return
            call = self._dialogs.get(head.call_id)
            if method == b"ACK":
                if call is not None and call.dialog is not None and head.to_tag == call.dialog.local_tag:
                    assert self.endpoint is not None
                    self.endpoint.acked(head.call_id, head.cseq)
                    if not call.acked:
                        call.acked = True
                        self._waits.set(("call", call.peer), call)
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
                if call.leg is not None:
                    self._tasks.spawn(call.leg.stop(), "stop media")
            elif method == b"REFER":
                self._accept_refer(head, call)
            elif method == b"NOTIFY":
                self._on_notify(head, call)
            else:
                answer_other(out, head, ALLOW_B)
        except (HeadError, ValueError) as exc:
            refuse(out, head, exc, self.errors)

    async def _answer_new(self, invite: Head) -> None:
        """200 with an RFC 3264 §6.1 answer; media to the offer's c=/m= address."""
        assert self.out is not None
        port, leg = await self._open_media()
        tag = token(6)
        peer = uri_of(invite.from_).decode()
        call = LeanCall(peer, invite.call_id.decode(), False, port, session_id(), 1, b"", b"",
                        LeanDialog.uas(invite, tag), leg, remote_contact=invite.contact.decode())
        self._set_sdp(call, 1, answer_direction(sdp_direction(invite.body)).encode())
        self.calls.append(call)
        self._dialogs[invite.call_id] = call
        self.out.respond(invite, 200, b"OK", [("Contact", self.contact), ("Allow", ALLOW_B),
                                              ("Content-Type", SDP_B)], call.body, to_tag=tag, record_route=True)
        self._apply(call, invite.body)
        if leg is not None:
            leg.start()

    def _answer_reinvite(self, head: Head, call: LeanCall) -> None:
        assert self.out is not None
        if head.body:
            direction = answer_direction(sdp_direction(head.body)).encode()
            if direction != call.direction:
                self._set_sdp(call, call.version + 1, direction)  # RFC 3264 §8: changed, version + 1
        self.out.respond(head, 200, b"OK", [("Contact", self.contact), ("Allow", ALLOW_B), ("Content-Type", SDP_B)],
                         call.body)
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
        self.out.respond(refer, 202, b"Accepted", [("Contact", self.contact)])
        event = b"refer;id=" + refer.cseq  # RFC 3515 §2.4.6
        loop = asyncio.get_running_loop()
        first = self._notify(call, event, b"SIP/2.0 100 Trying\r\n", final=False)
        self._acting.add(self._tasks.spawn(self._act_on_refer(call, event, target.split(b";method=")[0].decode(),
                                                             refer.referred_by, first, loop.time()), "act on REFER"))

    def _notify(self, call: LeanCall, event: bytes, sipfrag: bytes, final: bool) -> asyncio.Future[Head]:
        assert self.out is not None and call.dialog is not None
        state = b"terminated;reason=noresource" if final else b"active;expires=60"
        data, branch = self.out.in_dialog(call.dialog, b"NOTIFY", [
            ("Event", event), ("Subscription-State", state), ("Content-Type", SIPFRAG),
            ("Contact", self.contact)], sipfrag)
        return self.out.send(data, branch, call.dialog.hop)

    async def _act_on_refer(self, call: LeanCall, event: bytes, target: str, referred_by: bytes | None,
                            first: asyncio.Future[Head], first_at: float) -> None:
        """RFC 3515 §2.4.2: INVITE the Refer-To URI, Referred-By copied (RFC 3892 §2.2); the outcome in
        the final NOTIFY, no sooner than a second after the first (§3.10) and after its answer."""
        status, reason = 500, b"Server Internal Error"
        try:
            join = await self.call(target, referred_by=referred_by)
            self._waits.set("joined", join)
            status, reason = 200, b"OK"
        except FlowTimeout:
            status, reason = 408, b"Request Timeout"
        except FlowError as exc:
            if exc.status is not None and exc.status >= 300:
                status, reason = exc.status, b"Failed"
        except (HeadError, ValueError) as exc:  # a 2xx we cannot build a dialog from: still reported
            self.errors.append(f"joining {target}: {exc}")
        if status >= 300:  # whoever waits for the join learns now that it failed
            self._waits.fail("joined", FlowError(f"{self.role}: joining {target} failed with {status}"))
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, first_at + 1.0 - loop.time()) + NOTIFY_MARGIN)
        if not first.done():  # bounded: it ends one way or another
            with contextlib.suppress(FlowTimeout, TransactionTimeout):
                await within(first, self.wait, f"{self.role}: the first NOTIFY's answer")
        response = await self._final(self._notify(call, event, b"SIP/2.0 %d %s\r\n" % (status, reason), final=True),
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
        if not referral.first.done():
            referral.first.set_result(notify)
        status_line = notify.body.split(b"\n", 1)[0].split(b" ", 2)
        status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
        final = (notify.substate or b"").lower().startswith(b"terminated") or status >= 200
        if final and not referral.final.done():
            referral.final.set_result(status)

