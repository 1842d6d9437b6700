"""Faults the agents can commit on purpose, so tests can show the verifier catches each one.

name -> Fault(description, step id expected to fail, requirement id expected to fail). The agent named
by the prefix commits it; the flow still completes where it can (the peers are lenient receivers).
"""

from __future__ import annotations

from typing import NamedTuple


class Fault(NamedTuple):
    description: str
    step: str
    requirement: str
    verdict: str = "fail"   # "warn": the fault breaks only a SHOULD, so the check warns and the run passes


FAULTS: dict[str, Fault] = {
    "ue1-two-refer-to": Fault(
        "UE-1's REFER to UE-2 carries two Refer-To header fields", "22~27", "REF-1"),
    "ue1-two-referred-by": Fault(
        "UE-1's REFER to UE-2 carries two Referred-By header fields", "22~27", "REF-4"),
    "ue1-refer-no-contact": Fault(
        "UE-1's REFER to UE-2 has no Contact", "22~27", "REF-3"),
    "ue2-notify-omit-event": Fault(
        "UE-2's NOTIFYs lack the Event header", "28~33", "NOT-1"),
    "ue2-final-notify-active": Fault(
        "UE-2's last NOTIFY says active;expires=60 instead of terminated;reason=noresource", "41~46", "NOT-4"),
    "ue2-bad-sipfrag": Fault(
        "UE-2's first NOTIFY body is 'SIP/2.0' with no status code", "28~33", "NOT-3"),
    "ue2-join-drop-referred-by": Fault(
        "UE-2's INVITE to the conference omits the Referred-By it received", "34~35", "JOIN-2"),
    "cs-omit-isfocus": Fault(
        "the CS's 200 OK Contact lacks the isfocus feature parameter", "16~21", "CONF-2"),
    "ue2-hold-answer-sendrecv": Fault(
        "UE-2 answers the sendonly hold offer with sendrecv", "2", "HOLD-1"),
    "ue2-keeps-sending-on-hold": Fault(
        "UE-2 answers recvonly to the hold but keeps sending RTP to UE-1", "2", "HOLD-2"),
    "scscf-no-max-forwards-decrement": Fault(
        "the S-CSCF forwards requests without decrementing Max-Forwards", "12~14", "G3"),
    "ue1-skip-bye-ue2": Fault(
        "UE-1 never sends the BYE that ends its dialog with UE-2", "47~52", "BYE-1"),
    "mrfp-echo": Fault(
        "the MRFP mixes each participant's own voice into what it sends that participant", "37~40", "MIX-1",
        "warn"),  # MIX-1's "not its own" half is a SHOULD (docs/requirements.md)
    "mrfp-silence": Fault(
        "the MRFP sends every participant silence instead of the mix", "37~40", "MIX-1"),
    "ue2-wrong-payload-type": Fault(
        "UE-2 sends PT 8 (PCMA) to the MRFP on a leg whose SDP negotiated PT 0 (PCMU)", "37~40", "MEDIA-3"),
    "ue3-rtp-to-stale-address": Fault(
        "after joining, UE-3 sends its conference RTP to UE-1's old media address instead of the MRFP",
        "68~71", "MEDIA-4"),
    # A silent or dead peer: the run must end within its bounds with a clear reason (test_no_hangs.py).
    "ue2-ignores-refer": Fault(
        "UE-2 never answers the REFER (a silent SUT)", "22~27", "REF-5"),
    "ue3-dies-on-refer": Fault(
        "UE-3 vanishes like a killed process when the REFER arrives (sockets closed, nothing sent)",
        "53~58", "REF-5"),
}

#: Faults after which the flow cannot finish: the run must still end within its bounds, saying why.
ABORTS = frozenset({"ue2-ignores-refer", "ue3-dies-on-refer"})

#: Requirement ids the faults above expect but the step table does not list yet (none: the media checks
#: MIX-1, MEDIA-3 and MEDIA-4 of issue 4 are on steps 37~40 and 68~71). See docs/requirements.md.
PENDING_CHECKS: frozenset[str] = frozenset()


def check_faults(faults: frozenset[str]) -> None:
    """Reject unknown fault names early: a typo would otherwise make a fault test pass vacuously."""
    unknown = sorted(set(faults) - FAULTS.keys())
    if unknown:
        raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(sorted(FAULTS))}")
