"""Third-party SIP peers the harness starts itself (Kamailio today; baresip, linphonec next).

Each peer module renders its config from peers/<name>/ in the repo, starts the binary in the
foreground, waits until it answers on SIP, and stops it by PID in `finally`; logs stay next to the
capture. A missing binary raises `ToolMissing` (harness.capture's) naming the Debian package.

Modules are imported by name (`from harness.peers.kamailio import ImsCore`), not re-exported here,
so `python -m harness.peers.kamailio` runs without importing itself twice.
"""
