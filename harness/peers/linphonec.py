"""Debian's linphonec (package linphone-cli) as a headless UE: a second, different transferee.

What it needs (shared/notes-peers.md): a writable HOME and database path, an rc file it may rewrite
on exit (each run writes a fresh one next to the log), stdin kept open (it quits on EOF), `-a` to
auto-answer. `[sip] bind_address` keeps it on its role's loopback address; the account's `reg_route`
is the first hop of the role's outbound route, so its INVITE to the Refer-To target goes through
the S-CSCF as Figure A.2 draws it.

Known deviations (recorded, never excused): before acting on a REFER it puts the transferor on hold
(re-INVITE a=sendonly), and its final NOTIFY carries `Subscription-State: terminated;reason=reason=
noresource`, which the verifier flags (NOT-4).
"""

from __future__ import annotations

from pathlib import Path

from harness.agents.sut import SutTopology
from harness.agents.topology import OUTBOUND
from harness.agents.ue import TONES
from harness.peers.process import PeerProcess, require
from harness.peers.tone import tone_wav

RTP_PORT = 31000


def rc_text(topology: SutTopology, role: str, home: Path) -> str:
    """The linphonerc for `role`: bound to the role's address, auto-answering, one account."""
    profile = topology.profile
    assert profile is not None
    ip, port = topology.ip(role), topology.port(role)
    tcp = topology.transport(role) == "tcp"
    route = topology.proxy_uri(OUTBOUND[role][0])
    registers = topology.registers(role)
    user = profile.users.get(role)
    lines = [
        "[sip]",
        f"sip_port={0 if tcp else port}",
        f"sip_tcp_port={port if tcp else 0}",
        "sip_tls_port=0",
        f"bind_address={ip}",
        "guess_hostname=0",
        f"ipv6_enabled={1 if ':' in ip else 0}",
        "default_proxy=0",
        "[rtp]",
        f"audio_rtp_port={RTP_PORT}",
        f"bind_address={ip}",
        "[sound]",
        "echocancellation=0",
        "[net]",
        "firewall_policy=0",
        "[misc]",
        "enable_basic_to_client_group_chat_room_migration=0",
        "[storage]",
        f"uri={home / 'linphone.db'}",
        "[proxy_0]",
        f"reg_identity={topology.target_uri(role)}",
        f"reg_proxy=<{route}>",
        f"reg_route=<{route}>",
        f"reg_expires={profile.registration.expires}",
        f"reg_sendregister={1 if registers else 0}",
        "publish=0",
        "dial_escape_plus=0",
    ]
    for i, (mime, rate) in enumerate((("PCMU", 8000), ("PCMA", 8000))):
        lines += [f"[audio_codec_{i}]", f"mime={mime}", f"rate={rate}", "channels=1",
                  f"enabled={1 if mime == profile.media.codec else 0}"]
    if registers and user is not None and user.username and user.password:
        lines += ["[auth_info_0]", f"username={user.username}", f"passwd={user.password}",
                  f"realm={profile.domain.home or ''}"]
    return "\n".join(lines) + "\n"


class Linphonec(PeerProcess):
    """linphonec playing `role` of `topology`; rc file, HOME and log in `log_dir`."""

    def __init__(self, topology: SutTopology, role: str, log_dir: Path, **kwargs: float) -> None:
        binary = require("linphonec", "linphone-cli")
        name = f"linphonec-{role.lower()}"
        self.role = role
        home = log_dir / name
        home.mkdir(parents=True, exist_ok=True)
        rc = home / "linphonerc"
        rc.write_text(rc_text(topology, role, home))
        self.sip_log = log_dir / f"{name}-sip.log"
        super().__init__(name, [binary, "-a", "-c", str(rc), "-d", "5", "-l", str(self.sip_log)],
                         topology.ip(role), topology.port(role), log_dir / f"{name}.log", cwd=home,
                         env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, keep_stdin=True, **kwargs)
        self.quit_line = "quit"
        self.wav = tone_wav(home / "tone.wav", TONES.get(role, 400.0))

    def start(self) -> Linphonec:
        super().start()
        # No sound card: send the role's tone from a file instead of a microphone.
        self.send("soundcard use files")
        self.send(f"play {self.wav}")
        return self


__all__ = ["Linphonec", "rc_text"]
