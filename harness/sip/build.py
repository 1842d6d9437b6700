"""Small builders the TU uses around the core: Via, standard headers, responses, CANCEL.

The dialog and transaction layers deliberately add no Via (the sender knows its
own address and transport); these helpers keep that one line short.
"""

from __future__ import annotations

from collections.abc import Iterable

from .headers import NameAddr
from .ids import new_branch
from .message import Header, SipMessage

# RFC 3261 §8.2.6.2: copied from request to response unchanged.
_COPIED = ("Via", "From", "Call-ID", "CSeq")


def add_via(
    msg: SipMessage,
    host: str,
    port: int,
    transport: str = "UDP",
    branch: str | None = None,
    rport: bool = False,
) -> str:
    """Put a new top Via on `msg` (§8.1.1.7, §16.6 step 8); returns its branch (fresh if None)."""
    branch = branch or new_branch()
    value = f"SIP/2.0/{transport.upper()} {host}:{port};branch={branch}"
    if rport:
        value += ";rport"  # RFC 3581 §3: the parameter without a value
    if msg.get("Via") is None:
        msg.headers.insert(0, Header("Via", value))  # on top of the message, where readers look
    else:
        msg.add("Via", value, first=True)
    return branch


def add_standard(msg: SipMessage, contact: str | None = None, max_forwards: int = 70) -> SipMessage:
    """Max-Forwards (§8.1.1.6) and, when given, Contact (§8.1.1.8), unless already present.

    Content-Length is (re)computed last so it always matches the body.
    """
    if msg.is_request and msg.get("Max-Forwards") is None:
        vias = [i for i, h in enumerate(msg.headers) if h.canonical == "Via"]
        msg.headers.insert(vias[-1] + 1 if vias else 0, Header("Max-Forwards", str(max_forwards)))
    if contact is not None and msg.get("Contact") is None:
        msg.add("Contact", contact if "<" in contact else f"<{contact}>")
    msg.remove("Content-Length")
    msg.add("Content-Length", str(len(msg.body)))
    return msg


def make_response(
    request: SipMessage,
    status: int,
    reason: str,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> SipMessage:
    """A response per §8.2.6: Via (every line, in order), From, Call-ID and CSeq copied as on
    the wire, To copied with `to_tag` added unless it already has one, then `headers`.

    §8.2.6.1: a 100 Trying also copies Timestamp.
    """
    response = SipMessage.response(status, reason)
    copied: list[Header] = []
    for header in request.headers:
        canonical = header.canonical
        if canonical in _COPIED or (status == 100 and canonical == "Timestamp"):
            copied.append(Header(header.name, header.value, header.sep))
        elif canonical == "To":
            value = header.unfolded
            if to_tag is not None and NameAddr.parse(value).tag is None:
                value += f";tag={to_tag}"
            copied.append(Header(header.name, value, header.sep))
    # Keep the request's relative order (Via first), which readers of a ladder expect.
    response.headers = copied
    for name, value in headers:
        response.add(name, value)
    response.body = bytes(body)
    response.set("Content-Length", str(len(response.body)))
    return response


def make_cancel(invite: SipMessage) -> SipMessage:
    """§9.1: same Request-URI, Call-ID, From, To, CSeq number and a single Via equal to the
    INVITE's top Via (so it reaches the same server transaction), Route copied."""
    num, _ = invite.cseq
    vias = invite.get_all("Via")
    headers: list[tuple[str, str]] = [("Via", vias[0])] if vias else []
    headers += [("Route", route) for route in invite.get_all("Route")]
    headers += [
        ("Max-Forwards", "70"),
        ("From", invite.get("From") or ""),
        ("To", invite.get("To") or ""),
        ("Call-ID", invite.call_id or ""),
        ("CSeq", f"{num} CANCEL"),
    ]
    return SipMessage.request("CANCEL", str(invite.uri), headers, content_length=True)
