"""The A.2.1 step table: ids, actors and requirement ids, exactly as TS 24.605 numbers them.

Both the choreography (play.py) and the verifier read this table; neither hard-codes a step.
Requirement ids are those of shared/spec/checklist.md (§2 G*, §9 quick list).
"""

from __future__ import annotations

from harness.flows.step import Flow, Step

_G = ("G1", "G2", "G3", "G4", "G5", "G8")

STEPS: tuple[Step, ...] = (
    Step("1", "UE-1 and UE-2 are in an active call.",
         ("UE-1", "UE-2"), "call", None, ("INVITE", "200", "ACK"), (*_G, "CALL-1", "MEDIA-1")),
    Step("2", "UE-1 puts UE-2 on hold before invoking the 3-Way Calling with UE-3.",
         ("UE-1", "UE-2"), "hold", None, ("INVITE", "200", "ACK"), (*_G, "DLG-1", "HOLD-1", "HOLD-2")),
    Step("3~11", "UE-1 establishes a call with UE-3 following normal call setup procedure and gets "
         "UE-3's permission to start the 3-Way Calling.",
         ("UE-1", "UE-3"), "call", None, ("INVITE", "200", "ACK"), (*_G, "CALL-1")),
    Step("12~14", "UE-1 sends an INVITE request to the conference server to establish a conference session.",
         ("UE-1", "CS"), "create-conf", None, ("INVITE",), (*_G, "CONF-1", "CONF-3")),
    Step("15", "The CS coordinates with MRFP to allocate conference resources.",
         ("CS", "MRFP"), "media-alloc", None, (), ("MEDIA-2",)),
    Step("16~21", "The CS sends a 200 (OK) response and receives an ACK request from UE-1.",
         ("CS", "UE-1"), "conf-answer", None, ("200", "ACK"), (*_G, "CONF-2", "CONF-4", "ACK-1")),
    Step("22~27", "UE-1 sends a REFER request to UE-2 with the Refer-To header set to the address of the CS; "
         "UE-2 accepts the REFER request.",
         ("UE-1", "UE-2"), "refer", "UE-2", ("REFER", "202"),
         (*_G, "DLG-1", "REF-1", "REF-2", "REF-3", "REF-4", "REF-5", "REF-6")),
    Step("28~33", "UE-2 sends a NOTIFY request to UE-1 to indicate that UE-2 is acting on the REFER request.",
         ("UE-2", "UE-1"), "notify-trying", "UE-2", ("NOTIFY", "200"),
         (*_G, "NOT-1", "NOT-2", "NOT-3", "NOT-5")),
    Step("34~35", "UE-2 sends an INVITE request to the CS to join the conference.",
         ("UE-2", "CS"), "join", "UE-2", ("INVITE",), (*_G, "JOIN-1", "JOIN-2")),
    Step("36", "The CS coordinates with MRFP to allocate more resources.",
         ("CS", "MRFP"), "media-alloc", "UE-2", (), ("MEDIA-2",)),
    Step("37~40", "The CS sends a 200 (OK) response to UE-2 and receives an ACK request.",
         ("CS", "UE-2"), "join-answer", "UE-2", ("200", "ACK"),
         (*_G, "JOIN-3", "ACK-1", "MEDIA-3", "MEDIA-4", "MIX-1")),
    Step("41~46", "UE-2 sends a NOTIFY request to UE-1 to indicate that it has finished action required "
         "by the REFER request.",
         ("UE-2", "UE-1"), "notify-final", "UE-2", ("NOTIFY", "200"),
         (*_G, "NOT-1", "NOT-2", "NOT-3", "NOT-4", "NOT-5", "NOT-6")),
    Step("47~52", "UE-1 sends a BYE request to terminate the call between itself and UE-2.",
         ("UE-1", "UE-2"), "bye", "UE-2", ("BYE", "200"), (*_G, "DLG-1", "BYE-1")),
    Step("53~58", "In parallel to step 22~52, UE-1 sends a REFER request to UE-3 with the Refer-To header "
         "set to the address of the CS; UE-3 accepts the REFER request.",
         ("UE-1", "UE-3"), "refer", "UE-3", ("REFER", "202"),
         (*_G, "DLG-1", "REF-1", "REF-2", "REF-3", "REF-4", "REF-5", "REF-6")),
    Step("59~64", "UE-3 sends a NOTIFY request to UE-1 to indicate that UE-3 is acting on the REFER request.",
         ("UE-3", "UE-1"), "notify-trying", "UE-3", ("NOTIFY", "200"),
         (*_G, "NOT-1", "NOT-2", "NOT-3", "NOT-5")),
    Step("65~66", "UE-3 sends an INVITE request to the CS to join the conference.",
         ("UE-3", "CS"), "join", "UE-3", ("INVITE",), (*_G, "JOIN-1", "JOIN-2")),
    Step("67", "The CS coordinates with MRFP to allocate more resources.",
         ("CS", "MRFP"), "media-alloc", "UE-3", (), ("MEDIA-2",)),
    Step("68~71", "The CS sends a 200 (OK) response to UE-3 and receives an ACK request.",
         ("CS", "UE-3"), "join-answer", "UE-3", ("200", "ACK"),
         (*_G, "JOIN-3", "ACK-1", "MEDIA-3", "MEDIA-4", "MIX-1")),
    Step("72~77", "UE-3 sends a NOTIFY request to UE-1 to indicate that it has finished action required "
         "by the REFER request.",
         ("UE-3", "UE-1"), "notify-final", "UE-3", ("NOTIFY", "200"),
         (*_G, "NOT-1", "NOT-2", "NOT-3", "NOT-4", "NOT-5", "NOT-6")),
    Step("78~83", "UE-1 sends a BYE request to terminate the call between itself and UE-3.",
         ("UE-1", "UE-3"), "bye", "UE-3", ("BYE", "200"), (*_G, "DLG-1", "BYE-1")),
)

FLOW = Flow(name="A.2.1", title="Invite other user to 3PTY CONF by sending REFER request", steps=STEPS)
