"""Reading a received SIP datagram at the byte level: the start line and the few header fields the
lean agents act on, nothing more.

The lean agents (harness/load/lean) talk only to the harness's own proxies and to each other, so
they need no general codec on their hot path; but what they read they read by RFC 3261's rules:
header names case-insensitive with compact forms (§7.3.3), values trimmed, comma lists split
outside <> and quotes (§7.3.1), tags as the `tag` parameter after the name-addr (§19.3), the
body delimited by Content-Length on UDP (§18.3). A datagram that is not SIP, lacks a field every
request or response carries (Via, From, To, Call-ID, CSeq) or has a Content-Length longer than
what arrived raises HeadError; the agent drops it and counts it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NAMES: dict[bytes, str] = {
    b"via": "via", b"v": "via", b"from": "from_", b"f": "from_", b"to": "to", b"t": "to",
    b"call-id": "call_id", b"i": "call_id", b"cseq": "cseq", b"record-route": "record_route", b"route": "route",
    b"contact": "contact", b"m": "contact", b"content-length": "length", b"l": "length",
    b"event": "event", b"o": "event", b"subscription-state": "substate", b"refer-to": "refer_to",
    b"r": "refer_to", b"referred-by": "referred_by", b"b": "referred_by",
}
_TAG = re.compile(rb";[ \t]*tag[ \t]*=[ \t]*([^;, \t>]+)", re.I)
_ELEMENT = re.compile(rb'(?:"(?:[^"\\]|\\.)*"|<[^>]*>|[^,<"])+')
_URI = re.compile(rb"<([^>]*)>")
_BRANCH = re.compile(rb";[ \t]*branch[ \t]*=[ \t]*([^;, \t]+)", re.I)
_WSP = b" \t"
# The names as the harness's own elements (and most stacks) spell them, looked up before any case
# folding; None for the fields a lean agent never reads. A miss is folded and looked up in _NAMES.
_SPELLED: dict[bytes, str | None] = {
    **{name: key for name, key in _NAMES.items() if len(name) == 1},
    **{b"-".join(p.capitalize() for p in name.split(b"-")): key for name, key in _NAMES.items() if len(name) > 1},
    b"Call-ID": "call_id", b"CSeq": "cseq",
    **dict.fromkeys((b"Max-Forwards", b"Allow", b"Content-Type", b"Allow-Events", b"User-Agent",
                     b"Supported", b"Require", b"Expires", b"P-Asserted-Identity", b"Session-Expires"), None),
}
_MISS = "?"


class HeadError(ValueError):
    """Not a SIP message the lean agents can act on."""


def split_list(value: bytes) -> list[bytes]:
    """A comma-separated header value's elements, commas inside <> or quotes kept (§7.3.1)."""
    if b"," not in value:
        return [value]
    return [e.strip() for e in _ELEMENT.findall(value) if e.strip()]


def tag_of(name_addr: bytes) -> bytes | None:
    """The `tag` parameter of a From/To value (after the <>, if any)."""
    at = name_addr.find(b">;tag=")
    if at >= 0 and name_addr.find(b">", at + 1) < 0:  # `<uri>;tag=x`, as most stacks write it
        end = at + 6
        stop = len(name_addr)
        for sep in (b";", b",", b" ", b"\t"):
            found = name_addr.find(sep, end)
            if 0 <= found < stop:
                stop = found
        return name_addr[end:stop] or None
    close = name_addr.rfind(b">")
    found = _TAG.search(name_addr, close + 1 if close >= 0 else 0)
    return found.group(1) if found else None


def uri_of(name_addr: bytes) -> bytes:
    """The URI of a name-addr (`<uri>`) or addr-spec value, without its header parameters."""
    found = _URI.search(name_addr)
    if found:
        return found.group(1)
    return name_addr.split(b";", 1)[0].strip()


class Head:
    """A received message's start line, the fields the lean agents use, and its body."""

    __slots__ = ("method", "uri", "status", "via", "from_", "to", "call_id", "cseq", "cseq_method",
                 "record_route", "route", "contact", "event", "substate", "refer_to", "referred_by", "body",
                 "from_tag", "to_tag", "branch")

    def __init__(self) -> None:
        self.method: bytes | None = None
        self.uri = b""
        self.status = 0
        self.via: list[bytes] = []
        self.record_route: list[bytes] = []
        self.route: list[bytes] = []
        self.from_ = self.to = self.call_id = self.cseq = self.contact = self.cseq_method = self.body = b""
        self.event: bytes | None = None
        self.substate: bytes | None = None
        self.refer_to: bytes | None = None
        self.referred_by: bytes | None = None
        self.from_tag: bytes | None = None
        self.to_tag: bytes | None = None
        self.branch = b""


def read(data: bytes) -> Head:
    """Parse `data` (one UDP datagram) or raise HeadError."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise HeadError("no end of header")
    text = data[:end]
    lines = text.split(b"\r\n")
    names = tuple(_LINE_NAME.findall(text))
    plan = _PLANS.get(names, _MISS) if len(names) == len(lines) - 1 else None
    if plan is _MISS:
        plan = _plan(names)
    if plan is None:
        return _read_lines(data, end, lines)
    return _fill(data, end, lines, plan)


# The header names of a head (as written before each ':') -> what to read where: (line index, where
# the value starts, field), the lines no lean agent reads left out. A load's messages come in a few
# such shapes, so a message is read without looking at each line's name. None: a shape the line by
# line reader judges (a folded line, a name with blanks before it, a field given twice).
_LINE_NAME = re.compile(rb"\r\n([^:\r\n]*):")
_PLANS: dict[tuple[bytes, ...], tuple[tuple[int, int, str], ...] | None] = {}
PLANS_KEPT = 512  # shapes remembered; beyond, the table starts again (a peer that varies every message)


def _plan(names: tuple[bytes, ...]) -> tuple[tuple[int, int, str], ...] | None:
    plan: list[tuple[int, int, str]] | None = []
    seen: set[str] = set()
    for index, name in enumerate(names, 1):
        if not name or name[0] in _WSP:
            plan = None
            break
        key = _SPELLED.get(name, _MISS)
        if key is _MISS:
            key = _NAMES.get(name.rstrip(_WSP).lower())
        if key is None:
            continue
        if key in seen and key not in _LISTS:
            plan = None
            break
        seen.add(key)
        plan.append((index, len(name) + 1, key))
    if len(_PLANS) >= PLANS_KEPT:
        _PLANS.clear()
    found = _PLANS[names] = tuple(plan) if plan is not None else None
    return found


_LISTS = frozenset({"via", "record_route", "route"})


def _start_line(head: Head, line: bytes) -> None:
    first = line.split(b" ", 2)
    if len(first) != 3:
        raise HeadError("bad start line")
    if first[0] == b"SIP/2.0":
        if not first[1].isdigit() or len(first[1]) != 3:
            raise HeadError("bad status code")
        head.status = int(first[1])
    elif first[2] == b"SIP/2.0":
        head.method, head.uri = first[0], first[1]
    else:
        raise HeadError("bad start line")


def _read_lines(data: bytes, end: int, lines: list[bytes]) -> Head:
    """The reader of any head: each line's name looked up in turn."""
    names, spelled = _NAMES, _SPELLED
    _start_line(Head(), lines[0])  # a bad start line is the first thing said
    plan: list[tuple[int, int, str]] = []
    seen: set[str] = set()
    for index, line in enumerate(lines[1:], 1):
        colon = line.find(b":")
        if colon <= 0 or line[0] in _WSP:
            raise HeadError("header line without a name and colon, or folded")
        key = spelled.get(line[:colon], _MISS)
        if key is None:
            continue
        if key is _MISS:
            key = names.get(line[:colon].rstrip(b" \t").lower())
            if key is None:
                continue
        if key in seen and key not in _LISTS:
            raise HeadError(f"{key} given twice")
        seen.add(key)
        plan.append((index, colon + 1, key))
    return _fill(data, end, lines, plan)


def _fill(data: bytes, end: int, lines: list[bytes], plan: Iterable[tuple[int, int, str]]) -> Head:
    """The fields at the places `plan` gives (line index, where the value starts, field)."""
    head = Head()
    _start_line(head, lines[0])
    found: dict[str, bytes] = {}
    vias: list[bytes] = []
    routes: list[bytes] = []
    for index, offset, key in plan:
        value = lines[index][offset:].strip(b" \t")
        if key == "via":
            vias += split_list(value) if b"," in value else (value,)
        elif key == "record_route":
            routes += split_list(value) if b"," in value else (value,)
        elif key == "route":
            head.route += split_list(value) if b"," in value else (value,)
        else:
            found[key] = value
    return _finish(head, data, end, vias, routes, found)


def _finish(head: Head, data: bytes, end: int, vias: list[bytes], routes: list[bytes],
            found: dict[str, bytes]) -> Head:
    """The checks and derived values both readers share."""
    try:
        head.from_, head.to, head.call_id, cseq = found["from_"], found["to"], found["call_id"], found["cseq"]
    except KeyError:
        raise HeadError("From, To, Call-ID or CSeq missing") from None
    if not vias:
        raise HeadError("no Via")
    head.via, head.record_route = vias, routes
    get = found.get
    head.contact, head.event, head.substate = get("contact", b""), get("event"), get("substate")
    head.refer_to, head.referred_by = get("refer_to"), get("referred_by")
    number, _, method = cseq.partition(b" ")
    if not number.isdigit():
        raise HeadError("bad CSeq")
    head.cseq = number
    head.cseq_method = method.strip()
    body = data[end + 4:]
    length = get("length")
    if length is not None:
        if not length.isdigit() or int(length) > len(body):
            raise HeadError("bad Content-Length")
        body = body[:int(length)]
    head.body = body
    head.from_tag = tag_of(head.from_)
    head.to_tag = tag_of(head.to)
    branch = _BRANCH.search(vias[0])
    head.branch = branch.group(1) if branch else b""
    return head

