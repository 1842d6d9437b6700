"""The lean conference server: the same RFC 4579 focus as harness/agents/focus.py, on bytes, shared
by every instance of a load run.

An INVITE to the factory URI creates `sip:conf-<id>@<cs>`; an INVITE to a conference URI joins it
(404 for one it does not know). Every 200 carries `Contact: <conf-uri>;isfocus`, Allow,
`Allow-Events: conference` and an SDP answer at the MRFP port allocated for the participant. With
media the reference MRFP allocates, mixes and releases the ports; without, the port is a number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.agents.focus import ALLOW, media_target, offered_g711
from harness.agents.media import SENDS
from harness.agents.mrfp import Mrfp
from harness.agents.tasks import TaskSet
from harness.agents.topology import Topology
from harness.agents.ua import SDP_TYPE
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
from harness.load.lean.endpoint import LeanEndpoint
from harness.load.lean.forms import SDP_FORMS
from harness.load.lean.head import Head, HeadError, uri_of
from harness.load.lean.signal import Signal
from harness.load.lean.ue import sdp_direction
from harness.net.udp import Addr
from harness.sip.sdp import Sdp, answer_direction

ALLOW_B, SDP_B = ALLOW.encode(), SDP_TYPE.encode()
_M_LINE = re.compile(rb"^m=audio [0-9]+ RTP/AVP ([0-9 ]+)", re.M)


@dataclass(eq=False)
class LeanParticipant:
    aor: str
    conf_id: str
    uri: str  # the Request-URI of its INVITE (factory or conference URI)
    contact: bytes  # the focus's Contact for this conference
    dialog: LeanDialog
    port: int = 0
    pt: int = 0
    sess: int = 0
    version: int = 1
    direction: bytes = b"sendrecv"
    acked: bool = False


def offered_pt(body: bytes) -> int:
    """The first G.711 payload type of the offer's m= line (PCMU 0 or PCMA 8; PCMU when none)."""
    found = _M_LINE.search(body)
    if found is not None:
        for fmt in found.group(1).split():
            if fmt == b"0" or fmt == b"8":
                return int(fmt)
    return 0


class LeanCs:
    """The focus on the CS address; `mrfp` (media on) or plain port numbers (media off)."""

    role = "CS"

    def __init__(self, topology: Topology, mrfp: Mrfp | None) -> None:
        self.topology = topology
        self.ip, self.port = topology.ip("CS"), topology.port("CS")
        self.mrfp = mrfp
        self.factory = hop_of(topology.factory_uri.encode()), topology.factory_uri.split(":", 1)[1].split("@")[0]
        self.errors: list[str] = []
        self.conferences: set[str] = set()
        self._participants: dict[bytes, LeanParticipant] = {}  # by Call-ID
        self._by_aor: dict[str, list[bytes]] = {}
        self._board = Board()
        self._tasks = TaskSet("CS", self.errors)
        self._next_port = topology.rtp_base_port
        self._mrfp_ip = (mrfp.ip if mrfp is not None else topology.ip("MRFP")).encode()
        self.endpoint: LeanEndpoint | None = None
        self.out: Sender | None = None

    async def start(self) -> None:
        self.endpoint = await LeanEndpoint(self.ip, self.port, self._request, lambda head: None).open()
        self.endpoint.errors = self.errors
        self.out = Sender(self.endpoint, self.ip, self.port)

    async def stop(self) -> None:
        await self._tasks.cancel()
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None

    async def forget(self, aors: list[str]) -> None:
        """An instance ended: drop its conference, participants and waits, free their MRFP ports."""
        for aor in aors:
            for call_id in self._by_aor.pop(aor, []):
                participant = self._participants.pop(call_id, None)
                if participant is None:
                    continue
                self.conferences.discard(participant.conf_id)  # every participant is the instance's
                if self.mrfp is not None and participant.port:
                    await self.mrfp.release(participant.port)
            for kind in ("invite", "acked", "allocated"):
                self._board.forget((kind, aor))

    # --- what the choreography waits for ----------------------------------------------------------

    def invited(self, aor: str) -> Signal[LeanParticipant]:
        """Set when an INVITE from `aor` reached the CS."""
        return self._board.signal(("invite", aor))

    def acked_by(self, aor: str) -> Signal[LeanParticipant]:
        """Set when the ACK for the 200 to `aor` arrived."""
        return self._board.signal(("acked", aor))

    def allocated(self, aor: str) -> Signal[int]:
        """Set when the MRFP port for `aor` was allocated (steps 15/36/67)."""
        return self._board.signal(("allocated", aor))

    # --- requests ---------------------------------------------------------------------------------

    def _request(self, head: Head, addr: Addr) -> None:
        out = self.out
        assert out is not None
        method = head.method
        try:
            if method == b"INVITE" and head.to_tag is None:
                self._new_invite(head)
                return
            participant = self._participants.get(head.call_id)
            known = participant is not None and head.to_tag == participant.dialog.local_tag
            if method == b"ACK":
                if participant is not None and known and self.endpoint is not None:
                    self.endpoint.acked(head.call_id, head.cseq)
                    if not participant.acked:
                        participant.acked = True
                        self._board.set(("acked", participant.aor), participant)
                return
            if participant is None or not known:
                out.respond(head, 481, b"Call/Transaction Does Not Exist")
                return
            refused = participant.dialog.accepts(head)
            if refused is not None:
                out.respond(head, refused, b"Rejected")
            elif method == b"BYE":
                out.respond(head, 200, b"OK")
                if self.mrfp is not None and participant.port:
                    self._tasks.spawn(self.mrfp.release(participant.port), "release MRFP port")
            elif method == b"INVITE":
                self._reinvite(head, participant)
            else:
                answer_other(out, head, ALLOW_B)
        except (HeadError, ValueError) as exc:
            refuse(out, head, exc, self.errors)

    def _new_invite(self, invite: Head) -> None:
        assert self.out is not None
        uri = invite.uri
        user = uri.split(b":", 1)[1].split(b"@", 1)[0].decode() if b"@" in uri else ""
        if user == self.factory[1] and hop_of(uri) == self.factory[0]:
            conf_id = token(4).decode()
            self.conferences.add(conf_id)
        elif user.startswith("conf-") and user[5:] in self.conferences and hop_of(uri) == (self.ip, self.port):
            conf_id = user[5:]
        else:
            self.out.respond(invite, 404, b"Not Found", to_tag=token(6))
            return
        contact = f"<{self.topology.conference_uri(conf_id)}>;isfocus".encode()
        aor = uri_of(invite.from_).decode()
        participant = LeanParticipant(aor, conf_id, uri.decode(), contact, LeanDialog.uas(invite, token(6)))
        self._participants[invite.call_id] = participant
        self._by_aor.setdefault(aor, []).append(invite.call_id)
        self._board.set(("invite", aor), participant)
        if self.mrfp is None:
            port, self._next_port = self._next_port, self._next_port + 2
            self._answer(invite, participant, port, sdp_direction(invite.body), offered_pt(invite.body))
        else:
            self._tasks.spawn(self._admit(invite, participant), "admit participant")

    async def _admit(self, invite: Head, participant: LeanParticipant) -> None:
        """Steps 15/36/67: a port at the MRFP towards the offer's c=/m=, then the 200."""
        assert self.mrfp is not None
        offer = Sdp.parse(invite.body) if invite.body else None
        direction = answer_direction(offer.direction(0)) if offer is not None else "sendrecv"
        pt = offered_g711(offer)
        port = await self.mrfp.allocate(participant.aor, media_target(offer), direction in SENDS, payload_type=pt,
                                        group=participant.conf_id)
        self._answer(invite, participant, port, sdp_direction(invite.body), pt)

    def _answer(self, invite: Head, participant: LeanParticipant, port: int, offered: str, pt: int) -> None:
        assert self.out is not None
        participant.port, participant.pt = port, pt
        participant.sess = session_id()
        participant.direction = answer_direction(offered).encode()
        self._board.set(("allocated", participant.aor), port)
        self.out.respond(invite, 200, b"OK", [
            ("Contact", participant.contact), ("Allow", ALLOW_B), ("Allow-Events", b"conference"),
            ("Content-Type", SDP_B)], self._sdp(participant), to_tag=participant.dialog.local_tag, record_route=True)

    def _sdp(self, participant: LeanParticipant) -> bytes:
        return SDP_FORMS[participant.pt].render(self._mrfp_ip, participant.port, participant.sess, participant.version,
                                                      participant.direction)

    def _reinvite(self, head: Head, participant: LeanParticipant) -> None:
        assert self.out is not None
        if head.body:
            direction = answer_direction(sdp_direction(head.body))
            if direction.encode() != participant.direction:
                participant.direction = direction.encode()
                participant.version += 1  # RFC 3264 §8: changed SDP, version + 1
            if self.mrfp is not None and participant.port:
                self.mrfp.set_remote(participant.port, media_target(Sdp.parse(head.body)), direction in SENDS)
        self.out.respond(head, 200, b"OK", [
            ("Contact", participant.contact), ("Allow", ALLOW_B), ("Allow-Events", b"conference"),
            ("Content-Type", SDP_B)], self._sdp(participant))
