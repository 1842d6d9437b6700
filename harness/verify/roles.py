"""Who is who in a capture, inferred from the messages themselves (never from addresses).

* UE-1 is the REFER sender (the origin copy of a REFER, the one with a single Via); in a capture
  taken past UE-1's first hop (at one node) the element forwarding UE-1's requests stands for it,
  and `--role UE-1=` may name UE-1's own address as its bottom Via gives it;
* REFERs answered 401/407 do not name a REFER target (the challenger is often a proxy);
* REFER targets are UE-2 and UE-3: UE-2 is the one UE-1 put on hold (or, failing that, the one
  whose dialog with UE-1 began first), UE-3 the other;
* the CS answers an INVITE with a 2xx whose Contact carries `isfocus`, or answers the INVITE sent
  to the Refer-To URI;
* elements seen only between hops are proxies, named from UE-1 outwards (P-CSCF, S-CSCF);
* the MRFP is the media address in the CS's SDP, when it is not the CS itself.

A "node" is the set of ip:port endpoints one element uses: the UAC's source and the address its
responses come back to, the UAS's address and the source of its responses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from harness.sip.errors import SipParseError
from harness.sip.headers import NameAddr, SipUri, uri_without
from harness.verify.errors import BadInput
from harness.verify.model import Exchange, Model, sent_by
from harness.verify.wire import name_addr

ROLES = ("UE-1", "UE-2", "UE-3", "CS", "MRFP", "P-CSCF", "S-CSCF")
HOLD_DIRECTIONS = ("sendonly", "inactive")


class Nodes:
    """Union-find over endpoints: which ip:port values belong to the same element."""

    def __init__(self, model: Model) -> None:
        self.parent: dict[str, str] = {}
        self._roots: dict[str, str] = {}   # find() answers, valid until the next union
        self._inner: tuple[Model, set[str]] | None = None   # intermediates(model), likewise
        for ep in sorted(model.endpoints()):
            self.parent[ep] = ep
        for ex in model.exchanges:
            req = ex.request
            for sent in (req, *ex.acks, *ex.cancels):
                declared = sent_by(sent.origin)
                if len(sent.origin.vias) == 1 and declared is not None and declared != sent.origin.src_ep:
                    # A UA sending from another port than its own (TCP, symmetric-less UDP) declares it in
                    # Via; an ACK to a 2xx may be the first thing it sends on a new connection.
                    self.union(sent.origin.src_ep, declared)
                for a, b in zip(sent.copies, sent.copies[1:], strict=False):
                    own = sent_by(b, 0)
                    if len(b.vias) == len(a.vias) + 1 and own is not None and own != b.src_ep and own in self.parent:
                        self.union(b.src_ep, own)   # a proxy forwarding from another port (a TCP client port)
            for rsp in ex.responses:
                # Only responses made by the request's final recipient (not a proxy's 100 or 407):
                # the UAS answers with the Vias it received; the UAC gets back just its own.
                if len(rsp.origin.vias) == len(req.delivered.vias):
                    self.union(req.receiver, rsp.sender)
                if len(rsp.delivered.vias) == len(req.origin.vias):
                    self.union(req.sender, rsp.receiver)

    def find(self, ep: str) -> str:
        root = self._roots.get(ep)
        if root is not None:   # the checks ask for the node of the same few endpoints again and again
            return root
        start = ep
        self.parent.setdefault(ep, ep)
        while self.parent[ep] != ep:
            self.parent[ep] = self.parent[self.parent[ep]]
            ep = self.parent[ep]
        self._roots[start] = ep
        return ep

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)
            self._roots.clear()
            self._inner = None

    def intermediates(self, model: Model) -> set[str]:
        """Nodes seen between two hops of some request: proxies, never the UAs at the ends."""
        if self._inner is None or self._inner[0] is not model:
            self._inner = model, {self.find(ep) for lg in model.logicals if lg.is_request for ep in lg.path[1:-1]}
        return set(self._inner[1])

    def members(self, node: str) -> list[str]:
        return sorted(ep for ep in self.parent if self.find(ep) == node)


@dataclass
class Roles:
    """role -> node (a representative ip:port); `notes` say how each was found."""

    nodes: Nodes
    by_role: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    media: dict[str, str] = field(default_factory=dict)   # MRFP and similar media-only roles
    absent: set[str] = field(default_factory=set)          # given by the caller, not in the capture
    _names: dict[str, str] = field(default_factory=dict, repr=False)   # role_of, once roles are final

    def node(self, role: str) -> str | None:
        return self.by_role.get(role)

    def is_(self, role: str, ep: str | None) -> bool:
        node = self.by_role.get(role)
        return node is not None and ep is not None and self.nodes.find(ep) == node

    def role_of(self, ep: str) -> str:
        """The role of a SIP endpoint; for other addresses (RTP ports) the role owning that IP when
        only one does, else the address itself."""
        name = self._names.get(ep)
        if name is None:
            name = self._names[ep] = self._role_of(ep)
        return name

    def _role_of(self, ep: str) -> str:
        if ep in self.nodes.parent:
            node = self.nodes.find(ep)
            for role, n in self.by_role.items():
                if n == node:
                    return role
            return ep
        ip = ep.rsplit(":", 1)[0]
        owners = {role for role, n in self.by_role.items()
                  for member in self.nodes.members(n) if member.rsplit(":", 1)[0] == ip}
        owners |= {role for role, addr in self.media.items() if addr.rsplit(":", 1)[0] == ip or addr == ip}
        return owners.pop() if len(owners) == 1 else ep

    def as_dict(self) -> dict[str, str]:
        out = {role: ", ".join(self.nodes.members(node)) for role, node in self.by_role.items()}
        out.update(self.media)
        return out


def parse_role_overrides(items: Iterable[str] | dict[str, str] | None) -> dict[str, str]:
    """`["UE-1=127.0.0.1:5080", ...]` or a dict -> {role: "host[:port]"}; unknown roles are refused."""
    if not items:
        return {}
    pairs = items.items() if isinstance(items, dict) else (i.partition("=")[::2] for i in items)
    out: dict[str, str] = {}
    for role, addr in pairs:
        role = role.strip().upper()
        if role not in ROLES or not addr.strip():
            raise BadInput(f"bad role override {role}={addr}: use ROLE=HOST[:PORT] with ROLE in {', '.join(ROLES)}")
        out[role] = addr.strip()
    return out


def split_addr(addr: str) -> tuple[str, str]:
    """"host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address -> (host as in endpoints, port or "")."""
    if addr.startswith("["):
        host, _, rest = addr.partition("]")
        return host + "]", rest.lstrip(":")
    if addr.count(":") == 1:
        host, _, port = addr.partition(":")
        return host, port
    return (f"[{addr}]" if ":" in addr else addr), ""


def _prefer_ends(model: Model, nodes: Nodes, candidates: set[str]) -> list[str]:
    """Drop proxies from a candidate set when UAs remain (a hop missing from the capture can make a
    proxy look like the sender of a REFER or of the focus's 2xx)."""
    ends = candidates - nodes.intermediates(model)
    return sorted(ends or candidates)


def _addr_matches(ep: str | None, host: str, port: str) -> bool:
    return ep is not None and ep.rsplit(":", 1)[0] == host and (not port or ep.rsplit(":", 1)[1] == port)


def _resolve(nodes: Nodes, role: str, addr: str, model: Model | None = None) -> str | None:
    host, port = split_addr(addr)
    eps = [ep for ep in nodes.parent if ep.rsplit(":", 1)[0] == host and (not port or ep.rsplit(":", 1)[1] == port)]
    found = sorted({nodes.find(ep) for ep in eps})
    if not found and role == "UE-1" and model is not None:
        found = sorted({nodes.find(e.request.sender) for e in model.exchanges
                        if len(e.request.origin.vias) > 1 and _addr_matches(sent_by(e.request.origin), host, port)})
    if not found and role == "UE-1":
        raise BadInput(f"--role {role}={addr}: no SIP endpoint with that address in the capture")
    if not found:
        return None
    if len(found) > 1:
        raise BadInput(f"--role {role}={addr} matches several elements: {', '.join(found)}; add the port")
    return found[0]


def _contact_uri(ex: Exchange) -> NameAddr | None:
    ok = ex.ok
    if ok is None:
        return None
    return ok.origin.name_addr("Contact")


def has_isfocus(value: NameAddr | None) -> bool:
    """`isfocus` as a Contact header parameter or as a URI parameter (checklist §8l)."""
    if value is None:
        return False
    if "isfocus" in value.params:
        return True
    return isinstance(value.uri, SipUri) and "isfocus" in value.uri.params


def refer_to(ex: Exchange) -> NameAddr | None:
    values = ex.request.origin.get_all("Refer-To")
    return name_addr(values[0]) if values else None


@lru_cache(maxsize=1 << 12)
def same_target(uri_text: str | None, target: NameAddr | None) -> bool:
    """Request-URI vs Refer-To URI, ignoring `method` and URI headers (RFC 3261 §19.1.5)."""
    if uri_text is None or target is None or not isinstance(target.uri, SipUri):
        return False
    try:
        return uri_without(SipUri.parse(uri_text), ("method", "isfocus")).equivalent(
            uri_without(target.uri, ("method", "isfocus")))
    except SipParseError:
        return False


def is_hold_offer(ex: Exchange) -> bool:
    sdp = ex.request.origin.sdp
    if sdp is None:
        return False
    return sdp.direction() in HOLD_DIRECTIONS or (sdp.address() or ("", 0))[0] == "0.0.0.0"


def infer_roles(model: Model, overrides: dict[str, str] | None = None, factory_uri: str | None = None) -> Roles:
    """Roles from what the messages say, `overrides` (role -> HOST[:PORT]) first; a known factory URI
    also names the CS when nothing it sent says so (a CS that never answered)."""
    nodes = Nodes(model)
    roles = Roles(nodes)
    for role, addr in (overrides or {}).items():
        if role == "MRFP":
            roles.media[role] = addr
        else:
            node = _resolve(nodes, role, addr, model)
            if node is None:
                # A run that stopped early may never have reached this element: not an error.
                roles.absent.add(role)
                roles.notes.append(f"{role} given as {addr} but it sent and received no SIP in the capture")
                continue
            roles.by_role[role] = node
            if any(_addr_matches(ep, *split_addr(addr)) for ep in nodes.members(node)):
                roles.notes.append(f"{role} given: {addr}")
            else:
                roles.notes.append(f"{role} given: {addr}, which sends no packet in the capture; its requests "
                                   f"enter it forwarded by {node} (bottom Via {addr}), which stands for {role}")
    refers = [e for e in model.requests("REFER")]
    _infer_ue1(model, roles, refers)
    _infer_targets(model, roles, refers)
    _infer_cs(model, roles, refers, factory_uri)
    passed = _hops_before_capture(model, roles)
    _infer_proxies(model, roles, passed)
    _infer_mrfp(model, roles)
    return roles


def _hops_before_capture(model: Model, roles: Roles) -> int:
    """How many proxies UE-1's requests passed before the capture saw them (0 when UE-1's own copies
    are in it). With a capture taken at one node (e.g. the S-CSCF), UE-1's first copies are missing and
    the element forwarding them stands for UE-1 (checks judge its copies; Route is compared with the
    route set minus the hops passed)."""
    ue1 = roles.by_role.get("UE-1")
    if ue1 is None:
        return 0
    mine = [e.request.origin for e in model.exchanges if roles.nodes.find(e.request.sender) == ue1
            and e.method != "ACK"]
    if not mine or min(len(m.vias) for m in mine) <= 1:
        return 0
    first = min(mine, key=lambda m: len(m.vias))
    roles.notes.append(f"UE-1's own copies are not in the capture (the first copy seen, frame {first.frame}, has "
                       f"{len(first.vias)} Vias; bottom Via sent-by {sent_by(first)}): UE-1 stands for {ue1}, the "
                       "element forwarding its requests into the capture")
    return len(first.vias) - 1


def _infer_ue1(model: Model, roles: Roles, refers: list[Exchange]) -> None:
    if "UE-1" in roles.by_role:
        return
    nodes = roles.nodes
    senders = _prefer_ends(model, nodes, {nodes.find(e.request.sender) for e in refers})
    if len(senders) == 1:
        roles.by_role["UE-1"] = senders[0]
        roles.notes.append("UE-1 = the REFER sender")
        return
    if len(senders) > 1:
        raise BadInput(f"several REFER senders, cannot tell UE-1: {', '.join(senders)}; pass --role UE-1=HOST[:PORT]")
    focus_uacs = sorted({nodes.find(e.request.sender) for e in model.requests("INVITE")
                         if has_isfocus(_contact_uri(e)) and e.request.to_tag is None})
    if len(focus_uacs) == 1:
        roles.by_role["UE-1"] = focus_uacs[0]
        roles.notes.append("UE-1 = the UAC of the INVITE answered with isfocus (no REFER in capture)")
        return
    uacs = sorted({nodes.find(e.request.sender) for e in model.requests("INVITE") if e.request.to_tag is None})
    if len(uacs) == 1:
        roles.by_role["UE-1"] = uacs[0]
        roles.notes.append("UE-1 = the only INVITE sender (no REFER in capture)")
        return
    raise BadInput("no REFER in the capture and no single conference creator, cannot tell UE-1; candidates: "
                   f"{', '.join(focus_uacs or uacs) or 'none'}; pass --role UE-1=HOST[:PORT]")


def _dialog_start(model: Model, roles: Roles, a: str, b: str) -> tuple[bool, float]:
    """(whether a put b on hold, when their first INVITE dialog began) for ordering REFER targets."""
    nodes = roles.nodes
    held, start = False, float("inf")
    for d in model.dialogs:
        invites = [e for e in d.exchanges if e.method == "INVITE"]
        if not invites or {nodes.find(invites[0].request.sender), nodes.find(invites[0].request.receiver)} != {a, b}:
            continue
        start = min(start, d.time)
        held = held or any(nodes.find(e.request.sender) == a and e.request.to_tag and is_hold_offer(e)
                           for e in d.exchanges if e.method in ("INVITE", "UPDATE"))
    return held, start


def _infer_targets(model: Model, roles: Roles, refers: list[Exchange]) -> None:
    nodes = roles.nodes
    ue1 = roles.by_role["UE-1"]
    given = {r: roles.by_role[r] for r in ("UE-2", "UE-3") if r in roles.by_role}
    targets: list[str] = []
    for e in sorted(refers, key=lambda e: e.time):
        if nodes.find(e.request.sender) != ue1:
            continue
        answer = e.final or (e.responses[0] if e.responses else None)
        if answer is not None and answer.status in (401, 407):
            continue   # challenged (checklist §8j): the challenger, often a proxy, is not the referee
        node = nodes.find(answer.sender if answer else e.request.receiver)
        if node not in targets and node != ue1 and node not in given.values():
            targets.append(node)
    if not refers:
        peers = []
        for d in model.dialogs:
            inv = d.creator
            if inv is None or inv.method != "INVITE" or nodes.find(inv.request.sender) != ue1:
                continue
            if has_isfocus(_contact_uri(inv)):
                continue
            node = nodes.find(inv.request.receiver)
            if node not in peers and node not in given.values():
                peers.append(node)
        targets = peers
        if targets:
            roles.notes.append("no REFER: UE-2/UE-3 taken from UE-1's calls")
    free = [r for r in ("UE-2", "UE-3") if r not in given and r not in roles.absent]
    if len(targets) > 2 and len(free) == 2:
        raise BadInput(f"UE-1 sent REFERs to {len(targets)} elements, expected at most 2: {', '.join(targets)};"
                       " pass --role UE-2=HOST[:PORT] --role UE-3=HOST[:PORT]")
    if len(targets) > 1:
        # UE-2 is the one UE-1 held (step 2), else the one whose call with UE-1 began first.
        starts = {t: _dialog_start(model, roles, ue1, t) for t in targets}
        targets.sort(key=lambda t: (not starts[t][0], starts[t][1]))
        if free == ["UE-2", "UE-3"]:
            roles.notes.append("UE-2 = the REFER target UE-1 held first, UE-3 the other")
    for role, node in zip(free, targets, strict=False):
        roles.by_role[role] = node
        if len(targets) == 1:
            roles.notes.append(f"{role} = the REFER target")
    for node in targets[len(free):]:
        roles.notes.append(f"REFER target {node} has no role (the given roles leave none free)")


def _infer_cs(model: Model, roles: Roles, refers: list[Exchange], factory_uri: str | None = None) -> None:
    if "CS" in roles.by_role or "CS" in roles.absent:
        return
    nodes = roles.nodes
    ues = {roles.by_role.get(r) for r in ("UE-1", "UE-2", "UE-3")}
    focus = []
    for e in model.requests("INVITE"):
        if e.request.to_tag is None and e.ok and has_isfocus(_contact_uri(e)):
            node = nodes.find(e.ok.sender)
            if node not in ues and node not in focus:
                focus.append(node)
    focus = _prefer_ends(model, nodes, set(focus))
    if len(focus) == 1:
        roles.by_role["CS"] = focus[0]
        roles.notes.append("CS = the element answering with Contact ;isfocus")
        return
    if len(focus) > 1:
        raise BadInput(f"several elements answer with ;isfocus: {', '.join(focus)}; pass --role CS=HOST[:PORT]")
    targets = [t for t in (refer_to(e) for e in refers) if t is not None]
    found = _invited(model, roles, targets, ues)
    if len(found) == 1:
        roles.by_role["CS"] = found[0]
        roles.notes.append("CS = the element the INVITE to the Refer-To URI went to (no isfocus seen)")
    elif len(found) > 1:
        raise BadInput(f"several elements answer INVITEs to the Refer-To URI: {', '.join(found)};"
                       " pass --role CS=HOST[:PORT]")
    elif factory_uri is not None and len(found := _invited(model, roles, [_target(factory_uri)], ues)) == 1:
        roles.by_role["CS"] = found[0]
        roles.notes.append("CS = the element the INVITE to the given factory URI went to (no isfocus seen)")
    else:
        roles.notes.append("CS not found: no ;isfocus 2xx and no INVITE to the Refer-To URI")


def _target(uri: str) -> NameAddr | None:
    try:
        return NameAddr.parse(f"<{uri}>")
    except SipParseError:
        return None


def _invited(model: Model, roles: Roles, targets: list[NameAddr | None], ues: set[str | None]) -> list[str]:
    """The elements that answered (or, unanswered, last received) out-of-dialog INVITEs to `targets`."""
    nodes = roles.nodes
    found: list[str] = []
    for e in model.requests("INVITE"):
        if e.request.to_tag is None and any(same_target(e.request.origin.uri, t) for t in targets):
            answer = e.final or (e.responses[-1] if e.responses else None)
            node = nodes.find(answer.sender if answer else e.request.receiver)
            if node not in ues and node not in found:
                found.append(node)
    return found


def _infer_proxies(model: Model, roles: Roles, passed: int = 0) -> None:
    nodes = roles.nodes
    ends = {n for r, n in roles.by_role.items() if r not in ("P-CSCF", "S-CSCF")}
    ue1 = roles.by_role.get("UE-1")
    ordered: list[str] = []
    others: list[str] = []
    for lg in model.logicals:
        if not lg.is_request:
            continue
        path = [nodes.find(ep) for ep in lg.path]
        middle = [n for n in path[1:-1] if n not in ends]
        if ue1 is not None and path[0] == ue1:
            for n in middle:
                if n not in ordered:
                    ordered.append(n)
        else:
            others += [n for n in middle if n not in others]
    taken = set(roles.by_role.values())
    # Proxies UE-1's requests passed before the capture are not in it: name from the next one on.
    names = [r for r in ("P-CSCF", "S-CSCF")[passed:] if r not in roles.by_role and r not in roles.absent]
    for n in ordered + [n for n in others if n not in ordered]:
        if n in taken:
            continue
        if not names:
            roles.notes.append(f"extra proxy {n} not named")
            continue
        roles.by_role[names.pop(0)] = n
        taken.add(n)


def _infer_mrfp(model: Model, roles: Roles) -> None:
    if "MRFP" in roles.media or "MRFP" in roles.by_role or "CS" not in roles.by_role:
        return
    cs = roles.by_role["CS"]
    taken = set(roles.by_role.values())
    for e in model.requests("INVITE"):
        node = roles.nodes.find(e.request.receiver)
        if roles.nodes.find(e.request.sender) == cs and node not in taken:
            roles.by_role["MRFP"] = node  # a SIP-controlled media resource behind the CS
            roles.notes.append("MRFP = the element the CS sends INVITEs to")
            return
    cs_hosts = {ep.rsplit(":", 1)[0] for ep in roles.nodes.members(cs)}
    for e in model.requests("INVITE"):
        if e.ok is None or roles.nodes.find(e.ok.sender) != cs or e.ok.origin.sdp is None:
            continue
        addr = e.ok.origin.sdp.address()
        if addr and addr[0] not in cs_hosts and addr[0] != "0.0.0.0":
            roles.media["MRFP"] = addr[0]
            return
