"""Robustness: RFC 4475 torture messages and seeded mutations of A.2.1 messages against every SIP
role the harness plays, with an OPTIONS liveness probe after each case. The harness's own agents
must survive the whole corpus (no death, no exception escaping into the loop) and answer 400 where
RFC 3261 asks for it; the helpers that make that possible are fuzzed with hypothesis.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.agents.badrequest import bad_request
from harness.agents.proxy import Proxy
from harness.net.udp import frame_datagram
from harness.robustness.corpus import CASES, render
from harness.robustness.guard import guarded_socket
from harness.robustness.mutate import mutations

VALUES = {"HOST": "127.9.0.2", "RURI": "127.9.0.2", "PROBE": "127.9.0.50:5060", "SINK": "127.9.0.99",
          "BRANCH": "z9hG4bKcase", "CALLID": "case-call", "TAG": "casetag"}
# Known gaps, each with its reason: the codec refuses control characters even as quoted-pairs in a
# quoted string (RFC 3261 §25.1 allows "\" %x00-09 there), so intmeth gets 400 instead of 405/481.
KNOWN_MISMATCHES = {"intmeth"}


def test_corpus_is_complete_and_addresses_only_test_hosts() -> None:
    names = {case.name for case in CASES}
    assert len(names) == len(CASES) >= 40
    assert {"wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq", "semiuri",
            "transports", "mpart01", "unreason", "noreason", "badinv01", "clerr", "scalar02", "scalarlg",
            "quotbal", "ltgtruri", "lwsruri", "lwsstart", "trws", "escruri", "baddate", "regbadct",
            "badaspec", "baddn", "badvers", "mismatch01", "mismatch02", "multi01", "insuf", "unkscm",
            "novelsc", "unksm2", "bext01", "bcast"} <= names
    for case in CASES:
        data = render(case, VALUES)
        assert not re.search(rb"\$[A-Z]", data), case.name
        start = data.split(b"\r\n", 1)[0].split()
        if not start[0].startswith(b"SIP/") and start[1].startswith(b"sip:"):  # the Request-URI host is ours
            assert start[1].rsplit(b"@", 1)[-1].removeprefix(b"sip:").startswith(b"127.9.0."), case.name
        if case.expect in ("400", "505"):  # answerable: the five fields a response needs are there
            assert bad_request(data, "x", ("127.9.0.50", 5060)) is not None, case.name


def test_mutations_are_seeded() -> None:
    first, again, other = (mutations(VALUES, 40, seed) for seed in (7, 7, 8))
    assert [m.data for m in first] == [m.data for m in again]
    assert [m.data for m in first] != [m.data for m in other]
    assert {m.name.split("-", 2)[2] for m in first} >= {"duplicate-header", "bad-content-length", "garbage-datagram"}


def test_guard_refuses_names_and_other_networks() -> None:
    sock = guarded_socket(["127.0.0.0/8"])
    try:
        sock.bind(("127.0.0.1", 0))
        assert sock.sendto(b"x", ("127.0.0.1", 9)) == 1
        for host in ("example.com", "192.0.2.1", "8.8.8.8"):
            with pytest.raises(OSError, match="outside the test network"):
                sock.sendto(b"x", (host, 5060))
        assert sock.refused == ["example.com", "192.0.2.1", "8.8.8.8"]
    finally:
        sock.close()


def test_bad_request_answers_only_requests_that_name_their_dialog() -> None:
    head = (b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\n"
            b"Call-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n")
    data, to = bad_request(b"OPTIONS sip:b@x SIP/2.0\r\n" + head, "bad\x00thing", ("127.0.0.9", 5999))
    assert data.startswith(b"SIP/2.0 400 Bad Request (bad thing)\r\n") and b"To: <sip:b@x>;tag=" in data
    assert to == ("127.0.0.9", 5070)  # source address, sent-by port (§18.2.2)
    assert bad_request(b"OPTIONS sip:b@x SIP/3.0\r\n" + head, "", ("127.0.0.9", 1))[0].startswith(b"SIP/2.0 505")
    assert bad_request(b"ACK sip:b@x SIP/2.0\r\n" + head, "x", ("127.0.0.9", 1)) is None
    assert bad_request(b"SIP/2.0 200 OK\r\n" + head, "x", ("127.0.0.9", 1)) is None
    assert bad_request(b"OPTIONS sip:b@x SIP/2.0\r\n" + head.replace(b"Call-ID: c\r\n", b""), "x", ("h", 1)) is None


def test_frame_datagram_discards_octets_after_the_body() -> None:
    assert frame_datagram(b"A\r\nl: 2\r\n\r\nabEXTRA") == b"A\r\nl: 2\r\n\r\nab"
    assert frame_datagram(b"A\r\nContent-Length: 9\r\n\r\nab") == b"A\r\nContent-Length: 9\r\n\r\nab"
    two = b"A\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nabc"
    assert frame_datagram(two) == two  # ambiguous: the codec judges


class _Socket:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=600),
                 st.sampled_from([render(c, VALUES) for c in CASES]).flatmap(
                     lambda raw: st.integers(0, len(raw)).map(lambda n: raw[:n])),
                 st.builds(lambda m: m.data, st.sampled_from(mutations(VALUES, 30, 1)))))
def test_fuzzed_input_never_escapes_the_helpers_or_the_proxy(data: bytes) -> None:
    """Parses, or is dropped or answered: never an exception (style rule 7)."""
    bad_request(data, "fuzz", ("127.9.0.50", 5060))
    frame_datagram(data)
    proxy = Proxy("P-CSCF", "127.9.0.11")
    proxy._sock = _Socket()  # type: ignore[assignment]
    proxy._datagram(data, ("127.9.0.50", 5060))
    for out, addr in proxy._sock.sent:  # type: ignore[union-attr]
        assert addr[0].startswith("127.") or addr[0].count(".") == 3 or ":" in addr[0]
        assert out


@pytest.mark.flow
@pytest.mark.parametrize("role", ["UE-2", "CS", "P-CSCF", "S-CSCF"])
def test_harness_roles_survive_the_corpus_and_answer_400(role: str) -> None:
    from harness.robustness.session import run_robustness

    report = run_robustness(role, mutation_count=30, seed=11)
    dead = [(r.name, r.crashes) for r in report.results if not r.alive or r.crashes]
    assert not dead, dead
    assert len(report.results) == len(CASES) + 30
    wanted_400 = [r for r in report.results if r.expect == "400"]
    assert wanted_400 and all(r.met for r in wanted_400), [(r.name, r.outcome) for r in wanted_400 if not r.met]
    mismatches = {r.name for r in report.results if not r.met}
    assert mismatches <= KNOWN_MISMATCHES, [(r.name, r.expect, r.outcome) for r in report.results if not r.met]
    assert not report.refused_destinations, report.refused_destinations


def test_cli_reports_each_case(tmp_path) -> None:  # noqa: ANN001
    proc = subprocess.run([sys.executable, "-m", "harness", "robustness", "--target", "CS", "--case", "clerr",
                           "--case", "mismatch01", "--case", "bext01", "--mutations", "4", "--json",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
    data = json.loads(proc.stdout)
    assert [c["case"] for c in data["cases"]][:3] == ["clerr", "mismatch01", "bext01"]
    assert [c["outcome"] for c in data["cases"]][:3] == ["answered 400", "answered 400", "answered 420"]
    assert data["summary"]["dead"] == 0 and (tmp_path / "robustness.json").exists()


def test_uri_target_on_loopback_only_and_probed() -> None:
    """An external target by URI: a stand-in that answers everything 200 stays alive all along."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            try:
                data, addr = server.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            call = re.search(rb"(?im)^(?:call-id|i)\s*:\s*(.*?)\r?$", data)
            if call and not data.startswith(b"SIP/"):
                server.sendto(b"SIP/2.0 200 OK\r\nCall-ID: " + call.group(1) + b"\r\nContent-Length: 0\r\n\r\n", addr)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        port = server.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "harness", "robustness", "--target", f"sip:127.0.0.1:{port}",
                               "--case", "clerr", "--case", "wsinv", "--mutations", "3", "--json"],
                              capture_output=True, text=True, timeout=60)
        data = json.loads(proc.stdout)
        assert proc.returncode == 1  # it answers 200 to clerr: alive, but not as RFC 3261 asks
        assert all(c["alive"] for c in data["cases"]) and len(data["cases"]) == 5
        assert data["cases"][0]["verdict"] == "mismatch"
    finally:
        stop.set()
        thread.join(2)
        server.close()
    bad = subprocess.run([sys.executable, "-m", "harness", "robustness", "--target", "sip:192.0.2.1"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "loopback" in bad.stderr


@pytest.mark.flow
@pytest.mark.parametrize("role", ["UE-2", "CS"])
def test_lean_load_agents_survive_the_corpus(role: str) -> None:
    """The load mode's lean UE and CS (harness/load/lean), run on a loop of their own, take the whole
    corpus and 30 mutations by URI: alive after every case, nothing escapes into their loop, and
    every request their reader refuses but that names its dialog is answered 400."""
    import asyncio

    from harness.agents.placement import reserve_loopback
    from harness.agents.topology import USER
    from harness.load.lean.cs import LeanCs
    from harness.load.lean.ue import LeanUe
    from harness.load.topology import InstanceTopology
    from harness.net.udp import BINDER
    from harness.robustness.session import run_robustness

    # The subnet stays reserved until the end (another worker's load must not take 127.N.1.x).
    reservation = reserve_loopback(range(200, 254))
    topology = InstanceTopology(subnet=reservation.subnet, instance=1)
    loop = asyncio.new_event_loop()
    escaped: list[str] = []
    loop.set_exception_handler(lambda _loop, context: escaped.append(str(context.get("message"))))
    agent = LeanCs(topology, None) if role == "CS" else LeanUe(role, topology, media=False)
    token = BINDER.set(reservation.binder)  # the CS's address is one of the reserved sockets
    try:
        loop.run_until_complete(agent.start())
    finally:
        BINDER.reset(token)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        ip = topology.ip(role)
        report = run_robustness(f"sip:{ip}" if role == "CS" else f"sip:{USER[role]}@{ip}", mutation_count=30,
                                seed=11)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(agent.stop())
        loop.close()
        reservation.close()
    assert len(report.results) == len(CASES) + 30
    assert all(r.alive for r in report.results), [r.name for r in report.results if not r.alive]
    assert not escaped, escaped
    answered_400 = [r.name for r in report.results if 400 in r.statuses]
    wanted_400 = [r.name for r in report.results if r.expect == "400"]
    # The lean reader takes only what it acts on, so it refuses less than the codec; whatever it
    # refuses while the request names its dialog is answered 400 (the rest is acted on or dropped).
    assert len(answered_400) >= 0.8 * len(wanted_400), (answered_400, wanted_400)
