"""The configs the harness writes for baresip and linphonec, and the install hint when one is missing."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from harness.agents.sut import SutTopology
from harness.capture.dumpcap import ToolMissing
from harness.peers import process
from harness.peers.baresip import account_line, config_text
from harness.peers.linphonec import rc_text
from harness.peers.tone import tone_wav
from harness.profile import load_profile, load_profile_text

PROFILES = Path(__file__).resolve().parents[2] / "profiles"


def test_baresip_account_auto_answers_through_the_s_cscf_without_registering() -> None:
    topo = SutTopology(subnet=9, profile=load_profile(PROFILES / "baresip-ue2-ue3.toml"))
    line = account_line(topo, "UE-2")
    assert line.startswith("<sip:ue2@127.77.0.2>;")
    for param in ("answermode=auto", "audio_codecs=pcmu", 'outbound="sip:127.77.0.12;lr"', "regint=0"):
        assert param in line.split(";") or param in line, line
    config = config_text(topo, "UE-2", Path("/tmp/tone.wav"), 4444)
    assert "sip_listen\t\t127.77.0.2:5060" in config and "net_interface\t\t127.77.0.2" in config
    assert "audio_source\t\taufile,/tmp/tone.wav" in config and "aubridge" in config


def test_baresip_registers_when_the_profile_has_a_registrar() -> None:
    core = "".join(f'[roles.{r}]\nmode = "external"\nlaunch = "kamailio"\nhost = "127.9.0.{o}"\n'
                   for r, o in (("P-CSCF", 11), ("S-CSCF", 12)))
    users = "".join(f'[users.UE-{n}]\nusername = "ue{n}"\npassword = "p{n}"\n' for n in (1, 2, 3))
    profile = load_profile_text('[domain]\nhome = "ims.test"\n[roles.UE-3]\nmode = "external"\nlaunch = "baresip"\n'
                                'host = "127.9.0.3"\n' + core + users + '[registration]\nregistrar = "S-CSCF"\n'
                                "expires = 300\n")
    line = account_line(SutTopology(subnet=9, profile=profile), "UE-3")
    assert line.startswith("<sip:ue3@ims.test>;"), line
    assert "auth_user=ue3" in line and "auth_pass=p3" in line and "regint=300" in line, line


def test_linphonec_rc_binds_its_address_and_routes_via_the_s_cscf(tmp_path: Path) -> None:
    topo = SutTopology(subnet=9, profile=load_profile(PROFILES / "linphonec-ue3.toml"))
    rc = rc_text(topo, "UE-3", tmp_path)
    for line in ("bind_address=127.77.0.3", "sip_port=5060", "sip_tcp_port=0", "reg_identity=sip:ue3@127.77.0.3",
                 "reg_route=<sip:127.77.0.12;lr>", "reg_sendregister=0", f"uri={tmp_path / 'linphone.db'}"):
        assert line in rc.splitlines(), line
    assert "mime=PCMU\nrate=8000\nchannels=1\nenabled=1" in rc


def test_tone_wav_is_8khz_mono_16bit(tmp_path: Path) -> None:
    path = tone_wav(tmp_path / "t.wav", 650.0, seconds=0.5)
    with wave.open(str(path)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), wav.getnframes()) == (8000, 1, 2, 4000)


def test_a_missing_peer_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process.shutil, "which", lambda name: None)
    with pytest.raises(ToolMissing, match="apt-get install -y --no-install-recommends baresip-core"):
        process.require("baresip", "baresip-core")


def test_a_peer_is_never_started_on_a_non_loopback_address(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        process.PeerProcess("x", ["true"], "192.0.2.1", 5060, tmp_path / "x.log")
