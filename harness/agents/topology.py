"""Roles and addresses of one run: a private loopback /24 per run, so runs and xdist workers never meet.

The hop layout reproduces Figure A.2's numbering (checklist §1.1): UE-1 reaches everyone through
P-CSCF then S-CSCF (3 hops); UE-2/UE-3 reach the CS through the S-CSCF alone (2 hops).
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass, field

SIP_PORT = 5060
RTP_BASE_PORT = 20000

ROLES = ("UE-1", "UE-2", "UE-3", "CS", "MRFP", "P-CSCF", "S-CSCF")
HOST_OCTET = {"UE-1": 1, "UE-2": 2, "UE-3": 3, "CS": 4, "MRFP": 5, "P-CSCF": 11, "S-CSCF": 12}
USER = {"UE-1": "ue1", "UE-2": "ue2", "UE-3": "ue3"}
UES = ("UE-1", "UE-2", "UE-3")
# Proxies each UE preloads as its outbound route, in order.
OUTBOUND = {"UE-1": ("P-CSCF", "S-CSCF"), "UE-2": ("S-CSCF",), "UE-3": ("S-CSCF",)}


@dataclass(frozen=True)
class Topology:
    """All addresses of one run on 127.N.0.0/24 (N in 1..254)."""

    subnet: int
    sip_port: int = SIP_PORT
    rtp_base_port: int = RTP_BASE_PORT
    roles: tuple[str, ...] = field(default=ROLES)

    def __post_init__(self) -> None:
        if not 1 <= self.subnet <= 254:
            raise ValueError(f"subnet octet must be 1..254, got {self.subnet}")

    def ip(self, role: str) -> str:
        return f"127.{self.subnet}.0.{HOST_OCTET[role]}"

    def sip_addr(self, role: str) -> tuple[str, int]:
        return (self.ip(role), self.port(role))

    def port(self, role: str) -> int:
        """The role's SIP port (one port for all here; a SUT profile may give each role its own)."""
        return self.sip_port

    def transport(self, role: str) -> str:
        """"udp" or "tcp": what the role listens on and is reached by (UDP here; see harness/agents/sut.py)."""
        return "udp"

    def user_uri(self, role: str) -> str:
        """The UE's AoR, also its contact (no registrar in the embedded topology)."""
        return f"sip:{USER[role]}@{self.ip(role)}"

    def contact(self, role: str) -> str:
        return f"sip:{USER[role]}@{self.ip(role)}:{self.sip_port}"

    @property
    def factory_uri(self) -> str:
        return f"sip:conference-factory@{self.ip('CS')}"

    def conference_uri(self, conf_id: str) -> str:
        """The focus's conference URI (RFC 4579), the Contact of its 200 OK and the Refer-To target."""
        port = "" if self.sip_port == SIP_PORT else f":{self.sip_port}"
        return f"sip:conf-{conf_id}@{self.ip('CS')}{port}"

    def outbound_route(self, role: str) -> list[str]:
        """Route header values a UE preloads (RFC 3261 §8.1.2, loose routing)."""
        return [f"<sip:{self.ip(proxy)};lr>" for proxy in OUTBOUND.get(role, ())]

    @property
    def network(self) -> str:
        return f"127.{self.subnet}.0.0/24"

    @property
    def bpf(self) -> str:
        """Capture filter for everything this run puts on the wire."""
        return f"net {self.network}"

    def role_of(self, ip: str) -> str | None:
        for role in self.roles:
            if self.ip(role) == ip:
                return role
        return None

    def role_map(self) -> dict[str, str]:
        """role -> ip, as the verifier's `roles` argument expects."""
        return {role: self.ip(role) for role in self.roles}


def subnet_free(subnet: int, port: int = SIP_PORT) -> bool:
    """True when 127.N.0.1:port can be bound (nobody else runs on this /24)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((f"127.{subnet}.0.1", port))
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            return False
        raise
    finally:
        sock.close()
    return True


def pick_subnet(seed: int = 0) -> int:
    """The first free N in 1..254 starting from `seed` (e.g. a hash of the xdist worker id)."""
    for k in range(254):
        subnet = (seed + k) % 254 + 1
        if subnet_free(subnet):
            return subnet
    raise RuntimeError("no free 127.N.0.0/24 subnet: every 127.N.0.1:5060 is bound")
