"""A.2.1 through Debian's Kamailio as P-CSCF and S-CSCF, with digest registration first.

Two whole runs, each judged step by step from its capture:
* profiles/kamailio-core.toml: UDP, MD5;
* profiles/kamailio-core-tcp.toml: TCP on every hop (RFC 3261 §18), SHA-256 (RFC 8760), and the IMS
  header fields (P-Preferred-Identity from the UEs, P-Asserted-Identity added by Kamailio,
  `Supported: gruu` with a +sip.instance Contact, UE-1 known by a tel URI in From/To).
Kamailio is stateful, so every INVITE hop shows its own 100 Trying: the checklist accepts that
(§1.1), and the tests below check it is there rather than hide it.

When kamailio is not installed these tests fail with the package to install (interop).
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from harness.agents.registration import Registration
from harness.agents.ua import SipAgent
from harness.peers.kamailio import ImsCore, require_kamailio
from harness.profile import load_profile_text
from testcases.sut_steps import STEP_IDS, assert_step_passes, sip_fields

# One worker runs a module's tests (tox: --dist loadgroup), so its shared run happens once.
pytestmark = [pytest.mark.interop, pytest.mark.xdist_group("interop-kamailio")]

PROFILES = Path(__file__).resolve().parents[1] / "profiles"


def _variant(name: str, **replacements: str) -> object:
    text = (PROFILES / name).read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return load_profile_text(text, str(PROFILES / name))


@pytest.fixture(scope="module")
def udp_run(sut_runner):  # noqa: ANN001, ANN201
    require_kamailio()
    return sut_runner(PROFILES / "kamailio-core.toml", "kamailio-udp-md5")


@pytest.fixture(scope="module")
def tcp_run(sut_runner):  # noqa: ANN001, ANN201
    require_kamailio()
    profile = _variant("kamailio-core-tcp.toml", **{
        'algorithm = "MD5"': 'algorithm = "SHA-256"',
        "[media]": "[ims]\np_preferred_identity = true\np_asserted_identity = true\ngruu = true\n\n[media]",
        'password = "ue1-secret"': 'password = "ue1-secret"\ntel = "tel:+493011110001"'})
    return sut_runner(profile, "kamailio-tcp-sha256-ims")


# --- UDP, MD5 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("step_id", STEP_IDS)
def test_udp_md5_step(udp_run, step_id: str) -> None:  # noqa: ANN001
    assert_step_passes(udp_run, step_id)


def test_udp_flow_ran_to_the_end(udp_run) -> None:  # noqa: ANN001
    assert udp_run.play_error is None, udp_run.play_error
    assert udp_run.report is not None and udp_run.report.error is None


def test_every_ue_registered_through_its_first_hop_after_a_challenge(udp_run) -> None:  # noqa: ANN001
    regs = udp_run.report.registrations
    assert set(regs) == {"UE-1", "UE-2", "UE-3"}
    for role, attempts in regs.items():
        assert [(a.status, a.algorithm) for a in attempts] == [(401, None), (200, "MD5")], role
    topo = udp_run.topology
    rows = sip_fields(udp_run.pcap, 'sip.Method == "REGISTER"', "ip.src", "ip.dst", "sip.auth.algorithm")
    # UE-1 through the P-CSCF (which adds a Path and relays), UE-2/UE-3 straight to the S-CSCF.
    assert [topo.ip("UE-1"), topo.ip("P-CSCF")] in [r[:2] for r in rows]
    assert [topo.ip("P-CSCF"), topo.ip("S-CSCF")] in [r[:2] for r in rows]
    assert {r[2] for r in rows if r[2]} == {"MD5"}


def test_kamailio_answers_each_invite_hop_with_100_trying(udp_run) -> None:  # noqa: ANN001
    topo = udp_run.topology
    rows = sip_fields(udp_run.pcap, "sip.Status-Code == 100", "ip.src", "sip.CSeq.method")
    senders = {src for src, method in rows if method == "INVITE"}
    assert {topo.ip("P-CSCF"), topo.ip("S-CSCF")} <= senders, rows


# --- TCP, SHA-256, IMS header fields -----------------------------------------------------------------

@pytest.mark.parametrize("step_id", STEP_IDS)
def test_tcp_sha256_ims_step(tcp_run, step_id: str) -> None:  # noqa: ANN001
    assert_step_passes(tcp_run, step_id)


def test_tcp_every_sip_message_rode_tcp(tcp_run) -> None:  # noqa: ANN001
    assert tcp_run.play_error is None, tcp_run.play_error
    assert sip_fields(tcp_run.pcap, "sip && udp", "frame.number") == []
    vias = sip_fields(tcp_run.pcap, "sip.Method", "sip.Via")
    assert vias and all(v.startswith("SIP/2.0/TCP") for row in vias for v in row[0].split(","))


def test_tcp_registration_answered_sha256_challenges(tcp_run) -> None:  # noqa: ANN001
    for role, attempts in tcp_run.report.registrations.items():
        assert [(a.status, a.algorithm) for a in attempts] == [(401, None), (200, "SHA-256")], role
    algorithms = {r[0] for r in sip_fields(tcp_run.pcap, "sip.Status-Code == 401", "sip.auth.algorithm")}
    assert algorithms == {"SHA-256"}


def test_kamailio_asserts_the_identity_the_ue_preferred(tcp_run) -> None:  # noqa: ANN001
    topo = tcp_run.topology
    rows = sip_fields(tcp_run.pcap, 'sip.Method == "INVITE" && !sip.to.tag', "ip.src", "ip.dst", "sip.From",
                      "sip.P-Preferred-Identity", "sip.P-Asserted-Identity")
    from_ue1 = [r for r in rows if r[0] == topo.ip("UE-1")]
    beyond_pcscf = [r for r in rows if r[0] == topo.ip("P-CSCF")]
    assert from_ue1 and all(r[3] and not r[4] for r in from_ue1), from_ue1
    assert beyond_pcscf and all(r[4] and not r[3] for r in beyond_pcscf), beyond_pcscf
    register_contacts = sip_fields(tcp_run.pcap, 'sip.Method == "REGISTER"', "sip.Contact", "sip.Supported")
    assert all("+sip.instance" in c and "gruu" in s for c, s in register_contacts), register_contacts


# --- re-registration before expiry -----------------------------------------------------------------

class _Ue(SipAgent):
    """Just enough UE to hold a registration: it answers nothing but 405."""

    def handle_request(self, msg, event) -> None:  # noqa: ANN001
        if msg.method != "ACK":
            self.respond(msg, 405, "Method Not Allowed")


def test_a_short_binding_is_refreshed_before_it_expires(tmp_path: Path) -> None:
    require_kamailio()
    net = f"127.77.{200 + secrets.randbelow(40)}"

    async def scenario() -> Registration:
        ue = _Ue("UE-1", f"{net}.1", 5060)
        await ue.start()
        reg = Registration(ue, aor="sip:ue1@ims.test", contact=f"<sip:ue1@{net}.1:5060>", username="ue1",
                           password="ue1-secret", registrar_uri="sip:ims.test", hop=(f"{net}.11", 5060), expires=2)
        try:
            await reg.register()
            reg.start_refresh()
            await asyncio.sleep(2.6)  # two refreshes at ~1 s intervals, before the 2 s binding lapses
        finally:
            await reg.stop()
            await ue.stop()
        return reg

    with ImsCore(tmp_path, pcscf_addr=(f"{net}.11", 5060), scscf_addr=(f"{net}.12", 5060), realm="ims.test",
                 users={"ue1": "ue1-secret"}):
        reg = asyncio.run(scenario())
    assert reg.granted == 2
    assert reg.refreshes >= 2, reg.attempts
    assert all(a.status == 200 for a in reg.attempts[2:]), reg.attempts  # the nonce is reused (nc=2, 3 ...)
