"""Kamailio as P-CSCF + S-CSCF: digest registration through the P-CSCF over real UDP and TCP sockets.

Each (transport, algorithm) pair gets its own two Kamailio processes on a private loopback /24
(127.77.X.11 and .12); the test plays the UEs with plain sockets, harness.sip.message and
harness.sip.digest. When kamailio is not installed these tests fail with the package to install:
an interop run that silently skipped its peer would report a success it never tested.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.peers.kamailio import ImsCore, KamailioError, KamailioInstance, require_kamailio
from harness.sip.build import make_response
from harness.sip.dialog import Dialog
from harness.sip.digest import Challenge, answer, challenges_in
from harness.sip.message import SipMessage

pytestmark = pytest.mark.interop

REALM = "ims.test"
USERS = {"ue1": "ue1-secret", "ue2": "ue2-secret"}
WAIT = 5.0  # every receive below gives up after this many seconds


def _subnet_octet(index: int) -> int:
    """Third octet of 127.77.X.0/24: one per fixture parameter and xdist worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    return 100 + (int(worker) if worker.isdigit() else 0) * 8 + index


class Ue:
    """A bare-bones UE on a real socket: sends what it is given, frames what comes back."""

    def __init__(self, host: str, transport: str, server: tuple[str, int]) -> None:
        self.transport = transport
        self.server = server
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind((host, 0))
        self.sock.settimeout(WAIT)
        if transport == "tcp":
            self.sock.connect(server)
        self.host, self.port = self.sock.getsockname()
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, msg: SipMessage) -> None:
        if self.transport == "udp":
            self.sock.sendto(bytes(msg), self.server)
        else:
            self.sock.sendall(bytes(msg))

    def recv(self) -> SipMessage:
        deadline = time.monotonic() + WAIT
        while True:
            if self.transport == "udp":
                self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
                data, _ = self.sock.recvfrom(65535)
                return SipMessage.parse(data)
            msg, used = SipMessage.parse_stream(self.buffer)
            if msg is not None:
                self.buffer = self.buffer[used:]
                return msg
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = self.sock.recv(65535)
            if not chunk:
                raise ConnectionError("the proxy closed the TCP connection")
            self.buffer += chunk

    def final_response(self, call_id: str) -> SipMessage:
        """The first final response of this call, skipping 1xx and anything else."""
        while True:
            msg = self.recv()
            if msg.status is not None and msg.status >= 200 and msg.call_id == call_id:
                return msg

    def via(self) -> str:
        return f"SIP/2.0/{self.transport.upper()} {self.host}:{self.port};rport;branch=z9hG4bK{secrets.token_hex(8)}"

    def contact(self, user: str) -> str:
        return f"<sip:{user}@{self.host}:{self.port};transport={self.transport}>"

    def register(self, user: str, call_id: str, cseq: int, authorization: str | None = None) -> SipMessage:
        headers = [
            ("Via", self.via()),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{user}@{REALM}>;tag={call_id[:8]}"),
            ("To", f"<sip:{user}@{REALM}>"),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} REGISTER"),
            ("Contact", self.contact(user)),
            ("Expires", "600"),
        ]
        if authorization is not None:
            headers.append(("Authorization", authorization))
        request = SipMessage.request("REGISTER", f"sip:{REALM}", headers, content_length=True)
        self.send(request)
        return self.final_response(call_id)


@pytest.fixture(scope="module", params=[("udp", "MD5"), ("tcp", "MD5"), ("udp", "SHA-256"), ("tcp", "SHA-256")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def ims(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ImsCore, str]]:
    require_kamailio()  # fails (not skips) with "kamailio not found: apt-get install -y kamailio"
    transport, algorithm = request.param
    octet = _subnet_octet(request.param_index)
    log_dir: Path = tmp_path_factory.mktemp(f"kamailio-{transport}-{algorithm}")
    core = ImsCore(log_dir, pcscf_addr=(f"127.77.{octet}.11", 5060), scscf_addr=(f"127.77.{octet}.12", 5060),
                   realm=REALM, users=USERS, algorithm=algorithm, transport=transport)
    with core:
        yield core, transport
    # Logs stay in log_dir (pytest keeps the last few base temp dirs); print where on failure.
    print(f"kamailio logs: {log_dir}")


@pytest.fixture
def ue_factory(ims: tuple[ImsCore, str]) -> Iterator[object]:
    core, transport = ims
    made: list[Ue] = []

    def make(last_octet: int, server: tuple[str, int] | None = None) -> Ue:
        host = core.pcscf.host.rsplit(".", 1)[0] + f".{last_octet}"
        ue = Ue(host, transport, server or core.pcscf.address)
        made.append(ue)
        return ue

    yield make
    for ue in made:
        ue.close()


def _challenge(resp: SipMessage) -> Challenge:
    assert resp.status == 401, f"expected 401, got {resp.start_line}"
    (challenge,) = challenges_in(resp)
    return challenge


def test_register_is_challenged_then_accepted(ims: tuple[ImsCore, str], ue_factory) -> None:  # type: ignore[no-untyped-def]
    core, _ = ims
    ue = ue_factory(1)
    call_id = f"reg-{secrets.token_hex(6)}"
    challenge = _challenge(ue.register("ue1", call_id, 1))
    expected_alg = core.scscf.values["ALGORITHM"]
    assert challenge.realm == REALM and "auth" in challenge.qop
    assert challenge.algorithm == expected_alg
    creds = answer(challenge, method="REGISTER", uri=f"sip:{REALM}", username="ue1",
                   password=USERS["ue1"], cnonce=secrets.token_hex(8))
    ok = ue.register("ue1", call_id, 2, str(creds))
    assert ok.status == 200, f"expected 200, got {ok.start_line}\n{core.scscf.log_tail()}"
    assert any(f"{ue.host}:{ue.port}" in c for c in ok.get_all("Contact")), ok.get_all("Contact")


def test_wrong_password_is_challenged_again(ims: tuple[ImsCore, str], ue_factory) -> None:  # type: ignore[no-untyped-def]
    ue = ue_factory(1)
    call_id = f"reg-{secrets.token_hex(6)}"
    challenge = _challenge(ue.register("ue1", call_id, 1))
    creds = answer(challenge, method="REGISTER", uri=f"sip:{REALM}", username="ue1",
                   password="not-the-password", cnonce=secrets.token_hex(8))
    again = ue.register("ue1", call_id, 2, str(creds))
    assert again.status == 401, again.start_line
    assert _challenge(again).realm == REALM


def test_unknown_user_is_challenged_again(ims: tuple[ImsCore, str], ue_factory) -> None:  # type: ignore[no-untyped-def]
    ue = ue_factory(3)
    call_id = f"reg-{secrets.token_hex(6)}"
    challenge = _challenge(ue.register("mallory", call_id, 1))
    creds = answer(challenge, method="REGISTER", uri=f"sip:{REALM}", username="mallory",
                   password="guess", cnonce=secrets.token_hex(8))
    assert ue.register("mallory", call_id, 2, str(creds)).status == 401


def test_request_to_a_registered_user_comes_back_through_the_pcscf(  # type: ignore[no-untyped-def]
        ims: tuple[ImsCore, str], ue_factory) -> None:
    """REGISTER leaves a Path through the P-CSCF; a MESSAGE from UE-2 to the S-CSCF reaches UE-1 via
    S-CSCF -> P-CSCF, record-routed by both, and the 200 finds its way back."""
    core, transport = ims
    ue1 = ue_factory(1)
    call_id = f"reg-{secrets.token_hex(6)}"
    challenge = _challenge(ue1.register("ue1", call_id, 1))
    creds = answer(challenge, method="REGISTER", uri=f"sip:{REALM}", username="ue1",
                   password=USERS["ue1"], cnonce=secrets.token_hex(8))
    assert ue1.register("ue1", call_id, 2, str(creds)).status == 200

    ue2 = ue_factory(2, server=core.scscf.address)
    msg_call = f"msg-{secrets.token_hex(6)}"
    ue2.send(SipMessage.request("MESSAGE", f"sip:ue1@{REALM}", [
        ("Via", ue2.via()),
        ("Max-Forwards", "70"),
        ("From", f"<sip:ue2@{REALM}>;tag=m1"),
        ("To", f"<sip:ue1@{REALM}>"),
        ("Call-ID", msg_call),
        ("CSeq", "1 MESSAGE"),
        ("Content-Type", "text/plain"),
    ], body=b"hello", content_length=True))
    got = ue1.recv()
    while got.method != "MESSAGE":
        got = ue1.recv()
    assert got.uri is not None and f"{ue1.host}:{ue1.port}" in got.uri, got.uri
    vias = got.get_all("Via")
    assert len(vias) == 3, vias  # UE-2, S-CSCF, P-CSCF
    assert core.pcscf.host in vias[0] and core.scscf.host in vias[1]
    assert all(v.startswith(f"SIP/2.0/{transport.upper()} ") for v in vias), vias  # every hop on one transport
    record_route = " ".join(got.get_all("Record-Route"))
    assert core.pcscf.host in record_route and core.scscf.host in record_route, record_route
    assert got.body == b"hello"
    ue1.send(SipMessage.response(200, "OK", [("Via", v) for v in vias] + [
        ("From", got.get("From") or ""), ("To", f"{got.get('To')};tag=r1"),
        ("Call-ID", msg_call), ("CSeq", "1 MESSAGE"),
    ], content_length=True))
    assert ue2.final_response(msg_call).status == 200, transport


def _registered(ue: Ue, user: str) -> None:
    call_id = f"reg-{secrets.token_hex(6)}"
    challenge = _challenge(ue.register(user, call_id, 1))
    creds = answer(challenge, method="REGISTER", uri=f"sip:{REALM}", username=user,
                   password=USERS[user], cnonce=secrets.token_hex(8))
    assert ue.register(user, call_id, 2, str(creds)).status == 200


def _next_request(ue: Ue, method: str) -> SipMessage:
    msg = ue.recv()
    while msg.method != method:  # skip retransmitted responses and the like
        msg = ue.recv()
    return msg


def test_call_with_preloaded_route_then_ack_and_bye_by_loose_routing(  # type: ignore[no-untyped-def]
        ims: tuple[ImsCore, str], ue_factory) -> None:
    """The A.2.1 pattern: UE-1 preloads Route P-CSCF, S-CSCF; the INVITE reaches registered UE-2
    record-routed by both; ACK and the callee's BYE follow the route set through both proxies."""
    core, transport = ims
    ue1 = ue_factory(1)
    ue2 = ue_factory(2, server=core.scscf.address)
    _registered(ue2, "ue2")
    p, s = core.pcscf.address, core.scscf.address
    lr = f";transport={transport};lr" if transport == "tcp" else ";lr"
    invite = SipMessage.request("INVITE", f"sip:ue2@{REALM}", [
        ("Via", ue1.via()),
        ("Route", f"<sip:{p[0]}:{p[1]}{lr}>, <sip:{s[0]}:{s[1]}{lr}>"),
        ("Max-Forwards", "70"),
        ("From", f"<sip:ue1@{REALM}>;tag=a1"),
        ("To", f"<sip:ue2@{REALM}>"),
        ("Call-ID", call_id := f"call-{secrets.token_hex(6)}"),
        ("CSeq", "1 INVITE"),
        ("Contact", ue1.contact("ue1")),
    ], content_length=True)
    ue1.send(invite)
    got = _next_request(ue2, "INVITE")
    assert got.get("Route") is None, "both preloaded Route values are consumed"
    rr = got.get_all("Record-Route")
    assert any(s[0] in v for v in rr) and any(p[0] in v for v in rr), rr
    callee = Dialog.uas(got, local_tag="b2", local_contact=ue2.contact("ue2"))
    ue2.send(make_response(got, 200, "OK", to_tag="b2",
                           headers=[*(("Record-Route", v) for v in rr), ("Contact", ue2.contact("ue2"))]))
    ok = ue1.final_response(call_id)
    assert ok.status == 200, ok.start_line
    caller = Dialog.uac(invite, ok)
    ack = caller.create_ack(1)
    ack.add("Via", ue1.via(), first=True)
    ue1.send(ack)
    got_ack = _next_request(ue2, "ACK")
    assert got_ack.call_id == call_id and len(got_ack.get_all("Via")) == 3  # UE-1, P-CSCF, S-CSCF

    bye = callee.create_request("BYE")
    bye.add("Via", ue2.via(), first=True)
    ue2.send(bye)
    got_bye = _next_request(ue1, "BYE")
    assert len(got_bye.get_all("Via")) == 3, got_bye.get_all("Via")  # UE-2, S-CSCF, P-CSCF
    ue1.send(make_response(got_bye, 200, "OK"))
    assert ue2.final_response(call_id).status == 200


# --- start-up failures are explained, and nothing is left running ------------------------------


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_broken_config_fails_with_the_log_tail(tmp_path: Path) -> None:
    require_kamailio()
    template = tmp_path / "broken.cfg"
    template.write_text("#!KAMAILIO\n%%LISTEN%%\nloadmodule \"no_such_module.so\"\nrequest_route { exit; }\n")
    inst = KamailioInstance("broken", template, {"LISTEN": "listen=udp:127.77.99.1:5060"}, "127.77.99.1", 5060,
                            tmp_path / "logs", ready_timeout=5.0)
    with pytest.raises(KamailioError, match="exited with status") as info:
        inst.start()
    assert "no_such_module" in str(info.value)  # the log tail says why
    assert (tmp_path / "logs" / "broken.log").exists() and (tmp_path / "logs" / "broken.cfg").exists()


def test_no_answer_to_options_is_a_bounded_wait_then_stopped(tmp_path: Path) -> None:
    require_kamailio()
    template = tmp_path / "mute.cfg"
    template.write_text("#!KAMAILIO\nchildren=1\n%%LISTEN%%\nloadmodule \"sl.so\"\nrequest_route { exit; }\n")
    inst = KamailioInstance("mute", template, {"LISTEN": "listen=udp:127.77.99.2:5060"}, "127.77.99.2", 5060,
                            tmp_path / "logs", ready_timeout=2.0, stop_timeout=3.0)
    started = time.monotonic()
    pids: list[int] = []
    original = inst._wait_ready

    def spy() -> None:
        assert inst.pid is not None
        pids.append(inst.pid)
        original()

    inst._wait_ready = spy  # type: ignore[method-assign]
    with pytest.raises(KamailioError, match="did not answer OPTIONS .* within 2 s") as info:
        inst.start()
    assert time.monotonic() - started < 10
    assert "last lines of" in str(info.value)
    assert pids and _gone(pids[0]) and not inst.running()
