"""A stateless 400 (or 505) for a request the codec refused, when the request still says where the
answer goes and what it answers.

RFC 3261 §8.2.2 and §16.3 want 400 (Bad Request) for a request that fails syntax checks, and
RFC 4475 §3.1.2 hopes for it whenever the element can still build a response: that takes the
Via, From, To, Call-ID and CSeq values (§8.2.6.2). The codec rejects the message as a whole, so
those lines are picked out of the raw head here, leniently and verbatim. Nothing is answered for a
response, for an ACK (§17.1.1.3: never answered) or when any of the five is missing. An unknown
SIP version gets 505 (§8.2.2... "Version Not Supported", §21.5.7).
"""

from __future__ import annotations

import re

Addr = tuple[str, int]

_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id"}
_NEEDED = ("via", "from", "to", "call-id", "cseq")
_VERSION = re.compile(r"SIP/(\d+)\.(\d+)\Z", re.I)
_SENT_BY = re.compile(r"^\s*SIP\s*/\s*[^/\s]+\s*/\s*\S+\s+(\[[^\]]+\]|[^\s:;,]+)(?:\s*:\s*(\d+))?", re.I)
MAX_HEAD = 65536


def _head_lines(data: bytes) -> list[str]:
    head = re.split(rb"\r?\n\r?\n", data[:MAX_HEAD], maxsplit=1)[0]
    lines: list[str] = []
    for line in re.split(r"\r?\n", head.decode("latin-1")):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += " " + line.strip()  # folded continuation (RFC 3261 §7.3.1)
        else:
            lines.append(line)
    return lines


def bad_request(data: bytes, reason: str, source: Addr) -> tuple[bytes, Addr] | None:
    """(response bytes, where to send them) for the refused request `data`, or None when it cannot
    (or must not) be answered. `reason` goes into the reason phrase, cleaned to one printable line."""
    lines = _head_lines(data)
    if not lines:
        return None
    start = lines[0].split()
    if len(start) < 2 or start[0].upper().startswith("SIP/") or start[0].upper() == "ACK":
        return None
    found: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            continue
        key = name.strip().lower()
        key = _COMPACT.get(key, key)
        if key in _NEEDED:
            found.setdefault(key, []).append(f"{name.strip()}: {value.strip()}")
    if any(key not in found for key in _NEEDED):
        return None
    status, phrase = 400, "Bad Request"
    version = _VERSION.match(start[-1])
    if version and (version.group(1), version.group(2)) != ("2", "0"):
        status, phrase = 505, "Version Not Supported"
    detail = re.sub(r"[^\x20-\x7e]+", " ", reason).strip()[:120]
    if detail and status == 400:
        phrase = f"Bad Request ({detail})"
    to = found["to"][0]
    if ";tag=" not in to.lower().replace(" ", ""):
        to += ";tag=badreq"  # §8.2.6.2: a UAS adds a To tag to a response to an out-of-dialog request
    out = [f"SIP/2.0 {status} {phrase}", *found["via"], found["from"][0], to, found["call-id"][0],
           found["cseq"][0], "Content-Length: 0", "", ""]
    return "\r\n".join(out).encode("latin-1", "replace"), _reply_to(found["via"][0], source)


def _reply_to(via_line: str, source: Addr) -> Addr:
    """§18.2.2 with RFC 3581: the source address, at the sent-by port unless rport asks for ours."""
    value = via_line.partition(":")[2]
    if re.search(r";\s*rport\b", value, re.I):
        return source
    match = _SENT_BY.match(value)
    port = int(match.group(2)) if match and match.group(2) else 5060
    return (source[0], port if 0 < port < 65536 else 5060)
