"""Is a SIP peer up? One OPTIONS round trip over UDP, bounded, from a socket on the peer's own IP.

Readiness is judged on the SIP side, not by the process existing: a peer is up once it answers an
OPTIONS with any final response (Kamailio's configs answer 200; a UA may say 404 for a user it does
not know, which still proves it parses and answers SIP).
"""

from __future__ import annotations

import secrets
import socket
import time

from harness.sip.message import SipMessage


def hostport(host: str, port: int) -> str:
    """`host:port`, IPv6 in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def options_status(host: str, port: int, timeout: float, source: str | None = None) -> int | None:
    """The status of the first final response to an OPTIONS sent to host:port, or None after `timeout`;
    sent from `source` (default: the peer's own IP) on a port of the kernel's choosing."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((source or host, 0))
        local = sock.getsockname()
        call_id = f"probe-{secrets.token_hex(6)}"
        uri = f"sip:{hostport(host, port)}"
        me = hostport(local[0], local[1])
        request = SipMessage.request("OPTIONS", uri, [
            ("Via", f"SIP/2.0/UDP {me};rport;branch=z9hG4bK{secrets.token_hex(6)}"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:probe@{me}>;tag={secrets.token_hex(4)}"),
            ("To", f"<{uri}>"),
            ("Call-ID", call_id),
            ("CSeq", "1 OPTIONS"),
        ], content_length=True)
        sock.sendto(bytes(request), (host, port))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, _ = sock.recvfrom(65535)
            except (TimeoutError, ConnectionRefusedError):
                return None
            try:
                reply = SipMessage.parse(data)
            except ValueError:
                continue
            if reply.call_id == call_id and reply.status is not None and reply.status >= 200:
                return reply.status
    return None
