"""Checks RFC 3261 asks of an element before it acts on a request that parsed (§8.2, §16.3).

A UAS (§8.2): Request-URI scheme (416), no headers in a Request-URI (400, RFC 4475 §3.1.2.11),
single-value header fields given once (400, §7.3.1 / RFC 4475 §3.3.8), Require it does not support
(420, §8.2.2.3), a body it cannot read (415, §8.2.3), an INVITE whose Accept excludes SDP (406,
RFC 4475 §3.3.15). A proxy (§16.3): the scheme, the single-value fields, a CSeq that reads and
names the request's method (§8.1.1.5), and Proxy-Require (420).
Each returns None (go on) or (status, reason, extra headers) for the answer.
"""

from __future__ import annotations

from harness.sip.errors import SipError
from harness.sip.message import SipMessage

Answer = tuple[int, str, list[tuple[str, str]]]

SCHEMES = frozenset({"sip", "sips", "tel"})
# §20: header fields whose grammar holds one value; two lines of them cannot both be believed.
SINGLE = ("Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Length", "Content-Type")
SUPPORTED: frozenset[str] = frozenset()  # option tags this harness implements (none it could Require)


def _scheme(uri: str) -> str:
    return uri.partition(":")[0].strip().lower()


def _common(msg: SipMessage) -> Answer | None:
    uri = msg.uri or ""
    if _scheme(uri) not in SCHEMES:
        return 416, "Unsupported URI Scheme", []
    if "?" in uri:
        return 400, "Bad Request (headers in the Request-URI)", []
    for name in SINGLE:
        if sum(1 for h in msg.headers if h.canonical == name) > 1:
            return 400, f"Bad Request (more than one {name})", []
    try:
        _, method = msg.cseq
    except SipError as exc:
        return 400, f"Bad Request ({exc})", []
    if method != msg.method:  # §8.1.1.5: "The method MUST match that of the request"
        return 400, "Bad Request (CSeq method differs from the Request-Line)", []
    return None


def _unsupported(msg: SipMessage, header: str) -> list[str]:
    tags = [t.strip() for value in msg.get_all(header) for t in value.split(",") if t.strip()]
    return [t for t in tags if t.lower() not in SUPPORTED]


def check_uas(msg: SipMessage, accept: frozenset[str]) -> Answer | None:
    """What a UAS must answer instead of acting on `msg` (not for ACK: it is never answered)."""
    if msg.method == "ACK":
        return None
    found = _common(msg)
    if found is not None:
        return found
    unknown = _unsupported(msg, "Require")
    if unknown and msg.method != "CANCEL":
        return 420, "Bad Extension", [("Unsupported", ", ".join(unknown))]
    content_type = (msg.get("Content-Type") or "").partition(";")[0].strip().lower()
    if msg.body and content_type not in accept:
        return 415, "Unsupported Media Type", [("Accept", ", ".join(sorted(accept)))]
    if msg.method == "INVITE" and msg.get("Accept") is not None and not _accepts_sdp(msg):
        return 406, "Not Acceptable", []
    return None


def check_proxy(msg: SipMessage) -> Answer | None:
    """What a proxy must answer instead of forwarding `msg` (§16.3 steps 1, 2 and 5)."""
    found = _common(msg)
    if found is not None:
        return found
    unknown = _unsupported(msg, "Proxy-Require")
    if unknown:
        return 420, "Bad Extension", [("Unsupported", ", ".join(unknown))]
    return None


def _accepts_sdp(msg: SipMessage) -> bool:
    types = [t.partition(";")[0].strip().lower() for v in msg.get_all("Accept") for t in v.split(",")]
    return not any(types) or any(t in ("application/sdp", "application/*", "*/*") for t in types)
