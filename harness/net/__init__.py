"""net layer: asyncio UDP endpoints that drive a sans-IO core's timers."""

from harness.net.udp import SipUdpEndpoint, UdpSocket

__all__ = ["SipUdpEndpoint", "UdpSocket"]
