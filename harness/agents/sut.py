"""The topology a SUT profile describes: every role's address, port, transport and URIs.

`SutTopology` is a `Topology` whose answers come from a `harness.profile.Profile`, so the agents,
the choreography and the verifier's role map read one object whichever way a run is set up. Roles
the profile leaves without a host keep the run's own 127.N.0.x address.

URIs follow the transport: on TCP a Contact, a preloaded Route, the conference URIs and the
Record-Route of the harness's proxies carry `;transport=tcp` (RFC 3261 §19.1.1), so whoever sends
to them picks TCP too. IPv6 hosts are written in brackets (`[::1]:5062`).
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass

from harness.agents.topology import HOST_OCTET, OUTBOUND, SIP_PORT, USER, Topology
from harness.profile import Profile
from harness.sip.headers import SipUri

RTP_PORTS = "20000-32767"  # the agents' RTP from 20000, launched peers' from 30000; below ephemeral ports


def hostport(host: str, port: int, *, default_port: bool = False) -> str:
    """`host:port` with IPv6 in brackets; the port left out when it is 5060 and `default_port`."""
    bracketed = f"[{host}]" if ":" in host else host
    return bracketed if default_port and port == SIP_PORT else f"{bracketed}:{port}"


@dataclass(frozen=True)
class SutTopology(Topology):
    """A Topology read from `profile`; `subnet` places the roles the profile does not place."""

    profile: Profile | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.profile is None:
            raise ValueError("SutTopology needs a profile")

    @property
    def _profile(self) -> Profile:
        assert self.profile is not None
        return self.profile

    # --- where each role is -------------------------------------------------------------------

    def ip(self, role: str) -> str:
        host = self._profile.role(role).host
        return host if host is not None else f"127.{self.subnet}.0.{HOST_OCTET[role]}"

    def port(self, role: str) -> int:
        return self._profile.role(role).port

    def transport(self, role: str) -> str:
        return self._profile.role(role).transport

    def hostport(self, role: str) -> str:
        return hostport(self.ip(role), self.port(role), default_port=True)

    def _tp(self, role: str) -> str:
        return ";transport=tcp" if self.transport(role) == "tcp" else ""

    @property
    def external(self) -> frozenset[str]:
        return frozenset(self._profile.external_roles)

    def is_external(self, role: str) -> bool:
        return self._profile.role(role).external

    # --- URIs ---------------------------------------------------------------------------------

    def user_uri(self, role: str) -> str:
        """The UE's identity in From/To (and what the other agents match it by): its tel URI when the
        profile gives one, else its SIP address of record (`target_uri`)."""
        user = self._profile.users.get(role)
        return user.tel if user is not None and user.tel is not None else self.target_uri(role)

    def target_uri(self, role: str) -> str:
        """The UE's SIP address of record, the Request-URI that reaches it and the AoR it registers:
        [users] uri, else the role's own uri, else sip:ueN@<home> when it registers, else
        sip:ueN@<its address> (the AoR is the contact: no registrar)."""
        profile = self._profile
        user = profile.users.get(role)
        if user is not None and user.uri is not None:
            return user.uri
        if profile.role(role).uri is not None:
            return str(profile.role(role).uri)
        if self.registers(role) and profile.domain.home:
            name = user.username if user is not None and user.username else USER[role]
            return f"sip:{name}@{profile.domain.home}"
        return f"sip:{USER[role]}@{self.hostport(role)}{self._tp(role)}"

    def contact(self, role: str) -> str:
        return f"sip:{USER.get(role, role.lower())}@{hostport(self.ip(role), self.port(role))}{self._tp(role)}"

    @property
    def factory_uri(self) -> str:
        given = self._profile.domain.conference_factory_uri
        return given if given is not None else f"sip:conference-factory@{self.hostport('CS')}{self._tp('CS')}"

    def conference_uri(self, conf_id: str) -> str:
        return f"sip:conf-{conf_id}@{self.hostport('CS')}{self._tp('CS')}"

    def proxy_uri(self, role: str) -> str:
        """A proxy's loose-routing URI: the role's `uri` from the profile, else built from its address."""
        given = self._profile.role(role).uri
        if given is not None:
            uri = SipUri.parse(given)
            return given if "lr" in uri.params else f"{given};lr"
        return f"sip:{self.hostport(role)}{self._tp(role)};lr"

    def outbound_route(self, role: str) -> list[str]:
        return [f"<{self.proxy_uri(proxy)}>" for proxy in OUTBOUND.get(role, ())]

    def instance_id(self, role: str) -> str:
        """A stable RFC 4122 UUID per UE and run, for `+sip.instance` (RFC 5626 §4.1, RFC 5627)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sip-ims-harness:{self.subnet}:{role}"))

    # --- registration -------------------------------------------------------------------------

    @property
    def registrar(self) -> str | None:
        return self._profile.registration.registrar

    def registers(self, role: str) -> bool:
        """A UE registers when the profile names a registrar; UE-1 through the P-CSCF, UE-2 and UE-3
        through the S-CSCF, their first hop, so Figure A.2's hop counts hold (checklist §1.1)."""
        return self.registrar is not None and role in OUTBOUND

    def registration_hop(self, role: str) -> tuple[str, int]:
        """Where a UE sends its REGISTER: the first proxy of its outbound route."""
        first = OUTBOUND[role][0]
        return self.ip(first), self.port(first)

    # --- capture and verification -------------------------------------------------------------

    def hosts(self) -> list[str]:
        return sorted({self.ip(role) for role in self.roles})

    @property
    def bpf(self) -> str:
        """One /24 when every role has its own address in it (the examples); else host by host, and on
        a host several roles share (::1, 127.0.0.1) only their SIP ports and the RTP range, so another
        run on that host does not end up in this capture."""
        hosts = self.hosts()
        by_host = {h: [r for r in self.roles if self.ip(r) == h] for h in hosts}
        nets = {ipaddress.ip_network(f"{h}/24", strict=False) for h in hosts if ":" not in h}
        if len(nets) == 1 and all(":" not in h and len(rs) == 1 for h, rs in by_host.items()):
            return f"net {nets.pop()}"
        parts = []
        for host, roles in by_host.items():
            if len(roles) == 1:
                parts.append(f"host {host}")
                continue
            ports = " or ".join(f"port {p}" for p in sorted({self.port(r) for r in roles if r != "MRFP"}))
            parts.append(f"(host {host} and ({ports} or udp portrange {RTP_PORTS}))")
        return " or ".join(parts)

    def role_map(self) -> dict[str, str]:
        """role -> host:port of its SIP address (a host also sends from other ports: a started peer's
        readiness probe, TCP connections), and the MRFP's host when no other role shares it."""
        out = {role: hostport(self.ip(role), self.port(role)) for role in self.roles if role != "MRFP"}
        if [self.ip(role) for role in self.roles].count(self.ip("MRFP")) == 1:
            out["MRFP"] = self.ip("MRFP")
        return out
