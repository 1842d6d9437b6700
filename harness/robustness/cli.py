"""`python -m harness robustness --target ROLE|URI [--seed N] [--mutations M] [--json] [--out DIR]`.

Exit 0 when the target survived every case (OPTIONS answered after each, no exception escaped an
agent) and answered as RFC 3261 asks; 1 otherwise; 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    rob = sub.add_parser("robustness", help="send RFC 4475 torture messages and mutated A.2.1 messages to a target")
    rob.add_argument("--target", required=True, metavar="ROLE|URI",
                     help="a role the harness plays (UE-1, UE-2, UE-3, CS, P-CSCF, S-CSCF) or a loopback sip: URI")
    rob.add_argument("--seed", type=int, default=0, help="mutation seed (default 0)")
    rob.add_argument("--mutations", type=int, default=50, metavar="M", help="mutated messages after the corpus")
    rob.add_argument("--case", action="append", default=[], metavar="NAME", help="only these RFC 4475 cases")
    rob.add_argument("--window", type=float, default=0.5, help="seconds to wait for an answer per case")
    rob.add_argument("--out", type=Path, help="write the per-case report (robustness.json) here")
    rob.add_argument("--json", action="store_true", help="print the report as JSON")


def cmd_robustness(args: argparse.Namespace) -> int:
    from harness.robustness.corpus import BY_NAME, CASES
    from harness.robustness.session import run_robustness

    unknown = [name for name in args.case if name not in BY_NAME]
    if unknown or args.mutations < 0 or args.window <= 0:
        print(f"error: unknown case(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}" if unknown
              else "error: --mutations must be >= 0 and --window > 0", file=sys.stderr)
        return 2
    cases = tuple(BY_NAME[name] for name in args.case) or CASES
    try:
        report = run_robustness(args.target, seed=args.seed, mutation_count=args.mutations, window=args.window,
                                cases=cases)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "robustness.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    print(json.dumps(report.to_json(), indent=2) if args.json else report.render())
    return 0 if report.ok else 1
