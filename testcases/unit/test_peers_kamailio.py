"""Kamailio launcher pieces that need no kamailio binary: tool check, templating, refusals."""

from pathlib import Path

import pytest

from harness.capture import ToolMissing
from harness.peers import kamailio
from harness.peers.kamailio import CONFIG_DIR, ImsCore, pcscf, render, require_kamailio, scscf
from harness.profile import load_profile

PROFILES = Path(__file__).resolve().parents[2] / "profiles"


def test_missing_kamailio_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kamailio.shutil, "which", lambda name: None)
    monkeypatch.setattr(kamailio.os, "access", lambda path, mode: False)
    with pytest.raises(ToolMissing) as info:
        require_kamailio()
    assert str(info.value) == "kamailio not found: apt-get install -y kamailio"


def test_configs_render_with_every_placeholder_filled(tmp_path: Path) -> None:
    s = scscf("127.77.0.12", 5060, tmp_path, realm="ims.test", users={"ue1": "p1", "ue2": "p2"},
              algorithm="SHA-256")
    text = render(s.template, s.values)
    assert "%%" not in text.split("\ndebug=", 1)[1]
    assert 'listen=udp:127.77.0.12:5060' in text and 'listen=tcp:127.77.0.12:5060' in text
    assert '$sht(auth=>ue1) = "p1";' in text and 'modparam("auth", "algorithm", "SHA-256")' in text
    p = pcscf("127.77.0.11", 5060, tmp_path, scscf_addr=("127.77.0.12", 5060), transport="tcp")
    text = render(p.template, p.values)
    assert '$du = "sip:127.77.0.12:5060;transport=tcp";' in text and "%%" not in text.split("\ndebug=", 1)[1]
    assert p.command()[:3] == ["kamailio", "-DD", "-E"] and "-P" in p.command() and "64" in p.command()


def test_template_with_an_unknown_placeholder_is_refused(tmp_path: Path) -> None:
    template = tmp_path / "t.cfg"
    template.write_text("listen=%%NOPE%%\n")
    with pytest.raises(ValueError, match="NOPE"):
        render(template, {})


@pytest.mark.parametrize("call", [
    lambda d: scscf("10.0.0.12", 5060, d, realm="r", users={}),
    lambda d: scscf("127.0.0.12", 5060, d, realm="r", users={}, algorithm="SHA-512-256"),
    lambda d: scscf("127.0.0.12", 5060, d, realm="r", users={"ue1": 'pa"ss'}),
    lambda d: scscf("127.0.0.12", 5060, d, realm="r", users={"u e": "p"}),
    lambda d: pcscf("127.0.0.11", 5060, d, scscf_addr=("127.0.0.12", 5060), transport="sctp"),
    lambda d: pcscf("localhost", 5060, d, scscf_addr=("127.0.0.12", 5060)),
])
def test_refusals(call, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        call(tmp_path)


def test_ims_core_from_the_example_profiles(tmp_path: Path) -> None:
    core = ImsCore.from_profile(load_profile(PROFILES / "kamailio-core-tcp.toml"), tmp_path)
    assert core.pcscf.address == ("127.77.0.11", 5060) and core.scscf.address == ("127.77.0.12", 5060)
    assert core.transport == "tcp" and core.scscf.values["ALGORITHM"] == "MD5"
    assert '$sht(auth=>ue3) = "ue3-secret";' in core.scscf.values["USERS"]
    with pytest.raises(ValueError, match="launch"):
        ImsCore.from_profile(load_profile(PROFILES / "all-agents.toml"), tmp_path)


def test_config_templates_are_in_the_repo() -> None:
    assert (CONFIG_DIR / "pcscf.cfg").is_file() and (CONFIG_DIR / "scscf.cfg").is_file()
