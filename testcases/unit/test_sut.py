"""What a SUT profile makes of a run: addresses and URIs per role, relocation, and UE registration
(digest challenge, wrong password, refresh before expiry) against a registrar played in-process."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from harness.agents.errors import FlowError
from harness.agents.registration import Registration, refresh_delay
from harness.agents.sut import SutTopology
from harness.agents.ua import SipAgent
from harness.profile import load_profile, load_profile_text, relocated
from harness.sip.digest import Challenge, verify
from harness.sip.headers import SipUri

PROFILES = Path(__file__).resolve().parents[2] / "profiles"


def test_embedded_defaults_when_the_profile_places_nothing() -> None:
    topo = SutTopology(subnet=42, profile=load_profile(PROFILES / "all-agents.toml"))
    assert topo.ip("UE-1") == "127.42.0.1" and topo.port("UE-1") == 5060 and topo.transport("CS") == "udp"
    assert topo.user_uri("UE-2") == "sip:ue2@127.42.0.2"
    assert topo.contact("UE-2") == "sip:ue2@127.42.0.2:5060"
    assert topo.factory_uri == "sip:conference-factory@127.42.0.4"
    assert topo.outbound_route("UE-1") == ["<sip:127.42.0.11;lr>", "<sip:127.42.0.12;lr>"]
    assert topo.bpf == "net 127.42.0.0/24"
    assert topo.external == frozenset() and not topo.registers("UE-1")


def test_tcp_puts_the_transport_in_every_uri_others_send_to() -> None:
    topo = SutTopology(subnet=9, profile=load_profile(PROFILES / "kamailio-core-tcp.toml"))
    assert topo.contact("UE-1") == "sip:ue1@127.77.0.1:5060;transport=tcp"
    assert topo.conference_uri("x") == "sip:conf-x@127.77.0.4;transport=tcp"
    assert SipUri.parse(topo.factory_uri).params["transport"] == "tcp"
    assert topo.outbound_route("UE-1") == ["<sip:127.77.0.11:5060;transport=tcp;lr>",
                                           "<sip:127.77.0.12:5060;transport=tcp;lr>"]
    assert topo.user_uri("UE-1") == "sip:ue1@ims.test"  # the registered public identity
    assert topo.registers("UE-1") and topo.registration_hop("UE-1") == ("127.77.0.11", 5060)
    assert topo.registration_hop("UE-3") == ("127.77.0.12", 5060)  # UE-2/UE-3 sit on the S-CSCF (§1.1)
    assert topo.external == {"P-CSCF", "S-CSCF"}
    assert topo.role_map()["S-CSCF"] == "127.77.0.12:5060" and topo.role_map()["MRFP"] == "127.77.0.5"


def test_ipv6_hosts_are_bracketed_and_filtered_by_host() -> None:
    profile = load_profile_text('[roles.UE-1]\nhost = "::1"\nport = 5071\n[roles.CS]\nhost = "::1"\nport = 5074\n'
                                '[roles.MRFP]\nhost = "::1"\n')
    topo = SutTopology(subnet=8, profile=profile)
    assert topo.contact("UE-1") == "sip:ue1@[::1]:5071"
    assert topo.factory_uri == "sip:conference-factory@[::1]:5074"
    assert topo.bpf.endswith(" or (host ::1 and (port 5071 or port 5074 or udp portrange 20000-32767))")
    assert "host 127.8.0.2 or" in topo.bpf  # a host of its own: everything on it
    assert topo.role_map()["UE-1"] == "[::1]:5071" and "MRFP" not in topo.role_map()  # ::1 is shared


def test_relocation_moves_hosts_and_every_uri_naming_them() -> None:
    moved = relocated(load_profile(PROFILES / "kamailio-core-tcp.toml"), 201)
    assert moved.role("P-CSCF").host == "127.201.0.11"
    assert moved.role("P-CSCF").uri == "sip:127.201.0.11:5060;transport=tcp;lr"
    assert moved.domain.conference_factory_uri == "sip:conference-factory@127.201.0.4;transport=tcp"
    assert moved.users["UE-1"].uri == "sip:ue1@ims.test"  # a domain name is not an address
    clash = load_profile_text('[roles.UE-1]\nhost = "127.0.0.1"\n[roles.UE-2]\nhost = "127.1.0.1"\n')
    with pytest.raises(ValueError, match="share a last octet"):
        relocated(clash, 5)


def test_refresh_comes_before_expiry_with_room_for_retransmissions() -> None:
    assert refresh_delay(600) == 300 and refresh_delay(70) == 35 and refresh_delay(2) == 1
    assert refresh_delay(3600) == 1800 and refresh_delay(100) == 50
    assert all(refresh_delay(g) <= g - 32 for g in (100, 600, 3600))


# --- registration against an in-process registrar -------------------------------------------------

class _Registrar(SipAgent):
    """Challenges every REGISTER without valid credentials (fresh nonce each time), grants `grant` s."""

    def __init__(self, ip: str, algorithm: str, grant: int, users: dict[str, str]) -> None:
        super().__init__("S-CSCF", ip, 5060)
        self.algorithm, self.grant, self.users = algorithm, grant, users
        self.nonces: list[str] = []
        self.registers: list[str | None] = []

    def handle_request(self, msg, event) -> None:  # noqa: ANN001
        authorization = msg.get("Authorization")
        self.registers.append(authorization)
        if authorization is not None and any(
                verify(authorization, "REGISTER", lambda user, realm: self.users.get(user), nonce=n)
                for n in self.nonces):
            contact = msg.get("Contact") or ""
            self.respond(msg, 200, "OK", to_tag="r", headers=[("Contact", f"{contact};expires={self.grant}")])
            return
        self.nonces.append(secrets.token_hex(8))
        challenge = Challenge("ims.test", self.nonces[-1], self.algorithm, ("auth",))
        self.respond(msg, 401, "Unauthorized", to_tag="r", headers=[("WWW-Authenticate", str(challenge))])


class _Ue(SipAgent):
    def handle_request(self, msg, event) -> None:  # noqa: ANN001
        self.respond(msg, 405, "Method Not Allowed")


def _register(algorithm: str, password: str, grant: int, hold: float) -> tuple[Registration, _Registrar]:
    net = f"127.{90 + secrets.randbelow(9)}.{secrets.randbelow(250)}"

    async def main() -> tuple[Registration, _Registrar]:
        registrar = _Registrar(f"{net}.12", algorithm, grant, {"ue2": "ue2-secret"})
        ue = _Ue("UE-2", f"{net}.2", 5060)
        await registrar.start()
        await ue.start()
        reg = Registration(ue, aor="sip:ue2@ims.test", contact=f"<sip:ue2@{net}.2:5060>", username="ue2",
                           password=password, registrar_uri="sip:ims.test", hop=(f"{net}.12", 5060),
                           expires=grant, wait=2.0)
        try:
            await reg.register()
            reg.start_refresh()
            await asyncio.sleep(hold)
        finally:
            await reg.stop()
            await ue.stop()
            await registrar.stop()
        return reg, registrar

    return asyncio.run(main())


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_register_answers_the_challenge_with_its_algorithm(algorithm: str) -> None:
    reg, registrar = _register(algorithm, "ue2-secret", grant=600, hold=0.0)
    assert [(a.status, a.algorithm) for a in reg.attempts] == [(401, None), (200, algorithm)]
    assert registrar.registers[0] is None and f"algorithm={algorithm}" in str(registrar.registers[1])
    assert reg.granted == 600


def test_a_short_binding_is_refreshed_before_it_lapses() -> None:
    reg, registrar = _register("MD5", "ue2-secret", grant=2, hold=2.3)
    # 401, 200, then a refresh every second, well within the 2 s binding, each answered at once with
    # the nonce already held (nc = 2, 3 ...) instead of waiting for a new challenge.
    assert reg.refreshes >= 2, reg.attempts
    assert [a.status for a in reg.attempts[:2]] == [401, 200] and {a.status for a in reg.attempts[2:]} == {200}
    assert len({a.cseq for a in reg.attempts}) == len(reg.attempts)  # CSeq + 1 each time (§10.2.4)


def test_wrong_password_is_a_flow_error_naming_the_user() -> None:
    with pytest.raises(FlowError, match="refused the credentials of 'ue2'"):
        _register("MD5", "not-it", grant=600, hold=0.0)
