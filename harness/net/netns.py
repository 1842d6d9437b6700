"""Test hosts in network namespaces, joined by one bridge, with loss, delay, jitter and reordering.

Layout: one "switch" namespace `<prefix>-<run>-sw` holds the Linux bridge `br0`; each host is a
namespace `<prefix>-<run>-<name>` whose `eth0` is a veth to port `p<i>` of that bridge, with its own
address from 198.18.0.0/15 (the benchmarking range: it exists only inside our namespaces) and `lo`
up. Every host reaches every other in one hop, and one capture on `br0` sees every packet with the
real per-host addresses. No interface is ever created in the root namespace, so parallel runs (each
with a random run id) cannot collide; removing the namespaces removes every veth, bridge and
nftables table with them.

Impairment, per direction of a link:
- loss: nftables in the *input* hook of the receiving namespace (`numgen random mod ... drop`;
  on the output hook `sendto()` would fail with EPERM instead of losing the packet). Not seedable.
- delay, jitter, reordering (and seeded loss): `harness.net.impair.FrameRelay` in the switch
  namespace, which takes the frames off the bridge and puts them back on the receiving port later.

Agents stay in this process: `socket_in()` creates a socket inside a namespace from a helper thread
that has joined it (setns affects only the calling thread); the socket keeps that namespace.

A run records its owner (pid and start time) under /run/sip-harness-netns, so `cleanup_stale()`
can remove what a killed run left behind without touching runs that are still alive.
"""

from __future__ import annotations

import atexit
import ctypes
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from harness.net.impair import FrameRelay, LinkProfile, RelayStats, open_packet_socket

T = TypeVar("T")

NETNS_DIR = Path("/run/netns")
REGISTRY = Path("/run/sip-harness-netns")
DEFAULT_SUBNET = "198.18.0.0/24"
BRIDGE = "br0"
HOST_IF = "eth0"
COMMAND_TIMEOUT = 10.0
_CLONE_NEWNET = 0x40000000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\Z")
_LOSS_TABLE = "sh_loss"
_RELAY_TABLE = "sh_relay"


class TestbedError(RuntimeError):
    """A namespace could not be made, changed or removed; the message names the command and its stderr."""

    __test__ = False  # not a pytest test class despite the name


def _require_root_and_ip() -> None:
    if os.geteuid() != 0:
        raise TestbedError(f"network namespaces need root (CAP_SYS_ADMIN); running as uid {os.geteuid()}")
    if shutil.which("ip") is None:
        raise TestbedError("'ip' not found: install the Debian package 'iproute2'")


def run(argv: Sequence[str], *, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT) -> str:
    """Run one command with a timeout; its stdout, or TestbedError naming it with its stderr."""
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except FileNotFoundError as exc:
        raise TestbedError(f"{argv[0]!r} not found: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"timed out after {timeout:g} s: {' '.join(argv)}") from exc
    if done.returncode != 0:
        raise TestbedError(f"{' '.join(argv)} failed with status {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python >= 3.12
    if setns is not None:
        setns(fd, _CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def run_in_netns(netns: str, fn: Callable[[], T], timeout: float = 5.0) -> T:
    """Call `fn` in a short-lived thread that has joined network namespace `netns`; return its result.

    Only that thread changes namespace, so the caller and its event loop stay where they are; what
    `fn` creates (sockets) keeps the namespace it was created in.
    """
    box: dict[str, object] = {}

    def target() -> None:
        try:
            fd = os.open(NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TestbedError(f"call in namespace {netns} did not finish within {timeout:g} s")
    if "error" in box:
        exc = box["error"]
        assert isinstance(exc, BaseException)
        if isinstance(exc, OSError) and exc.filename is not None:
            raise TestbedError(f"cannot enter namespace {netns}: {exc}") from exc
        raise exc
    return box["value"]  # type: ignore[return-value]


def socket_in(netns: str, family: int = socket.AF_INET, type: int = socket.SOCK_DGRAM,
              proto: int = 0) -> socket.socket:
    """A new socket that lives in network namespace `netns`, usable from any thread of this process."""
    return run_in_netns(netns, lambda: socket.socket(family, type, proto))


@dataclass(frozen=True)
class Host:
    """One test host: its namespace, address and the bridge port it hangs on."""

    name: str
    netns: str
    ip: str
    mac: str
    port: str            # its veth on the bridge, in the switch namespace
    ifname: str = HOST_IF

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_DGRAM,
               proto: int = 0) -> socket.socket:
        return socket_in(self.netns, family, type, proto)

    def udp_socket(self, port: int = 0, *, blocking: bool = False) -> socket.socket:
        """A UDP socket bound to (self.ip, port) inside the host, ready for asyncio's `sock=`."""
        sock = self.socket()
        try:
            sock.bind((self.ip, port))
            sock.setblocking(blocking)
        except OSError:
            sock.close()
            raise
        return sock

    def exec_args(self, *argv: str) -> list[str]:
        """Command line that runs `argv` inside this host (e.g. kamailio, baresip, sipp)."""
        return ["ip", "netns", "exec", self.netns, *argv]


def _proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the "(comm)" field


def _owner_alive(record: Path) -> bool:
    try:
        pid_text, start = record.read_text().split()
    except (OSError, ValueError):
        return False
    return _proc_start_time(int(pid_text)) == start


def list_netns() -> list[str]:
    """Names of the namespaces `ip netns` knows (the files under /run/netns)."""
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def _delete_netns(names: Iterable[str], timeout: float) -> list[str]:
    """Delete namespaces, continuing past failures; return the errors."""
    errors = []
    for name in names:
        try:
            run(["ip", "netns", "del", name], timeout=timeout)
        except TestbedError as exc:
            if (NETNS_DIR / name).exists():
                errors.append(str(exc))
    return errors


def cleanup_stale(prefix: str = "sh", *, timeout: float = COMMAND_TIMEOUT) -> list[str]:
    """Remove namespaces `<prefix>-<run>-*` whose owning process is gone; return their names.

    Namespaces of runs still alive (their pid and start time match the record) are left alone.
    """
    _require_root_and_ip()
    pattern = re.compile(rf"{re.escape(prefix)}-([0-9a-f]{{6}})-")
    by_run: dict[str, list[str]] = {}
    for name in list_netns():
        m = pattern.match(name)
        if m:
            by_run.setdefault(m.group(1), []).append(name)
    records = set(REGISTRY.glob(f"{prefix}-*")) if REGISTRY.is_dir() else set()
    removed: list[str] = []
    errors: list[str] = []
    for run_id, names in by_run.items():
        record = REGISTRY / f"{prefix}-{run_id}"
        if _owner_alive(record):
            continue
        errors += _delete_netns(names, timeout)
        removed += names
        record.unlink(missing_ok=True)
    for record in records:
        if not _owner_alive(record):
            record.unlink(missing_ok=True)
    if errors:
        raise TestbedError("; ".join(errors))
    return removed


@dataclass
class _Loss:
    percent: float
    src: str | None


class Testbed:
    """N hosts in their own namespaces on one bridge; a context manager that always cleans up.

    `hosts` is a list of names (addresses .1, .2, ... of `subnet` in that order) or a mapping
    name -> address (None for the next free one). Names: letters, digits, `_.-`, up to 32 chars.
    """

    __test__ = False

    def __init__(self, hosts: Sequence[str] | Mapping[str, str | None], *, subnet: str = DEFAULT_SUBNET,
                 prefix: str = "sh", timeout: float = COMMAND_TIMEOUT) -> None:
        spec = dict(hosts) if isinstance(hosts, Mapping) else dict.fromkeys(hosts)
        if not spec:
            raise ValueError("a testbed needs at least one host")
        if len(spec) != len(hosts):
            raise ValueError(f"duplicate host names in {list(hosts)}")
        for name in spec:
            if not _NAME.match(name):
                raise ValueError(f"host name {name!r}: use letters, digits, '_', '.', '-' (<= 32)")
        if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", prefix):
            raise ValueError(f"prefix {prefix!r}: 1-8 lower-case letters/digits, starting with a letter")
        self.network = ipaddress.IPv4Network(subnet)
        self.prefix = prefix
        self.timeout = timeout
        self.run_id = ""
        self.switch = ""
        self.bridge = BRIDGE
        self.hosts: dict[str, Host] = {}
        self._spec = spec
        self._record: Path | None = None
        self._created: list[str] = []
        self._losses: dict[str, list[_Loss]] = {}
        self._relay: FrameRelay | None = None
        self._relay_rules: list[str] = []
        self._relay_stats: dict[tuple[str, str], RelayStats] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Testbed:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> Testbed:
        """Create the namespaces, bridge and links; on any failure (or Ctrl-C) undo what was made."""
        _require_root_and_ip()
        if self.run_id:
            raise TestbedError("testbed already started")
        addresses = self._addresses()
        self._claim_run_id()
        atexit.register(self.close)
        try:
            self.switch = self._ns_name("sw")
            self._add_netns(self.switch)
            self._ip_batch(self.switch, [f"link add {BRIDGE} type bridge", f"link set {BRIDGE} up",
                                         "link set lo up"])
            for index, (name, ip) in enumerate(addresses.items()):
                self.hosts[name] = self._add_host(index, name, ip)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop the relay, delete every namespace of this run (with its veths and nft tables); idempotent."""
        atexit.unregister(self.close)
        errors: list[str] = []
        relay, self._relay = self._relay, None
        if relay is not None:
            try:
                relay.stop()
            except RuntimeError as exc:
                errors.append(str(exc))
        created, self._created = self._created, []
        errors += _delete_netns(reversed(created), self.timeout)
        if self._record is not None:
            self._record.unlink(missing_ok=True)
            self._record = None
        self._losses.clear()
        self._relay_rules.clear()
        if errors:
            raise TestbedError("cleanup incomplete: " + "; ".join(errors))

    def _addresses(self) -> dict[str, str]:
        taken = {ip for ip in self._spec.values() if ip is not None}
        for ip in taken:
            if ipaddress.IPv4Address(ip) not in self.network:
                raise ValueError(f"{ip} is outside {self.network}")
        free = (str(a) for a in self.network.hosts() if str(a) not in taken)
        try:
            return {name: ip if ip is not None else next(free) for name, ip in self._spec.items()}
        except StopIteration:
            raise ValueError(f"{self.network} has too few addresses for {len(self._spec)} hosts") from None

    def _claim_run_id(self) -> None:
        REGISTRY.mkdir(parents=True, exist_ok=True)
        existing = list_netns()
        for _ in range(100):
            run_id = secrets.token_hex(3)
            record = REGISTRY / f"{self.prefix}-{run_id}"
            if any(n.startswith(f"{self.prefix}-{run_id}-") for n in existing):
                continue
            try:
                with open(record, "x") as f:
                    f.write(f"{os.getpid()} {_proc_start_time(os.getpid())}\n")
            except FileExistsError:
                continue
            self.run_id, self._record = run_id, record
            return
        raise TestbedError("no free run id")  # pragma: no cover

    def _ns_name(self, name: str) -> str:
        return f"{self.prefix}-{self.run_id}-{name.lower()}"

    def _add_netns(self, netns: str) -> None:
        run(["ip", "netns", "add", netns], timeout=self.timeout)
        self._created.append(netns)
        # No IPv6 on test links: no router solicitations, MLD or DAD in the captures.
        run_in_netns(netns, _disable_ipv6, self.timeout)

    def _ip_batch(self, netns: str, commands: list[str]) -> None:
        run(["ip", "-n", netns, "-batch", "-"], stdin="\n".join(commands) + "\n", timeout=self.timeout)

    def _add_host(self, index: int, name: str, ip: str) -> Host:
        netns = self._ns_name(name)
        if netns in self._created:
            raise ValueError(f"host names {name!r} collide once lower-cased")
        port = f"p{index}"
        mac = f"02:73:68:{(index >> 16) & 0xFF:02x}:{(index >> 8) & 0xFF:02x}:{index & 0xFF:02x}"
        self._add_netns(netns)
        self._ip_batch(self.switch, [f"link add {port} type veth peer name {HOST_IF} netns {netns}",
                                     f"link set {port} master {BRIDGE} up"])
        self._ip_batch(netns, [f"link set {HOST_IF} address {mac}",
                               f"addr add {ip}/{self.network.prefixlen} dev {HOST_IF}",
                               f"link set {HOST_IF} up", "link set lo up"])
        return Host(name=name, netns=netns, ip=ip, mac=mac, port=port)

    # -- access ----------------------------------------------------------------------------------

    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise KeyError(f"no host {name!r}; hosts: {', '.join(self.hosts)}") from None

    def namespaces(self) -> list[str]:
        """Every namespace of this run, switch first."""
        return list(self._created)

    def exec_args(self, *argv: str) -> list[str]:
        """Command line that runs `argv` in the switch namespace."""
        return ["ip", "netns", "exec", self.switch, *argv]

    def capture_command(self, out: Path | str, bpf: str | None = None) -> list[str]:
        """dumpcap on the bridge: one pcapng with every hop and the real per-host addresses.

        `ip netns exec` execs dumpcap in place, so the PID of the process started with this command
        is dumpcap's own: stop it with SIGTERM by that PID (it flushes the file).
        """
        cmd = ["dumpcap", "-i", self.bridge, "-w", str(out), "-q"]
        if bpf:
            cmd[3:3] = ["-f", bpf]
        return self.exec_args(*cmd)

    def capture_bpf(self) -> str:
        """Capture filter for the test network (IPv4 only: ARP frames are left out)."""
        return f"net {self.network}"

    # -- loss (nftables, input hook of the receiver) ---------------------------------------------

    def set_loss(self, dst: str, percent: float, *, src: str | None = None) -> None:
        """Drop `percent` % of UDP arriving at host `dst` (only that from host `src` if given).

        Rules accumulate per destination; `clear_loss(dst)` removes them. Not seedable (nft numgen).
        """
        if not 0 <= percent <= 100:
            raise ValueError(f"loss is a percentage in [0, 100], got {percent}")
        host = self.host(dst)
        if src is not None:
            self.host(src)
        self._losses.setdefault(dst, []).append(_Loss(percent, src))
        self._write_loss(host)

    def clear_loss(self, dst: str | None = None) -> None:
        for name in [dst] if dst else list(self._losses):
            if self._losses.pop(name, None) is not None:
                self._nft(self.host(name).netns, _replace_table("inet", _LOSS_TABLE, ""))

    def loss_drops(self, dst: str) -> int:
        """Packets the loss rules of host `dst` have dropped so far (nft counters)."""
        if dst not in self._losses:
            return 0
        out = run(self.host(dst).exec_args("nft", "-j", "list", "table", "inet", _LOSS_TABLE),
                  timeout=self.timeout)
        return sum(expr["counter"]["packets"] for item in json.loads(out)["nftables"] if "rule" in item
                   for expr in item["rule"]["expr"] if "counter" in expr)

    def _write_loss(self, host: Host) -> None:
        rules = []
        for loss in self._losses[host.name]:
            match = f"ip saddr {self.host(loss.src).ip} " if loss.src else ""
            # mod 10000 gives 0.01 % steps; the counter is read by loss_drops().
            rules.append(f"iifname \"{HOST_IF}\" {match}meta l4proto udp "
                         f"numgen random mod 10000 < {round(loss.percent * 100)} counter drop")
        body = "chain input {\n type filter hook input priority 0; policy accept;\n" + \
               "\n".join(rules) + "\n}"
        self._nft(host.netns, _replace_table("inet", _LOSS_TABLE, body))

    def _nft(self, netns: str, script: str) -> None:
        if shutil.which("nft") is None:
            raise TestbedError("'nft' not found: install the Debian package 'nftables'")
        run(["ip", "netns", "exec", netns, "nft", "-f", "-"], stdin=script, timeout=self.timeout)

    # -- delay, jitter, reordering (relay in the switch namespace) -------------------------------

    def set_delay(self, src: str, dst: str, delay: float, jitter: float = 0.0, *,
                  distribution: str = "uniform", reorder: bool = True, loss: float = 0.0,
                  seed: int | str = 0) -> RelayStats:
        """Delay UDP from host `src` to host `dst` by `delay` ± `jitter` seconds (seeded).

        `loss` here is seeded and drawn in the relay, unlike `set_loss`. Returns the live counters
        of this direction. Setting the same direction again replaces its profile.
        """
        profile = LinkProfile(delay=delay, jitter=jitter, distribution=distribution,  # type: ignore[arg-type]
                              loss=loss, reorder=reorder, seed=seed)
        a, b = self.host(src), self.host(dst)
        relay = self._relay
        if relay is None:
            relay = FrameRelay(lambda ifname: run_in_netns(self.switch, lambda: open_packet_socket(ifname)),
                               name=f"relay-{self.run_id}")
            relay.start()
            self._relay = relay
        stats = relay.add_link(a.port, b.port, b.mac, profile, label=f"{src}>{dst}")
        self._relay_stats[(src, dst)] = stats
        rule = f"iifname \"{a.port}\" ether daddr {b.mac} ip protocol udp drop"
        if rule not in self._relay_rules:
            self._relay_rules.append(rule)
            body = "chain forward {\n type filter hook forward priority 0; policy accept;\n" + \
                   "\n".join(self._relay_rules) + "\n}"
            self._nft(self.switch, _replace_table("bridge", _RELAY_TABLE, body))
        return stats

    def relay_stats(self) -> dict[tuple[str, str], RelayStats]:
        """Counters per relayed (src, dst) direction; raises if the relay thread died."""
        if self._relay is not None and self._relay.error is not None:
            raise TestbedError(f"impairment relay failed: {self._relay.error!r}")
        return dict(self._relay_stats)

    def relay_tap_drops(self) -> int:
        """Frames lost in the relay's taps (full receive buffer): loss the profile did not ask for."""
        return 0 if self._relay is None else self._relay.tap_drops()

    def impair(self, a: str, b: str, *, loss: float = 0.0, delay: float = 0.0, jitter: float = 0.0,
               reorder: bool = True, seed: int | str = 0, both_ways: bool = True) -> None:
        """Loss (nftables) and delay/jitter (relay) on the link a -> b, and b -> a unless told not to."""
        pairs = [(a, b), (b, a)] if both_ways else [(a, b)]
        for src, dst in pairs:
            if loss:
                self.set_loss(dst, loss, src=src)
            if delay or jitter:
                self.set_delay(src, dst, delay, jitter, reorder=reorder, seed=seed)

    def impair_all(self, *, loss: float = 0.0, delay: float = 0.0, jitter: float = 0.0,
                   reorder: bool = True, seed: int | str = 0) -> None:
        """The same impairment on every direction of every link."""
        for dst in self.hosts:
            if loss:
                self.set_loss(dst, loss)
        for src in self.hosts:
            for dst in self.hosts:
                if src != dst and (delay or jitter):
                    self.set_delay(src, dst, delay, jitter, reorder=reorder, seed=seed)

    def clear_delay(self) -> None:
        """Stop the relay and let the bridge forward everything again."""
        relay, self._relay = self._relay, None
        if self._relay_rules:
            self._nft(self.switch, _replace_table("bridge", _RELAY_TABLE, ""))
            self._relay_rules.clear()
        if relay is not None:
            relay.stop()


def _disable_ipv6() -> None:
    # /proc/sys/net follows the network namespace of the calling thread.
    for key in ("default", "all"):
        Path(f"/proc/sys/net/ipv6/conf/{key}/disable_ipv6").write_text("1\n")


def _replace_table(family: str, name: str, body: str) -> str:
    """nft script that atomically replaces table `family name` with `body` (empty: removes it)."""
    script = f"table {family} {name}\ndelete table {family} {name}\n"
    if body:
        script += f"table {family} {name} {{\n{body}\n}}\n"
    return script
