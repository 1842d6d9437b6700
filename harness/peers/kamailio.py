"""Debian's Kamailio as the IMS core: a P-CSCF and an S-CSCF, each its own process.

The configs live in peers/kamailio/ as templates (`%%NAME%%` placeholders, so Kamailio's own `$var`
syntax stays untouched); they are rendered per run and written next to the log, so a failed run
can be replayed by hand with the exact file Kamailio read. Each instance runs in the foreground
(`-DD -E`) in its own session: stopping sends SIGTERM to its PID and, if it has not exited in time,
SIGKILL to its process group (the pgid is that PID), so no worker outlives the test.

Readiness is judged by the SIP side, not by the process: the instance is ready once it answers an
OPTIONS sent to itself with 200 (the configs answer such probes), within a bounded wait.

By hand (until Ctrl-C)::

    python -m harness.peers.kamailio --log-dir /tmp/ims --subnet 77 [--transport tcp] [--algorithm SHA-256]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from harness.capture.dumpcap import ToolMissing
from harness.peers.probe import hostport
from harness.peers.process import PeerError, PeerProcess, loopback
from harness.procs import serve_until_signal

__all__ = [
    "CONFIG_DIR",
    "ImsCore",
    "KamailioError",
    "KamailioInstance",
    "ToolMissing",
    "pcscf",
    "require_kamailio",
    "scscf",
]

CONFIG_DIR = Path(__file__).resolve().parents[2] / "peers" / "kamailio"
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
ALGORITHMS = ("MD5", "SHA-256")  # what the auth module of Kamailio 5.6 accepts for `algorithm`
_PLACEHOLDER_RE = re.compile(r"%%([A-Z_]+)%%")
_USERNAME_RE = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=-]+")  # RFC 3261 §25.1 user unreserved/escaped-free


class KamailioError(PeerError):
    """Kamailio did not start, did not answer, or died; the message ends with its log tail."""


def require_kamailio() -> str:
    """Path of the kamailio binary, or ToolMissing naming the package to install."""
    path = shutil.which("kamailio") or next(
        (p for p in ("/usr/sbin/kamailio", "/usr/local/sbin/kamailio") if os.access(p, os.X_OK)), None)
    if path is None:
        raise ToolMissing("kamailio not found: apt-get install -y kamailio")
    return path


def _cfg_string(text: str, what: str) -> str:
    """A value safe inside a Kamailio double-quoted string (no quote, backslash or line break)."""
    if any(ch in text for ch in '"\\\r\n') or not text:
        raise ValueError(f"{what} {text!r} must be non-empty without quotes, backslashes or line breaks")
    return text


def render(template: Path, values: Mapping[str, str]) -> str:
    """The template with every %%NAME%% replaced; a placeholder left without a value is an error."""
    text = template.read_text()
    missing = sorted(set(_PLACEHOLDER_RE.findall(text)) - set(values))
    if missing:
        raise ValueError(f"{template.name}: no value for {', '.join(missing)}")
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], text)


class KamailioInstance(PeerProcess):
    """One Kamailio process from a template; a context manager that starts, probes and stops it.

    Ready once it answers OPTIONS with 200 (the configs answer such probes). Files in `log_dir`:
    NAME.cfg (rendered config), NAME.log (stderr+stdout), NAME.pid, NAME.run/ (working and runtime
    directory)."""

    error = KamailioError
    ready_status = 200

    def __init__(
        self,
        name: str,
        template: Path,
        values: Mapping[str, str],
        host: str,
        port: int,
        log_dir: Path | str,
        *,
        shm_mb: int = 64,
        pkg_mb: int = 8,
        ready_timeout: float = READY_TIMEOUT,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"instance name {name!r} must be a plain file name")
        if shm_mb < 64:
            raise ValueError("shm_mb below 64 MB runs out under load (see notes-peers.md)")
        self.template = Path(template)
        self.values = dict(values)
        self.log_dir = Path(log_dir)
        self.shm_mb = shm_mb
        self.pkg_mb = pkg_mb
        self.cfg_path = self.log_dir / f"{name}.cfg"
        self.pid_path = self.log_dir / f"{name}.pid"
        self.run_dir = self.log_dir / f"{name}.run"
        super().__init__(name, [], loopback(host), port, self.log_dir / f"{name}.log",
                         ready_timeout=ready_timeout, stop_timeout=stop_timeout)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def command(self, binary: str = "kamailio") -> list[str]:
        return [binary, "-DD", "-E", "-f", str(self.cfg_path), "-P", str(self.pid_path),
                "-m", str(self.shm_mb), "-M", str(self.pkg_mb), "-w", str(self.run_dir), "-Y", str(self.run_dir)]

    def start(self) -> KamailioInstance:
        """Render the config next to the log, then run Kamailio in the foreground (`-DD -E`)."""
        if self.running():
            raise KamailioError(f"{self.name} is already running (pid {self.pid})")
        binary = require_kamailio()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.cfg_path.write_text(render(self.template, self.values))
        self.pid_path.unlink(missing_ok=True)
        self.argv = self.command(binary)
        super().start()
        return self

    def _tail_text(self) -> str:
        return f" (config {self.cfg_path}){super()._tail_text()}"


# --- the two roles -------------------------------------------------------------------------------


def _listen(host: str, port: int) -> str:
    """Listen on UDP and TCP; TCP connections it opens leave from the same address (by default the
    kernel would pick 127.0.0.1, and the capture would show the proxy at an address not its own)."""
    where = hostport(host, port)
    source = f"tcp_source_ipv6={host}" if ":" in host else f"tcp_source_ipv4={host}"
    return f"listen=udp:{where}\nlisten=tcp:{where}\n{source}"


def _defines(assert_identity: bool) -> str:
    return "#!define ASSERT_IDENTITY" if assert_identity else ""


def scscf(host: str, port: int, log_dir: Path | str, *, realm: str, users: Mapping[str, str],
          algorithm: str = "MD5", children: int = 2, assert_identity: bool = False,
          **kwargs: object) -> KamailioInstance:
    """The S-CSCF: registrar with digest auth (`users`: username -> password) and stateful proxy."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"Kamailio 5.6 digest algorithm must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}")
    lines = []
    for user, password in users.items():
        if not _USERNAME_RE.fullmatch(user):
            raise ValueError(f"username {user!r} has characters a SIP URI user part cannot carry plainly")
        lines.append(f'\t$sht(auth=>{user}) = "{_cfg_string(password, f"password of {user}")}";')
    values = {
        "LISTEN": _listen(host, port),
        "REALM": _cfg_string(realm, "realm"),
        "ALGORITHM": algorithm,
        "USERS": "\n".join(lines) or "\t# no users: every REGISTER is challenged",
        "CHILDREN": str(children),
        "DEFINES": _defines(assert_identity),
    }
    return KamailioInstance("s-cscf", CONFIG_DIR / "scscf.cfg", values, host, port, log_dir, **kwargs)  # type: ignore[arg-type]


def pcscf(host: str, port: int, log_dir: Path | str, *, scscf_addr: tuple[str, int], transport: str = "udp",
          children: int = 2, assert_identity: bool = False, **kwargs: object) -> KamailioInstance:
    """The P-CSCF: stateful proxy sending UE-originated requests to the S-CSCF over `transport`."""
    if transport not in ("udp", "tcp"):
        raise ValueError(f"transport must be udp or tcp, not {transport!r}")
    s_host, s_port = loopback(scscf_addr[0]), scscf_addr[1]
    values = {
        "LISTEN": _listen(host, port),
        "SCSCF_IP": s_host,
        "SCSCF_URI": f"sip:{hostport(s_host, s_port)};transport={transport}",
        "CHILDREN": str(children),
        "DEFINES": _defines(assert_identity),
    }
    return KamailioInstance("p-cscf", CONFIG_DIR / "pcscf.cfg", values, host, port, log_dir, **kwargs)  # type: ignore[arg-type]


class ImsCore:
    """S-CSCF then P-CSCF started together, stopped in reverse order; one context manager."""

    def __init__(self, log_dir: Path | str, *, pcscf_addr: tuple[str, int], scscf_addr: tuple[str, int],
                 realm: str, users: Mapping[str, str], algorithm: str = "MD5", transport: str = "udp",
                 ready_timeout: float = READY_TIMEOUT, assert_identity: bool = False) -> None:
        self.scscf = scscf(*scscf_addr, log_dir, realm=realm, users=users, algorithm=algorithm,
                           ready_timeout=ready_timeout, assert_identity=assert_identity)
        self.pcscf = pcscf(*pcscf_addr, log_dir, scscf_addr=scscf_addr, transport=transport,
                           ready_timeout=ready_timeout, assert_identity=assert_identity)
        self.realm = realm
        self.transport = transport

    @classmethod
    def from_profile(cls, profile: object, log_dir: Path | str) -> ImsCore:
        """From a harness.profile.Profile whose P-CSCF and S-CSCF say `launch = "kamailio"`."""
        from harness.profile import Profile

        if not isinstance(profile, Profile):
            raise TypeError("from_profile needs a harness.profile.Profile")
        p, s = profile.role("P-CSCF"), profile.role("S-CSCF")
        if p.launch != "kamailio" or s.launch != "kamailio" or p.host is None or s.host is None:
            raise ValueError(f"{profile.source}: P-CSCF and S-CSCF need launch = \"kamailio\" and a host")
        users = {u.username: u.password for u in profile.users.values()
                 if u.username is not None and u.password is not None}
        return cls(log_dir, pcscf_addr=(p.host, p.port), scscf_addr=(s.host, s.port),
                   realm=profile.domain.home or "ims.test", users=users,
                   algorithm=profile.registration.algorithm, transport=s.transport,
                   assert_identity=profile.ims.p_asserted_identity)

    def start(self) -> ImsCore:
        self.scscf.start()
        try:
            self.pcscf.start()
        except BaseException:
            self.scscf.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            self.pcscf.stop()
        finally:
            self.scscf.stop()

    def __enter__(self) -> ImsCore:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


# --- by hand -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.peers.kamailio",
                                     description="Start Kamailio as P-CSCF (127.N.0.11) and S-CSCF (127.N.0.12) "
                                                 "until Ctrl-C or SIGTERM.")
    parser.add_argument("--log-dir", type=Path, required=True, help="rendered configs, logs and pid files go here")
    parser.add_argument("--subnet", type=int, default=77, help="N of 127.N.0.0/24 (default 77)")
    parser.add_argument("--port", type=int, default=5060)
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp", help="P-CSCF -> S-CSCF hop")
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="MD5", help="digest algorithm of the S-CSCF")
    parser.add_argument("--realm", default="ims.test")
    parser.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD",
                        help="a user the registrar accepts (default ue1..ue3 with password NAME-secret)")
    parser.add_argument("--profile", type=Path, help="take addresses, users and algorithm from a SUT profile")
    args = parser.parse_args(argv)
    try:
        if args.profile is not None:
            from harness.profile import ProfileError, load_profile

            try:
                core = ImsCore.from_profile(load_profile(args.profile), args.log_dir)
            except ProfileError as exc:
                print(exc)
                return 2
        else:
            users = dict(u.split(":", 1) for u in args.user) if args.user else {
                f"ue{i}": f"ue{i}-secret" for i in (1, 2, 3)}
            base = f"127.{args.subnet}.0"
            core = ImsCore(args.log_dir, pcscf_addr=(f"{base}.11", args.port), scscf_addr=(f"{base}.12", args.port),
                           realm=args.realm, users=users, algorithm=args.algorithm, transport=args.transport)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    try:
        with core:
            for inst in (core.pcscf, core.scscf):
                print(f"{inst.name}: pid {inst.pid}, udp+tcp {hostport(*inst.address)}, log {inst.log_path}")
            print(f"realm {core.realm}, P-CSCF -> S-CSCF over {core.transport}; Ctrl-C stops both", flush=True)
            serve_until_signal(lambda: core.pcscf.running() and core.scscf.running())
    except (ToolMissing, KamailioError) as exc:
        print(f"error: {exc}")
        return 2
    print("stopped both; logs and rendered configs are in", args.log_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
