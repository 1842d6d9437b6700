"""Split a capture into A.2.1 instances: a load run leaves hundreds of conferences in one file.

Call-IDs are joined (union-find) when they belong to the same conference:

* the conference URI ties the focus's 2xx (Contact ;isfocus), the REFERs (Refer-To) and the joins
  and SUBSCRIBEs (Request-URI). The factory URI is left out: every conference is created there;
* Target-Dialog, Replaces (header or Refer-To URI header) name another dialog's Call-ID;
* a user agent ties the exchanges it is an end of (UE-1 is in D12, D13 and D1C, UE-2 in D12 and
  D2C), unless it is a proxy, a focus or a hub that talks to many peers (a registrar, a CS that
  does not say isfocus): those would tie every conference together.

An instance is a group holding a REFER or a conference-creating INVITE (answered with isfocus, or -
when the caller names the factory URI - any out-of-dialog INVITE to it, so that a conference the CS
never answered still makes its instance, judged as failing there). Groups without one
(REGISTER, OPTIONS, the CS's own legs to a media server) belong to no instance when there are
several; with one instance (or none) everything stays together, exactly as a single run is read.
Everything here is linear in the number of messages.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import unquote

from harness.verify.model import Exchange, Model, sent_by
from harness.verify.roles import has_isfocus
from harness.verify.wire import sip_uri

HUB_PEERS = 6   # an end with more distinct peers than this is shared infrastructure, not a UE
_REPLACES_RE = re.compile(r"replaces=([^&>]+)", re.I)


@dataclass
class Split:
    """Call-IDs per instance (in order of first appearance) and those that belong to none."""

    instances: list[set[str | None]] = field(default_factory=list)
    leftover: set[str | None] = field(default_factory=set)
    conference: list[str | None] = field(default_factory=list)   # the conference URI of each instance


class _Union:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, key: str) -> str:
        parent = self.parent.setdefault(key, key)
        while parent != key:
            grand = self.parent[parent]
            self.parent[key] = grand
            key, parent = parent, grand
        return key

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@lru_cache(maxsize=1 << 14)
def uri_key(text: str | None) -> str | None:
    """A URI (bare or inside a name-addr) without parameters and headers, for matching."""
    value = sip_uri(text)
    if value is None:
        return None
    user = f"{value.user}@" if value.user else ""
    port = f":{value.port}" if value.port else ""
    return f"{value.scheme.lower()}:{user}{value.host.lower()}{port}"


def _dialog_refs(ex: Exchange) -> list[str]:
    """Call-IDs this request names in Target-Dialog, Replaces or a Refer-To `?Replaces=`."""
    m = ex.request.origin
    if not (m.has("Target-Dialog") or m.has("Replaces") or m.has("Refer-To")):
        return []   # most requests: no list built
    out = [v.split(";", 1)[0].strip() for name in ("Target-Dialog", "Replaces") for v in m.lines(name)]
    for value in m.lines("Refer-To"):
        match = _REPLACES_RE.search(value)
        if match:
            out.append(unquote(match.group(1)).split(";", 1)[0].strip())
    return [c for c in out if c]


def _ends(ex: Exchange) -> tuple[str, str]:
    """(UAC address, UAS address): the UAC as its Via declares it (TCP sends from other ports)."""
    origin = ex.request.origin
    declared = sent_by(origin) if len(origin.vias) == 1 else None
    return declared or ex.request.sender, ex.request.receiver


def split_instances(model: Model, factory_uri: str | None = None) -> Split:
    uf = _Union()
    focus_invites = _focus_invites(model)
    conf_uris = {k for e in focus_invites if (k := uri_key(e.ok.origin.get("Contact")))}  # type: ignore[union-attr]
    factories = {k for e in focus_invites if (k := uri_key(e.request.origin.uri)) and k not in conf_uris}
    factory = uri_key(factory_uri)
    if factory is not None:
        factories.add(factory)
    refer_targets: set[str] = set()
    for e in model.requests("REFER"):
        key = uri_key(e.request.origin.get("Refer-To"))
        if key and key not in factories:
            refer_targets.add(key)
    ends = [_ends(ex) for ex in model.exchanges]
    linkable = _linkable_ends(model, focus_invites, ends)
    candidates: set[str | None] = set()
    end_links: list[tuple[str, str]] = []
    for ex, pair in zip(model.exchanges, ends, strict=True):
        call = f"c:{ex.request.call_id}"
        uf.find(call)
        m = ex.request.origin
        if ex.method == "REFER":
            candidates.add(ex.request.call_id)
            for key in (uri_key(m.get("Refer-To")), uri_key(m.uri)):
                if key and key not in factories and (key in refer_targets or key in conf_uris):
                    uf.union(call, f"u:{key}")
        elif ex.request.to_tag is None and ex.method in ("INVITE", "SUBSCRIBE"):
            key = uri_key(m.uri)
            if key and (key in conf_uris or key in refer_targets):
                uf.union(call, f"u:{key}")
            elif key is not None and key == factory and ex.method == "INVITE":
                candidates.add(ex.request.call_id)  # a conference asked for, answered or not
        for other in _dialog_refs(ex):
            uf.union(call, f"c:{other}")
        for end in pair:
            if end in linkable:
                end_links.append((call, f"e:{end}"))
    for e in focus_invites:
        candidates.add(e.request.call_id)
        key = uri_key(e.ok.origin.get("Contact"))  # type: ignore[union-attr]
        if key:
            uf.union(f"c:{e.request.call_id}", f"u:{key}")
    _link_ends(uf, end_links, conf_uris)
    return _groups(model, uf, candidates, conf_uris)


def _focus_invites(model: Model) -> list[Exchange]:
    """Conference-creating INVITEs: out of dialog, answered by a 2xx whose Contact says isfocus."""
    found = []
    for e in model.requests("INVITE"):
        if e.request.to_tag is None:
            ok = e.ok
            if ok is not None and has_isfocus(ok.origin.name_addr("Contact")):
                found.append(e)
    return found


def _link_ends(uf: _Union, links: list[tuple[str, str]], conf_uris: set[str]) -> None:
    """Tie Call-IDs through a shared user agent, in time order, but never two groups that each already
    hold another conference URI: the same UEs may hold one conference after another (new Call-IDs,
    a new conference URI each time), and those are separate instances."""
    confs: dict[str, set[str]] = defaultdict(set)
    for key in conf_uris:
        confs[uf.find(f"u:{key}")].add(key)
    for a, b in links:
        ra, rb = uf.find(a), uf.find(b)
        if ra == rb:
            continue
        ca, cb = confs.get(ra), confs.get(rb)
        if ca and cb and ca.isdisjoint(cb):
            continue
        uf.union(ra, rb)
        root = uf.find(ra)
        merged = (ca or set()) | (cb or set())
        confs.pop(ra, None)
        confs.pop(rb, None)
        if merged:
            confs[root] = merged


def _linkable_ends(model: Model, focus_invites: list[Exchange], ends: list[tuple[str, str]]) -> set[str]:
    """The ends (see _ends, one pair per exchange) that are user agents: no proxy (an end a request
    went through), no focus, not talking to more than HUB_PEERS others."""
    middles = {c.dst_ep for lg in model.logicals if lg.is_request for c in lg.copies[:-1]}   # path[1:-1]
    focus = {e.ok.sender for e in focus_invites if e.ok is not None}
    peers: dict[str, set[str]] = defaultdict(set)
    for a, b in ends:
        peers[a].add(b)
        peers[b].add(a)
    return {ep for ep, others in peers.items() if ep not in middles and ep not in focus and len(others) <= HUB_PEERS}


def _groups(model: Model, uf: _Union, candidates: set[str | None], conf_uris: set[str]) -> Split:
    groups: dict[str, set[str | None]] = defaultdict(set)
    first: dict[str, float] = {}
    roots: dict[str | None, str] = {}   # the union is complete: one find per Call-ID
    for ex in model.exchanges:
        call_id = ex.request.call_id
        root = roots.get(call_id)
        if root is None:
            root = roots[call_id] = uf.find(f"c:{call_id}")
        groups[root].add(call_id)
        first[root] = min(first.get(root, ex.time), ex.time)
    real = [root for root, ids in groups.items() if ids & candidates]
    conference: dict[str, str] = {}
    for key in sorted(conf_uris, reverse=True):
        conference[uf.find(f"u:{key}")] = key
    split = Split()
    if len(real) <= 1:
        if groups:
            split.instances = [set().union(*groups.values())]
            split.conference = [conference.get(real[0]) if real else None]
        return split
    for root in sorted(real, key=lambda r: first[r]):
        split.instances.append(groups[root])
        split.conference.append(conference.get(root))
    split.leftover = set().union(*(ids for root, ids in groups.items() if root not in real))
    return split
