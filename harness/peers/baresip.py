"""Debian's baresip (package baresip-core) as a headless UE: UE-2 or UE-3 of A.2.1.

What it needs on a machine with no sound card (shared/notes-peers.md): a config directory (`-f`)
holding `config` and `accounts`; `aufile` playing an 8 kHz WAV as the source (ausine refuses 8 kHz
codecs) and `aubridge` as player; `net_interface` set to the loopback address itself; auto-answer.
The WAV is a tone at the role's frequency (UE-2 650 Hz, UE-3 1000 Hz), so the conference mix can
be checked from the capture as with the harness's own UEs.

The account is given the first hop of the role's outbound route as `outbound` proxy: without it
baresip INVITEs the Refer-To target directly instead of through the S-CSCF, and Figure A.2's
topology no longer holds. With a registrar in the profile it registers (digest) through that hop;
without one, `regint=0`.

By hand: `python -m harness.peers.baresip --role UE-2 --profile profiles/baresip-ue2-ue3.toml --log-dir D`
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.agents.sut import SutTopology, hostport
from harness.agents.topology import OUTBOUND
from harness.agents.ue import TONES
from harness.peers.process import PeerError, PeerProcess, require
from harness.peers.tone import tone_wav
from harness.procs import serve_until_signal
from harness.profile import ProfileError, load_profile

MODULES = ("g711.so", "aufile.so", "aubridge.so", "ctrl_tcp.so", "menu.so")
RTP_PORTS = "30000-30999"


def account_line(topology: SutTopology, role: str) -> str:
    """The `accounts` line: AoR, auto-answer, PCMU/PCMA, outbound proxy, registration or regint=0."""
    profile = topology.profile
    assert profile is not None
    aor = topology.target_uri(role)
    transport = topology.transport(role)
    uri = aor if transport == "udp" or "transport=" in aor else f"{aor};transport={transport}"
    params = ["answermode=auto", f"audio_codecs={profile.media.codec.lower()}",
              f'outbound="{topology.proxy_uri(OUTBOUND[role][0])}"', "call_transfer=yes"]
    user = profile.users.get(role)
    if topology.registers(role) and user is not None and user.username and user.password:
        params += [f"auth_user={user.username}", f"auth_pass={user.password}",
                   f"regint={profile.registration.expires}"]
    else:
        params.append("regint=0")
    return f"<{uri}>;" + ";".join(params)


def config_text(topology: SutTopology, role: str, wav: Path, ctrl_port: int) -> str:
    ip = topology.ip(role)
    modules = "\n".join(f"module\t\t\t{m}" for m in MODULES)
    return f"""# baresip config written by harness/peers/baresip.py for {role}
poll_method\t\tepoll
sip_listen\t\t{hostport(ip, topology.port(role))}
call_local_timeout\t120
call_max_calls\t\t4
audio_player\t\taubridge,{role}
audio_source\t\taufile,{wav}
audio_alert\t\taubridge,{role}-alert
ausrc_srate\t\t8000
auplay_srate\t\t8000
ausrc_channels\t\t1
auplay_channels\t\t1
rtp_ports\t\t{RTP_PORTS}
rtcp_mux\t\tno
jitter_buffer_delay\t1-10
net_interface\t\t{ip}
module_path\t\t/usr/lib/baresip/modules
{modules}
module_tmp\t\tuuid.so
module_tmp\t\taccount.so
ctrl_tcp_listen\t\t{hostport(ip, ctrl_port)}
"""


class Baresip(PeerProcess):
    """baresip playing `role` of `topology`, its files in `log_dir` (config dir, WAV, log)."""

    def __init__(self, topology: SutTopology, role: str, log_dir: Path, ctrl_port: int = 4444, **kwargs: float) -> None:
        binary = require("baresip", "baresip-core")
        name = f"baresip-{role.lower()}"
        self.role = role
        self.config_dir = log_dir / name
        self.config_dir.mkdir(parents=True, exist_ok=True)
        wav = tone_wav(self.config_dir / "tone.wav", TONES.get(role, 400.0))
        (self.config_dir / "config").write_text(config_text(topology, role, wav, ctrl_port))
        (self.config_dir / "accounts").write_text(account_line(topology, role) + "\n")
        (self.config_dir / "contacts").write_text("")
        # -s: SIP trace in the log, so the log alone shows what baresip sent and why.
        super().__init__(name, [binary, "-f", str(self.config_dir), "-s"], topology.ip(role),
                         topology.port(role), log_dir / f"{name}.log", cwd=self.config_dir, **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.peers.baresip",
                                     description="Start baresip as a role of a SUT profile until Ctrl-C.")
    parser.add_argument("--profile", type=Path, required=True)
    parser.add_argument("--role", required=True, choices=("UE-1", "UE-2", "UE-3"))
    parser.add_argument("--log-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        profile = load_profile(args.profile)
    except ProfileError as exc:
        print(exc)
        return 2
    try:
        with Baresip(SutTopology(subnet=77, profile=profile), args.role, args.log_dir) as peer:
            print(f"{peer.name}: pid {peer.pid}, {peer.host}:{peer.port}, log {peer.log_path}", flush=True)
            serve_until_signal(peer.running)
    except PeerError as exc:
        print(f"error: {exc}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
