"""Start every third-party peer a SUT profile asks for (`launch = ...`), stop them all in `finally`.

Kamailio plays the P-CSCF and S-CSCF together (one ImsCore); baresip and linphonec one UE each.
Files go to `log_dir`: rendered configs, logs, pid files, so a failing run can be replayed by hand.
Peers start in dependency order (the core before the UEs that register through it) and stop in
reverse, each by its own PID.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from harness.agents.sut import SutTopology
from harness.peers.baresip import Baresip
from harness.peers.kamailio import ImsCore
from harness.peers.linphonec import Linphonec


@contextlib.contextmanager
def launched_peers(topology: SutTopology, log_dir: Path) -> Iterator[dict[str, object]]:
    """role -> the running peer object (both proxy roles map to the one ImsCore)."""
    profile = topology.profile
    assert profile is not None
    running: dict[str, object] = {}
    with contextlib.ExitStack() as stack:
        if profile.launched("kamailio"):
            core = stack.enter_context(ImsCore.from_profile(profile, log_dir))
            running.update({role: core for role in profile.launched("kamailio")})
        for role in profile.launched("baresip"):
            running[role] = stack.enter_context(Baresip(topology, role, log_dir))
        for role in profile.launched("linphonec"):
            running[role] = stack.enter_context(Linphonec(topology, role, log_dir))
        yield running
