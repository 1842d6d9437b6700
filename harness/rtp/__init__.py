"""rtp layer: G.711 µ-law, tones, RTP packets (Scapy) and drift-free pacing; no sockets here."""

from harness.rtp.g711 import silence, ulaw_decode, ulaw_encode
from harness.rtp.packet import PCMU, RtpPacket, RtpParseError, RtpSender
from harness.rtp.stream import PTIME, RtpStream
from harness.rtp.tone import ToneGenerator

__all__ = ["PCMU", "PTIME", "RtpPacket", "RtpParseError", "RtpSender", "RtpStream", "ToneGenerator",
           "silence", "ulaw_decode", "ulaw_encode"]
