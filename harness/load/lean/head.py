"""Reading a received SIP datagram at the byte level: the start line and the few header fields the
lean agents act on, nothing more.

The lean agents (harness/load/lean) talk only to the harness's own proxies and to each other, so
they need no general codec on their hot path; but what they read they read by RFC 3261's rules:
header names case-insensitive with compact forms (§7.3.3), values trimmed, comma lists split
outside <> and quotes (§7.3.1), tags as the `tag` parameter after the name-addr (§19.3), the
body delimited by Content-Length on UDP (§18.3). A datagram that is not SIP, lacks a field every
request or response carries (Via, From, To, Call-ID, CSeq) or has a Content-Length longer than
what arrived raises HeadError; the agent drops it and counts it.

Reading is in two phases. `read()` checks everything that can refuse a message and reads what the
transaction layer needs (start line, top Via branch, Call-ID, CSeq, body); the other fields (Vias,
From/To and their tags, routes, Contact, Event...) are read when the agent first asks for one of
them. Nothing in that second phase can fail, so a message is refused in `read()` or never.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

_NAMES: dict[bytes, str] = {
    b"via": "via", b"v": "via", b"from": "from_", b"f": "from_", b"to": "to", b"t": "to",
    b"call-id": "call_id", b"i": "call_id", b"cseq": "cseq", b"record-route": "record_route", b"route": "route",
    b"contact": "contact", b"m": "contact", b"content-length": "length", b"l": "length",
    b"event": "event", b"o": "event", b"subscription-state": "substate", b"refer-to": "refer_to",
    b"r": "refer_to", b"referred-by": "referred_by", b"b": "referred_by",
}
_TAG = re.compile(rb";[ \t]*tag[ \t]*=[ \t]*([^;, \t>]+)", re.I)
_TAG_VALUE = re.compile(rb"[^;, \t]*")  # a `>;tag=` value: up to the first ; , SP or HTAB
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
    """The `tag` parameter of a From/To value (after the <>, if any). Remembered per value: a dialog's
    From and To come back in each of its messages."""
    found = _TAGS.get(name_addr, _MISS)
    if found is _MISS:
        if len(_TAGS) >= TAGS_KEPT:
            _TAGS.clear()
        found = _TAGS[name_addr] = _tag_of(name_addr)
    return found  # type: ignore[return-value]


_TAGS: dict[bytes, bytes | None] = {}
TAGS_KEPT = 4096


def _tag_of(name_addr: bytes) -> bytes | None:
    at = name_addr.find(b">;tag=")
    if at >= 0 and name_addr.find(b">", at + 1) < 0:  # `<uri>;tag=x`, as most stacks write it
        return _TAG_VALUE.match(name_addr, at + 6).group() or None  # type: ignore[union-attr]  # `*` always matches
    close = name_addr.rfind(b">")
    found = _TAG.search(name_addr, close + 1 if close >= 0 else 0)
    return found.group(1) if found else None


def branch_of(via: bytes) -> bytes:
    """The `branch` parameter of a Via value (b"" without one)."""
    found = _BRANCH.search(via)
    return found.group(1) if found else b""


def uri_of(name_addr: bytes) -> bytes:
    """The URI of a name-addr (`<uri>`) or addr-spec value, without its header parameters."""
    found = _URI.search(name_addr)
    if found:
        return found.group(1)
    return name_addr.split(b";", 1)[0].strip()


FIELDS = ("method", "uri", "status", "via", "from_", "to", "call_id", "cseq", "cseq_method", "record_route",
          "route", "contact", "event", "substate", "refer_to", "referred_by", "body", "from_tag", "to_tag", "branch")
# The fields read() leaves for when the agent first asks for one of them, read in groups of what is
# asked for together (Head._read_group): To (how a request finds its dialog; all an ACK needs), what
# a response copies, what a dialog is built from, the rest.
_GROUPS: dict[str, int] = {
    "to": 0, "to_tag": 0, "via": 1, "from_": 1, "from_tag": 2, "contact": 2, "record_route": 2,
    "route": 3, "event": 3, "substate": 3, "refer_to": 3, "referred_by": 3}


class Head:
    """A received message's start line, the fields the lean agents use, and its body."""

    __slots__ = (*FIELDS, "_lines", "_shape")

    method: bytes | None
    uri: bytes
    status: int
    via: list[bytes]
    record_route: list[bytes]
    route: list[bytes]
    from_: bytes
    to: bytes
    call_id: bytes
    cseq: bytes
    cseq_method: bytes
    contact: bytes
    body: bytes
    event: bytes | None
    substate: bytes | None
    refer_to: bytes | None
    referred_by: bytes | None
    from_tag: bytes | None
    to_tag: bytes | None
    branch: bytes

    def __init__(self) -> None:
        self.method = None
        self.uri = b""
        self.status = 0
        self._lines: list[bytes] | None = None  # a shaped head's lines, where its lazy fields are read
        self._shape: _Shape | None = None

    if not TYPE_CHECKING:  # (type checkers see the fields above, not a catch-all)
        def __getattr__(self, name: str) -> Any:
            """Only called for a slot not set yet: the lazy field's group is read."""
            group = _GROUPS.get(name)
            if group is None or self._lines is None:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            self._read_group(group)
            return getattr(self, name)

    def _read_group(self, group: int) -> None:
        """One group of lazy fields, at the places the head's shape gives. Nothing here can fail:
        read() has refused whatever the reference reader refuses."""
        lines, shape = self._lines, self._shape
        assert lines is not None and shape is not None
        if group == 0:
            self.to = to = _value(lines, shape.to)
            self.to_tag = tag_of(to)
        elif group == 1:
            self.via = _list_of(lines, shape.via)
            self.from_ = _value(lines, shape.from_)
        elif group == 2:
            self.from_tag = tag_of(self.from_)
            self.contact = _value(lines, shape.contact) if shape.contact else b""
            self.record_route = _list_of(lines, shape.record_route)
        else:
            self.route = _list_of(lines, shape.route)
            self.event = _value(lines, shape.event) if shape.event else None
            self.substate = _value(lines, shape.substate) if shape.substate else None
            self.refer_to = _value(lines, shape.refer_to) if shape.refer_to else None
            self.referred_by = _value(lines, shape.referred_by) if shape.referred_by else None


def read(data: bytes) -> Head:
    """Parse `data` (one UDP datagram) or raise HeadError."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise HeadError("no end of header")
    text = data[:end]
    lines = text.split(b"\r\n")
    names = tuple(_LINE_NAME.findall(text))
    shape = _SHAPES.get(names, _MISS) if len(names) == len(lines) - 1 else None
    if shape is _MISS:
        shape = _shape_of(names)
    if shape is None:
        return _read_lines(data, end, lines)
    return _read_shaped(data, end, lines, shape)  # type: ignore[arg-type]


# The header names of a head (as written before each ':') -> its _Shape. A load's messages come in
# a few such shapes, so a message is read without looking at each line's name. None: a shape the
# line by line reader judges (a folded line, a name with blanks before it, a field given twice or
# missing).
_LINE_NAME = re.compile(rb"\r\n([^:\r\n]*):")
Place = tuple[int, int]  # (line index, where the value starts)


class _Shape:
    """Where the fields of a head with one sequence of header names are: (line index, where the value
    starts) of each, a tuple of them for the list fields, None for a field not there."""

    __slots__ = ("via", "from_", "to", "call_id", "cseq", "length", "record_route", "route", "contact", "event",
                 "substate", "refer_to", "referred_by")

    def __init__(self, places: dict[str, list[Place]]) -> None:
        lists = (tuple(places.get(field, ())) for field in ("via", "record_route", "route"))
        self.via, self.record_route, self.route = lists
        one = {field: where[0] for field, where in places.items()}
        self.from_, self.to, self.call_id, self.cseq = one["from_"], one["to"], one["call_id"], one["cseq"]
        self.length: Place | None = one.get("length")
        self.contact: Place | None = one.get("contact")
        self.event: Place | None = one.get("event")
        self.substate: Place | None = one.get("substate")
        self.refer_to: Place | None = one.get("refer_to")
        self.referred_by: Place | None = one.get("referred_by")


_SHAPES: dict[tuple[bytes, ...], _Shape | None] = {}
PLANS_KEPT = 512  # shapes remembered; beyond, the table starts again (a peer that varies every message)


def _shape_of(names: tuple[bytes, ...]) -> _Shape | None:
    plan = _plan(names)
    places: dict[str, list[Place]] = {}
    for index, offset, key in plan or ():
        places.setdefault(key, []).append((index, offset))
    whole = plan is not None and all(key in places for key in ("via", "from_", "to", "call_id", "cseq"))
    if len(_SHAPES) >= PLANS_KEPT:
        _SHAPES.clear()
    found = _SHAPES[names] = _Shape(places) if whole else None
    return found


def _plan(names: tuple[bytes, ...]) -> list[tuple[int, int, str]] | None:
    """(line index, where the value starts, field) of each line a lean agent reads; None for a
    name with blanks before it, an empty one or a single field given twice."""
    plan: list[tuple[int, int, str]] = []
    seen: set[str] = set()
    for index, name in enumerate(names, 1):
        if not name or name[0] in _WSP:
            return None
        key = _SPELLED.get(name, _MISS)
        if key is _MISS:
            key = _NAMES.get(name.rstrip(_WSP).lower())
        if key is None:
            continue
        if key in seen and key not in _LISTS:
            return None
        seen.add(key)
        plan.append((index, len(name) + 1, key))
    return plan


_LISTS = frozenset({"via", "record_route", "route"})


def _list_of(lines: list[bytes], places: Sequence[Place]) -> list[bytes]:
    """The elements of a list field given on the lines at `places`, in order (§7.3.1)."""
    values = [lines[index][offset:].strip(_WSP) for index, offset in places]
    if b"," in b"".join(values):
        values = [element for value in values for element in split_list(value)]
    return values


def _value(lines: list[bytes], place: Place) -> bytes:
    return lines[place[0]][place[1]:].strip(_WSP)


def _read_shaped(data: bytes, end: int, lines: list[bytes], shape: _Shape) -> Head:
    """Phase one for a head of a known shape: the checks of _finish in its order (start line, Via,
    CSeq, Content-Length) and the fields the transaction layer reads; the rest stays in `lines`."""
    head = Head()
    _start_line(head, lines[0])
    top = _value(lines, shape.via[0])
    if b"," in top:  # the first element of a comma list (the full list is read again when asked for)
        vias = _list_of(lines, shape.via)
        if not vias:
            raise HeadError("no Via")
        top = vias[0]
    number, _, method = _value(lines, shape.cseq).partition(b" ")
    if not number.isdigit():
        raise HeadError("bad CSeq")
    start = end + 4
    stop = len(data)
    if shape.length is not None:
        stop = start + _content_length(_value(lines, shape.length), stop - start)
    head.call_id = _value(lines, shape.call_id)
    head.cseq, head.cseq_method = number, method.strip()
    head.body = data[start:stop]
    head.branch = branch_of(top)
    head._lines, head._shape = lines, shape
    return head


def _content_length(value: bytes, available: int) -> int:
    """§18.3: Content-Length's value, refused unless digits no more than the octets that arrived
    (leading zeros however many: int() itself refuses more than 4300 digits)."""
    if len(value) > 9:
        value = value.lstrip(b"0") or b"0"
    if not value.isdigit() or len(value) > 9 or int(value) > available:  # a datagram is < 10**9 octets
        raise HeadError("bad Content-Length")
    return int(value)


# --- the reference reader: any head, every field at once, each line's name looked up in turn -------

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
    head = Head()
    _start_line(head, lines[0])  # a bad start line is the first thing said
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
    return _fill(head, data, end, lines, plan)


def _fill(head: Head, data: bytes, end: int, lines: list[bytes], plan: Iterable[tuple[int, int, str]]) -> Head:
    """The fields at the places `plan` gives (line index, where the value starts, field)."""
    found: dict[str, bytes] = {}
    vias: list[bytes] = []
    routes: list[bytes] = []
    head.route = []
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
    """The checks and derived values of the reference reader."""
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
        if len(length) > 9:  # int() refuses more than 4300 digits: leading zeros are not counted
            length = length.lstrip(b"0") or b"0"
        if not length.isdigit() or len(length) > 9 or int(length) > len(body):
            raise HeadError("bad Content-Length")
        body = body[:int(length)]
    head.body = body
    head.from_tag = tag_of(head.from_)
    head.to_tag = tag_of(head.to)
    branch = _BRANCH.search(vias[0])
    head.branch = branch.group(1) if branch else b""
    return head
