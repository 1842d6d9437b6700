"""SUT profile: which roles the harness plays and which are someone else's (ETSI's PIXIT idea).

A profile is a TOML file (see profiles/*.toml for commented examples)::

    name = "kamailio-core"
    [domain]        home = "ims.test", conference_factory_uri = "sip:conference-factory@127.0.0.4"
    [roles.UE-1]    mode = "agent" | "external", host, port, transport = "udp" | "tcp", uri,
                    launch = "kamailio" | "baresip" | "linphonec" (external roles the harness starts),
                    lab = true (allow a non-loopback host you own, e.g. a namespace veth)
    [users.UE-1]    uri, username, password, tel = "tel:+..." (From/To identity of a harness UE)
    [registration]  registrar = "S-CSCF", expires = 600, algorithm = "MD5" | "SHA-256"
    [timers]        t1 = 0.5, t2 = 4.0, flow_timeout = 60, external_wait = 30
    [media]         codec = "PCMU" | "PCMA"
    [ims]           p_preferred_identity, p_asserted_identity, gruu = true | false

`check_profile()` explains every mistake with the key and its line and never raises; `load_profile()`
returns frozen dataclasses or raises `ProfileError` carrying the same problems. Targets are
restricted to loopback (127/8, ::1) unless a role says `lab = true`: the harness sends crafted and
faulty SIP, which must never reach a network nobody agreed to test.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from harness.sip.errors import SipError
from harness.sip.headers import SipUri, parse_uri

__all__ = [
    "ROLES",
    "Domain",
    "Ims",
    "Media",
    "Profile",
    "ProfileError",
    "ProfileProblem",
    "Registration",
    "Role",
    "Timers",
    "User",
    "check_profile",
    "check_profile_text",
    "load_profile",
    "load_profile_or_report",
    "load_profile_text",
    "relocated",
]

# Same names as harness/agents/topology.py (a unit test keeps them equal); kept here so reading a
# profile never imports the agents.
ROLES = ("UE-1", "UE-2", "UE-3", "CS", "MRFP", "P-CSCF", "S-CSCF")
UES = ("UE-1", "UE-2", "UE-3")
MODES = ("agent", "external")
TRANSPORTS = ("udp", "tcp")
CODECS = ("PCMU", "PCMA")
ALGORITHMS = ("MD5", "SHA-256")
#: Peers the harness knows how to start, and the roles each can play.
LAUNCHERS = {"kamailio": ("P-CSCF", "S-CSCF"), "baresip": UES, "linphonec": UES}

TOP_KEYS = ("name", "description", "domain", "roles", "users", "registration", "timers", "media", "ims")
DOMAIN_KEYS = ("home", "conference_factory_uri")
ROLE_KEYS = ("mode", "host", "port", "transport", "uri", "launch", "lab")
USER_KEYS = ("uri", "username", "password", "tel")
REGISTRATION_KEYS = ("registrar", "expires", "algorithm")
TIMER_KEYS = ("t1", "t2", "flow_timeout", "external_wait")
MEDIA_KEYS = ("codec",)
IMS_KEYS = ("p_preferred_identity", "p_asserted_identity", "gruu")


# --- the loaded profile ------------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    """One role: played by a harness agent, or external (someone else's SIP stack)."""

    name: str
    mode: str = "agent"
    host: str | None = None          # None: the agent binds the run's topology address
    port: int = 5060
    transport: str = "udp"
    uri: str | None = None
    launch: str | None = None        # external peer the harness starts itself (kamailio, baresip, ...)
    lab: bool = False

    @property
    def external(self) -> bool:
        return self.mode == "external"

    @property
    def address(self) -> tuple[str, int] | None:
        return (self.host, self.port) if self.host is not None else None


@dataclass(frozen=True)
class User:
    role: str
    uri: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tel: str | None = None   # a tel URI the harness's UE puts in From/To instead of its SIP AoR


@dataclass(frozen=True)
class Domain:
    home: str | None = None
    conference_factory_uri: str | None = None


@dataclass(frozen=True)
class Registration:
    registrar: str | None = None      # a role name; None = no registration before the flow
    expires: int = 600
    algorithm: str = "MD5"


@dataclass(frozen=True)
class Timers:
    t1: float = 0.5
    t2: float = 4.0
    flow_timeout: float = 60.0
    external_wait: float = 30.0       # how long to wait for an external role's next message


@dataclass(frozen=True)
class Media:
    codec: str = "PCMU"


@dataclass(frozen=True)
class Ims:
    """IMS header fields the harness's own agents add (TS 24.229, RFC 3325, RFC 5627)."""

    p_preferred_identity: bool = False   # UEs: P-Preferred-Identity on initial requests
    p_asserted_identity: bool = False    # proxies: P-Asserted-Identity on initial requests (Kamailio too)
    gruu: bool = False                   # UEs: Supported: gruu and a +sip.instance Contact


@dataclass(frozen=True)
class Profile:
    source: str
    name: str
    description: str
    roles: Mapping[str, Role]        # every role in ROLES, defaults filled in
    users: Mapping[str, User]
    domain: Domain
    registration: Registration
    timers: Timers
    media: Media
    ims: Ims = Ims()

    def role(self, name: str) -> Role:
        return self.roles[name]

    @property
    def external_roles(self) -> tuple[str, ...]:
        return tuple(name for name in ROLES if self.roles[name].external)

    def launched(self, peer: str) -> tuple[str, ...]:
        """Roles the harness must start `peer` for, e.g. launched("kamailio") -> ("P-CSCF", "S-CSCF")."""
        return tuple(name for name in ROLES if self.roles[name].launch == peer)


# --- problems --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileProblem:
    """One mistake: the dotted key (`roles.UE-1.port`), its line (None if unknown), what is wrong."""

    key: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.key}: {self.message}" if self.key else f"{where}{self.message}"


class ProfileError(ValueError):
    """The profile has problems; `str()` lists them one per line, `problems` keeps them."""

    def __init__(self, source: str, problems: list[ProfileProblem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))


# --- where keys are (tomllib keeps no positions) ----------------------------------------------

_PART = r'(?:[A-Za-z0-9_-]+|"[^"\n]*"|\'[^\'\n]*\')'
_DOTTED = rf"{_PART}(?:[ \t]*\.[ \t]*{_PART})*"
_TABLE_RE = re.compile(rf"^[ \t]*\[\[?[ \t]*({_DOTTED})[ \t]*\]\]?")
_KEY_RE = re.compile(rf"^[ \t]*({_DOTTED})[ \t]*=")
_TOML_POS_RE = re.compile(r"\(at line (\d+), column (\d+)\)")


def _split_dotted(text: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in re.findall(rf"{_PART}", text))


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """First line of each table header and key assignment, good enough for error messages."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        if m := _TABLE_RE.match(line):
            table = _split_dotted(m.group(1))
            key = table
        elif m := _KEY_RE.match(line):
            key = table + _split_dotted(m.group(1))
        else:
            continue
        for i in range(1, len(key) + 1):
            lines.setdefault(key[:i], number)
    return lines


# --- checking ----------------------------------------------------------------------------------


def _suggest(word: str, choices: tuple[str, ...]) -> str:
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    known = ", ".join(choices)
    if close:
        return f"did you mean {lowered[close[0]]!r}? (known: {known})"
    return f"known: {known}"


def _type_name(value: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", dict: "a table",
            list: "an array"}.get(type(value), type(value).__name__)


class _Checker:
    """Walks the parsed TOML once, collecting problems and the values that passed."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lines = _key_lines(text)
        self.problems: list[ProfileProblem] = []

    def line_of(self, key: tuple[str, ...]) -> int | None:
        """Line of the key, else of its nearest enclosing table that is written in the file."""
        return next((self.lines[key[:i]] for i in range(len(key), 0, -1) if key[:i] in self.lines), None)

    def problem(self, key: tuple[str, ...], message: str, line: int | None = None) -> None:
        self.problems.append(ProfileProblem(".".join(key), line or self.line_of(key), message))

    def table(self, data: Mapping[str, Any], key: tuple[str, ...], allowed: tuple[str, ...]) -> dict[str, Any]:
        """The sub-table at `key` (empty if absent), unknown keys reported and dropped."""
        value = data.get(key[-1], {})
        if not isinstance(value, dict):
            self.problem(key, f"must be a table ([{'.'.join(key)}]), not {_type_name(value)}")
            return {}
        return self.known(value, key, allowed)

    def known(self, value: dict[str, Any], key: tuple[str, ...], allowed: tuple[str, ...]) -> dict[str, Any]:
        out = {}
        for name, item in value.items():
            if name in allowed:
                out[name] = item
            else:
                where = f"[{'.'.join(key)}]" if key else "the top level"
                self.problem(key + (name,), f"unknown key {name!r} in {where}; {_suggest(name, allowed)}")
        return out

    def string(self, data: Mapping[str, Any], key: tuple[str, ...], choices: tuple[str, ...] = (),
               fold: bool = False) -> str | None:
        if key[-1] not in data:
            return None
        value = data[key[-1]]
        if not isinstance(value, str):
            self.problem(key, f"must be a string, not {_type_name(value)} ({value!r})")
            return None
        if choices:
            match = next((c for c in choices if (c.lower() == value.lower() if fold else c == value)), None)
            if match is None:
                self.problem(key, f"{value!r} is not allowed; {_suggest(value, choices)}")
            return match
        if not value.strip():
            self.problem(key, "must not be empty")
            return None
        return value

    def number(self, data: Mapping[str, Any], key: tuple[str, ...], low: float, high: float,
               integer: bool = False) -> float | None:
        if key[-1] not in data:
            return None
        value = data[key[-1]]
        kinds: tuple[type, ...] = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            wanted = "an integer" if integer else "a number (seconds)"
            self.problem(key, f"must be {wanted}, not {_type_name(value)} ({value!r})")
            return None
        if not low <= value <= high:
            self.problem(key, f"{value} is out of range {low:g}..{high:g}")
            return None
        return value

    def boolean(self, data: Mapping[str, Any], key: tuple[str, ...]) -> bool:
        value = data.get(key[-1], False)
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, not {_type_name(value)} ({value!r})")
            return False
        return value

    def address(self, value: str, key: tuple[str, ...], lab: bool,
                hint: str = "an address of your own lab marked with `lab = true` on this role") -> str | None:
        """An IP literal; loopback unless the role is marked `lab = true`."""
        bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
        try:
            ip = ipaddress.ip_address(bare)
        except ValueError:
            hint = " (write 127.0.0.1 or ::1)" if bare.lower() == "localhost" else ""
            self.problem(key, f"{value!r} is not an IP address{hint}; names are not resolved")
            return None
        if not ip.is_loopback and not lab:
            self.problem(key, f"{value} is not a loopback address: the harness only targets 127.0.0.0/8 "
                              f"and ::1, or {hint}")
            return None
        return str(ip)

    def uri(self, data: Mapping[str, Any], key: tuple[str, ...], lab: bool, target: bool,
            hint: str = "an address of your own lab marked with `lab = true` on this role") -> str | None:
        """A sip/sips/tel URI; when it names where to send (`target`), an IP host must be loopback."""
        text = self.string(data, key)
        if text is None:
            return None
        try:
            uri = parse_uri(text)
        except SipError as exc:
            self.problem(key, f"{text!r} is not a URI: {exc}")
            return None
        if not isinstance(uri, SipUri) and uri.scheme.lower() != "tel":
            self.problem(key, f"{text!r}: only sip:, sips: and tel: URIs are used")
            return None
        if target and isinstance(uri, SipUri):
            host = uri.host_port[0]
            try:
                ipaddress.ip_address(host)
            except ValueError:
                return text  # a domain name: routed by the proxies, never resolved by the harness
            if self.address(host, key, lab, hint) is None:
                return None
        return text


def _check(data: dict[str, Any], checker: _Checker) -> Profile:
    c = checker
    top = c.known(data, (), TOP_KEYS)
    name = c.string(top, ("name",)) or Path(c.source).stem
    description = c.string(top, ("description",)) or ""

    roles: dict[str, Role] = {}
    raw_roles = top.get("roles", {})
    if not isinstance(raw_roles, dict):
        c.problem(("roles",), f"must be a table of roles ([roles.UE-1] ...), not {_type_name(raw_roles)}")
        raw_roles = {}
    for role_name, raw in raw_roles.items():
        key = ("roles", role_name)
        if role_name not in ROLES:
            c.problem(key, f"unknown role {role_name!r}; {_suggest(role_name, ROLES)}")
            continue
        if not isinstance(raw, dict):
            c.problem(key, f"must be a table ([roles.{role_name}]), not {_type_name(raw)}")
            continue
        roles[role_name] = _check_role(role_name, c.known(raw, key, ROLE_KEYS), c)
    for role_name in ROLES:
        roles.setdefault(role_name, Role(role_name))

    seen: dict[tuple[str, int, str], str] = {}
    for role in roles.values():
        if role.host is None:
            continue
        where = (role.host, role.port, role.transport)
        if where in seen:
            c.problem(("roles", role.name, "port"), f"{role.name} and {seen[where]} both use "
                      f"{role.transport} {role.host}:{role.port}; give each role its own address or port")
        seen.setdefault(where, role.name)

    dom = c.table(top, ("domain",), DOMAIN_KEYS)
    factory = dom.get("conference_factory_uri")
    lab_hosts = {r.host for r in roles.values() if r.lab and r.host is not None}
    factory_host = SipUri.parse(factory).host_port[0] if isinstance(factory, str) and _is_sip(factory) else None
    domain = Domain(home=c.string(dom, ("domain", "home")),
                    conference_factory_uri=c.uri(dom, ("domain", "conference_factory_uri"),
                                                 lab=factory_host in lab_hosts, target=True,
                                                 hint="the host of a role marked `lab = true`"))

    users: dict[str, User] = {}
    raw_users = top.get("users", {})
    if not isinstance(raw_users, dict):
        c.problem(("users",), f"must be a table of users ([users.UE-1] ...), not {_type_name(raw_users)}")
        raw_users = {}
    for role_name, raw in raw_users.items():
        key = ("users", role_name)
        if role_name not in UES:
            c.problem(key, f"users are per UE role, {role_name!r} is not one; {_suggest(role_name, UES)}")
            continue
        if not isinstance(raw, dict):
            c.problem(key, f"must be a table ([users.{role_name}]), not {_type_name(raw)}")
            continue
        u = c.known(raw, key, USER_KEYS)
        users[role_name] = User(role_name, uri=c.uri(u, key + ("uri",), lab=False, target=False),
                                username=c.string(u, key + ("username",)),
                                password=c.string(u, key + ("password",)),
                                tel=_tel(c, u, key, roles.get(role_name)))

    reg = c.table(top, ("registration",), REGISTRATION_KEYS)
    registrar = c.string(reg, ("registration", "registrar"), ROLES)
    registration = Registration(
        registrar=registrar,
        expires=int(c.number(reg, ("registration", "expires"), 1, 86400, integer=True) or 600),
        algorithm=c.string(reg, ("registration", "algorithm"), ALGORITHMS, fold=True) or "MD5",
    )
    if registrar is not None:
        _check_credentials(roles, users, registrar, c)

    tim = c.table(top, ("timers",), TIMER_KEYS)
    t1 = c.number(tim, ("timers", "t1"), 0.01, 10.0)
    t2 = c.number(tim, ("timers", "t2"), 0.01, 64.0)
    if t1 is not None and t2 is not None and t2 < t1:
        c.problem(("timers", "t2"), f"t2 ({t2}) must not be smaller than t1 ({t1}) (RFC 3261 §17.1.2.2)")
    timers = Timers(
        t1=float(t1 or 0.5), t2=float(t2 or 4.0),
        flow_timeout=float(c.number(tim, ("timers", "flow_timeout"), 1.0, 3600.0) or 60.0),
        external_wait=float(c.number(tim, ("timers", "external_wait"), 0.1, 3600.0) or 30.0),
    )
    med = c.table(top, ("media",), MEDIA_KEYS)
    media = Media(codec=c.string(med, ("media", "codec"), CODECS, fold=True) or "PCMU")
    ims_table = c.table(top, ("ims",), IMS_KEYS)
    ims = Ims(**{k: c.boolean(ims_table, ("ims", k)) for k in IMS_KEYS})
    _check_topology(roles, domain, registration, c)

    return Profile(c.source, name, description, MappingProxyType(roles), MappingProxyType(users),
                   domain, registration, timers, media, ims)


def _tel(c: _Checker, user: dict[str, Any], key: tuple[str, ...], role: Role | None) -> str | None:
    """A tel URI (RFC 3966) for a harness UE; an external UE sends its own From, so none for it."""
    tel = c.uri(user, key + ("tel",), lab=False, target=False)
    if tel is None:
        return None
    if not tel.lower().startswith("tel:"):
        c.problem(key + ("tel",), f"{tel!r} is not a tel URI (tel:+4930...); the SIP AoR goes in uri")
        return None
    if role is not None and role.external:
        c.problem(key + ("tel",), f"{role.name} is external: it puts its own identity in From; tel is for "
                                  "the harness's UEs")
        return None
    return tel


def _check_topology(roles: Mapping[str, Role], domain: Domain, registration: Registration, c: _Checker) -> None:
    """Combinations that load but cannot run: a registrar the harness does not have, a TCP CS that
    the factory URI would have reached over UDP."""
    registrar = registration.registrar
    if registrar is not None and not roles[registrar].external:
        c.problem(("registration", "registrar"),
                  f"{registrar} is played by a harness agent, which has no registrar; make it external "
                  f'(e.g. launch = "kamailio") or leave out [registration]')
    kamailio = [name for name in ("P-CSCF", "S-CSCF") if roles[name].launch == "kamailio"]
    if len(kamailio) == 1:
        other = "S-CSCF" if kamailio == ["P-CSCF"] else "P-CSCF"
        c.problem(("roles", other, "launch"), f'Kamailio is started as P-CSCF and S-CSCF together: {kamailio[0]} has '
                  f'launch = "kamailio", so {other} needs mode = "external", host and launch = "kamailio" too',
                  c.line_of(("roles", other, "launch")) if ("roles", other) in c.lines
                  else c.line_of(("roles", kamailio[0], "launch")))
    factory = domain.conference_factory_uri
    factory_transport = (SipUri.parse(factory).params.get("transport") or "udp").lower() \
        if factory is not None and _is_sip(factory) else None
    if roles["CS"].transport == "tcp" and factory_transport not in (None, "tcp"):
        c.problem(("domain", "conference_factory_uri"),
                  "roles.CS.transport is tcp, so the factory URI needs ;transport=tcp (else the proxies "
                  "forward the conference INVITE over UDP, where the CS does not listen)")


def _check_role(name: str, raw: dict[str, Any], c: _Checker) -> Role:
    key = ("roles", name)
    lab = c.boolean(raw, key + ("lab",))
    mode = c.string(raw, key + ("mode",), MODES) or "agent"
    host_text = c.string(raw, key + ("host",))
    host = c.address(host_text, key + ("host",), lab) if host_text is not None else None
    port = c.number(raw, key + ("port",), 1, 65535, integer=True)
    transport = c.string(raw, key + ("transport",), TRANSPORTS, fold=True) or "udp"
    uri = c.uri(raw, key + ("uri",), lab, target=True)
    launch = c.string(raw, key + ("launch",), tuple(LAUNCHERS))
    if mode == "external" and host_text is None:
        c.problem(key + ("host",), f"{name} is external, so the harness must know where it is: "
                                   f'add host = "127.0.0.x" (and port, transport) to [roles.{name}]')
    if launch is not None:
        if mode != "external":
            c.problem(key + ("launch",), f'launch = "{launch}" starts a third-party peer: it needs mode = "external"')
        elif name not in LAUNCHERS[launch]:
            c.problem(key + ("launch",), f"{launch} cannot play {name}; it plays {', '.join(LAUNCHERS[launch])}")
    return Role(name, mode, host, int(port) if port is not None else 5060, transport, uri, launch, lab)


def _check_credentials(roles: Mapping[str, Role], users: Mapping[str, User], registrar: str, c: _Checker) -> None:
    """With a registrar, every UE needs credentials, except an external UE nobody here starts when
    the registrar is external too (then neither side's passwords pass through the harness)."""
    reg_role = roles[registrar]
    for ue in UES:
        role = roles[ue]
        if role.external and role.launch is None and reg_role.external and reg_role.launch is None:
            continue
        user = users.get(ue)
        # A missing [users.X] table has no line of its own: point at the registrar that asks for it.
        line = None if ("users", ue) in c.lines else c.line_of(("registration", "registrar"))
        for field_name in ("username", "password"):
            if user is None or getattr(user, field_name) is None:
                c.problem(("users", ue, field_name),
                          f"registration.registrar is {registrar!r}, so {ue} needs a {field_name}: "
                          f"add {field_name} = \"...\" under [users.{ue}]", line)


# --- entry points ------------------------------------------------------------------------------


def _parse(text: str, source: str) -> tuple[Profile | None, list[ProfileProblem]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        pos = _TOML_POS_RE.search(message)
        line = int(pos.group(1)) if pos else None
        key = _key_at(text, line) if line is not None else ""
        return None, [ProfileProblem(key, line, f"TOML syntax error: {_TOML_POS_RE.sub('', message).strip()}"
                                     + (f" (column {pos.group(2)})" if pos else ""))]
    checker = _Checker(text, source)
    try:
        profile = _check(data, checker)
    except Exception as exc:  # a checker bug must still come out as a message, never a traceback
        checker.problems.append(ProfileProblem("", None, f"internal error while checking: {exc!r}"))
        return None, checker.problems
    return profile, checker.problems


def _is_sip(text: str) -> bool:
    try:
        SipUri.parse(text)
    except SipError:
        return False
    return True


def _key_at(text: str, line: int) -> str:
    """Dotted key written on `line` (within its table), for naming the key of a syntax error."""
    table: tuple[str, ...] = ()
    for number, content in enumerate(text.splitlines()[:line], 1):
        if m := _TABLE_RE.match(content):
            table = _split_dotted(m.group(1))
            if number == line:
                return ".".join(table)
        elif number == line and (m := _KEY_RE.match(content)):
            return ".".join(table + _split_dotted(m.group(1)))
    return ".".join(table)


def _read(path: Path | str) -> tuple[str | None, list[ProfileProblem]]:
    try:
        return Path(path).read_text(encoding="utf-8"), []
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, [ProfileProblem("", None, f"cannot read profile {str(path)!r}: {reason}")]


def check_profile_text(text: str, source: str = "<profile>") -> list[ProfileProblem]:
    return _parse(text, source)[1]


def check_profile(path: Path | str) -> list[ProfileProblem]:
    """Every problem in the profile file, in file order; an empty list means it loads."""
    text, problems = _read(path)
    if text is None:
        return problems
    return sorted(check_profile_text(text, str(path)), key=lambda p: (p.line or 0))


def load_profile_text(text: str, source: str = "<profile>") -> Profile:
    profile, problems = _parse(text, source)
    if problems or profile is None:
        raise ProfileError(source, sorted(problems, key=lambda p: (p.line or 0)))
    return profile


def load_profile(path: Path | str) -> Profile:
    """The profile, or ProfileError listing every problem (key, line, message)."""
    text, problems = _read(path)
    if text is None:
        raise ProfileError(str(path), problems)
    return load_profile_text(text, str(path))


def relocated(profile: Profile, subnet: int) -> Profile:
    """The same profile moved to 127.<subnet>.0.0/24: each IPv4 loopback host 127.a.b.c of a role becomes
    127.<subnet>.0.c, in the roles and in every URI that names it. Parallel test runs of one example
    profile then never share an address; ValueError when two hosts would land on one."""
    if not 1 <= subnet <= 254:
        raise ValueError(f"subnet octet must be 1..254, got {subnet}")
    moves: dict[str, str] = {}
    for role in profile.roles.values():
        host = role.host
        if host is None or ":" in host or not ipaddress.ip_address(host).is_loopback:
            continue
        moves[host] = f"127.{subnet}.0.{host.rsplit('.', 1)[1]}"
    if len(set(moves.values())) != len(moves):
        raise ValueError(f"{profile.source}: hosts {sorted(moves)} share a last octet; cannot relocate")
    pattern = re.compile(r"(?<![\d.])(" + "|".join(map(re.escape, moves)) + r")(?![\d])") if moves else None

    def move(text: str | None) -> str | None:
        return pattern.sub(lambda m: moves[m.group(1)], text) if text is not None and pattern else text

    roles = {name: replace(r, host=move(r.host), uri=move(r.uri)) for name, r in profile.roles.items()}
    users = {name: replace(u, uri=move(u.uri)) for name, u in profile.users.items()}
    domain = replace(profile.domain, conference_factory_uri=move(profile.domain.conference_factory_uri))
    return replace(profile, roles=MappingProxyType(roles), users=MappingProxyType(users), domain=domain)


def load_profile_or_report(path: Path) -> Profile | None:
    """The profile, or None after printing every problem to stderr as FILE:LINE: KEY: MESSAGE (the
    commands' --profile)."""
    import sys

    try:
        return load_profile(path)
    except ProfileError as exc:
        for problem in exc.problems:
            print(f"{path}:{problem.line or 0}: {problem.key or '-'}: {problem.message}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.profile FILE...`: print each problem as FILE:LINE: KEY: MESSAGE; exit 2 on any."""
    import sys

    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m harness.profile FILE...", file=sys.stderr)
        return 2
    status = 0
    for path in paths:
        problems = check_profile(path)
        for p in problems:
            print(f"{path}:{p.line or 0}: {p.key or '-'}: {p.message}")
        if problems:
            status = 2
        else:
            print(f"{path}: ok")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
