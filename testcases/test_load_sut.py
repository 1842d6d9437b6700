"""Load mode against an external CS from a SUT profile: the instances create their conferences at the
profile's factory URI, the CS is reached only through the network (here the harness's reference CS in
a process of its own, testcases/reference_cs.py), and every verdict comes from the capture."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from harness.load.topology import ExternalCs, InstanceTopology, external_cs, shared_roles
from harness.profile import load_profile_text

ROOT = Path(__file__).resolve().parents[1]


class RunningCs(NamedTuple):
    subnet: int
    proc: subprocess.Popen[str]


def _profile_text(subnet: int, *, extra: str = "", wait: float = 5.0) -> str:
    return (f'[domain]\nconference_factory_uri = "sip:conference-factory@127.{subnet}.0.4"\n'
            f'[roles.CS]\nmode = "external"\nhost = "127.{subnet}.0.4"\n'
            f'[roles.MRFP]\nmode = "external"\nhost = "127.{subnet}.0.5"\n'
            f"[timers]\nexternal_wait = {wait}\n{extra}")


# --- what a load run can play ------------------------------------------------------------------------

def test_an_external_cs_moves_the_cs_and_mrfp_and_the_capture_follows() -> None:
    sut = external_cs(load_profile_text(_profile_text(9), "p"))
    assert sut == ExternalCs("127.9.0.4", 5060, "sip:conference-factory@127.9.0.4", "127.9.0.5")
    topology = InstanceTopology(subnet=42, instance=3, sut=sut)
    assert (topology.ip("CS"), topology.port("CS"), topology.ip("MRFP")) == ("127.9.0.4", 5060, "127.9.0.5")
    assert topology.factory_uri == "sip:conference-factory@127.9.0.4"
    assert topology.ip("UE-1") == "127.42.1.7" and topology.ip("S-CSCF") == "127.42.0.12"
    assert topology.bpf == "net 127.42.0.0/16 or host 127.9.0.4 or host 127.9.0.5"
    assert shared_roles(topology)["MRFP"] == "127.9.0.5"
    same_host = external_cs(load_profile_text(_profile_text(9).replace('"127.9.0.5"', '"127.9.0.4"\nport = 5070'), "p"))
    assert same_host is not None and same_host.hosts == ("127.9.0.4",)
    assert "MRFP" not in shared_roles(InstanceTopology(subnet=42, sut=same_host))  # found by the SDP instead
    assert external_cs(load_profile_text("", "all agents")) is None


@pytest.mark.parametrize(("text", "says"), [
    ('[roles.UE-2]\nmode = "external"\nhost = "127.0.0.2"\n', "not UE-2 (a UE under test plays one call at a time"),
    ('[roles.S-CSCF]\nmode = "external"\nhost = "127.0.0.12"\n', "not S-CSCF"),
    ('[roles.MRFP]\nmode = "external"\nhost = "127.0.0.5"\n', "the MRFP is external but the CS is the harness's"),
    ('[domain]\nconference_factory_uri = "sip:f@127.0.0.4;transport=tcp"\n[roles.CS]\nmode = "external"\nhost = "127.0.0.4"\n'
     'transport = "tcp"\n', "over UDP, not tcp"),
    ('[roles.CS]\nmode = "external"\nhost = "127.0.0.4"\n', "domain.conference_factory_uri: an external CS needs"),
    ('[domain]\nconference_factory_uri = "sip:f@192.0.2.4"\n[roles.CS]\nmode = "external"\nhost = "192.0.2.4"\n'
     'lab = true\n', "192.0.2.4 is not there (run the CS on this machine"),
    ('[domain]\nconference_factory_uri = "tel:+123"\n[roles.CS]\nmode = "external"\nhost = "127.0.0.4"\n',
     "not a SIP URI"),
])
def test_what_a_load_cannot_play_is_refused_by_name(text: str, says: str) -> None:
    with pytest.raises(ValueError) as info:
        external_cs(load_profile_text(text, "p"))
    assert says in str(info.value)


@pytest.mark.parametrize(("text", "args", "says"), [
    ('[roles.UE-3]\nmode = "external"\nhost = "127.0.0.3"\n', (),
     "{profile}: load mode plays many instances at once: only the CS"),
    (_profile_text(9), ("--engine", "agents"), "an external CS is played with the lean engine only"),
    ('[roles.UE-3]\nmode = "outside"\n', (), "{profile}:2: roles.UE-3.mode:"),
])
def test_the_cli_refuses_what_a_load_cannot_play_before_anything_runs(tmp_path: Path, text: str,
                                                                      args: tuple[str, ...], says: str) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "harness", "load", "a2.1", "--conferences", "2", "--profile",
                           str(profile), "--out", str(tmp_path / "out"), *args], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert says.format(profile=profile) in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing ran, nothing captured


# --- runs against a CS in another process -------------------------------------------------------------

@pytest.fixture
def reference_cs(subnets: Iterator[int], subnet_pool) -> Iterator[Callable[..., RunningCs]]:  # noqa: ANN001
    """Starts testcases/reference_cs.py on a subnet of this worker's own (its sockets given up for the
    process to bind) and stops it by its PID afterwards."""
    procs: list[subprocess.Popen[str]] = []

    def start(*faults: str) -> RunningCs:
        subnet = next(subnets)
        subnet_pool.release_unused()  # the CS process binds 127.N.0.4/.5 itself
        proc = subprocess.Popen([sys.executable, "-m", "testcases.reference_cs", "--subnet", str(subnet),
                                 *(f"--fault={f}" for f in faults)], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        assert line.strip() == "ready", f"reference CS did not start: {line!r}"
        return RunningCs(subnet, proc)

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _load(tmp_path: Path, subnet: int, *args: str, wait: float = 5.0) -> tuple[subprocess.CompletedProcess[str], Path]:
    profile = tmp_path / "external-cs.toml"
    profile.write_text(_profile_text(subnet, wait=wait))
    out = tmp_path / "load"
    proc = subprocess.run([sys.executable, "-m", "harness", "load", "a2.1", "--profile", str(profile),
                           "--out", str(out), "--json", *args], capture_output=True, text=True, timeout=240)
    return proc, out


def _tshark_reads(pcap: Path) -> int:
    proc = subprocess.run(["tshark", "-r", str(pcap), "-Y", "sip", "-T", "fields", "-e", "frame.number"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return len(proc.stdout.split())


@pytest.mark.flow
def test_load_against_an_external_cs_passes_from_the_capture(tmp_path: Path, capture_tools: None,
                                                              reference_cs) -> None:  # noqa: ANN001
    subnet = reference_cs().subnet
    proc, out = _load(tmp_path, subnet, "--conferences", "4", "--concurrency", "2", "--media-seconds", "0.5")
    assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
    data = json.loads(proc.stdout)
    assert data["summary"]["passed"] == 4 and data["summary"]["failed"] == 0
    assert data["load"]["cs"] == f"external 127.{subnet}.0.4:5060"
    cs_addr = f"127.{subnet}.0.4"
    for instance in data["instances"]:
        assert instance["roles"]["CS"] == f"{cs_addr}:5060"
        conf = next(s for s in instance["steps"] if s["step"] == "16~21")
        assert conf["verdict"] == "pass"
    media = next(s for s in data["instances"][0]["steps"] if s["step"] == "15")
    assert f"127.{subnet}.0.5" in json.dumps(media)  # the SUT's MRFP, as its SDP named it


@pytest.mark.flow
def test_a_faulty_external_cs_fails_its_step_in_every_instance(tmp_path: Path, capture_tools: None,
                                                                reference_cs) -> None:  # noqa: ANN001
    subnet = reference_cs("cs-omit-isfocus").subnet
    proc, _ = _load(tmp_path, subnet, "--conferences", "3", "--concurrency", "3", "--media-seconds", "0.3")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["summary"]["failed"] == 3
    for instance in data["instances"]:
        conf = next(s for s in instance["steps"] if s["step"] == "16~21")
        assert conf["verdict"] == "fail"
        assert any(c["id"] == "CONF-2" and c["verdict"] == "fail" for c in conf["checks"])
    assert data["load"]["step_failures"]["16~21"] == {"fail": 3}


@pytest.mark.flow
def test_a_silent_external_cs_ends_the_load_at_once_with_its_address(tmp_path: Path, capture_tools: None,
                                                                     subnets: Iterator[int], subnet_pool) -> None:  # noqa: ANN001
    subnet = next(subnets)
    subnet_pool.release_unused()  # nobody listens there
    began = time.monotonic()
    proc, out = _load(tmp_path, subnet, "--conferences", "50", "--concurrency", "10", wait=1.0)
    assert time.monotonic() - began < 60
    assert proc.returncode == 1, proc.stderr
    assert f"error: the external CS at 127.{subnet}.0.4:5060 did not answer an OPTIONS within 1 s" in proc.stderr
    assert _tshark_reads(out / "a2.1.pcapng") >= 1  # the capture kept the unanswered probe


@pytest.mark.flow
def test_an_external_cs_killed_mid_load_fails_the_instances_within_their_bounds(
        tmp_path: Path, capture_tools: None, reference_cs) -> None:  # noqa: ANN001
    subnet, cs = reference_cs()
    profile = tmp_path / "external-cs.toml"
    profile.write_text(_profile_text(subnet))
    out = tmp_path / "load"
    load = subprocess.Popen([sys.executable, "-m", "harness", "load", "a2.1", "--profile", str(profile), "--out",
                             str(out), "--json", "--conferences", "3", "--concurrency", "1", "--media-seconds", "0.3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    began = time.monotonic()
    try:
        assert load.stderr is not None
        seen = b""
        while b"1/3 done" not in seen and time.monotonic() - began < 60:  # the first instance ended
            if select.select([load.stderr], [], [], 1)[0]:
                chunk = os.read(load.stderr.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
        assert b"1/3 done" in seen, seen[-500:]
        cs.kill()  # like a crash: no goodbye on the wire
        cs.wait(10)
        stdout, stderr = load.communicate(timeout=120)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait(10)
    assert load.returncode == 1, stderr
    data = json.loads(stdout)
    errors = data["load"]["agent_errors"]
    assert set(errors) == {"2", "3"}, errors  # after the crash, every instance fails and says where
    # The step's own bound, not the instance's 60 s deadline, ended each one (and says what it waited for).
    factory = f"sip:conference-factory@127.{subnet}.0.4"
    assert all(f"did not receive a final response to INVITE {factory} within 5 s" in e for e in errors.values()), errors
    # The capture alone: three instances (the factory URI makes the unanswered conference INVITEs
    # instances of their own), the first passes, the two after the crash fail where the CS went quiet.
    assert [i["verdict"] for i in data["instances"]] == ["pass", "fail", "fail"], data["summary"]
    for instance in data["instances"][1:]:
        conf = next(s for s in instance["steps"] if s["step"] == "16~21")
        assert conf["verdict"] == "fail", conf
    assert _tshark_reads(out / "a2.1.pcapng") > 0
