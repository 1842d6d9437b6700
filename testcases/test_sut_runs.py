"""Profile-driven runs with no third party: the harness's own TCP, IPv6 and IMS paths, external roles
played by a second harness instance, an external role that never acts, and the profile commands.

Every verdict comes from the capture. Runs here take seconds: they are part of the default suite.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from harness.agents.sut import SutTopology
from harness.capture.dumpcap import Capture
from harness.flows.a2_1.external import play_sut
from harness.profile import Profile, load_profile, load_profile_text
from harness.sut_run import judge
from testcases.sut_steps import STEP_IDS, assert_step_passes, sip_fields

# One worker runs a module's tests (tox: --dist loadgroup), so its shared run happens once.
pytestmark = [pytest.mark.flow, pytest.mark.xdist_group("sut-runs")]

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "profiles"


def _free_on_v6(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET6, kind) as sock:
            try:
                sock.bind(("::1", port))
            except OSError:
                return False
    return True


def _on_free_ports(profile: Profile) -> Profile:
    """The IPv6 example moved to a block of free ports (::1 cannot be relocated like 127/8, and other
    sessions on this machine may run the same example): below both RTP (20000) and ephemeral ports."""
    span = max(role.port for role in profile.roles.values()) - min(role.port for role in profile.roles.values())
    for _ in range(50):
        shift = random.randrange(6000, 19000 - span, 20) - min(r.port for r in profile.roles.values())
        if all(_free_on_v6(role.port + shift) for role in profile.roles.values()):
            roles = {name: replace(role, port=role.port + shift) for name, role in profile.roles.items()}
            return replace(profile, roles=MappingProxyType(roles))
    raise RuntimeError("no free block of ports on ::1")


@pytest.fixture(scope="module")
def v6_run(sut_runner):  # noqa: ANN001, ANN201
    profile = _on_free_ports(load_profile(PROFILES / "all-agents-ipv6-tcp.toml"))
    return sut_runner(profile, "all-agents-ipv6-tcp", relocate=False)


@pytest.mark.parametrize("step_id", STEP_IDS)
def test_ipv6_tcp_ims_step(v6_run, step_id: str) -> None:  # noqa: ANN001
    assert_step_passes(v6_run, step_id)


def test_ipv6_tcp_run_used_tcp_on_ipv6_only(v6_run) -> None:  # noqa: ANN001
    assert v6_run.play_error is None, v6_run.play_error
    assert sip_fields(v6_run.pcap, "sip && (udp || ip)", "frame.number") == []
    vias = [v for row in sip_fields(v6_run.pcap, "sip.Method", "sip.Via") for v in row[0].split(",")]
    assert vias and all(v.startswith("SIP/2.0/TCP [::1]:") for v in vias), vias[:3]


def test_ims_headers_preferred_by_the_ue_asserted_by_its_first_proxy(v6_run) -> None:  # noqa: ANN001
    topo = v6_run.topology
    rows = sip_fields(v6_run.pcap, 'sip.Method == "INVITE" && !sip.to.tag', "tcp.dstport", "sip.From",
                      "sip.P-Preferred-Identity", "sip.P-Asserted-Identity", "sip.Supported", "sip.Contact")
    first_hops = {topo.port("P-CSCF"), topo.port("S-CSCF")}
    sent = [r for r in rows if int(r[0]) in first_hops and r[2]]
    forwarded = [r for r in rows if r[3]]
    assert sent and all("gruu" in r[4] and "+sip.instance" in r[5] for r in sent), sent
    assert forwarded and all(not r[2] and r[3].strip("<>") in r[1] for r in forwarded), forwarded
    assert all(r[1].startswith("<tel:+49301111000") for r in rows), rows  # tel URIs in From (RFC 3966)


# --- external roles --------------------------------------------------------------------------------

def _twin_profiles(subnet: int, wait: float) -> tuple[Profile, Profile]:
    """A: the harness plays UE-1 only, everything else external; B: UE-1 external, the rest agents."""
    net = f"127.{subnet}.0"
    octets = {"UE-1": 1, "UE-2": 2, "UE-3": 3, "CS": 4, "MRFP": 5, "P-CSCF": 11, "S-CSCF": 12}

    def role(name: str, external: bool) -> str:
        mode = 'mode = "external"\n' if external else ""
        return f'[roles.{name}]\n{mode}host = "{net}.{octets[name]}"\n'

    timers = f"[timers]\nexternal_wait = {wait}\nflow_timeout = 60\n"
    a = "".join(role(n, n != "UE-1") for n in octets) + timers
    b = "".join(role(n, n == "UE-1") for n in octets) + timers
    return load_profile_text(a, "twin-ue1"), load_profile_text(b, "twin-rest")


def _captured_twins(out: Path, subnet: int, wait: float, *, play_a: bool = True):  # noqa: ANN202
    """Both instances in one event loop under one capture; B's view of the roles for the verifier."""
    a, b = _twin_profiles(subnet, wait)
    ta, tb = SutTopology(subnet=subnet, profile=a), SutTopology(subnet=subnet, profile=b)
    out.mkdir(parents=True, exist_ok=True)
    pcap = out / "a2.1.pcapng"

    async def both():  # noqa: ANN202
        plays = [play_sut(tb, media_seconds=0.5, timeout=40)]
        if play_a:
            plays.append(play_sut(ta, media_seconds=0.5, timeout=40))
        return await asyncio.gather(*plays)

    with Capture(pcap, bpf=tb.bpf):
        reports = asyncio.run(both())
    return reports, judge(pcap, tb, RuntimeError(reports[0].error) if reports[0].error else None)


@pytest.fixture(scope="module")
def twins(capture_tools, subnets, run_root: Path):  # noqa: ANN001, ANN201
    return _captured_twins(run_root / "twin-external-roles", next(subnets), wait=5.0)


@pytest.mark.parametrize("step_id", STEP_IDS)
def test_external_roles_played_by_another_instance_step(twins, step_id: str) -> None:  # noqa: ANN001
    """B waits for an external UE-1 at every step UE-1 starts; A drives UE-1 and waits for external
    peers. Together they make one A.2.1, judged from the capture like any other."""
    reports, analysis = twins
    step = next(s for s in analysis.result.steps if s.step == step_id)
    assert step.verdict == "pass", [(c.id, c.detail) for c in step.checks if c.verdict != "pass"]


def test_each_instance_saw_its_external_side_act(twins) -> None:  # noqa: ANN001
    (rest, ue1), _ = twins
    assert rest.error is None and ue1.error is None, (rest.summary(), ue1.summary())
    assert rest.external == ("UE-1",) and set(ue1.external) == {"UE-2", "UE-3", "CS", "MRFP", "P-CSCF", "S-CSCF"}
    assert "(external)" in rest.step("22~27").detail  # B's UE-2 got the REFER UE-1 sent
    assert "external" in ue1.step("34~35").detail  # A has no agent on either side of the join


def test_an_external_ue1_that_never_acts_is_named_with_its_wait(capture_tools, subnets, run_root: Path) -> None:
    (rest,), analysis = _captured_twins(run_root / "silent-ue1", next(subnets), wait=1.0, play_a=False)
    assert rest.error is not None
    assert "the SUT (UE-1) did not send INVITE and ACK to UE-2 within 1 s" in rest.error
    assert rest.step("1").status == "failed" and rest.duration < 15
    assert analysis.result.verdict != "pass"


def test_captured_run_notes_say_why_the_flow_stopped(sut_runner) -> None:  # noqa: ANN001
    profile = load_profile_text('[roles.UE-2]\nmode = "external"\nhost = "127.0.0.2"\n'
                                "[timers]\nexternal_wait = 1\n", "silent-ue2")
    outcome = sut_runner(profile, "silent-ue2")
    assert any("the SUT (UE-2) did not send a final response to UE-1's INVITE within 1 s" in n
               for n in outcome.result.notes), outcome.result.notes
    assert outcome.result.step("1").verdict != "pass"
    assert json.loads(outcome.verdict_path.read_text())["verdict"] != "pass"


# --- the commands -----------------------------------------------------------------------------------

def _harness(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def test_profile_check_explains_each_mistake_line_by_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[roles.UE-1]\nprot = 5060\n[roles.CS]\nmode = "external"\n[registration]\nregistrar = "S-CSCF"\n')
    proc = _harness("profile", "check", str(bad), str(PROFILES / "all-agents.toml"))
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stdout.splitlines()
    assert any(re.match(rf"{re.escape(str(bad))}:2: roles\.UE-1\.prot: .*did you mean 'port'", ln) for ln in lines)
    assert any(":3: roles.CS.host: CS is external" in ln for ln in lines), lines
    assert any("registration.registrar: S-CSCF is played by a harness agent" in ln for ln in lines), lines
    assert lines[-1].endswith("all-agents.toml: ok")


def test_profile_check_of_every_example_is_clean() -> None:
    proc = _harness("profile", "check", *map(str, sorted(PROFILES.glob("*.toml"))))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_run_with_a_bad_profile_is_bad_input_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[media]\ncodec = 'opus'\n")
    proc = _harness("run", "a2.1", "--profile", str(bad), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "media.codec" in proc.stderr and "Traceback" not in proc.stderr, proc


def test_run_with_the_all_agents_profile_passes(capture_tools, tmp_path: Path) -> None:
    proc = _harness("run", "a2.1", "--profile", str(PROFILES / "all-agents.toml"), "--json",
                    "--media-seconds", "0.5", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert data["verdict"] == "pass" and any("SUT profile all-agents" in n for n in data["notes"])
