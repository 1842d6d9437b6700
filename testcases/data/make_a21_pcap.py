"""Write a hand-made, RFC-correct A.2.1 capture (and mutated variants) with scapy.

Nothing here comes from the harness agents: the SIP text is written out by hand per RFC 3261/3515/
4579 and pushed through a tiny proxy model (add Via, decrement Max-Forwards, pop own Route,
Record-Route on dialog creation; responses lose the top Via per hop). Topology
UE-1 - P-CSCF - S-CSCF - {CS, UE-2, UE-3}, and UE-2/UE-3 - S-CSCF - CS; `proxies=False` gives the
direct topology. Addresses are 10.21.0.0/24, written only into a file.

    python -m testcases.data.make_a21_pcap OUTDIR       # golden + every mutation
"""

from __future__ import annotations

import itertools
import socket
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.rtp import RTP
from scapy.packet import Raw
from scapy.utils import PcapWriter

from harness.sip.message import SipMessage

NODES = {
    "UE-1": "10.21.0.10", "UE-2": "10.21.0.11", "UE-3": "10.21.0.12",
    "P-CSCF": "10.21.0.20", "S-CSCF": "10.21.0.30", "CS": "10.21.0.40",
}
MRFP = "10.21.0.50"
PORT = 5060
FACTORY = f"sip:conference-factory@{NODES['CS']}"
CONF = f"sip:conf-7@{NODES['CS']}"

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
    "refer-two-contacts": ("53~58", "REF-3"),
    "refer-two-referred-by": ("22~27", "REF-4"),
    "refer-rejected": ("22~27", "REF-5"),
    "refer-to-addr-spec": ("53~58", "REF-6"),
    "notify-wrong-to-tag": ("41~46", "NOT-5"),
    "join-wrong-uri": ("65~66", "JOIN-1"),
    "no-rtp-from-mrfp": ("36", "MEDIA-2"),
    "no-rtp-ue2": ("1", "MEDIA-1"),
    "bye-missing": ("78~83", "BYE-1"),
    "invite-no-contact": ("3~11", "CALL-1"),
    "response-no-to-tag": ("1", "G4"),
    "no-max-forwards": ("47~52", "G1"),
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
}


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


_TEMPLATE = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.2", ttl=64)
                  / UDP(sport=1, dport=2))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    """Ethernet/IPv4/UDP frame around `payload`: Scapy's header bytes, lengths and checksums filled in."""
    eth, ip = _TEMPLATE[:14], bytearray(_TEMPLATE[14:34])
    ip[2:4] = struct.pack("!H", 20 + 8 + len(payload))
    ip[10:12] = b"\0\0"
    ip[12:16] = socket.inet_aton(src)
    ip[16:20] = socket.inet_aton(dst)
    ip[10:12] = struct.pack("!H", _checksum(bytes(ip)))
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, len(udp) + len(payload))
    csum = _checksum(bytes(pseudo) + udp + payload) or 0xFFFF
    return eth + bytes(ip) + udp[:6] + struct.pack("!H", csum) + payload


def sdp(user: str, sess: int, version: int, ip: str, port: int, direction: str = "sendrecv") -> bytes:
    return (f"v=0\r\no={user} {sess} {version} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={direction}\r\n").encode()


class Gen:
    """Builds the packet list; `self.t` is the capture clock."""

    def __init__(self, proxies: bool = True, mutations: tuple[str, ...] = ()) -> None:
        self.proxies = proxies
        self.mut = set(mutations)
        unknown = self.mut - MUTATIONS.keys()
        if unknown:
            raise ValueError(f"unknown mutations {sorted(unknown)}")
        self.t = 1_700_000_000.0
        self.pkts: list[tuple[float, bytes]] = []
        self.ids = itertools.count(1)
        self.forward_hooks: list = []

    # --- wire ---------------------------------------------------------------------------------
    def tick(self, dt: float = 0.003) -> None:
        self.t += dt

    def emit(self, src: str, dst: str, data: bytes, sport: int = PORT, dport: int = PORT) -> None:
        self.pkts.append((self.t, frame(NODES.get(src, src), sport, NODES.get(dst, dst), dport, data)))
        self.tick()

    def rtp(self, src: tuple[str, int], dst: tuple[str, int], start: float, end: float, ssrc: int) -> None:
        """One PCMU stream, 20 ms apart. The first frame is built by Scapy's RTP layer; the rest
        patch its sequence/timestamp (building every packet with Scapy is ~50x slower)."""
        first = bytes(RTP(version=2, payload_type=0, sequence=0, timestamp=0, sourcesync=ssrc) / Raw(b"\xd5" * 160))
        n = 0
        t = start
        while t < end:
            payload = first[:2] + struct.pack("!HI", n, n * 160) + first[8:]
            self.pkts.append((t, frame(src[0], src[1], dst[0], dst[1], payload)))
            n += 1
            t += 0.02

    def branch(self, who: str) -> str:
        if who == "UE-3" and "branch-no-cookie" in self.mut and getattr(self, "_ue3_notify", False):
            return f"ue3x{next(self.ids)}"
        return f"z9hG4bK{who.lower().replace('-', '')}{next(self.ids)}"

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
        return [f"<sip:{NODES[h]};lr>" for h in hops]

    def send_request(self, msg: SipMessage, path: list[str], record_route: bool = False) -> SipMessage:
        """Put the request on each hop of `path`, proxies doing their RFC 3261 §16.6 part."""
        self.emit(path[0], path[1], bytes(msg))
        cur = msg
        for i, proxy in enumerate(path[1:-1]):
            fwd = cur.copy()
            routes = fwd.get_all("Route")
            if routes and NODES[proxy] in routes[0]:
                fwd.pop_first("Route")
            if record_route:
                fwd.add("Record-Route", f"<sip:{NODES[proxy]};lr>", first=True)
            mf = int(fwd.get("Max-Forwards") or 70)
            skip = ("proxy-no-mf-decrement" in self.mut and proxy == "P-CSCF" and msg.method == "REFER"
                    and "UE-3" in path)
            if fwd.get("Max-Forwards") is not None:
                fwd.set("Max-Forwards", str(mf if skip else mf - 1))
            for hook in self.forward_hooks:
                hook(proxy, fwd)
            fwd.add("Via", f"SIP/2.0/UDP {NODES[proxy]}:{PORT};branch={self.branch(proxy)}", first=True)
            self.emit(proxy, path[i + 2], bytes(fwd))
            cur = fwd
        return cur

    def respond(self, req: SipMessage, path: list[str], status: int, reason: str, to_tag: str | None,
                extra: list[tuple[str, str]] = (), body: bytes = b"", rr: bool = False) -> SipMessage:
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
        back = list(reversed(path))
        self.emit(back[0], back[1], bytes(msg))
        cur = msg
        for i, proxy in enumerate(back[1:-1]):
            cur = cur.copy()
            cur.pop_first("Via")
            self.emit(proxy, back[i + 2], bytes(cur))
        return cur

    # --- UA helpers ---------------------------------------------------------------------------
    def uri(self, role: str) -> str:
        return f"sip:{role.lower().replace('-', '')}@{NODES[role]}"

    def contact(self, role: str) -> str:
        return f"<sip:{role.lower().replace('-', '')}@{NODES[role]}:{PORT}>"

    def request(self, role: str, method: str, ruri: str, headers: list[tuple[str, str]],
                body: bytes = b"", ctype: str | None = None) -> SipMessage:
        hs = [("Via", f"SIP/2.0/UDP {NODES[role]}:{PORT};branch={self.branch(role)}"), ("Max-Forwards", "70")]
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

    def invite_dialog(self, caller: str, callee: str, ruri: str, call_id: str, offer: bytes, answer: bytes,
                      callee_contact: str, extra: list[tuple[str, str]] = (),
                      answer_extra: list[tuple[str, str]] = (), cseq: int = 1) -> tuple[Dlg, Dlg]:
        """INVITE / 200 / ACK creating a dialog; returns (caller's view, callee's view)."""
        ftag, ttag = f"{caller.lower()}-{next(self.ids)}", f"{callee.lower()}-{next(self.ids)}"
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
        delivered = self.send_request(invite, path, record_route=True)
        if "provisional-responses" in self.mut:
            self.respond(delivered, path[-2:] if self.proxies else path, 100, "Trying", None)
            self.respond(delivered, path, 180, "Ringing", ttag, [("Contact", callee_contact)], rr=True)
        to_tag = None if "response-no-to-tag" in self.mut and callee == "UE-2" else ttag
        ok = self.respond(delivered, path, 200, "OK", to_tag, [("Contact", callee_contact), *answer_extra],
                          answer, rr=True)
        rrs = ok.get_all("Record-Route")
        uac = Dlg(call_id, ftag, ttag, self.uri(caller), remote_uri, cseq,
                  callee_contact.split(">")[0].lstrip("<"), list(reversed(rrs)))
        uas = Dlg(call_id, ttag, ftag, remote_uri, self.uri(caller), 0,
                  self.contact(caller).strip("<>"), delivered.get_all("Record-Route"))
        self.tick(0.01)
        ack = self.in_dialog(caller, uac, "ACK", contact=False, ack_of=cseq)
        if "conf-ack-same-branch" in self.mut and callee == "CS" and caller == "UE-1":
            ack.set("Via", invite.get("Via") or "")
        self.send_request(ack, path)
        return uac, uas

    def transaction(self, role: str, peer: str, d: Dlg, method: str, extra: list[tuple[str, str]] = (),
                    body: bytes = b"", ctype: str | None = None, status: int = 200, reason: str = "OK",
                    peer_d: Dlg | None = None, answer_extra: list[tuple[str, str]] = (),
                    answer: bytes = b"", mutate=None) -> SipMessage:
        req = self.in_dialog(role, d, method, extra, body, ctype, contact=method != "BYE")
        if mutate:
            mutate(req)
        delivered = self.send_request(req, self.path(role, peer))
        tag = peer_d.local_tag if peer_d else None
        contact = [("Contact", self.contact(peer))] if method in ("INVITE", "REFER", "UPDATE") and status < 300 else []
        return self.respond(delivered, self.path(role, peer), status, reason, tag, [*contact, *answer_extra], answer)


def build(proxies: bool = True, mutations: tuple[str, ...] = ()) -> list[tuple[float, bytes]]:
    """The whole A.2.1 flow as (time, Ethernet frame) pairs in time order."""
    g = Gen(proxies, mutations)
    m = g.mut
    media = {"UE-1": (NODES["UE-1"], 20000), "UE-2": (NODES["UE-2"], 30000), "UE-3": (NODES["UE-3"], 31000)}
    ssrc = itertools.count(0x1000)

    # Step 1: UE-1 calls UE-2 (D12).
    d12, d21 = g.invite_dialog("UE-1", "UE-2", g.uri("UE-2"), "d12@10.21.0.10",
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
    offer = sdp("ue1", 100, 2, hold_ip, media["UE-1"][1], hold_dir)
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
    ue1_d13 = (NODES["UE-1"], 20002)
    d13, d31 = g.invite_dialog("UE-1", "UE-3", g.uri("UE-3"), "d13@10.21.0.10",
                               sdp("ue1", 110, 1, *ue1_d13), sdp("ue3", 300, 1, *media["UE-3"]),
                               g.contact("UE-3"))
    start = g.t
    g.t += 0.2
    g.rtp(ue1_d13, media["UE-3"], start, g.t, next(ssrc))
    g.rtp(media["UE-3"], ue1_d13, start, g.t, next(ssrc))

    # Steps 12~21: UE-1 creates the conference at the CS (D1C); the CS answers with the MRFP's address.
    ue1_conf, mrfp1 = (NODES["UE-1"], 20004), (MRFP, 40000)
    focus = f"<{CONF}>;isfocus"
    conf_extra = [("Allow-Events", "conference")] if "no-allow-events" not in m else []
    ruri = CONF if "conf-invite-to-conf-uri" in m else FACTORY
    call_id = "d12@10.21.0.10" if "conf-invite-reuses-callid" in m else "d1c@10.21.0.10"
    d1c, _ = g.invite_dialog("UE-1", "CS", ruri, call_id, sdp("ue1", 120, 1, *ue1_conf),
                             sdp("cs", 400, 1, *mrfp1), f"<{CONF}>" if "conf-200-no-isfocus" in m else focus,
                             answer_extra=conf_extra)
    start = g.t
    g.t += 0.2
    g.rtp(ue1_conf, mrfp1, start, start + 0.6, next(ssrc))
    g.rtp(mrfp1, ue1_conf, start, start + 0.6, next(ssrc))

    # Steps 22~52 (UE-2) and 53~83 (UE-3), the UE-3 branch interleaved to show they are parallel.
    def refer(target: str, d1x: Dlg, dx1: Dlg, refer_to: str) -> tuple[Dlg, Dlg]:
        hs = [("Refer-To", refer_to)]
        if "two-refer-to" in m and target == "UE-2":
            hs.append(("Refer-To", f"<{CONF}>"))
        if "refer-to-addr-spec" in m and target == "UE-3":
            hs = [("Refer-To", f"{CONF};method=INVITE")]
        hs.append(("Referred-By", f"<{g.uri('UE-1')}>"))
        if "refer-two-referred-by" in m and target == "UE-2":
            hs.append(("Referred-By", f"<{g.uri('UE-1')}>"))
        if "refer-two-contacts" in m and target == "UE-3":
            hs.append(("Contact", f"<sip:other@{NODES['UE-1']}>"))
        if "refer-cseq-gap" in m and target == "UE-2":
            d1x.local_seq += 1
        status, reason = (603, "Declined") if "refer-rejected" in m and target == "UE-2" else (
            (200, "OK") if "refer-answered-200" in m else (202, "Accepted"))
        if "refer-out-of-dialog" in m:
            sub_tag = f"{target.lower()}-sub{next(g.ids)}"
            sub1 = Dlg(f"refer-{target}@10.21.0.10", f"ue1-sub{next(g.ids)}", None, g.uri("UE-1"),
                       g.uri(target), 1, g.uri(target), [r.strip() for r in g.preload("UE-1")])
            hs += [("Route", r) for r in sub1.route_set]
            req = g.request("UE-1", "REFER", g.uri(target),
                            [("Route", r) for r in sub1.route_set]
                            + [("From", f"<{sub1.local_uri}>;tag={sub1.local_tag}"), ("To", f"<{g.uri(target)}>"),
                               ("Call-ID", sub1.call_id), ("CSeq", "1 REFER"), ("Contact", g.contact("UE-1"))]
                            + [h for h in hs if h[0] != "Route"])
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
        g.transaction("UE-1", target, d1x, "REFER", hs, peer_d=dx1, status=status, reason=reason)
        return d1x, dx1

    def notify(who: str, d: Dlg, refer_cseq: int, state: str, frag: str, mutate=None) -> None:
        extra = [] if ("notify-no-event" in m and who == "UE-2" and "trying" in frag.lower()) else [
            ("Event", f"refer;id={refer_cseq}")]
        if not ("notify-no-subscription-state" in m and who == "UE-3" and "100" in frag):
            extra.append(("Subscription-State", state))
        ctype = "text/plain" if ("notify-wrong-content-type" in m and who == "UE-2" and "100" in frag) \
            else "message/sipfrag;version=2.0"
        g._ue3_notify = who == "UE-3" and "100" in frag
        req = g.in_dialog(who, d, "NOTIFY", extra, (frag + "\r\n").encode(), ctype)
        g._ue3_notify = False
        if mutate:
            mutate(req)
        delivered = g.send_request(req, g.path(who, "UE-1"))
        g.respond(delivered, g.path(who, "UE-1"), 200, "OK", None)

    def join(who: str, refer_to_uri: str, referred_by: str | None, media_at: tuple[str, int],
             mrfp_at: tuple[str, int]) -> None:
        extra = [("Referred-By", referred_by)] if referred_by and not (
            "join-no-referred-by" in m and who == "UE-2") else []
        ruri = g.uri("CS") if ("join-wrong-uri" in m and who == "UE-3") else refer_to_uri
        contact = f"<{CONF}>" if ("join-200-no-isfocus" in m and who == "UE-3") else focus
        sess = {"UE-2": 210, "UE-3": 310}[who]
        g.invite_dialog(who, "CS", ruri, f"join-{who}@{NODES[who]}", sdp(who.lower(), sess, 1, *media_at),
                        sdp("cs", 400 + sess, 1, *mrfp_at), contact, extra, conf_extra)
        start = g.t
        g.rtp(media_at, mrfp_at, start, start + 0.4, next(ssrc))
        if not ("no-rtp-from-mrfp" in m and who == "UE-2"):
            g.rtp(mrfp_at, media_at, start, start + 0.4, next(ssrc))

    branches = {}
    for target, d1x, dx1, rt in (("UE-2", d12, d21, f"<{CONF};method=INVITE>"), ("UE-3", d13, d31, f"<{CONF}>")):
        if "refer-to-factory" in m:
            rt = f"<{FACTORY}>"
        g.t += 0.05
        sub1, subx = refer(target, d1x, dx1, rt)
        refer_cseq = sub1.local_seq
        if "refer-rejected" in m and target == "UE-2":
            branches[target] = None
            continue
        branches[target] = (sub1, subx, refer_cseq, rt)
    ref_by = f"<{g.uri('UE-1')}>"
    for target, media_at, mrfp_at in (("UE-2", (NODES["UE-2"], 30002), (MRFP, 40002)),
                                      ("UE-3", (NODES["UE-3"], 31002), (MRFP, 40004))):
        if branches[target] is None:
            continue
        sub1, subx, refer_cseq, rt = branches[target]
        rt_uri = rt.strip("<>").split(";")[0]
        first_notify = not (target == "UE-2" and getattr(g, "_early_notify", False))
        if "join-before-notify" in m and target == "UE-2":
            join(target, rt_uri, ref_by, media_at, mrfp_at)
        if first_notify:
            notify(target, subx, refer_cseq, "active;expires=60", "SIP/2.0 100 Trying")
        if "intermediate-notify" in m and target == "UE-3":
            notify(target, subx, refer_cseq, "active;expires=60", "SIP/2.0 180 Ringing")
        if not ("join-before-notify" in m and target == "UE-2"):
            join(target, rt_uri, ref_by, media_at, mrfp_at)
        state = "active;expires=60" if ("final-notify-active" in m and target == "UE-3") \
            else "terminated;reason=noresource"

        def wrong_tag(req: SipMessage) -> None:
            req.set("To", req.get("To").split(";tag=")[0] + ";tag=bogus")

        notify(target, subx, refer_cseq, state, "SIP/2.0 200 OK",
               wrong_tag if ("notify-wrong-to-tag" in m and target == "UE-2") else None)

    # Steps 47~52 and 78~83: UE-1 ends D12 and D13.
    def from_hook(proxy: str, fwd: SipMessage) -> None:
        if fwd.method == "BYE" and proxy == "S-CSCF" and "d12@" in (fwd.get("Call-ID") or ""):
            fwd.set("From", f"<{g.uri('UE-1')}>;tag=changed")

    def drop_mf(req: SipMessage) -> None:
        if "d12@" in (req.get("Call-ID") or ""):
            req.remove("Max-Forwards")

    if "proxy-changes-from" in m:
        g.forward_hooks.append(from_hook)
    g.t += 0.05
    g.transaction("UE-1", "UE-2", d12, "BYE", peer_d=d21, mutate=drop_mf if "no-max-forwards" in m else None)
    g.forward_hooks.clear()
    if "bye-missing" not in m:
        g.transaction("UE-1", "UE-3", d13, "BYE", peer_d=d31)
    g.pkts.sort(key=lambda p: p[0])
    return g.pkts


def write(path: Path | str, proxies: bool = True, mutations: tuple[str, ...] = ()) -> Path:
    """Write the capture with Scapy's pcap writer (Ethernet link type)."""
    path = Path(path)
    with PcapWriter(str(path), linktype=1, sync=False) as out:
        out.write_header(None)
        for t, data in build(proxies, mutations):
            sec = int(t)
            out.write_packet(data, sec=sec, usec=int(round((t - sec) * 1e6)))
    return path


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    write(out / "a21-golden.pcap")
    write(out / "a21-direct.pcap", proxies=False)
    for name in MUTATIONS:
        write(out / f"a21-{name}.pcap", mutations=(name,))
    print(f"wrote {2 + len(MUTATIONS)} captures to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
