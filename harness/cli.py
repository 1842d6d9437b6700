"""Command line: `python -m harness run a2.1 [--profile FILE] | verify PCAP | ladder PCAP -o OUT.html | profile check FILE`.

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
from harness.load import cli as load_cli
from harness.robustness import cli as robustness_cli

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
    run.add_argument("--timeout", type=float, help="overall flow timeout in seconds (default 60, or the "
                                                   "profile's timers.flow_timeout)")
    run.add_argument("--profile", type=Path, metavar="FILE",
                     help="a SUT profile (TOML): which roles are external, addresses, transport, users, timers")
    run.add_argument("--json", action="store_true", help="print the verdict as JSON")
    run.add_argument("--no-ladder", action="store_true", help="do not print the ladder diagram")
    _add_placement_options(run)

    verify = sub.add_parser("verify", help="verify a capture made by anyone")
    verify.add_argument("pcap", type=Path)
    verify.add_argument("--flow", default="a2.1", help="flow id (default a2.1)")
    verify.add_argument("--role", action="append", type=_role_option, default=[], metavar="ROLE=HOST[:PORT]",
                        help="pin a role to an address (UE-1, UE-2, UE-3, CS, P-CSCF, S-CSCF, MRFP)")
    verify.add_argument("--factory-uri", help="the conference factory URI (checks CONF-1 exactly)")
    verify.add_argument("--json", action="store_true",
                        help="print the verdict as JSON (several instances: {\"instances\": [...], \"summary\": {...}})")
    verify.add_argument("--ladder", action="store_true", help="also print the ladder diagram")
    verify.add_argument("--annotate", type=Path, metavar="OUT.pcapng",
                        help="write a pcapng copy of the capture with a comment on every SIP frame naming its step "
                             "and verdict (open it in Wireshark)")

    ladder = sub.add_parser("ladder", help="draw the ladder of a capture as one self-contained HTML page")
    ladder.add_argument("pcap", type=Path)
    ladder.add_argument("-o", "--out", type=Path, required=True, metavar="OUT.html", help="the page to write")
    ladder.add_argument("--flow", default="a2.1", help="flow id (default a2.1)")
    ladder.add_argument("--role", action="append", type=_role_option, default=[], metavar="ROLE=HOST[:PORT]",
                        help="pin a role to an address (UE-1, UE-2, UE-3, CS, P-CSCF, S-CSCF, MRFP)")
    ladder.add_argument("--factory-uri", help="the conference factory URI (checks CONF-1 exactly)")

    sub.add_parser("faults", help="list the fault catalogue agents can be told to commit")
    load_cli.add_parser(sub)
    robustness_cli.add_parser(sub)

    profile = sub.add_parser("profile", help="SUT profiles")
    profile_sub = profile.add_subparsers(dest="profile_command", required=True, parser_class=_Parser)
    check = profile_sub.add_parser("check", help="explain every mistake in a profile, line by line (exit 2 on any)")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    return parser


def _add_placement_options(parser: argparse.ArgumentParser) -> None:
    net = parser.add_argument_group("placement and impairment")
    net.add_argument("--netns", action="store_true",
                     help="each role on its own test host (network namespace, 198.18.0.x), capture on the bridge")
    net.add_argument("--loss", type=float, default=0.0, metavar="PCT", help="loss on every link, percent (--netns)")
    net.add_argument("--delay", type=float, default=0.0, metavar="MS", help="delay on every link (--netns)")
    net.add_argument("--jitter", type=float, default=0.0, metavar="MS", help="delay jitter, uniform ± (--netns)")
    net.add_argument("--seed", type=int, default=0, help="seed of the delay/jitter/loss schedule (default 0)")
    net.add_argument("--loss-engine", choices=("relay", "nft"), default="relay",
                     help="relay: seeded loss in the impairment relay; nft: nftables in the receiver (unseeded)")


def _impairment(args: argparse.Namespace):  # noqa: ANN202 - harness.agents.placement.Impairment | None
    """The Impairment the options ask for; ValueError with the reason for a bad combination."""
    from harness.agents.placement import Impairment

    impairment = Impairment(loss=args.loss, delay=args.delay / 1000, jitter=args.jitter / 1000, seed=args.seed,
                            loss_engine=args.loss_engine)
    if impairment.active and not args.netns:
        raise ValueError("--loss/--delay/--jitter need --netns (impairment lives on the namespace links)")
    return impairment if args.netns else None


def _print_result(analysis, as_json: bool, ladder: bool) -> None:  # noqa: ANN001
    from harness.report.ladder import render_ladder
    from harness.report.table import render_capture, render_table
    from harness.verify.engine import CaptureAnalysis

    if as_json:
        from harness.report.json import render_json

        if isinstance(analysis, CaptureAnalysis):
            sys.stdout.write(render_json(analysis.result))   # one compact instance per line
        else:
            print(json.dumps(analysis.result.to_json(), indent=2))
        return
    if isinstance(analysis, CaptureAnalysis):
        if ladder:
            for one in analysis.analyses:
                if one.result.verdict != "pass":
                    print(render_ladder(one))
        print(render_capture(analysis.result))
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
                                   factory_uri=args.factory_uri, evidence=bool(args.ladder or args.annotate))
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _print_result(analysis, args.json, args.ladder)
    if args.annotate is not None:
        from harness.report.annotate import annotate

        try:
            count = annotate(analysis, args.pcap, args.annotate)
        except (OSError, ValueError) as exc:
            print(f"error: cannot write {args.annotate}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"annotated {count} SIP frames: {args.annotate}", file=sys.stderr)
    return EXIT_PASS if analysis.result.verdict == "pass" else EXIT_FAIL


def _cmd_ladder(args: argparse.Namespace) -> int:
    """Exit 0 when the page is written (whatever the verdict), 2 on bad input."""
    from harness.report.html import render_ladder_html
    from harness.verify import BadInput, analyse_capture

    flow = load_flow(args.flow)
    if not args.pcap.is_file():
        print(f"error: {args.pcap}: no such capture file", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        analysis = analyse_capture(args.pcap, flow=flow.FLOW.name, roles=dict(args.role) or None,
                                   factory_uri=args.factory_uri)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        args.out.write_text(render_ladder_html(analysis), encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"ladder: {args.out} ({analysis.result.flow} verdict {analysis.result.verdict})", file=sys.stderr)
    return EXIT_PASS


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.agents.faults import FAULTS
    from harness.capture.dumpcap import CaptureError, ToolMissing, require_tools
    from harness.net.netns import TestbedError
    from harness.session import captured_run
    from harness.stats import format_retransmissions, total_retransmissions
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
    try:
        impairment = _impairment(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    profile = _load_profile(args) if args.profile is not None else None
    if args.profile is not None and profile is None:
        return EXIT_BAD_INPUT
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
    out: Path = args.out or Path("captures") / run_id
    try:
        if profile is not None:
            from harness.peers.process import PeerError
            from harness.sut_run import captured_sut_run

            try:
                outcome = captured_sut_run(profile, out, media_seconds=args.media_seconds,
                                           faults=frozenset(args.fault), timeout=args.timeout)
            except PeerError as exc:  # a peer the profile launches (Kamailio, baresip...) did not start
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_BAD_INPUT
        else:
            outcome = captured_run(flow.id, out, media_seconds=args.media_seconds,
                                   faults=frozenset(args.fault), timeout=args.timeout or 60.0,
                                   placement="netns" if args.netns else "loopback", impairment=impairment)
    except TestbedError as exc:
        print(f"error: test hosts: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ToolMissing as exc:  # tshark, or a peer the profile launches
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CaptureError as exc:
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
    if args.json:  # the verdict plus the per-step retransmission counts
        print(json.dumps({**outcome.result.to_json(), "retransmissions": outcome.retransmissions}, indent=2))
    else:
        _print_result(outcome.analysis, False, not args.no_ladder)
        print(format_retransmissions(outcome.retransmissions, total_retransmissions(outcome.analysis)))
    if args.netns:
        print("placement: " + ", ".join(f"{k} {v}" for k, v in outcome.placement.items()), file=sys.stderr)
    print(f"capture: {outcome.pcap}\nverdict: {outcome.verdict_path}", file=sys.stderr)
    annotated, report = getattr(outcome, "annotated_path", None), getattr(outcome, "report_path", None)
    if annotated is not None:
        print(f"annotated capture: {annotated}", file=sys.stderr)
    if report is not None:
        print(f"report: {report}", file=sys.stderr)
    for problem in outcome.problems:
        print(f"error: {problem}", file=sys.stderr)
    ok = outcome.result.verdict == "pass" and outcome.play_error is None and not outcome.problems
    return EXIT_PASS if ok else EXIT_FAIL


def _load_profile(args: argparse.Namespace):  # noqa: ANN202 - harness.profile.Profile | None
    """The run's SUT profile, or None after printing every problem (FILE:LINE: KEY: MESSAGE)."""
    from harness.profile import load_profile_or_report

    if args.netns:
        print("error: --profile places every role itself; it does not combine with --netns", file=sys.stderr)
        return None
    if args.flow.lower().replace(".", "").replace("_", "") != "a21":
        print(f"error: SUT profiles drive A.2.1 only, not {args.flow}", file=sys.stderr)
        return None
    return load_profile_or_report(args.profile)


def _cmd_profile(args: argparse.Namespace) -> int:
    from harness.profile import main as check_main

    return EXIT_BAD_INPUT if check_main([str(f) for f in args.files]) else EXIT_PASS


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
        if args.command == "ladder":
            return _cmd_ladder(args)
        if args.command == "profile":
            return _cmd_profile(args)
        if args.command == "load":
            return load_cli.cmd_load(args)
        if args.command == "robustness":
            return robustness_cli.cmd_robustness(args)
        return _cmd_faults()
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
