"""Packet-level SIP/IMS test harness: plays and verifies 3GPP call flows (A.2.1 first)."""

__version__ = "0.1.0"
