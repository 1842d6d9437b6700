"""The conference server (CS): an RFC 4579 focus with the MRFP as its mixer.

It is a UA, not a proxy: it answers INVITEs itself and adds no Record-Route. An INVITE to the
conference factory URI creates a conference `sip:conf-<id>@<cs ip>`; an INVITE to a conference URI
joins it. Every 200 carries `Contact: <conf-uri>;isfocus` (RFC 4579 §4.2, §5.4), `Allow-Events:
conference` (§3.1) and an SDP answer pointing at the port the MRFP allocated (TS 24.147 §5.2).
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field

from harness.agents.media import SENDS
from harness.agents.mrfp import Mrfp
from harness.agents.topology import Topology
from harness.agents.ua import SDP_TYPE, WAIT, SipAgent
from harness.rtp.g711 import PCMU
from harness.sip.dialog import Dialog, DialogError
from harness.sip.headers import SipUri
from harness.sip.ids import new_tag
from harness.sip.message import SipMessage
from harness.sip.sdp import Sdp, answer_direction, offer_audio
from harness.sip.transaction import RequestReceived

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS"


@dataclass(eq=False)
class Participant:
    """One participant's dialog with the focus and its MRFP port."""

    aor: str
    call_id: str
    invite: SipMessage
    dialog: Dialog | None = None
    port: int | None = None
    local_sdp: Sdp | None = None
    acked: bool = False
    left: bool = False

    @property
    def uri(self) -> str:
        """The Request-URI of its INVITE: the factory URI (creator) or the conference URI (joiner)."""
        return str(self.invite.uri)


@dataclass(eq=False)
class Conference:
    conf_id: str
    contact: str  # the Contact value of every 200 (with isfocus unless a fault drops it)
    participants: list[Participant] = field(default_factory=list)


def media_target(sdp: Sdp | None) -> tuple[str, int] | None:
    """Where the MRFP sends this participant's RTP (RTCP to port + 1): the c=/m= of its latest SDP;
    None for no SDP, a rejected stream (port 0) or a legacy `c=0.0.0.0` hold (RFC 3264 §8.4)."""
    if sdp is None or not sdp.media or sdp.media[0].port == 0:
        return None
    connection = sdp.media[0].connection or sdp.connection
    if connection is None or connection.is_hold_address:
        return None
    return sdp.media_address(0)


def offered_g711(sdp: Sdp | None) -> int:
    """The first G.711 payload type of the offer (PCMU 0 or PCMA 8), the one the answer keeps
    (RFC 3264 §6.1); PCMU when there is no offer or no G.711 in it."""
    fmts = sdp.media[0].fmts if sdp is not None and sdp.media else []
    return next((int(f) for f in fmts if f in ("0", "8")), PCMU)


class ConferenceServer(SipAgent):
    """CS on its own IP; media through `mrfp`."""

    allow = ALLOW

    def __init__(self, topology: Topology, mrfp: Mrfp, faults: frozenset[str] = frozenset(),
                 wait: float = WAIT) -> None:
        super().__init__("CS", topology.ip("CS"), topology.port("CS"), faults, topology.rtp_base_port,
                         topology.transport("CS"))
        self.topology = topology
        self.mrfp = mrfp
        self.wait = wait
        self.conferences: dict[str, Conference] = {}
        self.invites: list[Participant] = []  # every INVITE that created or joined a conference, in order
        self._rng = random.Random()

    # --- waits for the choreography -----------------------------------------------------------------

    async def wait_invite(self, aor: str, timeout: float | None = None) -> Participant:
        """The (latest) INVITE from `aor` that reached the focus."""
        return await self.wait_until(lambda: next((p for p in reversed(self.invites) if p.aor == aor), None),
                                     timeout or self.wait, f"CS did not receive an INVITE from {aor}")

    async def wait_acked(self, aor: str, timeout: float | None = None) -> Participant:
        return await self.wait_until(
            lambda: next((p for p in reversed(self.invites) if p.aor == aor and p.acked), None),
            timeout or self.wait, f"CS did not receive the ACK from {aor}")

    # --- requests ---------------------------------------------------------------------------------

    def _participant(self, msg: SipMessage) -> Participant | None:
        for participant in self.invites:
            if participant.dialog is not None and participant.dialog.matches(msg):
                return participant
        return None

    def handle_request(self, msg: SipMessage, event: RequestReceived) -> None:
        if msg.method == "INVITE" and msg.to_tag is None:
            self._new_invite(msg)
            return
        participant = self._participant(msg)
        if msg.method == "ACK":
            if participant is not None:
                participant.acked = True
                self.changed()
            return
        if participant is None or participant.dialog is None:
            self.respond(msg, 481, "Call/Transaction Does Not Exist")
            return
        try:
            participant.dialog.receive_request(msg)
        except DialogError as exc:
            self.respond(msg, exc.status, "Rejected")
            return
        if msg.method == "BYE":
            self.respond(msg, 200, "OK")
            participant.left = True
            if participant.port is not None:
                self.spawn(self.mrfp.release(participant.port), "release MRFP port")
            self.changed()
        elif msg.method == "INVITE":
            self._reinvite(msg, participant)
        elif msg.method == "OPTIONS":
            self.respond(msg, 200, "OK", headers=[("Allow", ALLOW)])
        else:
            self.respond(msg, 405, "Method Not Allowed", headers=[("Allow", ALLOW)])

    def _new_invite(self, invite: SipMessage) -> None:
        uri = SipUri.parse(str(invite.uri))
        factory = SipUri.parse(self.topology.factory_uri)  # a SUT profile may name its own
        if uri.user == factory.user and uri.host_port == factory.host_port:
            conf_id = secrets.token_hex(4)
            contact = f"<{self.topology.conference_uri(conf_id)}>"
            if "cs-omit-isfocus" not in self.faults:
                contact += ";isfocus"
            conference = Conference(conf_id, contact)
            self.conferences[conf_id] = conference
        else:
            conf_id = (uri.user or "").removeprefix("conf-")
            found = self.conferences.get(conf_id) if uri.user and uri.user.startswith("conf-") else None
            if found is None:
                self.respond(invite, 404, "Not Found", to_tag=new_tag())
                return
            conference = found
        participant = Participant(str(invite.from_addr.uri), str(invite.call_id), invite)
        conference.participants.append(participant)
        self.invites.append(participant)
        self.changed()
        self.spawn(self._admit(invite, conference, participant), "admit participant")

    async def _admit(self, invite: SipMessage, conference: Conference, participant: Participant) -> None:
        """Step 15/36/67: ask the MRFP for a port, then answer 200 pointing media at it."""
        offer = Sdp.parse(invite.body) if invite.body else None
        direction = answer_direction(offer.direction(0)) if offer is not None else "sendrecv"
        pt = offered_g711(offer)
        participant.port = await self.mrfp.allocate(participant.aor, media_target(offer), direction in SENDS,
                                                    payload_type=pt, group=conference.conf_id)
        sdp = offer_audio(self.mrfp.ip, participant.port, self._rng.randrange(1, 2**31), 1, direction, pt=pt)
        participant.local_sdp = sdp
        tag = new_tag()
        participant.dialog = Dialog.uas(invite, tag, conference.contact)
        self.respond(invite, 200, "OK", to_tag=tag, body=bytes(sdp), headers=[
            ("Contact", conference.contact), ("Allow", ALLOW), ("Allow-Events", "conference"),
            ("Content-Type", SDP_TYPE)])
        self.changed()

    def _reinvite(self, msg: SipMessage, participant: Participant) -> None:
        assert participant.local_sdp is not None and participant.port is not None
        sdp = participant.local_sdp
        if msg.body:
            offer = Sdp.parse(msg.body)
            direction = answer_direction(offer.direction(0))
            if direction != sdp.direction(0):
                sdp = sdp.with_direction(direction).bump_version()
            self.mrfp.set_remote(participant.port, media_target(offer), direction in SENDS)
        participant.local_sdp = sdp
        conference = next(c for c in self.conferences.values() if participant in c.participants)
        self.respond(msg, 200, "OK", body=bytes(sdp), headers=[
            ("Contact", conference.contact), ("Allow", ALLOW), ("Allow-Events", "conference"),
            ("Content-Type", SDP_TYPE)])
