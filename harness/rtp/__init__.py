"""rtp layer: G.711, tones, RTP/RTCP packets (Scapy), the N-1 mixer and drift-free pacing; no sockets here."""

from harness.rtp.g711 import PCMA, alaw_decode, alaw_encode, decode, encode, silence, ulaw_decode, ulaw_encode
from harness.rtp.packet import PCMU, RtpPacket, RtpParseError, RtpSender
from harness.rtp.stream import PTIME, RtpStream
from harness.rtp.tone import ToneGenerator

__all__ = ["PCMA", "PCMU", "PTIME", "RtpPacket", "RtpParseError", "RtpSender", "RtpStream", "ToneGenerator",
           "alaw_decode", "alaw_encode", "decode", "encode", "silence", "ulaw_decode", "ulaw_encode"]
