"""Addresses of a load run: the shared network (proxies, CS, MRFP) on 127.N.0.x as in a single run,
and each instance's three UEs on addresses of their own, 127.N.A.B, so every AoR, Contact and RTP
port is unique and the verifier can tell the instances apart by their dialogs.

A SUT profile may make the CS (with its MRFP) external: every instance then creates its conference
at the profile's factory URI, through the harness's proxies. Only the CS can be external here: a UE
under test plays one call at a time, and an external IMS core would need a provisioned user per
instance.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from harness.agents.topology import HOST_OCTET, UES, Topology
from harness.profile import Profile
from harness.sip.errors import SipError
from harness.sip.headers import SipUri, parse_uri

PER_OCTET = 84  # instances per third octet: UE octets 1..252
MAX_INSTANCES = 254 * PER_OCTET


def ue_address(subnet: int, instance: int, role: str) -> str:
    """127.N.A.B of `role` (a UE) in 1-based `instance`."""
    if not 1 <= instance <= MAX_INSTANCES:
        raise ValueError(f"instance must be 1..{MAX_INSTANCES}, got {instance}")
    a = 1 + (instance - 1) // PER_OCTET
    b = 1 + 3 * ((instance - 1) % PER_OCTET) + UES.index(role)
    return f"127.{subnet}.{a}.{b}"


@dataclass(frozen=True)
class ExternalCs:
    """A CS under test, from a profile: where it listens, its factory URI, its MRFP's host."""

    host: str
    port: int
    factory_uri: str
    mrfp_host: str

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.host, self.mrfp_host)))


def external_cs(profile: Profile) -> ExternalCs | None:
    """The profile's external CS for a load run, None when the CS is the harness's; ValueError says
    what a load run cannot play (an external UE or proxy, a CS off 127/8, over TCP, or without address
    or factory URI)."""
    external = profile.external_roles
    others = [role for role in external if role not in ("CS", "MRFP")]
    if others:
        raise ValueError(f"load mode plays many instances at once: only the CS (with its MRFP) can be external, "
                         f"not {', '.join(others)} (a UE under test plays one call at a time; an external IMS core "
                         "would need a provisioned user per instance)")
    if not external:
        return None
    cs, mrfp = profile.role("CS"), profile.role("MRFP")
    if not cs.external:
        raise ValueError("the MRFP is external but the CS is the harness's: the harness's CS drives its own MRFP")
    if cs.host is None:
        raise ValueError("roles.CS: an external CS needs host (and port)")
    address = ipaddress.ip_address(cs.host)
    if address.version != 4 or not address.is_loopback:
        raise ValueError(f"roles.CS: load mode places its UEs and proxies on 127.N.A.B, which reach 127/8 "
                         f"only; {cs.host} is not there (run the CS on this machine, or a single run with --profile)")
    if cs.transport != "udp":
        raise ValueError(f"roles.CS: load mode reaches an external CS over UDP, not {cs.transport}")
    factory = profile.domain.conference_factory_uri
    if factory is None:
        raise ValueError("domain.conference_factory_uri: an external CS needs its conference factory URI")
    try:
        uri = parse_uri(factory)
    except SipError as exc:
        raise ValueError(f"domain.conference_factory_uri: {exc}") from exc
    if not isinstance(uri, SipUri):
        raise ValueError(f"domain.conference_factory_uri: {factory} is not a SIP URI the proxies can route")
    return ExternalCs(cs.host, cs.port, factory, mrfp.host if mrfp.external and mrfp.host else cs.host)


@dataclass(frozen=True)
class InstanceTopology(Topology):
    """One instance's view: its own UEs, the shared CS, MRFP and proxies (the CS maybe a SUT's)."""

    instance: int = 1
    sut: ExternalCs | None = None

    def ip(self, role: str) -> str:
        if role in UES:
            return ue_address(self.subnet, self.instance, role)
        if self.sut is not None and role in ("CS", "MRFP"):
            return self.sut.host if role == "CS" else self.sut.mrfp_host
        return f"127.{self.subnet}.0.{HOST_OCTET[role]}"

    def port(self, role: str) -> int:
        return self.sut.port if self.sut is not None and role == "CS" else self.sip_port

    @property
    def factory_uri(self) -> str:
        return self.sut.factory_uri if self.sut is not None else super().factory_uri

    @property
    def network(self) -> str:
        return f"127.{self.subnet}.0.0/16"

    @property
    def bpf(self) -> str:
        """The load's /16, and the external CS's and MRFP's hosts."""
        hosts = self.sut.hosts if self.sut is not None else ()
        return " or ".join((f"net {self.network}", *(f"host {host}" for host in hosts)))


def shared_roles(topology: Topology) -> dict[str, str]:
    """role -> address of the roles every instance shares (pinned for the verifier); an MRFP on its
    CS's host is left for the verifier to find by the SDP (one address names one role)."""
    roles = {role: topology.ip(role) for role in ("CS", "MRFP", "P-CSCF", "S-CSCF")}
    if roles["MRFP"] == roles["CS"]:
        del roles["MRFP"]
    return roles
