"""The one way SIP bytes leave an agent: SipMessage -> Scapy SIP layer -> bytes."""

from __future__ import annotations

from harness.sip.layer import SIP
from harness.sip.message import SipMessage


def to_wire(msg: SipMessage) -> bytes:
    """Serialise through the Scapy layer (byte-exact with `bytes(msg)`), so what we send is what
    the layer dissects."""
    return bytes(SIP.from_message(msg))


def through_layer(msg: SipMessage) -> SipMessage:
    """The message as the Scapy layer serialises it, for cores that take a SipMessage and call
    `bytes()` themselves: the datagram they send is then exactly `to_wire(msg)`."""
    return SipMessage.parse(to_wire(msg))
