"""`python -m harness load a2.1 --conferences N --concurrency C [--rate R] [--out DIR] [--json]
[--profile FILE]`.

Same conventions as `run`: the capture lands in DIR as a pcapng; `--json` prints the verifier's
many-instance result (`{"instances": [...], "summary": {...}}`, the summary counting `passed` and
`failed`), here with the load summary under "load". Exit 0 when every instance passed, 1 when one
did not, 2 for bad input. `--profile` takes a SUT profile whose CS (with its MRFP) is external: the
instances create their conferences there (harness/load/topology.py says what else a load can play).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

ENGINES = ("lean", "agents")  # harness.load.runner.ENGINES, without importing the agents for --help


def add_parser(sub: Any) -> None:
    load = sub.add_parser("load", help="run many A.2.1 instances against the reference CS, one capture")
    load.add_argument("flow", help="flow id (a2.1)")
    load.add_argument("--conferences", type=int, required=True, metavar="N", help="instances to run")
    load.add_argument("--concurrency", type=int, default=1, metavar="C", help="instances at a time (default 1)")
    load.add_argument("--rate", type=float, metavar="R", help="at most R instances started per second")
    load.add_argument("--out", type=Path, help="output directory (default captures/load-<run-id>/)")
    load.add_argument("--media-seconds", type=float, default=1.0, help="conference media per instance (default 1)")
    load.add_argument("--instance-timeout", type=float, default=60.0, help="bound on one instance, seconds")
    load.add_argument("--engine", choices=ENGINES, default="lean",
                      help="lean: bytes-level agents (default); agents: the reference agents of a single run")
    load.add_argument("--profile", type=Path, metavar="FILE",
                      help="SUT profile: an external CS (and MRFP) to load instead of the reference CS")
    load.add_argument("--json", action="store_true", help="print the many-instance verdict as JSON")


def cmd_load(args: argparse.Namespace) -> int:
    from harness.capture.dumpcap import CaptureError, ToolMissing, require_tools
    from harness.load import run_load
    from harness.load.runner import Progress
    from harness.load.summary import render
    from harness.verify import BadInput

    if args.conferences < 1 or args.concurrency < 1 or (args.rate is not None and args.rate <= 0):
        print("error: --conferences and --concurrency must be >= 1, --rate > 0", file=sys.stderr)
        return 2
    sut, sut_wait = None, 0.0
    if args.profile is not None:
        from harness.load.topology import external_cs
        from harness.profile import load_profile_or_report

        profile = load_profile_or_report(args.profile)
        if profile is None:
            return 2
        try:
            sut = external_cs(profile)
        except ValueError as exc:
            print(f"error: {args.profile}: {exc}", file=sys.stderr)
            return 2
        if sut is not None and args.engine != "lean":
            print("error: an external CS is played with the lean engine only (--engine lean)", file=sys.stderr)
            return 2
        sut_wait = profile.timers.external_wait
    try:
        require_tools()
    except ToolMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out: Path = args.out or Path("captures") / f"load-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"

    def progress(state: Progress) -> None:
        print(f"\r{state.line()}", end="", file=sys.stderr, flush=True)

    try:
        outcome = run_load(args.flow, out, conferences=args.conferences, concurrency=args.concurrency,
                           rate=args.rate, media_seconds=args.media_seconds,
                           instance_timeout=args.instance_timeout, progress=progress, engine=args.engine,
                           sut=sut, sut_wait=sut_wait)
    except BadInput as exc:  # (a ValueError: before the clause below)
        print(f"\nerror: {exc} (capture kept in {out})", file=sys.stderr)
        return 1
    except (CaptureError, ToolMissing, ValueError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    if args.json:
        print(json.dumps(outcome.result, indent=2))
    else:
        print(render(outcome.summary))
    print(f"capture: {outcome.pcap}\nverdict: {outcome.verdict_path}", file=sys.stderr)
    for problem in outcome.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 0 if outcome.ok else 1
