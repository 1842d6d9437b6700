"""One call leg's media: RTP and RTCP sockets, a paced tone stream, RTCP reports and receive records.

What the leg sends follows the negotiated SDP (RFC 3264):
- to the c=/m= address of the peer's latest SDP, RTCP to that port + 1 (RFC 3550 §11);
- with the payload type the peer's SDP gives the first G.711 encoding both sides list (§6.1, §5.1);
- RTP only when our latest SDP allows sending (sendrecv/sendonly) and the peer's allows receiving
  (sendrecv/recvonly); RTCP also while held or inactive (§5.1), but nothing at all to a legacy
  `c=0.0.0.0` hold address (§8.4) or on a rejected stream (port 0, §6).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from harness.agents.rtcp import RtcpLeg
from harness.net.udp import Addr, UdpSocket
from harness.rtp import RtpPacket, RtpParseError, RtpSender, RtpStream, ToneGenerator
from harness.rtp.g711 import PCMU, payload_type_for
from harness.rtp.rtcp import INTERVAL, RtcpSession
from harness.sip.errors import SipError
from harness.sip.sdp import Sdp

SENDS = frozenset({"sendrecv", "sendonly"})
RECEIVES = frozenset({"sendrecv", "recvonly"})
TAIL_FRAMES = 250  # the last 5 s of received payloads, for tone analysis in tests


@dataclass
class RxStats:
    """What arrived on the leg: counters, and the latest payloads for signal analysis."""

    packets: int = 0
    ssrcs: set[int] = field(default_factory=set)
    sources: set[Addr] = field(default_factory=set)
    payload_types: set[int] = field(default_factory=set)
    tail: deque[tuple[int, bytes]] = field(default_factory=lambda: deque(maxlen=TAIL_FRAMES))


def send_payload_type(local: Sdp, remote: Sdp, media_index: int = 0) -> int | None:
    """The payload type to send with: the peer's number for the first G.711 encoding (in the peer's
    order) that our own SDP lists too; None when there is none."""
    try:
        ours = {enc.lower() for enc in local.rtpmap(media_index).values()}
        theirs = remote.rtpmap(media_index)
        order = remote.media[media_index].fmts
    except (IndexError, SipError):
        return None
    for fmt in order:
        if fmt.isdigit() and int(fmt) in theirs:
            encoding = theirs[int(fmt)]
            if encoding.lower() in ours and payload_type_for(encoding) is not None:
                return int(fmt)
    return None


class MediaLeg:
    """RTP + RTCP for one dialog: sends `tone_hz` to the peer's c=/m= address while directions allow."""

    def __init__(self, sock: UdpSocket, rtcp_sock: UdpSocket, tone_hz: float, cname: str,
                 rtcp_interval: float = INTERVAL) -> None:
        self.sock = sock
        self.tone = ToneGenerator(tone_hz)
        self.sender = RtpSender()
        self.stream = RtpStream(sock, self._frame, self.sender)
        self.stream.sending = False
        self.rtcp = RtcpLeg(rtcp_sock, RtcpSession(self.sender.ssrc, cname), self.stream, rtcp_interval)
        self.rx = RxStats()
        self.payload_type: int | None = None  # negotiated
        # Faults (harness/agents/faults.py): keep sending whatever was negotiated; send another payload
        # type than negotiated (and encode for it); send RTP to a stale address.
        self.force_send = False
        self.payload_type_override: int | None = None
        self.remote_override: Addr | None = None
        sock.set_receiver(self._received)

    @property
    def port(self) -> int:
        return self.sock.local[1]

    @property
    def packets_sent(self) -> int:
        return self.stream.packets_sent

    def _frame(self) -> bytes:
        return self.tone.next_frame(payload_type=self.sender.payload_type)

    def apply(self, local: Sdp, remote: Sdp | None) -> None:
        """Point RTP/RTCP at the remote SDP's address and switch sending per both SDPs (module doc)."""
        if remote is None or not remote.media or remote.media[0].port == 0:
            self.stream.sending = False
            self.rtcp.target = None
            return
        try:
            address = remote.media_address(0)
            connection = remote.media[0].connection or remote.connection
        except SipError:
            self.stream.sending = False
            self.rtcp.target = None
            return
        on_hold_address = connection is not None and connection.is_hold_address
        self.payload_type = send_payload_type(local, remote)
        chosen = self.payload_type_override if self.payload_type_override is not None else self.payload_type
        self.sender.payload_type = chosen if chosen is not None else PCMU
        self.stream.remote = self.remote_override or address
        allowed = (local.direction(0) in SENDS and remote.direction(0) in RECEIVES and not on_hold_address
                   and self.payload_type is not None)
        self.stream.sending = allowed or self.force_send
        self.rtcp.target = None if on_hold_address else (address[0], address[1] + 1)

    def start(self) -> None:
        self.stream.start()
        self.rtcp.start()

    async def stop(self) -> None:
        """Stop RTP, send a last RTCP report with BYE, close both sockets (idempotent)."""
        await self.stream.stop()
        await self.rtcp.stop(bye=True)
        self.sock.close()

    def _received(self, data: bytes, addr: Addr) -> None:
        try:
            packet = RtpPacket.parse(data)
        except RtpParseError:
            return
        rx = self.rx
        rx.packets += 1
        rx.ssrcs.add(packet.ssrc)
        rx.sources.add(addr)
        rx.payload_types.add(packet.payload_type)
        rx.tail.append((packet.payload_type, packet.payload))
        self.rtcp.on_rtp(packet.ssrc, packet.sequence, packet.timestamp)
