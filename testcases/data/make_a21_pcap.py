"""Write hand-made, RFC-correct A.2.1 captures (and mutated variants) with scapy.

Nothing here comes from the harness agents: the SIP text is written out by hand per RFC 3261/3515/
4579 and pushed through a tiny stateless-proxy model (add Via, decrement Max-Forwards, pop own
Route, Record-Route on dialog creation; responses lose the top Via per hop). Topology
UE-1 - P-CSCF - S-CSCF - {CS, UE-2, UE-3}, and UE-2/UE-3 - S-CSCF - CS; `proxies=False` gives the
direct topology. Addresses are 10.21.0.0/24 (or 2001:db8::/64), written only into a file.

Options: UDP or TCP (real streams, segments cut inside and across messages), IPv4 or IPv6, pcap or
pcapng, and `build_many(n)` for n interleaved instances (distinct UEs, ports, Call-IDs, tags and
conference URIs; shared proxies, CS and MRFP), as a load run leaves them.

    python -m testcases.data.make_a21_pcap OUTDIR       # golden + every mutation and variant
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scapy.layers.rtp import RTP
from scapy.packet import Raw
from scapy.utils import PcapWriter

from harness.report.pcapng import Packet, write_pcapng
from harness.rtp import g711
from harness.sip.message import SipMessage
from testcases.data.frames import TcpWire, udp_frame

NODES = {
    "UE-1": "10.21.0.10", "UE-2": "10.21.0.11", "UE-3": "10.21.0.12",
    "P-CSCF": "10.21.0.20", "S-CSCF": "10.21.0.30", "CS": "10.21.0.40",
}
MRFP = "10.21.0.50"
NODES6 = {role: "2001:db8::" + ip.rsplit(".", 1)[1] for role, ip in NODES.items()}
MRFP6 = "2001:db8::50"
PORT = 5060
FACTORY = f"sip:conference-factory@{NODES['CS']}"
CONF = f"sip:conf-7@{NODES['CS']}"
frame = udp_frame   # kept for the tests that build single datagrams

# Each mutation breaks exactly one step: {name: (step id, check id)}; "" check = the step still passes.
MUTATIONS: dict[str, tuple[str, str]] = {
    "two-refer-to": ("22~27", "REF-1"),
    "notify-no-event": ("28~33", "NOT-1"),
    "conf-200-no-isfocus": ("16~21", "CONF-2"),
    "hold-answer-sendrecv": ("2", "HOLD-1"),
    "final-notify-active": ("72~77", "NOT-4"),
    "join-no-referred-by": ("34~35", "JOIN-2"),
    "ue2-rtp-during-hold": ("2", "HOLD-2"),
    "proxy-no-mf-decrement": ("53~58", "G3"),
    "branch-no-cookie": ("59~64", "G2"),
    "refer-cseq-gap": ("22~27", "DLG-1"),
    "conf-invite-to-conf-uri": ("12~14", "CONF-1"),
    "conf-invite-reuses-callid": ("12~14", "CONF-3"),
    "conf-ack-same-branch": ("16~21", "ACK-1"),
    "notify-no-subscription-state": ("59~64", "NOT-2"),
    "notify-wrong-content-type": ("28~33", "NOT-3"),
    "join-200-no-isfocus": ("68~71", "JOIN-3"),
    "proxy-changes-from": ("47~52", "G5"),
    "body-without-content-type": ("3~11", "G8"),
    "content-type-not-a-media-type": ("3~11", "G8"),
    "refer-two-contacts": ("53~58", "REF-3"),
    "refer-two-referred-by": ("22~27", "REF-4"),
    "refer-rejected": ("22~27", "REF-5"),
    "refer-to-addr-spec": ("53~58", "REF-6"),
    "notify-wrong-to-tag": ("41~46", "NOT-5"),
    "join-wrong-uri": ("65~66", "JOIN-1"),
    "no-rtp-from-mrfp": ("36", "MEDIA-2"),
    "no-rtp-ue2": ("1", "MEDIA-1"),
    "join-wrong-payload-type": ("37~40", "MEDIA-3"),
    "join-rtp-to-stale-address": ("68~71", "MEDIA-4"),
    "mrfp-mix-silent-to-ue3": ("68~71", "MIX-1"),
    "bye-missing": ("78~83", "BYE-1"),
    "invite-no-contact": ("3~11", "CALL-1"),
    "response-no-to-tag": ("1", "G4"),
    "no-max-forwards": ("47~52", "G1"),
    # Per-hop truth (G3/G4/G5 judged on every copy) and the sub-rules of the other MUST ids.
    "proxy-ack-no-via": ("3~11", "G5"),
    "proxy-two-vias": ("78~83", "G5"),
    "proxy-changes-body": ("3~11", "G5"),
    "proxy-changes-cseq": ("16~21", "G5"),
    "proxy-changes-callid": ("78~83", "G5"),
    "proxy-changes-referred-by": ("53~58", "G5"),
    "proxy-changes-subscription-state": ("59~64", "G5"),
    "proxy-changes-to-tag": ("72~77", "G4"),
    "proxy-mf-minus-two": ("28~33", "G3"),
    "branch-reused": ("78~83", "G2"),
    "notify-200-bad-content-length": ("59~64", "G8"),
    "bye-no-route": ("78~83", "DLG-1"),
    "refer-to-aor-not-target": ("53~58", "DLG-1"),
    "bye-cseq-lower": ("47~52", "DLG-1"),
    "ack-wrong-cseq": ("37~40", "ACK-1"),
    "hold-version-not-incremented": ("2", "HOLD-1"),
    "notify-wrong-event-id": ("41~46", "NOT-1"),
    "notify-active-no-expires": ("28~33", "NOT-2"),
    "notify-bad-sipfrag": ("72~77", "NOT-3"),
    "final-notify-wrong-reason": ("41~46", "NOT-4"),
    "notify-cseq-not-increasing": ("72~77", "NOT-5"),
    "join-keeps-method-param": ("34~35", "JOIN-1"),
    "refer-202-no-contact": ("53~58", "REF-5"),
    "bye-rejected": ("47~52", "BYE-1"),
    # Allowed variants: the whole flow still passes.
    "refer-answered-200": ("", ""),
    "notify-before-202": ("", ""),
    "join-before-notify": ("", ""),
    "refer-out-of-dialog": ("", ""),
    "hold-inactive": ("", ""),
    "hold-c-zero": ("", ""),  # warn only
    "refer-to-factory": ("", ""),  # REF-2 is a SHOULD: warn only
    "no-allow-events": ("", ""),  # CONF-4 is a SHOULD: warn only
    "intermediate-notify": ("", ""),
    "provisional-responses": ("", ""),
    "refer-sub-false": ("", ""),  # RFC 4488: no NOTIFY when the 2xx says Refer-Sub: false
    "retransmissions": ("", ""),  # UDP retransmissions on several hops: no new steps
    "retransmission-first-lost": ("", ""),  # a first copy lost on one hop, the retransmission seen later
}

# Checklist §8 paths whose verdict is neither "pass" nor "one step fails" (expectations: the tests).
VARIANTS: dict[str, str] = {
    "join-rejected-486": "the CS answers UE-2's join INVITE 486; final NOTIFY 486; UE-1 keeps the held call",
    "join-rejected-503-bye": "the CS answers UE-2's join 503; UE-1 still BYEs the held call (a warning)",
    "join-declined-603": "UE-2 never INVITEs the CS; final NOTIFY 603 with reason=rejected (the §2.4.7 carve-out)",
    "refer-to-focus-replaces": "UE-1 REFERs the focus with Refer-To UE-2/UE-3 ?Replaces= (checklist §8d)",
}


@dataclass(frozen=True)
class Ident:
    """Addresses and names of one A.2.1 instance."""

    ips: dict[str, str]
    ports: dict[str, int]
    conf: str
    sfx: str = ""                                    # added to Call-IDs, tags and branches
    mrfp_ports: tuple[int, int, int] = (40000, 40002, 40004)

    @classmethod
    def single(cls, ipv6: bool = False, port: int = PORT) -> Ident:
        """The classic capture; `port` moves every SIP element to another port (SIP found by content)."""
        ips = {**(NODES6 if ipv6 else NODES), "MRFP": MRFP6 if ipv6 else MRFP}
        cs = f"[{ips['CS']}]" if ipv6 else ips["CS"]
        conf = f"sip:conf-7@{cs}" + (f":{port}" if port != PORT else "")
        return cls(ips, dict.fromkeys(ips, port), conf)

    @classmethod
    def nth(cls, k: int) -> Ident:
        """Instance k of a load capture: its own UEs (10.3x.a.b, SIP port 5070 + k % 500), Call-IDs,
        tags, conference URI and MRFP ports; the proxies, the CS and the MRFP are shared."""
        ips = {**NODES, "MRFP": MRFP}
        ports = dict.fromkeys(ips, PORT)
        for i, role in enumerate(("UE-1", "UE-2", "UE-3")):
            ips[role] = f"10.{31 + i}.{k // 250}.{k % 250 + 1}"
            ports[role] = 5070 + k % 500
        base = 40000 + 6 * k
        return cls(ips, ports, f"sip:conf-{k + 7}@{NODES['CS']}", f"k{k}", (base, base + 2, base + 4))


def sdp(user: str, sess: int, version: int, ip: str, port: int, direction: str = "sendrecv", name: str = "-") -> bytes:
    fam = "IP6" if ":" in ip else "IP4"
    return (f"v=0\r\no={user} {sess} {version} IN {fam} {ip}\r\ns={name}\r\nc=IN {fam} {ip}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={direction}\r\n").encode()


def _tcp_cuts(n: int, length: int) -> list[int]:
    """Where the n-th TCP flush is cut: whole, in two, in three (inside the start line and the body)."""
    return [[], [length // 3], [17, length - 9], [length // 2, length - length // 5]][n % 4]


@dataclass
class Dlg:
    """One UA's view of a dialog (RFC 3261 §12)."""

    call_id: str
    local_tag: str
    remote_tag: str | None
    local_uri: str
    remote_uri: str
    local_seq: int
    remote_target: str
    route_set: list[str] = field(default_factory=list)


class Gen:
    """Builds the packet list of one instance; `self.t` is the capture clock."""

    def __init__(self, proxies: bool = True, mutations: tuple[str, ...] = (), ident: Ident | None = None,
                 transport: str = "UDP", t0: float = 1_700_000_000.0) -> None:
        self.proxies = proxies
        self.mut = set(mutations)
        unknown = self.mut - MUTATIONS.keys() - VARIANTS.keys()
        if unknown:
            raise ValueError(f"unknown mutations {sorted(unknown)}")
        self.id = ident or Ident.single()
        self.transport = transport.upper()
        self.t = t0
        self.pkts: list[tuple[float, bytes]] = []
        self.ids = itertools.count(1)
        # Proxy misbehaviour: a hook may edit the forwarded copy; "no-via"/"two-vias" change its Via work.
        self.forward_hooks: list[Callable[[str, SipMessage], str | None]] = []
        self.response_hooks: list[Callable[[str, SipMessage], None]] = []
        self.uas_hooks: list[Callable[[SipMessage], None]] = []   # edit the UAS's own response
        self.last_hops: list[tuple[str, str, SipMessage]] = []
        self.proxy_branches: dict[tuple[str, str | None], str] = {}
        self.wire = TcpWire(self.pkts, _tcp_cuts) if self.transport == "TCP" else None
        self.lose: Callable[[str, str, SipMessage], bool] | None = None   # drop this hop's first copy
        self.resend: Callable[[SipMessage], list[float]] | None = None    # delays of later retransmissions

    # --- names --------------------------------------------------------------------------------
    def ip(self, role: str) -> str:
        return self.id.ips[role]

    def host(self, role: str) -> str:
        ip = self.ip(role)
        return f"[{ip}]" if ":" in ip else ip

    def hostport(self, role: str) -> str:
        return f"{self.host(role)}:{self.id.ports[role]}"

    def uri(self, role: str) -> str:
        return f"sip:{role.lower().replace('-', '')}@{self.host(role)}"

    def contact(self, role: str) -> str:
        return f"<sip:{role.lower().replace('-', '')}@{self.hostport(role)}>"

    def tag(self, role: str) -> str:
        return f"{role.lower()}-{self.id.sfx}{next(self.ids)}"

    # --- wire ---------------------------------------------------------------------------------
    def tick(self, dt: float = 0.003) -> None:
        self.t += dt

    def emit(self, src: str, dst: str, data: bytes, reply: bool = False, at: float | None = None) -> None:
        """One message on one hop; `reply` sends it back on the connection the request came in on."""
        t = self.t if at is None else at
        if self.wire is not None:
            client, server = (dst, src) if reply else (src, dst)
            conn = self.wire.connect(self.ip(client), (self.ip(server), self.id.ports[server]), t)
            self.wire.write(conn, not reply, data, t)
        else:
            self.pkts.append((t, udp_frame(self.ip(src), self.id.ports[src], self.ip(dst), self.id.ports[dst], data)))
        if at is None:
            self.tick()

    def rtp(self, src: tuple[str, int], dst: tuple[str, int], start: float, end: float, ssrc: int,
            tone: float | None = None, pt: int = 0) -> None:
        """One PCMU stream, 20 ms apart. The first frame is built by Scapy's RTP layer; the rest
        patch its sequence/timestamp (building every packet with Scapy is ~50x slower). `tone`: the
        frames carry that sine (-12 dBFS, G.711 by `pt`); 0.0: digital silence."""
        first = bytes(RTP(version=2, payload_type=pt, sequence=0, timestamp=0, sourcesync=ssrc) / Raw(b"\xd5" * 160))
        n = 0
        t = start
        while t < end:
            payload = first[:2] + n.to_bytes(2, "big") + (n * 160).to_bytes(4, "big") + first[8:]
            if tone is not None:
                k = np.arange(n * 160, (n + 1) * 160)
                payload = payload[:12] + g711.encode(8000 * np.sin(2 * np.pi * tone * k / 8000), pt)
            self.pkts.append((t, udp_frame(src[0], src[1], dst[0], dst[1], payload)))
            n += 1
            t += 0.02

    def branch(self, who: str) -> str:
        if who == "UE-3" and "branch-no-cookie" in self.mut and getattr(self, "_ue3_notify", False):
            return f"ue3x{next(self.ids)}"
        return f"z9hG4bK{who.lower().replace('-', '')}{self.id.sfx}{next(self.ids)}"

    def proxy_branch(self, proxy: str, incoming: str | None) -> str:
        """A stateless proxy derives its branch from the incoming one (RFC 3261 §16.11), so an ACK for
        a non-2xx or a retransmission leaves with the same branch as the request it belongs to."""
        key = (proxy, incoming)
        if key not in self.proxy_branches:
            self.proxy_branches[key] = self.branch(proxy)
        return self.proxy_branches[key]

    def path(self, a: str, b: str) -> list[str]:
        if not self.proxies:
            return [a, b]
        if "UE-1" in (a, b):
            mid = ["P-CSCF", "S-CSCF"]
            return [a, *mid, b] if a == "UE-1" else [a, *reversed(mid), b]
        return [a, "S-CSCF", b]

    def preload(self, a: str) -> list[str]:
        if not self.proxies:
            return []
        hops = ["P-CSCF", "S-CSCF"] if a == "UE-1" else ["S-CSCF"]
        return [f"<sip:{self.proxy_addr(h)};lr>" for h in hops]

    def proxy_addr(self, role: str) -> str:
        """How a proxy names itself in Route/Record-Route (no port when it is the default)."""
        return self.host(role) if self.id.ports[role] == PORT else self.hostport(role)

    def via(self, role: str, branch: str) -> str:
        return f"SIP/2.0/{self.transport} {self.hostport(role)};branch={branch}"

    def _hops(self, msg: SipMessage, path: list[str], record_route: bool) -> list[tuple[str, str, SipMessage]]:
        """Every copy of a request along `path`, proxies doing their RFC 3261 §16.6 part."""
        hops = [(path[0], path[1], msg)]
        cur = msg
        for i, proxy in enumerate(path[1:-1]):
            fwd = cur.copy()
            routes = fwd.get_all("Route")
            if routes and f"sip:{self.proxy_addr(proxy)};" in routes[0]:
                fwd.pop_first("Route")
            if record_route:
                fwd.add("Record-Route", f"<sip:{self.proxy_addr(proxy)};lr>", first=True)
            mf = int(fwd.get("Max-Forwards") or 70)
            skip = ("proxy-no-mf-decrement" in self.mut and proxy == "P-CSCF" and msg.method == "REFER"
                    and "UE-3" in path)
            twice = "proxy-mf-minus-two" in self.mut and proxy == "S-CSCF" and msg.method == "NOTIFY" \
                and path[0] == "UE-2" and b"100 Trying" in msg.body
            if fwd.get("Max-Forwards") is not None:
                fwd.set("Max-Forwards", str(mf if skip else mf - 2 if twice else mf - 1))
            flags = {hook(proxy, fwd) for hook in self.forward_hooks}
            top = cur.get_all("Via")[0] if cur.get_all("Via") else None
            branch = self.proxy_branch(proxy, top.split("branch=")[-1] if top else None)
            if "no-via" not in flags:
                fwd.add("Via", self.via(proxy, branch), first=True)
            if "two-vias" in flags:
                fwd.add("Via", self.via(proxy, branch + "b"), first=True)
            hops.append((proxy, path[i + 2], fwd))
            cur = fwd
        return hops

    def send_request(self, msg: SipMessage, path: list[str], record_route: bool = False) -> SipMessage:
        """Put the request on each hop of `path`; returns the copy the last hop delivered."""
        hops = self._hops(msg, path, record_route)
        start = self.t
        for src, dst, m in hops:
            if self.lose is not None and self.lose(src, dst, m):
                # Lost on this hop: the UAC's Timer A/E fires and the whole path sees it again.
                self.t = start + 0.5
                for s, d, again in hops:
                    self.emit(s, d, bytes(again))
                break
            self.emit(src, dst, bytes(m))
        for delay in self.resend(msg) if self.resend else ():
            self.replay(hops, start + delay)
        self.last_hops = hops
        return hops[-1][2]

    def replay(self, hops: list[tuple[str, str, SipMessage]], at: float, reply: bool = False) -> None:
        """The same datagrams again from `at` on: retransmissions (UDP only)."""
        for j, (src, dst, m) in enumerate(hops):
            self.emit(src, dst, bytes(m), reply=reply, at=at + 0.003 * j)

    def respond(self, req: SipMessage, path: list[str], status: int, reason: str, to_tag: str | None,
                extra: list[tuple[str, str]] = (), body: bytes = b"", rr: bool = False,
                resend: tuple[float, ...] = ()) -> SipMessage:
        """The UAS answers the delivered `req`; each proxy on the way back removes its Via."""
        to = req.get("To") or ""
        if to_tag and ";tag=" not in to:
            to += f";tag={to_tag}"
        headers = [("Via", v) for v in req.get_all("Via")]
        if rr:
            headers += [("Record-Route", v) for v in req.get_all("Record-Route")]
        headers += [("From", req.get("From") or ""), ("To", to), ("Call-ID", req.get("Call-ID") or ""),
                    ("CSeq", req.get("CSeq") or "")]
        headers += list(extra)
        if body:
            headers.append(("Content-Type", "application/sdp"))
        headers.append(("Content-Length", str(len(body))))
        msg = SipMessage.response(status, reason, headers, body)
        for uas_hook in self.uas_hooks:
            uas_hook(msg)
        back = list(reversed(path))
        hops = [(back[0], back[1], msg)]
        cur = msg
        for i, proxy in enumerate(back[1:-1]):
            cur = cur.copy()
            cur.pop_first("Via")
            while cur.get_all("Via") and self.hostport(proxy) in cur.get_all("Via")[0]:
                cur.pop_first("Via")   # every Via this proxy added (one, unless it is faulty)
            for hook in self.response_hooks:
                hook(proxy, cur)
            hops.append((proxy, back[i + 2], cur))
        start = self.t
        request = self.last_hops
        for src, dst, m in hops:
            if self.lose is not None and self.lose(src, dst, m):
                # Lost on this hop: the UAC retransmits its request, the next element answers again.
                self.t += 0.5
                self.emit(*request[0][:2], bytes(request[0][2]))
                self.emit(src, dst, bytes(m), reply=True)
                continue
            self.emit(src, dst, bytes(m), reply=True)
        for delay in resend:
            self.replay(hops, start + delay, reply=True)
        return cur

    # --- UA helpers ---------------------------------------------------------------------------
    def request(self, role: str, method: str, ruri: str, headers: list[tuple[str, str]],
                body: bytes = b"", ctype: str | None = None) -> SipMessage:
        hs = [("Via", self.via(role, self.branch(role))), ("Max-Forwards", "70")]
        hs += headers
        if body:
            hs.append(("Content-Type", ctype or "application/sdp"))
        hs.append(("Content-Length", str(len(body))))
        return SipMessage.request(method, ruri, hs, body)

    def in_dialog(self, role: str, d: Dlg, method: str, extra: list[tuple[str, str]] = (),
                  body: bytes = b"", ctype: str | None = None, contact: bool = True,
                  ack_of: int | None = None) -> SipMessage:
        if ack_of is None:
            d.local_seq += 1
        seq = ack_of if ack_of is not None else d.local_seq
        hs = [("Route", r) for r in d.route_set]
        hs += [("From", f"<{d.local_uri}>;tag={d.local_tag}"),
               ("To", f"<{d.remote_uri}>" + (f";tag={d.remote_tag}" if d.remote_tag else "")),
               ("Call-ID", d.call_id), ("CSeq", f"{seq} {method}")]
        if contact:
            hs.append(("Contact", self.contact(role)))
        hs += list(extra)
        return self.request(role, method, d.remote_target, hs, body, ctype)

    def ack_non_2xx(self, invite: SipMessage, response: SipMessage, path: list[str]) -> None:
        """RFC 3261 §17.1.1.3: same branch as the INVITE (proxies derive theirs), CSeq method ACK."""
        ack = invite.copy()
        ack.method = "ACK"
        ack.set("To", response.get("To") or "")
        ack.set("CSeq", f"{invite.cseq[0]} ACK")
        ack.remove("Content-Type")
        ack.remove("Contact")
        ack.body = b""
        ack.set("Content-Length", "0")
        self.send_request(ack, path)

    def invite_dialog(self, caller: str, callee: str, ruri: str, call_id: str, offer: bytes, answer: bytes,
                      callee_contact: str, extra: list[tuple[str, str]] = (),
                      answer_extra: list[tuple[str, str]] = (), cseq: int = 1,
                      reject: tuple[int, str] | None = None) -> tuple[Dlg, Dlg]:
        """INVITE / 200 / ACK creating a dialog (or INVITE / reject / ACK); returns (caller's, callee's view)."""
        ftag, ttag = self.tag(caller), self.tag(callee)
        path = self.path(caller, callee)
        remote_uri = ruri.split(";")[0]
        hs = [("Route", r) for r in self.preload(caller)]
        hs += [("From", f"<{self.uri(caller)}>;tag={ftag}"), ("To", f"<{remote_uri}>"),
               ("Call-ID", call_id), ("CSeq", f"{cseq} INVITE")]
        if not ("invite-no-contact" in self.mut and callee == "UE-3"):
            hs.append(("Contact", self.contact(caller)))
        hs += list(extra)
        invite = self.request(caller, "INVITE", ruri, hs, offer)
        if "body-without-content-type" in self.mut and callee == "UE-3":
            invite.remove("Content-Type")
        if "content-type-not-a-media-type" in self.mut and callee == "UE-3":
            invite.set("Content-Type", "sdp")
        if "proxy-changes-body" in self.mut and callee == "UE-3":
            self.forward_hooks.append(_change_body)
        delivered = self.send_request(invite, path, record_route=True)
        self.forward_hooks = [h for h in self.forward_hooks if h is not _change_body]
        if "provisional-responses" in self.mut or self.transport == "TCP":
            # 100 (hop-local) and 180 leave the UAS back to back: over TCP they share a segment.
            self.respond(delivered, path[-2:] if self.proxies else path, 100, "Trying", None)
            self.respond(delivered, path, 180, "Ringing", ttag, [("Contact", callee_contact)], rr=True)
        if reject is not None:
            final = self.respond(delivered, path, reject[0], reject[1], ttag)
            self.tick(0.01)
            self.ack_non_2xx(invite, final, path)
            return Dlg(call_id, ftag, ttag, self.uri(caller), remote_uri, cseq, ""), \
                Dlg(call_id, ttag, ftag, remote_uri, self.uri(caller), 0, "")
        to_tag = None if "response-no-to-tag" in self.mut and callee == "UE-2" else ttag
        resend = (0.5,) if "retransmissions" in self.mut and callee == "UE-3" and caller == "UE-1" else ()
        ok = self.respond(delivered, path, 200, "OK", to_tag, [("Contact", callee_contact), *answer_extra],
                          answer, rr=True, resend=resend)
        rrs = ok.get_all("Record-Route")
        uac = Dlg(call_id, ftag, ttag, self.uri(caller), remote_uri, cseq,
                  callee_contact.split(">")[0].lstrip("<"), list(reversed(rrs)))
        uas = Dlg(call_id, ttag, ftag, remote_uri, self.uri(caller), 0,
                  self.contact(caller).strip("<>"), delivered.get_all("Record-Route"))
        self.tick(0.01)
        ack = self.in_dialog(caller, uac, "ACK", contact=False, ack_of=cseq + (
            1 if "ack-wrong-cseq" in self.mut and caller == "UE-2" else 0))
        if "conf-ack-same-branch" in self.mut and callee == "CS" and caller == "UE-1":
            ack.set("Via", invite.get("Via") or "")
        if "proxy-ack-no-via" in self.mut and callee == "UE-3":
            self.forward_hooks.append(_no_via_hook)
        if "proxy-changes-cseq" in self.mut and callee == "CS" and caller == "UE-1":
            self.forward_hooks.append(_cseq_hook)
        start = self.t
        self.send_request(ack, path)
        if resend:
            self.replay(self.last_hops, start + resend[0] + 0.01)  # the same ACK for the 2xx resent
        self.forward_hooks = [h for h in self.forward_hooks if h not in (_no_via_hook, _cseq_hook)]
        return uac, uas

    def transaction(self, role: str, peer: str, d: Dlg, method: str, extra: list[tuple[str, str]] = (),
                    body: bytes = b"", ctype: str | None = None, status: int = 200, reason: str = "OK",
                    peer_d: Dlg | None = None, answer_extra: list[tuple[str, str]] = (),
                    answer: bytes = b"", mutate: Callable[[SipMessage], None] | None = None,
                    resend: tuple[float, ...] = (), peer_contact: bool = True) -> SipMessage:
        req = self.in_dialog(role, d, method, extra, body, ctype, contact=method != "BYE")
        if mutate:
            mutate(req)
        delivered = self.send_request(req, self.path(role, peer))
        tag = peer_d.local_tag if peer_d else None
        contact = [("Contact", self.contact(peer))] if method in ("INVITE", "REFER", "UPDATE") and status < 300 \
            and peer_contact else []
        return self.respond(delivered, self.path(role, peer), status, reason, tag, [*contact, *answer_extra], answer,
                            resend=resend)


def _change_body(proxy: str, fwd: SipMessage) -> None:
    if proxy == "S-CSCF" and fwd.body:
        fwd.body = fwd.body.replace(b"s=-", b"s=x")


def _no_via_hook(proxy: str, fwd: SipMessage) -> str | None:
    return "no-via" if proxy == "S-CSCF" else None


def _cseq_hook(proxy: str, fwd: SipMessage) -> None:
    if proxy == "S-CSCF":
        num, method = fwd.get("CSeq").split()  # type: ignore[union-attr]
        fwd.set("CSeq", f"{int(num) + 1} {method}")


def build(proxies: bool = True, mutations: tuple[str, ...] = (), ident: Ident | None = None,
          transport: str = "UDP", t0: float = 1_700_000_000.0) -> list[tuple[float, bytes]]:
    """The whole A.2.1 flow as (time, Ethernet frame) pairs in time order."""
    g = Gen(proxies, mutations, ident, transport, t0)
    _flow(g)
    if g.wire is not None:
        g.wire.flush()
    g.pkts.sort(key=lambda p: p[0])
    return g.pkts


def build_many(n: int, spacing: float = 0.05, proxies: bool = True, transport: str = "UDP",
               t0: float = 1_700_000_000.0,
               mutations: dict[int, tuple[str, ...]] | None = None) -> list[tuple[float, bytes]]:
    """n A.2.1 instances interleaved in time (instance k starts k * spacing seconds in);
    `mutations` = {k: names} mutates instance k only (k from 0)."""
    pkts: list[tuple[float, bytes]] = []
    for k in range(n):
        pkts += build(proxies, (mutations or {}).get(k, ()), Ident.nth(k), transport, t0 + k * spacing)
    pkts.sort(key=lambda p: p[0])
    return pkts


def _flow(g: Gen) -> None:  # noqa: C901 - the flow reads top to bottom like the spec text
    m = g.mut
    ue = {r: g.ip(r) for r in ("UE-1", "UE-2", "UE-3")}
    media = {"UE-1": (ue["UE-1"], 20000), "UE-2": (ue["UE-2"], 30000), "UE-3": (ue["UE-3"], 31000)}
    ssrc = itertools.count(0x1000)
    sfx = g.id.sfx
    conf_uri, factory = g.id.conf, f"sip:conference-factory@{g.host('CS')}"
    mrfp_ip = g.ip("MRFP")
    if "retransmissions" in m:
        g.resend = lambda msg: [0.5, 1.5] if msg.method == "REFER" and "d13" in (msg.get("Call-ID") or "") \
            and len(msg.get_all("Via")) == 1 else []
    if "retransmission-first-lost" in m:
        g.lose = _first_lost(g)

    # Step 1: UE-1 calls UE-2 (D12).
    d12, d21 = g.invite_dialog("UE-1", "UE-2", g.uri("UE-2"), f"d12{sfx}@{ue['UE-1']}",
                               sdp("ue1", 100, 1, *media["UE-1"]), sdp("ue2", 200, 1, *media["UE-2"]),
                               g.contact("UE-2"))
    talk = g.t
    g.t += 0.3
    g.rtp(media["UE-1"], media["UE-2"], talk, g.t, next(ssrc))
    if "no-rtp-ue2" not in m:
        g.rtp(media["UE-2"], media["UE-1"], talk, g.t, next(ssrc))
    ue2_ssrc = next(ssrc)

    # Step 2: UE-1 holds UE-2 (re-INVITE sendonly / recvonly).
    hold_dir = "inactive" if "hold-inactive" in m else "sendonly"
    hold_ip = "0.0.0.0" if "hold-c-zero" in m else media["UE-1"][0]
    answer_dir = "inactive" if hold_dir == "inactive" else ("sendrecv" if "hold-answer-sendrecv" in m else "recvonly")
    version = 1 if "hold-version-not-incremented" in m else 2
    offer = sdp("ue1", 100, version, hold_ip, media["UE-1"][1], hold_dir)
    g.transaction("UE-1", "UE-2", d12, "INVITE", body=offer, peer_d=d21,
                  answer=sdp("ue2", 200, 2, *media["UE-2"], answer_dir))
    hold_at = g.t
    d12.remote_target = g.contact("UE-2").strip("<>")
    g.tick(0.01)
    g.send_request(g.in_dialog("UE-1", d12, "ACK", contact=False, ack_of=d12.local_seq), g.path("UE-1", "UE-2"))
    if "ue2-rtp-during-hold" in m:
        g.rtp(media["UE-2"], media["UE-1"], hold_at + 0.1, hold_at + 0.3, ue2_ssrc)
    if hold_dir == "sendonly" and "hold-c-zero" not in m:
        g.rtp(media["UE-1"], media["UE-2"], hold_at, hold_at + 0.1, next(ssrc))

    # Steps 3~11: UE-1 calls UE-3 (D13).
    g.t += 0.2
    ue1_d13 = (ue["UE-1"], 20002)
    d13, d31 = g.invite_dialog("UE-1", "UE-3", g.uri("UE-3"), f"d13{sfx}@{ue['UE-1']}",
                               sdp("ue1", 110, 1, *ue1_d13), sdp("ue3", 300, 1, *media["UE-3"]),
                               g.contact("UE-3"))
    start = g.t
    g.t += 0.2
    g.rtp(ue1_d13, media["UE-3"], start, g.t, next(ssrc))
    g.rtp(media["UE-3"], ue1_d13, start, g.t, next(ssrc))

    # Steps 12~21: UE-1 creates the conference at the CS (D1C); the CS answers with the MRFP's address.
    ue1_conf, mrfp1 = (ue["UE-1"], 20004), (mrfp_ip, g.id.mrfp_ports[0])
    focus = f"<{conf_uri}>;isfocus"
    conf_extra = [("Allow-Events", "conference")] if "no-allow-events" not in m else []
    ruri = conf_uri if "conf-invite-to-conf-uri" in m else factory
    call_id = f"d12{sfx}@{ue['UE-1']}" if "conf-invite-reuses-callid" in m else f"d1c{sfx}@{ue['UE-1']}"
    d1c, dc1 = g.invite_dialog("UE-1", "CS", ruri, call_id, sdp("ue1", 120, 1, *ue1_conf),
                               sdp("cs", 400, 1, *mrfp1), f"<{conf_uri}>" if "conf-200-no-isfocus" in m else focus,
                               answer_extra=conf_extra)
    start = g.t
    g.t += 0.2
    g.rtp(ue1_conf, mrfp1, start, start + 0.6, next(ssrc))
    g.rtp(mrfp1, ue1_conf, start, start + 0.6, next(ssrc))

    if "refer-to-focus-replaces" in m:
        _refer_to_focus(g, d1c, dc1, {"UE-2": (d12, d21), "UE-3": (d13, d31)}, focus)
        return

    # Steps 22~52 (UE-2) and 53~83 (UE-3), the UE-3 branch interleaved to show they are parallel.
    def refer(target: str, d1x: Dlg, dx1: Dlg, refer_to: str) -> tuple[Dlg, Dlg]:
        hs = [("Refer-To", refer_to)]
        if "two-refer-to" in m and target == "UE-2":
            hs.append(("Refer-To", f"<{conf_uri}>"))
        if "refer-to-addr-spec" in m and target == "UE-3":
            hs = [("Refer-To", f"{conf_uri};method=INVITE")]
        hs.append(("Referred-By", f"<{g.uri('UE-1')}>"))
        if "refer-two-referred-by" in m and target == "UE-2":
            hs.append(("Referred-By", f"<{g.uri('UE-1')}>"))
        if "refer-two-contacts" in m and target == "UE-3":
            hs.append(("Contact", f"<sip:other@{g.host('UE-1')}>"))
        if "refer-sub-false" in m and target == "UE-2":
            hs += [("Refer-Sub", "false"), ("Supported", "norefersub")]
        if "refer-cseq-gap" in m and target == "UE-2":
            d1x.local_seq += 1
        status, reason = (603, "Declined") if "refer-rejected" in m and target == "UE-2" else (
            (200, "OK") if "refer-answered-200" in m else (202, "Accepted"))
        answer_extra = [("Refer-Sub", "false")] if "refer-sub-false" in m and target == "UE-2" else []
        if "refer-out-of-dialog" in m:
            sub_tag = g.tag(f"{target}-sub")
            sub1 = Dlg(f"refer-{target}{sfx}@{ue['UE-1']}", g.tag("ue1-sub"), None, g.uri("UE-1"),
                       g.uri(target), 1, g.uri(target), [r.strip() for r in g.preload("UE-1")])
            req = g.request("UE-1", "REFER", g.uri(target),
                            [("Route", r) for r in sub1.route_set]
                            + [("From", f"<{sub1.local_uri}>;tag={sub1.local_tag}"), ("To", f"<{g.uri(target)}>"),
                               ("Call-ID", sub1.call_id), ("CSeq", "1 REFER"), ("Contact", g.contact("UE-1"))]
                            + hs)
            delivered = g.send_request(req, g.path("UE-1", target), record_route=True)
            g.respond(delivered, g.path("UE-1", target), status, reason, sub_tag,
                      [("Contact", g.contact(target))], rr=True)
            subx = Dlg(sub1.call_id, sub_tag, sub1.local_tag, g.uri(target), g.uri("UE-1"), 0,
                       g.contact("UE-1").strip("<>"), delivered.get_all("Record-Route"))
            return sub1, subx
        if "notify-before-202" in m and target == "UE-2":
            # UE-2 NOTIFYs before its 202 reaches UE-1: emit REFER, then NOTIFY, then the 202.
            req = g.in_dialog("UE-1", d1x, "REFER", hs)
            delivered = g.send_request(req, g.path("UE-1", target))
            notify(target, dx1, d1x.local_seq, "active;expires=60", "SIP/2.0 100 Trying")
            g.respond(delivered, g.path("UE-1", target), status, reason, dx1.local_tag,
                      [("Contact", g.contact(target))])
            g._early_notify = True
            return d1x, dx1

        def refer_mutate(req: SipMessage) -> None:
            if "refer-to-aor-not-target" in m and target == "UE-3":
                req.uri = g.uri("UE-3")
            if "proxy-changes-referred-by" in m and target == "UE-3":
                g.forward_hooks.append(_referred_by_hook)

        resend = (0.51, 1.51) if "retransmissions" in m and target == "UE-3" else ()
        g.transaction("UE-1", target, d1x, "REFER", hs, peer_d=dx1, status=status, reason=reason,
                      answer_extra=answer_extra, mutate=refer_mutate, resend=resend,
                      peer_contact=not ("refer-202-no-contact" in m and target == "UE-3"))
        g.forward_hooks = [h for h in g.forward_hooks if h is not _referred_by_hook]
        return d1x, dx1

    def notify(who: str, d: Dlg, refer_cseq: int, state: str, frag: str,
               mutate: Callable[[SipMessage], None] | None = None) -> None:
        trying = "100" in frag
        extra = [] if ("notify-no-event" in m and who == "UE-2" and trying) else [
            ("Event", f"refer;id={99 if 'notify-wrong-event-id' in m and who == 'UE-2' and not trying else refer_cseq}")]
        if not ("notify-no-subscription-state" in m and who == "UE-3" and trying):
            extra.append(("Subscription-State", "active" if "notify-active-no-expires" in m and who == "UE-2"
                          and trying else state))
        ctype = "text/plain" if ("notify-wrong-content-type" in m and who == "UE-2" and trying) \
            else "message/sipfrag;version=2.0"
        g._ue3_notify = who == "UE-3" and trying
        if "notify-cseq-not-increasing" in m and who == "UE-3" and not trying:
            d.local_seq -= 1
        req = g.in_dialog(who, d, "NOTIFY", extra, (frag + "\r\n").encode(), ctype)
        g._ue3_notify = False
        if mutate:
            mutate(req)
        if "proxy-changes-subscription-state" in m and who == "UE-3" and trying:
            g.forward_hooks.append(_subscription_state_hook)
        delivered = g.send_request(req, g.path(who, "UE-1"))
        g.forward_hooks = [h for h in g.forward_hooks if h is not _subscription_state_hook]
        if "proxy-changes-to-tag" in m and who == "UE-3" and not trying:
            g.response_hooks.append(_to_tag_hook)
        if "notify-200-bad-content-length" in m and who == "UE-3" and trying:
            g.uas_hooks.append(_bad_length)
        g.respond(delivered, g.path(who, "UE-1"), 200, "OK", None)
        g.response_hooks, g.uas_hooks = [], []

    def join(who: str, refer_to_uri: str, referred_by: str | None, media_at: tuple[str, int],
             mrfp_at: tuple[str, int], reject: tuple[int, str] | None = None) -> None:
        extra = [("Referred-By", referred_by)] if referred_by and not (
            "join-no-referred-by" in m and who == "UE-2") else []
        ruri = g.uri("CS") if ("join-wrong-uri" in m and who == "UE-3") else refer_to_uri
        if "join-keeps-method-param" in m and who == "UE-2":
            ruri += ";method=INVITE"
        contact = f"<{conf_uri}>" if ("join-200-no-isfocus" in m and who == "UE-3") else focus
        sess = {"UE-2": 210, "UE-3": 310}[who]
        g.invite_dialog(who, "CS", ruri, f"join-{who}{sfx}@{g.ip(who)}", sdp(who.lower(), sess, 1, *media_at),
                        sdp("cs", 400 + sess, 1, *mrfp_at), contact, extra, conf_extra, reject=reject)
        if reject is not None:
            return
        start = g.t
        # Media faults of the join legs; "mrfp-mix-silent-to-ue3": the UEs send their tones, the MRFP
        # gives UE-2 UE-3's tone but UE-3 only silence.
        tones = "mrfp-mix-silent-to-ue3" in m
        if "join-rtp-to-stale-address" in m and who == "UE-3":  # also to UE-1's old D13 address
            g.rtp(media_at, ue1_d13, start + 0.2, start + 0.4, next(ssrc))
        g.rtp(media_at, mrfp_at, start, start + 0.4, next(ssrc), tone={"UE-2": 650.0, "UE-3": 1000.0}[who] if tones
              else None, pt=8 if ("join-wrong-payload-type" in m and who == "UE-2") else 0)
        if not ("no-rtp-from-mrfp" in m and who == "UE-2"):
            g.rtp(mrfp_at, media_at, start, start + 0.4, next(ssrc),
                  tone=({"UE-2": 1000.0, "UE-3": 0.0}[who] if tones else None))

    branches = {}
    for target, d1x, dx1, rt in (("UE-2", d12, d21, f"<{conf_uri};method=INVITE>"), ("UE-3", d13, d31,
                                                                                     f"<{conf_uri}>")):
        if "refer-to-factory" in m:
            rt = f"<{factory}>"
        g.t += 0.05
        sub1, subx = refer(target, d1x, dx1, rt)
        refer_cseq = sub1.local_seq
        if "refer-rejected" in m and target == "UE-2":
            branches[target] = None
            continue
        branches[target] = (sub1, subx, refer_cseq, rt)
    ref_by = f"<{g.uri('UE-1')}>"
    failed = {"join-rejected-486": (486, "Busy Here"), "join-rejected-503-bye": (503, "Service Unavailable"),
              "join-declined-603": (603, "Declined")}
    ue2_fail = next((v for k, v in failed.items() if k in m), None)
    mrfp_ports = g.id.mrfp_ports
    for target, media_at, mrfp_at in (("UE-2", (ue["UE-2"], 30002), (mrfp_ip, mrfp_ports[1])),
                                      ("UE-3", (ue["UE-3"], 31002), (mrfp_ip, mrfp_ports[2]))):
        if branches[target] is None:
            continue
        sub1, subx, refer_cseq, rt = branches[target]
        rt_uri = rt.strip("<>").split(";")[0]
        fail = ue2_fail if target == "UE-2" else None
        subscribed = not ("refer-sub-false" in m and target == "UE-2")
        first_notify = subscribed and not (target == "UE-2" and getattr(g, "_early_notify", False))
        by = "<sip:ue1@changed.invalid>" if "proxy-changes-referred-by" in m and target == "UE-3" else ref_by
        if "join-before-notify" in m and target == "UE-2":
            join(target, rt_uri, by, media_at, mrfp_at)
        if first_notify:
            notify(target, subx, refer_cseq, "active;expires=60", "SIP/2.0 100 Trying")
        if "intermediate-notify" in m and target == "UE-3":
            notify(target, subx, refer_cseq, "active;expires=60", "SIP/2.0 180 Ringing")
        if not ("join-before-notify" in m and target == "UE-2") and not (fail and fail[0] == 603):
            join(target, rt_uri, by, media_at, mrfp_at, reject=fail)
        if not subscribed:
            continue
        state = "active;expires=60" if ("final-notify-active" in m and target == "UE-3") \
            else "terminated;reason=noresource"
        if "final-notify-wrong-reason" in m and target == "UE-2" or (fail and fail[0] == 603):
            state = "terminated;reason=rejected" if fail else "terminated;reason=timeout"
        frag = f"SIP/2.0 {fail[0]} {fail[1]}" if fail else "SIP/2.0 200 OK"
        if "notify-bad-sipfrag" in m and target == "UE-3":
            frag = "SIP/2.0"

        def wrong_tag(req: SipMessage) -> None:
            req.set("To", req.get("To").split(";tag=")[0] + ";tag=bogus")

        notify(target, subx, refer_cseq, state, frag,
               wrong_tag if ("notify-wrong-to-tag" in m and target == "UE-2") else None)

    # Steps 47~52 and 78~83: UE-1 ends D12 and D13.
    def from_hook(proxy: str, fwd: SipMessage) -> None:
        if fwd.method == "BYE" and proxy == "S-CSCF" and "d12" in (fwd.get("Call-ID") or ""):
            fwd.set("From", f"<{g.uri('UE-1')}>;tag=changed")

    def bye_d12(req: SipMessage) -> None:
        if "no-max-forwards" in m:
            req.remove("Max-Forwards")
        if "bye-cseq-lower" in m:
            req.set("CSeq", "1 BYE")

    def bye_d13(req: SipMessage) -> None:
        if "bye-no-route" in m:
            req.remove("Route")
        if "branch-reused" in m:
            req.set("Via", g.via("UE-1", d13_refer_branch))
        if "proxy-two-vias" in m:
            g.forward_hooks.append(_two_vias_hook)
        if "proxy-changes-callid" in m:
            g.response_hooks.append(_callid_hook)

    d13_refer_branch = f"z9hG4bKue1{sfx}reused"
    if "proxy-changes-from" in m:
        g.forward_hooks.append(from_hook)
    g.t += 0.05
    if ue2_fail is None or "join-rejected-503-bye" in m:
        status = (481, "Call/Transaction Does Not Exist") if "bye-rejected" in m else (200, "OK")
        g.transaction("UE-1", "UE-2", d12, "BYE", peer_d=d21, mutate=bye_d12, status=status[0], reason=status[1])
    g.forward_hooks.clear()
    if "bye-missing" not in m:
        if "branch-reused" in m:
            # UE-1 first uses the branch for an OPTIONS to UE-3, then (wrongly) again for the BYE.
            opt = g.in_dialog("UE-1", d13, "OPTIONS")
            opt.set("Via", g.via("UE-1", d13_refer_branch))
            got = g.send_request(opt, g.path("UE-1", "UE-3"))
            g.respond(got, g.path("UE-1", "UE-3"), 200, "OK", d31.local_tag)
        g.transaction("UE-1", "UE-3", d13, "BYE", peer_d=d31, mutate=bye_d13)
    g.forward_hooks.clear()
    g.response_hooks = []


def _first_lost(g: Gen) -> Callable[[str, str, SipMessage], bool]:
    """Lose the first copy of UE-3's first NOTIFY on S-CSCF -> P-CSCF (UE-3 resends it along the
    whole path) and of the 202 to UE-2's REFER on P-CSCF -> UE-1 (UE-1 resends the REFER, the
    P-CSCF answers it again)."""
    done: set[tuple[str, str, str]] = set()

    def lose(src: str, dst: str, msg: SipMessage) -> bool:
        key = (str(msg.method or msg.status), src, dst)
        call_id = msg.get("Call-ID") or ""
        hit = (msg.method == "NOTIFY" and (src, dst) == ("S-CSCF", "P-CSCF") and b"100 Trying" in msg.body
               and "d13" in call_id) or (msg.status == 202 and (src, dst) == ("P-CSCF", "UE-1") and "d12" in call_id)
        if hit and key not in done:
            done.add(key)
            return True
        return False
    del g
    return lose


def _bad_length(rsp: SipMessage) -> None:
    rsp.set("Content-Length", "3")   # no body follows


def _referred_by_hook(proxy: str, fwd: SipMessage) -> None:
    if proxy == "S-CSCF" and fwd.method == "REFER":
        fwd.set("Referred-By", "<sip:ue1@changed.invalid>")


def _subscription_state_hook(proxy: str, fwd: SipMessage) -> None:
    if proxy == "S-CSCF" and fwd.method == "NOTIFY":
        fwd.set("Subscription-State", "pending;expires=3600")


def _to_tag_hook(proxy: str, rsp: SipMessage) -> None:
    if proxy == "P-CSCF":
        rsp.set("To", (rsp.get("To") or "").split(";tag=")[0] + ";tag=rewritten")


def _callid_hook(proxy: str, rsp: SipMessage) -> None:
    if proxy == "S-CSCF" and rsp.cseq[1] == "BYE":
        rsp.set("Call-ID", "rewritten-" + (rsp.get("Call-ID") or ""))


def _two_vias_hook(proxy: str, fwd: SipMessage) -> str | None:
    return "two-vias" if proxy == "P-CSCF" and fwd.method == "BYE" else None


def _refer_to_focus(g: Gen, d1c: Dlg, dc1: Dlg, held: dict[str, tuple[Dlg, Dlg]], focus: str) -> None:
    """Checklist §8d (RFC 4579 §5.10): UE-1 REFERs the focus, in D1C, with Refer-To = the participant
    plus Replaces naming its dialog with UE-1; the CS INVITEs the participant with Replaces, the
    participant BYEs the old dialog, and the CS NOTIFYs UE-1."""
    for who, (d1x, dx1) in held.items():
        g.t += 0.05
        replaces = f"{d1x.call_id}%3Bto-tag%3D{d1x.local_tag}%3Bfrom-tag%3D{d1x.remote_tag}"
        rt = f"<{g.uri(who)}?Replaces={replaces}>"
        g.transaction("UE-1", "CS", d1c, "REFER", [("Refer-To", rt), ("Referred-By", f"<{g.uri('UE-1')}>")],
                      peer_d=dc1, status=202, reason="Accepted")
        _, dxc = g.invite_dialog("CS", who, g.uri(who), f"cs-{who}{g.id.sfx}@{g.ip('CS')}",
                                 sdp("cs", 500, 1, g.ip("MRFP"), 41000), sdp(who.lower(), 600, 1, g.ip(who), 32000),
                                 g.contact(who), extra=[("Replaces", replaces.replace("%3B", ";").replace("%3D", "="))])
        del dxc
        g.transaction(who, "UE-1", dx1, "BYE", peer_d=d1x)
        for state, frag in (("active;expires=60", "SIP/2.0 100 Trying"), ("terminated;reason=noresource",
                                                                          "SIP/2.0 200 OK")):
            req = g.in_dialog("CS", dc1, "NOTIFY", [("Event", f"refer;id={d1c.local_seq}"),
                                                    ("Subscription-State", state)],
                              (frag + "\r\n").encode(), "message/sipfrag")
            delivered = g.send_request(req, g.path("CS", "UE-1"))
            g.respond(delivered, g.path("CS", "UE-1"), 200, "OK", None)
    del focus


def write_packets(path: Path | str, pkts: list[tuple[float, bytes]], fmt: str | None = None) -> Path:
    """pcap (Ethernet link type) or pcapng, chosen by `fmt` or the file suffix."""
    path = Path(path)
    fmt = fmt or ("pcapng" if path.suffix == ".pcapng" else "pcap")
    if fmt == "pcapng":
        write_pcapng(path, (Packet(data, 1, round(t * 1e6) * 1000, len(data)) for t, data in pkts))
        return path
    with PcapWriter(str(path), linktype=1, sync=False) as out:
        out.write_header(None)
        for t, data in pkts:
            sec = int(t)
            out.write_packet(data, sec=sec, usec=int(round((t - sec) * 1e6)))
    return path


def write(path: Path | str, proxies: bool = True, mutations: tuple[str, ...] = (), transport: str = "UDP",
          ipv6: bool = False, fmt: str | None = None, port: int = PORT) -> Path:
    """Write one instance (pcap unless `fmt` or the suffix says pcapng)."""
    ident = Ident.single(ipv6, port)
    return write_packets(path, build(proxies, mutations, ident, transport), fmt)


def write_many(path: Path | str, n: int, fmt: str | None = None, transport: str = "UDP",
               mutations: dict[int, tuple[str, ...]] | None = None, spacing: float = 0.05) -> Path:
    """Write n interleaved instances (see build_many)."""
    return write_packets(path, build_many(n, spacing, transport=transport, mutations=mutations), fmt)


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    write(out / "a21-golden.pcap")
    write(out / "a21-direct.pcap", proxies=False)
    write(out / "a21-tcp.pcapng", transport="TCP")
    write(out / "a21-ipv6.pcap", ipv6=True)
    write_many(out / "a21-x10.pcap", 10)
    for name in [*MUTATIONS, *VARIANTS]:
        write(out / f"a21-{name}.pcap", mutations=(name,))
    print(f"wrote {5 + len(MUTATIONS) + len(VARIANTS)} captures to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
