"""Third-party SIP peers the harness starts itself: Kamailio (P-CSCF + S-CSCF), baresip, linphonec.

Each peer module renders its config (Kamailio's templates live in peers/kamailio/ in the repo),
starts the binary in the foreground (harness.peers.process.PeerProcess), waits until it answers
OPTIONS on SIP, and stops it by PID in `finally`; logs stay next to the capture. A missing binary
raises `ToolMissing` (harness.capture's) naming the Debian package. `launch.launched_peers` starts
whatever a SUT profile asks for.

Modules are imported by name (`from harness.peers.kamailio import ImsCore`), not re-exported here,
so `python -m harness.peers.kamailio` runs without importing itself twice.
"""
