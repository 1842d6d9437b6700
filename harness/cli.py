"""Command line: `python -m harness run a2.1 | verify PCAP`.

Exit codes are a contract other tools rely on: 0 every step passed, 1 a step failed or was
inconclusive, 2 bad input (unreadable capture, unknown flow, bad option, missing tool).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from harness.flows import FLOWS, load_flow

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors on one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _role_option(text: str) -> tuple[str, str]:
    role, sep, where = text.partition("=")
    if not sep or not role or not where:
        raise argparse.ArgumentTypeError(f"expected ROLE=HOST[:PORT], got {text!r}")
    return role.upper(), where


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="play a flow on loopback with harness agents, capture and verify it")
    run.add_argument("flow", help=f"flow id, one of: {', '.join(sorted(FLOWS))}")
    run.add_argument("--out", type=Path, help="output directory (default captures/<run-id>/)")
    run.add_argument("--media-seconds", type=float, default=2.0, help="seconds of conference media (default 2)")
    run.add_argument("--fault", action="append", default=[], metavar="NAME",
                     help="make an agent commit a named fault (see `python -m harness faults`)")
    run.add_argument("--timeout", type=float, default=60.0, help="overall flow timeout in seconds")
    run.add_argument("--json", action="store_true", help="print the verdict as JSON")
    run.add_argument("--no-ladder", action="store_true", help="do not print the ladder diagram")

    verify = sub.add_parser("verify", help="verify a capture made by anyone")
    verify.add_argument("pcap", type=Path)
    verify.add_argument("--flow", default="a2.1", help="flow id (default a2.1)")
    verify.add_argument("--role", action="append", type=_role_option, default=[], metavar="ROLE=HOST[:PORT]",
                        help="pin a role to an address (UE-1, UE-2, UE-3, CS, P-CSCF, S-CSCF, MRFP)")
    verify.add_argument("--factory-uri", help="the conference factory URI (checks CONF-1 exactly)")
    verify.add_argument("--json", action="store_true", help="print the verdict as JSON")
    verify.add_argument("--ladder", action="store_true", help="also print the ladder diagram")

    sub.add_parser("faults", help="list the fault catalogue agents can be told to commit")
    return parser


def _print_result(analysis, as_json: bool, ladder: bool) -> None:  # noqa: ANN001
    from harness.report.ladder import render_ladder
    from harness.report.table import render_table

    if as_json:
        print(json.dumps(analysis.result.to_json(), indent=2))
        return
    if ladder:
        print(render_ladder(analysis))
        print()
    print(render_table(analysis.result))


def _cmd_verify(args: argparse.Namespace) -> int:
    from harness.verify import BadInput, analyse_capture

    flow = load_flow(args.flow)
    try:
        analysis = analyse_capture(args.pcap, flow=flow.FLOW.name, roles=dict(args.role) or None,
                                   factory_uri=args.factory_uri)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _print_result(analysis, args.json, args.ladder)
    return EXIT_PASS if analysis.result.verdict == "pass" else EXIT_FAIL


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.agents.faults import FAULTS
    from harness.capture.dumpcap import CaptureError, ToolMissing, require_tools
    from harness.session import captured_run
    from harness.verify import BadInput

    flow = load_flow(args.flow)
    unknown = [name for name in args.fault if name not in FAULTS]
    if unknown:
        print(f"error: unknown fault {', '.join(unknown)}; see `python -m harness faults`", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        require_tools()
    except ToolMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
    out: Path = args.out or Path("captures") / run_id
    try:
        outcome = captured_run(flow.id, out, media_seconds=args.media_seconds,
                               faults=frozenset(args.fault), timeout=args.timeout)
    except (CaptureError, ToolMissing) as exc:
        print(f"error: capture failed: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BadInput as exc:
        print(f"error: {exc} (capture kept in {out})", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print(f"interrupted; capture kept: {out / (flow.id + '.pcapng')}", file=sys.stderr)
        return 130
    if outcome.play_error is not None:
        print(f"flow: {type(outcome.play_error).__name__}: {outcome.play_error}", file=sys.stderr)
    _print_result(outcome.analysis, args.json, not args.no_ladder)
    print(f"capture: {outcome.pcap}\nverdict: {outcome.verdict_path}", file=sys.stderr)
    ok = outcome.result.verdict == "pass" and outcome.play_error is None
    return EXIT_PASS if ok else EXIT_FAIL


def _cmd_faults() -> int:
    from harness.agents.faults import FAULTS

    for name, fault in sorted(FAULTS.items()):
        print(f"{name:32} step {fault.step:6} {fault.requirement:7} {fault.description}")
    return EXIT_PASS


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "verify":
            return _cmd_verify(args)
        return _cmd_faults()
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
