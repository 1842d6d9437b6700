"""agents layer: the roles of A.2.1 — UE, conference server (focus), MRFP, stateless proxy — on a
per-run loopback topology (see docs/interfaces.md)."""

from harness.agents.errors import FlowError, FlowTimeout
from harness.agents.faults import FAULTS, Fault, check_faults
from harness.agents.focus import ConferenceServer
from harness.agents.mrfp import Mrfp
from harness.agents.proxy import Proxy
from harness.agents.topology import ROLES, Topology, pick_subnet
from harness.agents.ue import Call, Referral, UserEquipment

__all__ = ["FAULTS", "ROLES", "Call", "ConferenceServer", "Fault", "FlowError", "FlowTimeout", "Mrfp", "Proxy",
           "Referral", "Topology", "UserEquipment", "check_faults", "pick_subnet"]
