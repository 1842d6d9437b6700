"""Recognise a capture of another conference flow than A.2.1, so it is reported as one clear
"different flow" verdict instead of twenty missing steps.

A.2.1 REFERs each participant to the conference. The 3GPP/GSMA-style merge (checklist §8d,
RFC 4579 §5.10) and the B2BUA variant (§8e) instead REFER the *focus*, with Refer-To naming the
participant (usually with `?Replaces=` for its dialog with UE-1); RFC 4579 §5.5 dial-out does the
same without Replaces. Whichever: a REFER whose Request-URI is a conference URI, or that the focus
answers, is not this flow.
"""

from __future__ import annotations

from harness.verify.instances import uri_key
from harness.verify.model import Model
from harness.verify.roles import has_isfocus


def other_flow(model: Model) -> tuple[str, list[int]] | None:
    """(why the capture is another flow, the frames that show it), or None for A.2.1."""
    focus = [e for e in model.requests("INVITE")
             if e.request.to_tag is None and e.ok is not None and has_isfocus(e.ok.origin.name_addr("Contact"))]
    conf_uris = {uri_key(e.ok.origin.get("Contact")) for e in focus if e.ok is not None} - {None}
    focus_eps = {e.ok.sender for e in focus if e.ok is not None}
    for e in model.requests("REFER"):
        m = e.request.origin
        answered_by_focus = any(r.sender in focus_eps for r in e.responses if (r.status or 0) > 100)
        if uri_key(m.uri) not in conf_uris and e.request.receiver not in focus_eps and not answered_by_focus:
            continue
        refer_to = m.get("Refer-To") or "?"
        if "replaces=" in refer_to.lower():
            kind = ("the REFER-to-focus merge of checklist §8d (RFC 4579 §5.10; 3GPP TS 34.229-5 A.26): the focus "
                    "INVITEs the participant with Replaces and the participant ends its call with UE-1")
        else:
            kind = "a REFER asking the focus to dial out (RFC 4579 §5.5), not the participant being REFERred"
        text = (f"different flow: {m.src_ep} sends REFER {m.uri} to the conference focus (frame {m.frame}) with "
                f"Refer-To {refer_to}; this is {kind}. A.2.1 REFERs UE-2 and UE-3 themselves to the conference "
                "URI, so its steps are not judged on this capture")
        frames = [m.frame] + ([e.final.origin.frame] if e.final is not None else [])
        return text, frames
    return None
