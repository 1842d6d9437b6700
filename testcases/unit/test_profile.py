"""SUT profiles: the examples load, and every kind of mistake is named by its key and line."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.profile import (
    ROLES,
    ProfileError,
    ProfileProblem,
    check_profile,
    check_profile_text,
    load_profile,
    load_profile_text,
    main,
)

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
EXAMPLES = sorted(PROFILES.glob("*.toml"))


def test_the_examples_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"all-agents.toml", "kamailio-core.toml", "kamailio-core-tcp.toml",
            "baresip-ue2-ue3.toml", "linphonec-ue3.toml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_load_clean(path: Path) -> None:
    assert check_profile(path) == []
    profile = load_profile(path)
    assert set(profile.roles) == set(ROLES)
    assert path.read_text().lstrip().startswith("#"), "example profiles are commented"


def test_kamailio_examples_say_what_to_start() -> None:
    udp, tcp = load_profile(PROFILES / "kamailio-core.toml"), load_profile(PROFILES / "kamailio-core-tcp.toml")
    for profile, transport in ((udp, "udp"), (tcp, "tcp")):
        assert profile.launched("kamailio") == ("P-CSCF", "S-CSCF")
        assert profile.registration.registrar == "S-CSCF"
        assert {profile.users[ue].username for ue in ("UE-1", "UE-2", "UE-3")} == {"ue1", "ue2", "ue3"}
        assert {profile.roles[r].transport for r in ("UE-1", "UE-2", "UE-3", "CS", "P-CSCF", "S-CSCF")} == {transport}
    baresip = load_profile(PROFILES / "baresip-ue2-ue3.toml")
    assert baresip.external_roles == ("UE-2", "UE-3") and baresip.launched("baresip") == ("UE-2", "UE-3")
    assert load_profile(PROFILES / "linphonec-ue3.toml").launched("linphonec") == ("UE-3",)


def test_defaults_fill_unlisted_roles() -> None:
    profile = load_profile_text('name = "x"\n')
    ue1 = profile.role("UE-1")
    assert (ue1.mode, ue1.host, ue1.port, ue1.transport) == ("agent", None, 5060, "udp")
    assert (profile.timers.t1, profile.media.codec, profile.registration.registrar) == (0.5, "PCMU", None)


def test_roles_match_the_topology() -> None:
    from harness.agents.topology import ROLES as TOPOLOGY_ROLES

    assert tuple(ROLES) == tuple(TOPOLOGY_ROLES)


# --- each kind of mistake, with its key and line -----------------------------------------------

BASE_REG = """
[registration]
registrar = "S-CSCF"
[users.UE-1]
username = "ue1"
password = "p1"
[users.UE-2]
username = "ue2"
password = "p2"
[users.UE-3]
username = "ue3"
password = "p3"
"""

CASES = [
    # (id, profile text, key expected, line expected, words expected in the message)
    ("unknown-role", '[roles.UE-4]\nmode = "agent"\n', "roles.UE-4", 1, ["unknown role", "UE-"]),
    ("role-case", '[roles.ue-1]\nmode = "agent"\n', "roles.ue-1", 1, ["did you mean 'UE-1'"]),
    ("unknown-key", '[roles.UE-1]\nprot = 5060\n', "roles.UE-1.prot", 2, ["did you mean 'port'"]),
    ("unknown-top", 'nmae = "x"\n', "nmae", 1, ["did you mean 'name'"]),
    ("unknown-section-key", '[timers]\nt3 = 1\n', "timers.t3", 2, ["unknown key"]),
    ("wrong-type-port", '[roles.UE-1]\nport = "5060"\n', "roles.UE-1.port", 2, ["integer", "string"]),
    ("wrong-type-bool-port", '[roles.UE-1]\nport = true\n', "roles.UE-1.port", 2, ["integer", "boolean"]),
    ("wrong-type-table", 'domain = "ims.test"\n', "domain", 1, ["must be a table"]),
    ("wrong-type-role", 'roles = 3\n', "roles", 1, ["table of roles"]),
    ("port-range", '[roles.UE-1]\nport = 70000\n', "roles.UE-1.port", 2, ["out of range", "65535"]),
    ("port-zero", '[roles.UE-1]\nport = 0\n', "roles.UE-1.port", 2, ["out of range"]),
    ("bad-mode", '[roles.UE-1]\nmode = "agnet"\n', "roles.UE-1.mode", 2, ["did you mean 'agent'"]),
    ("bad-transport", '[roles.UE-1]\ntransport = "sctp"\n', "roles.UE-1.transport", 2, ["udp, tcp"]),
    ("external-no-host", '[roles.CS]\nmode = "external"\n', "roles.CS.host", 1, ["external", "host ="]),
    ("non-loopback", '[roles.UE-2]\nhost = "192.0.2.7"\n', "roles.UE-2.host", 2, ["not a loopback", "lab = true"]),
    ("non-loopback-v6", '[roles.UE-2]\nhost = "2001:db8::1"\n', "roles.UE-2.host", 2, ["not a loopback"]),
    ("hostname", '[roles.UE-2]\nhost = "localhost"\n', "roles.UE-2.host", 2, ["not an IP address", "127.0.0.1"]),
    ("uri-non-loopback", '[roles.CS]\nmode = "external"\nhost = "127.0.0.4"\nuri = "sip:cs@198.51.100.1"\n',
     "roles.CS.uri", 4, ["not a loopback"]),
    ("factory-non-loopback", '[domain]\nconference_factory_uri = "sip:conference-factory@203.0.113.4"\n',
     "domain.conference_factory_uri", 2, ["not a loopback"]),
    ("bad-uri", '[users.UE-1]\nuri = "ue1 at ims"\n', "users.UE-1.uri", 2, ["not a URI"]),
    ("missing-password", BASE_REG.replace('password = "p2"\n', ""), "users.UE-2.password", 7,
     ["registrar", "needs a password"]),
    ("missing-user-table", BASE_REG.replace('[users.UE-3]\nusername = "ue3"\npassword = "p3"\n', ""),
     "users.UE-3.username", 3, ["needs a username"]),
    ("unknown-registrar", '[registration]\nregistrar = "SCSCF"\n', "registration.registrar", 2,
     ["did you mean 'S-CSCF'"]),
    ("bad-algorithm", '[registration]\nalgorithm = "SHA256"\n', "registration.algorithm", 2,
     ["did you mean 'SHA-256'"]),
    ("t2-below-t1", '[timers]\nt1 = 2.0\nt2 = 1.0\n', "timers.t2", 3, ["t1"]),
    ("bad-codec", '[media]\ncodec = "opus"\n', "media.codec", 2, ["PCMU"]),
    ("launch-needs-external", '[roles.P-CSCF]\nlaunch = "kamailio"\n', "roles.P-CSCF.launch", 2, ["external"]),
    ("launch-wrong-role", '[roles.CS]\nmode = "external"\nhost = "127.0.0.4"\nlaunch = "kamailio"\n',
     "roles.CS.launch", 4, ["cannot play CS"]),
    ("same-address", '[roles.UE-1]\nhost = "127.0.0.1"\n[roles.UE-2]\nhost = "127.0.0.1"\n',
     "roles.UE-2.port", 3, ["both use"]),
    ("users-not-ue", '[users.CS]\nusername = "cs"\n', "users.CS", 1, ["per UE role"]),
    ("syntax", 'name = "x"\n[roles.UE-1]\nport = \n', "roles.UE-1.port", 3, ["TOML syntax error"]),
    ("syntax-duplicate", '[roles.UE-1]\nport = 1\nport = 2\n', "roles.UE-1.port", 3, ["TOML syntax error"]),
    ("syntax-table", 'name = "x"\n[roles.UE-1\n', "", 2, ["TOML syntax error"]),
    ("registrar-is-an-agent", '[registration]\nregistrar = "S-CSCF"\n', "registration.registrar", 2,
     ["harness agent", "no registrar"]),
    ("tcp-cs-udp-factory", '[domain]\nconference_factory_uri = "sip:conference-factory@127.0.0.4"\n'
     '[roles.CS]\ntransport = "tcp"\n', "domain.conference_factory_uri", 2, [";transport=tcp"]),
    ("one-kamailio", '[roles.P-CSCF]\nmode = "external"\nhost = "127.0.0.11"\nlaunch = "kamailio"\n',
     "roles.S-CSCF.launch", 4, ["together"]),
    ("tel-not-tel", '[users.UE-1]\ntel = "sip:ue1@ims.test"\n', "users.UE-1.tel", 2, ["not a tel URI"]),
    ("tel-external", '[roles.UE-2]\nmode = "external"\nhost = "127.0.0.2"\n[users.UE-2]\ntel = "tel:+1"\n',
     "users.UE-2.tel", 5, ["external"]),
    ("ims-unknown", '[ims]\npai = true\n', "ims.pai", 2, ["unknown key"]),
    ("ims-not-bool", '[ims]\ngruu = "yes"\n', "ims.gruu", 2, ["true or false"]),
]


@pytest.mark.parametrize(("text", "key", "line", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_mistake_is_named(text: str, key: str, line: int, words: list[str]) -> None:
    problems = check_profile_text(text)
    matching = [p for p in problems if p.key == key]
    assert matching, f"no problem for {key!r} in {problems}"
    problem = matching[0]
    assert problem.line == line, problem
    for word in words:
        assert word in problem.message, problem
    assert str(problem).startswith(f"line {line}: ")
    with pytest.raises(ProfileError) as info:
        load_profile_text(text)
    assert str(problem) in str(info.value)


def test_lab_allows_a_non_loopback_address() -> None:
    text = ('[roles.UE-2]\nmode = "external"\nhost = "10.200.0.2"\nlab = true\n'
            '[domain]\nconference_factory_uri = "sip:conference-factory@10.200.0.2"\n')
    assert check_profile_text(text) == []
    assert load_profile_text(text).role("UE-2").host == "10.200.0.2"


def test_ipv6_loopback_and_tel_uris() -> None:
    text = '[roles.UE-1]\nhost = "::1"\nuri = "sip:ue1@[::1]:5062"\n[users.UE-1]\nuri = "tel:+15551234"\n'
    profile = load_profile_text(text)
    assert profile.role("UE-1").host == "::1" and profile.users["UE-1"].uri == "tel:+15551234"


def test_external_launched_registrar_needs_credentials_of_external_ues_too() -> None:
    """Kamailio started by the harness needs every password for its table, even an external UE's."""
    text = ('[roles.S-CSCF]\nmode = "external"\nlaunch = "kamailio"\nhost = "127.0.0.12"\n'
            '[roles.UE-2]\nmode = "external"\nhost = "127.0.0.2"\n[registration]\nregistrar = "S-CSCF"\n')
    keys = {p.key for p in check_profile_text(text)}
    assert "users.UE-2.password" in keys
    # ...but not when both sides are someone else's.
    text = text.replace('launch = "kamailio"\n', "")
    assert "users.UE-2.password" not in {p.key for p in check_profile_text(text)}


def test_unreadable_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    problems = check_profile(missing)
    assert len(problems) == 1 and "cannot read profile" in problems[0].message
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00name")
    assert "cannot read profile" in check_profile(binary)[0].message
    with pytest.raises(ProfileError, match="cannot read profile"):
        load_profile(missing)


def test_problems_come_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[media]\ncodec = "x"\n[roles.UE-1]\nport = 0\n[timers]\nt1 = "a"\n')
    assert [p.line for p in check_profile(path)] == [2, 4, 6]


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[roles.UE-1]\nport = 0\n')
    assert main([str(PROFILES / "all-agents.toml")]) == 0
    assert main([str(bad)]) == 2
    out = capsys.readouterr().out
    assert f"{bad}:2: roles.UE-1.port: 0 is out of range" in out


def test_problem_str_without_line() -> None:
    assert str(ProfileProblem("", None, "cannot read")) == "cannot read"


KEYS = st.sampled_from(["name", "mode", "host", "port", "transport", "uri", "lab", "launch", "t1", "codec",
                        "registrar", "username", "password", "x"])
VALUES = st.one_of(st.integers(-5, 70000), st.booleans(), st.floats(allow_nan=False, width=32),
                   st.sampled_from(['"agent"', '"external"', '"127.0.0.1"', '"10.0.0.1"', '"sip:a@b"', '"udp"',
                                    '"kamailio"', '"S-CSCF"', '[1, 2]', '{a = 1}', '""']).map(lambda s: s))
TABLES = st.sampled_from(["", "[roles.UE-1]", "[roles.S-CSCF]", "[roles.X]", "[users.UE-2]", "[timers]",
                          "[registration]", "[media]", "[domain]", "[roles]", "[users]"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(TABLES, KEYS, VALUES), max_size=8))
def test_any_profile_gives_problems_never_a_traceback(entries: list[tuple[str, str, object]]) -> None:
    text = "".join(f"{table}\n{key} = {str(value).lower() if isinstance(value, bool) else value}\n"
                   for table, key, value in entries)
    problems = check_profile_text(text)
    assert all(isinstance(p, ProfileProblem) and p.message for p in problems)
    assert not any("internal error" in p.message for p in problems), problems


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_raises(text: str) -> None:
    problems = check_profile_text(text)
    assert not any("internal error" in p.message for p in problems), problems
