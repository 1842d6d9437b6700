"""verify layer (see docs/interfaces.md): capture -> messages -> checks -> verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from harness.flows.step import Flow
from harness.verify.errors import BadInput
from harness.verify.verdict import CaptureResult, CheckResult, FlowResult, StepResult

if TYPE_CHECKING:
    from harness.verify.engine import Analysis, CaptureAnalysis


def _flow(name: str) -> Flow:
    if name != "A.2.1":
        raise BadInput(f"unknown flow {name!r}; known: A.2.1")
    from harness.flows.a2_1.steps import FLOW

    return FLOW


def analyse_capture(path: str | Path, flow: str = "A.2.1", roles: dict[str, str] | list[str] | None = None,
                    factory_uri: str | None = None, evidence: bool = True) -> Analysis | CaptureAnalysis:
    """Like verify_capture, but also returns the evidence (messages, roles, bindings) for the ladder;
    a CaptureAnalysis (one Analysis per instance) when the capture holds several A.2.1 instances.
    evidence=False drops the evidence of each instance (verdicts only, judged on every core)."""
    from harness.verify.engine import analyse

    return analyse(path, _flow(flow), roles, factory_uri, evidence)


def verify_capture(path: str | Path, flow: str = "A.2.1", roles: dict[str, str] | list[str] | None = None,
                   factory_uri: str | None = None) -> FlowResult | CaptureResult:
    """Judge every step of `flow` on the capture at `path`.

    roles: {"UE-1": "HOST[:PORT]", ...} or ["UE-1=HOST[:PORT]", ...] to override inference.
    Returns a FlowResult, or a CaptureResult (a FlowResult per instance and a summary) when the
    capture holds several A.2.1 instances. Raises BadInput (one line) for an unreadable, empty or
    SIP-less capture or ambiguous roles.
    """
    return analyse_capture(path, flow, roles, factory_uri, evidence=False).result


__all__ = ["BadInput", "CaptureResult", "CheckResult", "FlowResult", "StepResult", "analyse_capture", "verify_capture"]
