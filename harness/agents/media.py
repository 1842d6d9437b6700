"""One call leg's media: an RTP socket, a paced tone stream and receive counters.

Whether the leg sends follows the negotiated directions (RFC 3264 §6.1): we send only when our own
latest SDP allows sending (sendrecv/sendonly) and the peer's allows receiving (sendrecv/recvonly).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.net.udp import Addr, UdpSocket
from harness.rtp import RtpPacket, RtpParseError, RtpStream, ToneGenerator
from harness.sip.sdp import Sdp

SENDS = frozenset({"sendrecv", "sendonly"})
RECEIVES = frozenset({"sendrecv", "recvonly"})


@dataclass
class RxStats:
    packets: int = 0
    ssrcs: set[int] = field(default_factory=set)
    sources: set[Addr] = field(default_factory=set)


class MediaLeg:
    """RTP for one dialog: sends `tone_hz` to the peer's c=/m= address while directions allow."""

    def __init__(self, sock: UdpSocket, tone_hz: float) -> None:
        self.sock = sock
        self.stream = RtpStream(sock, ToneGenerator(tone_hz).next_frame)
        self.stream.sending = False
        self.rx = RxStats()
        self.force_send = False  # a fault: keep sending whatever was negotiated
        sock.set_receiver(self._received)

    @property
    def port(self) -> int:
        return self.sock.local[1]

    @property
    def packets_sent(self) -> int:
        return self.stream.packets_sent

    def apply(self, local: Sdp, remote: Sdp | None) -> None:
        """Point the stream at the remote SDP's address and switch sending per both directions."""
        if remote is None or not remote.media:
            self.stream.sending = False
            return
        self.stream.remote = remote.media_address(0)
        allowed = local.direction(0) in SENDS and remote.direction(0) in RECEIVES
        self.stream.sending = allowed or self.force_send

    def start(self) -> None:
        self.stream.start()

    async def stop(self) -> None:
        await self.stream.stop()
        self.sock.close()

    def _received(self, data: bytes, addr: Addr) -> None:
        try:
            packet = RtpPacket.parse(data)
        except RtpParseError:
            return
        self.rx.packets += 1
        self.rx.ssrcs.add(packet.ssrc)
        self.rx.sources.add(addr)
