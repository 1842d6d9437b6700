"""A.2.1 with Debian's baresip (baresip-core) as UE-2 and UE-3; the harness plays UE-1, the CS and the
proxies. Judged step by step from the capture, baresip only from what it put on the wire.

What baresip 1.0 does differently from the checklist (each found in these runs):
* its INVITE to the Refer-To target carries no Referred-By (JOIN-2, RFC 3892 §2.2: MUST copy): those
  two steps fail, and are expected failures below with that reason;
* it sends the final NOTIFY within tens of ms of the first (NOT-6, SHOULD wait 1 s: a warning);
* its sipfrag bodies end in a bare LF, not CRLF (`SIP/2.0 200 OK\\n`), which RFC 3420's grammar does
  not allow; the harness's UE-1 reads them leniently so the flow goes on, and the verifier warns NOT-3;
* it answers INVITEs with 180 Ringing first, and its Contact user is its own (`ue2-0x...`);
* its RTP leaves from 127.0.0.1, not from the address its SDP gives (it binds RTP sockets to the
  wildcard address and the kernel picks the loopback source): not symmetric (RFC 4961, SHOULD);
  the verifier does not flag it.
Given the S-CSCF as `outbound` proxy it INVITEs the conference through it, so the hop counts of
Figure A.2 hold; without that it would INVITE the Refer-To target directly.

When baresip is not installed these tests fail with the package to install (interop).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.peers.baresip import RTP_PORTS
from testcases.sut_steps import peer_suite, sip_fields

# One worker runs a module's tests (tox: --dist loadgroup), so its shared run happens once.
pytestmark = [pytest.mark.interop, pytest.mark.xdist_group("interop-baresip")]

PROFILE = Path(__file__).resolve().parents[1] / "profiles" / "baresip-ue2-ue3.toml"
NO_REFERRED_BY = ("baresip 1.0 does not copy Referred-By from the REFER into its INVITE to the Refer-To "
                  "target (JOIN-2, RFC 3892 §2.2)")
DEVIATIONS = {"34~35": ({"JOIN-2"}, NO_REFERRED_BY), "65~66": ({"JOIN-2"}, NO_REFERRED_BY)}


globals().update(peer_suite(PROFILE, "baresip-ue2-ue3", DEVIATIONS))  # run, test_step, deviations, flow end


def test_baresip_reached_the_conference_through_the_s_cscf(run) -> None:  # noqa: ANN001
    topo = run.topology
    joins = sip_fields(run.pcap, 'sip.Method == "INVITE" && !sip.to.tag && sip.r-uri.user contains "conf-"',
                       "ip.src", "ip.dst", "sip.User-Agent")
    for ue in ("UE-2", "UE-3"):
        first = [r for r in joins if r[0] == topo.ip(ue)]
        assert first and all(r[1] == topo.ip("S-CSCF") for r in first), joins
        assert all("baresip" in r[2] for r in first), first


def test_baresip_sends_audio_to_the_mrfp(run) -> None:  # noqa: ANN001
    """From its RTP port range; the source address is 127.0.0.1, not its own (see the module doc)."""
    low, high = (int(p) for p in RTP_PORTS.split("-"))
    rows = sip_fields(run.pcap, f"rtp && ip.dst == {run.topology.ip('MRFP')} && udp.srcport >= {low} "
                                f"&& udp.srcport <= {high}", "udp.srcport")
    assert len({r[0] for r in rows}) == 2, "one RTP stream from each baresip"
