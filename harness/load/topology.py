"""Addresses of a load run: the shared network (proxies, CS, MRFP) on 127.N.0.x as in a single run,
and each instance's three UEs on addresses of their own, 127.N.A.B, so every AoR, Contact and RTP
port is unique and the verifier can tell the instances apart by their dialogs.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.agents.topology import HOST_OCTET, UES, Topology

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
class InstanceTopology(Topology):
    """One instance's view: its own UEs, the shared CS, MRFP and proxies."""

    instance: int = 1

    def ip(self, role: str) -> str:
        if role in UES:
            return ue_address(self.subnet, self.instance, role)
        return f"127.{self.subnet}.0.{HOST_OCTET[role]}"

    @property
    def network(self) -> str:
        return f"127.{self.subnet}.0.0/16"


def shared_roles(topology: Topology) -> dict[str, str]:
    """role -> address of the roles every instance shares (pinned for the verifier)."""
    return {role: topology.ip(role) for role in ("CS", "MRFP", "P-CSCF", "S-CSCF")}
