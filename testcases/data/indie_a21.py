"""An independent generator of TS 24.605 A.2.1 captures, written from the spec text, the checklist
and RFCs 3261/3515/4579/3264/3892/3420/3550 only (it shares no code with make_a21_pcap.py).

A `Cfg` describes the topology (proxies on UE-1's side, proxies in front of UE-2/UE-3/CS, ports,
IPv4 or IPv6, UDP or TCP), the header style of each role (compact forms, odd case, whitespace,
folding, comma-joined Via) and behaviour variants (200/202 to REFER, NOTIFY before the 2xx, 100/180/
183, PRACK, intermediate NOTIFYs, hold style, join order, BYE order, re-INVITE by the CS, UDP
retransmissions, 401/407 challenge). `edits` mutates chosen hop copies to make faults.

Every message is built the way a UA or a record-routing, stateful proxy builds it (RFC 3261 §8,
§12, §16): the UAC's Via, Max-Forwards 70 and preloaded Route; each proxy pushes one Via, takes
one off Max-Forwards, pops its own Route and Record-Routes dialog-creating requests; responses
retrace the Vias; in-dialog requests use the route set and remote target of the dialog.
"""

from __future__ import annotations

import copy
import itertools
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

T1 = 0.5
MAC, MAC2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
COMPACT = {"call-id": "i", "from": "f", "to": "t", "via": "v", "contact": "m", "content-length": "l",
           "content-type": "c", "supported": "k", "event": "o", "refer-to": "r", "referred-by": "b",
           "allow-events": "u", "subject": "s"}


@dataclass
class Node:
    name: str
    ip: str
    port: int = 5060
    user: str | None = None
    gruu: bool = False
    omit_default: bool = False

    @property
    def host(self) -> str:
        return f"[{self.ip}]" if ":" in self.ip else self.ip

    @property
    def hostport(self) -> str:
        if self.omit_default and self.port == 5060:
            return self.host
        return f"{self.host}:{self.port}"

    @property
    def contact(self) -> str:
        if self.gruu and self.user:
            return f"sip:{self.user}@home.example;gr=urn:uuid:{self.user:0<8.8}-7dec-11d0-a765-00a0c91e6bf6"
        return f"sip:{self.user}@{self.hostport}" if self.user else f"sip:{self.hostport}"


@dataclass
class Style:
    """How a role writes header names (RFC 3261 §7.3.1: names are case-insensitive, compact forms
    equivalent, whitespace around the colon and line folding allowed)."""

    compact: bool = False
    case: str = ""            # "", "lower", "upper"
    ws: bool = False          # "Name  :   value"
    fold: bool = False        # fold From/To/Contact/Subject over two lines
    join_via: bool = False    # all Via values on one line, comma-separated
    cl_last: bool = True
    join_routes: bool = False # Route / Record-Route values on one line
    via_lws: bool = False     # "SIP / 2.0 / UDP"

    def name(self, canonical: str) -> str:
        low = canonical.lower()
        if self.compact and low in COMPACT:
            return COMPACT[low]
        if self.case == "lower":
            return low
        if self.case == "upper":
            return canonical.upper()
        return canonical


@dataclass
class Msg:
    start: str
    headers: list[list[str]]
    body: bytes = b""
    style: Style = field(default_factory=Style)
    label: str = ""

    # ---- header access (canonical names) ----
    def get(self, name: str) -> str | None:
        for h in self.headers:
            if h[0].lower() == name.lower():
                return h[1]
        return None

    def all(self, name: str) -> list[str]:
        return [h[1] for h in self.headers if h[0].lower() == name.lower()]

    def set(self, name: str, value: str) -> None:
        for h in self.headers:
            if h[0].lower() == name.lower():
                h[1] = value
                return
        self.headers.append([name, value])

    def remove(self, name: str) -> None:
        self.headers = [h for h in self.headers if h[0].lower() != name.lower()]

    def insert_top(self, name: str, value: str) -> None:
        """Before the first header of that name (or first of all when there is none)."""
        for i, h in enumerate(self.headers):
            if h[0].lower() == name.lower():
                self.headers.insert(i, [name, value])
                return
        self.headers.insert(0, [name, value])

    def pop_top(self, name: str) -> str | None:
        for i, h in enumerate(self.headers):
            if h[0].lower() == name.lower():
                return self.headers.pop(i)[1]
        return None

    @property
    def is_request(self) -> bool:
        return not self.start.startswith("SIP/2.0")

    @property
    def method(self) -> str:
        return self.start.split()[0] if self.is_request else (self.get("CSeq") or " ").split()[1]

    def render(self) -> bytes:
        st = self.style
        sep = "  :   " if st.ws else ": "
        lines = [self.start]
        hdrs = [h for h in self.headers if h[0].lower() != "content-length"]
        vias = [h[1] for h in hdrs if h[0].lower() == "via"]
        if st.via_lws:
            vias = [v.replace("SIP/2.0/", "SIP / 2.0 / ", 1) for v in vias]
        done_via = False
        joined = {n: [h[1] for h in hdrs if h[0].lower() == n] for n in ("route", "record-route")}
        done: set[str] = set()
        for name, value in hdrs:
            if st.join_routes and name.lower() in joined:
                if name.lower() not in done:
                    lines.append(f"{st.name(name)}{sep}{', '.join(joined[name.lower()])}")
                    done.add(name.lower())
                continue
            if name.lower() == "via" and st.via_lws and not st.join_via:
                value = value.replace("SIP/2.0/", "SIP / 2.0 / ", 1)
            if name.lower() == "via" and st.join_via:
                if not done_via:
                    lines.append(f"{st.name('Via')}{sep}{', '.join(vias)}")
                    done_via = True
                continue
            if st.fold and name.lower() in ("from", "to", "contact", "subject") and "<" in value:
                head, tail = value.split("<", 1)
                value = (head.rstrip() or '""') + "\r\n   <" + tail
            lines.append(f"{st.name(name)}{sep}{value}")
        if self.get("Content-Length") != "omit":
            lines.append(f"{st.name('Content-Length')}{sep}{self.get('Content-Length') or len(self.body)}"
                         if self.get("Content-Length") else f"{st.name('Content-Length')}{sep}{len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


Edit = Callable[[Msg, int], None]


@dataclass
class Cfg:
    ipv6: bool = False
    transport: str = "UDP"
    sip_port: int = 5060                 # every element's SIP port unless set per node below
    ports: dict[str, int] = field(default_factory=dict)   # role -> SIP port
    ue1_proxies: tuple[str, ...] = ("P-CSCF", "S-CSCF")   # UE-1 -> ... -> {UE-2, UE-3, CS}
    far_proxies: tuple[str, ...] = ("S-CSCF",)            # UE-2/UE-3 -> ... -> CS
    mrfp_on_cs_ip: bool = False
    styles: dict[str, Style] = field(default_factory=dict)   # role -> style of what it originates
    proxy_join_via: bool = False         # proxies put their Via on the same line as the previous one
    refer_code: int = 202
    notify_before_2xx: bool = False
    provisional: tuple[str, ...] = ()    # "100", "180", "183" on INVITE hops (183 with early SDP)
    prack: bool = False                  # 180 with Require: 100rel, PRACK/200
    mid_notify: bool = False             # NOTIFY 180 Ringing between first and final
    hold: str = "sendonly"               # sendonly | inactive | zero (c=0.0.0.0 + sendonly)
    hold_answer: str = ""                # direction of UE-2's hold answer (default: the RFC 3264 one)
    join_order: str = "ue2-first"        # ue2-first | ue3-first | interleaved
    bye_order: str = "ue2-first"         # ue2-first | ue3-first
    cs_reinvite: bool = False            # CS re-INVITEs UE-1's conference leg after the joins
    cs_first_cseq: int = 1               # the CS's first CSeq in that dialog (any value, RFC 3261 §8.1.1.5)
    retransmit: tuple[str, ...] = ()     # labels whose first-hop copy is sent twice (UDP, T1 apart)
    challenge: int = 0                   # 401/407 on the INVITE to the factory
    refer_to: str = "<{conf}>"           # Refer-To value; {conf} = the conference URI
    isfocus_in_uri: bool = False         # Contact <sip:conf@cs;isfocus> instead of <...>;isfocus
    sub_state_final: str = "terminated;reason=noresource"
    sub_state_first: str = "active;expires=60"
    event: str = "refer"
    event_id: bool = False               # Event: refer;id=<REFER CSeq>
    sipfrag_crlf: bool = True
    sipfrag_type: str = "message/sipfrag"
    notify_gap: float = 1.2
    edits: dict[str, Edit] = field(default_factory=dict)   # label -> edit(msg, hop)
    rtp: bool = True
    ue2_rtp_on_hold: bool = False
    tcp_ephemeral: bool = True
    rport: bool = False                  # UACs ask for rport; each proxy stamps received/rport (RFC 3581)
    pai: bool = False                    # proxies add P-Asserted-Identity to dialog-creating requests
    rr_proxies: tuple[str, ...] | None = None   # proxies that Record-Route (default: all)
    d13_media_until_bye: bool = False    # UE-1 and UE-3 keep talking on D13 until its BYE
    ue_sends_bye: bool = False           # UE-2/UE-3 end D12/D13 themselves after joining (checklist §8i)
    session_direction: bool = False      # direction attribute at session level, before m=
    domain_uris: bool = False            # factory and conference URIs by domain name, not IP
    retarget: bool = False               # the last proxy turns an AoR Request-URI into the contact
    refer_challenge: bool = False        # the first proxy answers UE-1's REFER to UE-2 with 407
    sipfrag_headers: bool = False        # final sipfrag carries header fields after the status line
    link: str = "ether"                  # "ether" or "sll" (Linux cooked, what `-i any` records)
    duplicate_frames: bool = False       # every frame twice, 20 us apart (a capture on two interfaces)
    frag_mtu: int = 0                    # IPv4-fragment UDP datagrams longer than this (0: never)
    capture_at: tuple[str, ...] = ()     # keep only frames to/from these roles (a capture on one node)
    refer_out_of_dialog: bool = False    # REFER to the AoR in a new dialog with Target-Dialog (checklist §8a)
    gruu: bool = False                   # the UEs' Contacts are public GRUUs (RFC 5627); the S-CSCF retargets
    hold_method: str = "INVITE"          # INVITE or UPDATE (TS 24.410 A.1)
    only_final_notify: bool = False      # a single NOTIFY, terminated with the final status (RFC 3515 §2.4.5)
    blind_bye: bool = False              # UE-1 BYEs D12/D13 right after the 2xx to REFER (RFC 5589 §6)
    display_comma: bool = False          # display names with a comma: "Doe, Alice" <sip:...>
    instance_params: bool = False        # UE Contacts with +sip.instance="<urn:uuid:...>" and an ICSI tag
    param_lws: bool = False              # "refer ; id = 5", "terminated ; reason = noresource"
    join_routes: bool = False            # Route and Record-Route values comma-joined on one line
    via_lws: bool = False                # "SIP / 2.0 / UDP" (LWS around the slashes, RFC 3261 §25.1)
    omit_port_5060: bool = False         # sent-by, Contact and Route without the default port
    codec: str = "PCMU"                  # PCMU (PT 0) or AMR-WB (dynamic PT 96, octet-align)
    dtmf: bool = False                   # a telephone-event packet on every leg (PT 101, RFC 4733)
    rtcp: bool = False                   # an RTCP receiver report on port + 1 with every burst (RFC 3550)
    rtp_src_offset: int = 0              # UEs send RTP from SDP port + offset (asymmetric RTP)
    register: bool = False               # the UEs REGISTER first (401 then 200) at the S-CSCF
    conf_subscribe: bool = False         # UE-1 SUBSCRIBEs to Event: conference after 16~21 (RFC 4579 §3.4)
    session_refresh: bool = False        # UPDATE session refreshes (RFC 4028) inside D12 by UE-1 and D13 by UE-3
    tel_uris: bool = False               # public identities are tel URIs (RFC 3966); the S-CSCF retargets
    offerless_conf: bool = False         # INVITE to the factory without SDP: offer in 200, answer in ACK
    tcp_split: bool = True               # cut some messages over several segments
    tcp_coalesce: bool = True            # several messages in one segment
    # --- failure paths and flow variants of checklist §8 ---
    join_reject: dict[str, str] = field(default_factory=dict)   # role -> status the CS answers its join INVITE with
    bye_after_failed_join: bool = False  # UE-1 BYEs D12/D13 even though the join failed (§8g: WARN)
    refer_reject: dict[str, str] = field(default_factory=dict)  # role -> status that UE answers UE-1's REFER with
    refer_sub: str = ""                  # Refer-Sub value in the REFER (RFC 4488), with Supported: norefersub
    refer_sub_2xx: str = ""              # Refer-Sub value in the 2xx to the REFER ("false": no subscription)
    no_notify: bool = False              # the referee sends no NOTIFY at all (whatever the 2xx said)
    refer_to_focus: bool = False         # §8d: UE-1 REFERs the focus, Refer-To = participant ?Replaces=D12/D13
    noise: bool = False                  # unrelated SIP: OPTIONS keepalives, a REGISTER, a MESSAGE, another call
    # --- several instances in one capture (see write_many) ---
    prefix: str = ""                     # goes into every Call-ID, tag and branch (distinct instances)
    ue_hosts: tuple[int, int, int] = (1, 2, 3)   # last address byte of UE-1, UE-2, UE-3
    user_suffix: str = ""                # appended to the UEs' user names (alice7@..., other subscribers)
    conf_user: str = "conf-7f3a"         # user part of the conference URI the CS hands out
    mrfp_port_offset: int = 0            # added to the MRFP's ports
    t0: float = 1000.0                   # capture time of the first message
    truncate: int = 0                    # drop the last N frames of the capture (a capture cut short)


# --------------------------------------------------------------------------------------------------


@dataclass
class Dlg:
    call_id: str
    local: str       # "From" value for requests from this side (with tag)
    remote: str      # "To" value (with tag)
    cseq: int
    route: list[Node]
    target: Node
    target_uri: str
    me: Node


class Gen:
    def __init__(self, cfg: Cfg) -> None:
        self.cfg = cfg
        v6 = cfg.ipv6

        def ip(n: int) -> str:
            return f"2001:db8:5::{n:x}" if v6 else f"10.77.0.{n}"

        def port(role: str) -> int:
            return cfg.ports.get(role, cfg.sip_port)

        self.nodes = {
            "UE-1": Node("UE-1", ip(cfg.ue_hosts[0]), port("UE-1"), "alice" + cfg.user_suffix),
            "UE-2": Node("UE-2", ip(cfg.ue_hosts[1]), port("UE-2"), "bob" + cfg.user_suffix),
            "UE-3": Node("UE-3", ip(cfg.ue_hosts[2]), port("UE-3"), "carol" + cfg.user_suffix),
            "UE-4": Node("UE-4", ip(200), port("UE-4"), "dave"),
            "UE-5": Node("UE-5", ip(201), port("UE-5"), "erin"),
            "CS": Node("CS", ip(4), port("CS")),
            "P-CSCF": Node("P-CSCF", ip(11), port("P-CSCF")),
            "S-CSCF": Node("S-CSCF", ip(12), port("S-CSCF")),
        }
        if cfg.gruu:
            for r in ("UE-1", "UE-2", "UE-3"):
                self.nodes[r].gruu = True
        for node in self.nodes.values():
            node.omit_default = cfg.omit_port_5060
        self.mrfp_ip = ip(4) if cfg.mrfp_on_cs_ip else ip(5)
        self.aor = {r: f"sip:{self.nodes[r].user}@home.example" for r in ("UE-1", "UE-2", "UE-3", "UE-4", "UE-5")}
        if cfg.tel_uris:
            self.aor = {"UE-1": "tel:+4930111100001", "UE-2": "tel:+4930111100002", "UE-3": "tel:+4930111100003"}
        self.factory = f"sip:conference-factory@{self.nodes['CS'].host}"
        self.conf_uri = f"sip:{cfg.conf_user}@{self.nodes['CS'].hostport}"
        if cfg.domain_uris:
            self.factory = "sip:conference-factory@home.example"
            self.conf_uri = f"sip:{cfg.conf_user}@conf.home.example"
        self.t = cfg.t0
        self.frames: list[tuple[float, bytes]] = []
        self.ids = itertools.count(1)
        self.sdp_ver: dict[str, int] = {}
        self.sdp_sess: dict[str, int] = {}
        self.tcp: dict[tuple[str, str], dict] = {}
        self.pending: list[tuple[Node, Node, bytes, float]] = []
        self.ssrc = itertools.count(0x1000)
        self.seq: dict[tuple, list[int]] = {}
        self.last_copies: list[Msg] = []

    # ---------------- helpers ----------------
    def uid(self, prefix: str) -> str:
        return f"{prefix}{self.cfg.prefix}{next(self.ids):04x}a9"

    def tick(self, dt: float = 0.004) -> float:
        self.t += dt
        return self.t

    def style(self, role: str) -> Style:
        st = copy.copy(self.cfg.styles.get(role, Style()))
        st.join_routes = st.join_routes or self.cfg.join_routes
        st.via_lws = st.via_lws or self.cfg.via_lws
        return st

    def proxies(self, names: tuple[str, ...]) -> list[Node]:
        return [self.nodes[n] for n in names]

    def contact_params(self, node: Node) -> str:
        if not self.cfg.instance_params or not node.name.startswith("UE"):
            return ""
        return (f';+sip.instance="<urn:uuid:{node.user:0<8.8}-7dec-11d0-a765-00a0c91e6bf6>"'
                ';+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel";expires=600')

    def via(self, node: Node) -> str:
        rport = ";rport" if self.cfg.rport else ""
        return f"SIP/2.0/{self.cfg.transport} {node.hostport};branch={self.uid('z9hG4bK')}{rport}"

    # ---------------- wire ----------------
    def _l3(self, src: Node | str, dst: Node | str) -> object:
        s = src.ip if isinstance(src, Node) else src
        d = dst.ip if isinstance(dst, Node) else dst
        if ":" in s:
            return Ether(src=MAC, dst=MAC2) / IPv6(src=s, dst=d)
        return Ether(src=MAC, dst=MAC2) / IP(src=s, dst=d)

    def emit(self, src: Node, dst: Node, data: bytes, t: float, label: str = "", hop: int = -1) -> None:
        if self.cfg.transport == "UDP":
            pkt = self._l3(src, dst) / UDP(sport=src.port, dport=dst.port) / Raw(data)
            self.frames.append((t, bytes(pkt)))
        else:
            self._tcp_write(src, dst, data, t, label, hop)

    def _tcp_conn(self, src: Node, dst: Node, t: float) -> tuple[dict, bool]:
        key = tuple(sorted((src.name, dst.name)))
        c = self.tcp.get(key)
        if c is None:
            cport = 40000 + len(self.tcp) * 7 if self.cfg.tcp_ephemeral else src.port
            c = {"client": src, "server": dst, "cport": cport, "seq": {src.name: 1000, dst.name: 5000}, "n": 0}
            self.tcp[key] = c
            self._seg(c, src, "S", b"", t - 0.0003, syn=True)
            self._seg(c, dst, "SA", b"", t - 0.0002, syn=True)
            self._seg(c, src, "A", b"", t - 0.0001)
        return c, c["client"].name == src.name

    def _seg(self, c: dict, src: Node, flags: str, data: bytes, t: float, syn: bool = False) -> None:
        client = c["client"]
        dst = c["server"] if src.name == client.name else client
        sport = c["cport"] if src.name == client.name else src.port
        dport = dst.port if src.name == client.name else c["cport"]
        seq = c["seq"][src.name]
        ack = c["seq"][dst.name] if "A" in flags else 0
        if flags == "SA":
            ack = c["seq"][dst.name] + 1
        pkt = self._l3(src, dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=65535)
        if data:
            pkt = pkt / Raw(data)
        self.frames.append((t, bytes(pkt)))
        c["seq"][src.name] = seq + len(data) + (1 if syn else 0)

    def _tcp_write(self, src: Node, dst: Node, data: bytes, t: float, label: str = "", hop: int = -1) -> None:
        c, _ = self._tcp_conn(src, dst, t)
        c["n"] += 1
        held = c.get("held")
        if held and held[0] == src.name and hop == 0 and self.cfg.tcp_coalesce:
            # this message goes out in the same segment as the previous one from this sender
            _, frame, seq, first, t0 = held
            c["held"] = None
            c["seq"][src.name] = seq
            # By identity: a held segment of another connection may have been replaced meanwhile,
            # which moves the frames after it (joins interleaved: UE-2's and UE-3's 2xx to REFER).
            del self.frames[next(i for i, f in enumerate(self.frames) if f is frame)]
            self._seg(c, src, "PA", first + data, t0)
            return
        if self.cfg.tcp_coalesce and hop == 0 and label.startswith("2xx-refer"):
            seq = c["seq"][src.name]
            self._seg(c, src, "PA", data, t)
            c["held"] = (src.name, self.frames[-1], seq, data, t)
            return
        flags = "PA"
        if self.cfg.tcp_split and c["n"] % 3 == 0 and len(data) > 60:
            a, b = len(data) // 3, 2 * len(data) // 3
            for i, part in enumerate((data[:a], data[a:b], data[b:])):
                self._seg(c, src, flags, part, t + i * 0.0001)
        else:
            self._seg(c, src, flags, data, t)

    def send_hop(self, src: Node, dst: Node, msg: Msg, hop: int) -> None:
        edit = self.cfg.edits.get(msg.label)
        if edit is not None:
            edit(msg, hop)
        t = self.tick()
        data = msg.render()
        self.emit(src, dst, data, t, msg.label, hop)
        if msg.label in self.cfg.retransmit and self.cfg.transport == "UDP" and (hop == 0 or not msg.is_request):
            # a request is retransmitted by its UAC (a stateful proxy absorbs the copy); a 2xx to INVITE
            # is retransmitted by the UAS and forwarded by every proxy (RFC 3261 §13.3.1.4, §16.7)
            self.frames.append((t + T1, self.frames[-1][1]))

    # ---------------- SIP primitives ----------------
    def request(self, method: str, ruri: str, sender: str, frm: str, to: str, call_id: str, cseq: int,
                route: list[Node], extra: list[tuple[str, str]] = (), body: bytes = b"", ctype: str = "",
                contact: bool = True, label: str = "") -> Msg:
        me = self.nodes[sender]
        h = [["Via", self.via(me)], ["Max-Forwards", "70"]]
        h += [["Route", f"<sip:{n.hostport};lr>"] for n in route]
        h += [["From", frm], ["To", to], ["Call-ID", call_id], ["CSeq", f"{cseq} {method}"]]
        if contact:
            h.append(["Contact", f"<{me.contact}>{self.contact_params(me)}"])
        h += [list(x) for x in extra]
        if body:
            h.append(["Content-Type", ctype])
        return Msg(f"{method} {ruri} SIP/2.0", h, body, self.style(sender), label or method)

    def forward(self, msg: Msg, sender: Node, path: list[Node], dest: Node, rr: bool) -> Msg:
        """Send `msg` from `sender` through `path` (proxies) to `dest`; return the copy `dest` got."""
        cur = msg
        src = sender
        hop = 0
        self.last_copies = [msg]
        for proxy in path:
            self.send_hop(src, proxy, cur, hop)
            cur = copy.deepcopy(cur)
            self.last_copies.append(cur)
            if self.cfg.rport:
                for h in cur.headers:
                    if h[0].lower() == "via":
                        h[1] = h[1].replace(";rport", f";received={src.ip};rport={src.port}", 1)
                        break
            if rr and self.cfg.pai and cur.get("P-Asserted-Identity") is None:
                cur.headers.append(["P-Asserted-Identity", (cur.get("From") or "").split(";tag=")[0]])
            top = cur.get("Route")
            if top is not None and f"<sip:{proxy.hostport};" in top:
                cur.pop_top("Route")
            v = self.via(proxy)
            cur.insert_top("Via", v)
            cur.set("Max-Forwards", str(int(cur.get("Max-Forwards") or "70") - 1))
            if rr and (self.cfg.rr_proxies is None or proxy.name in self.cfg.rr_proxies):
                cur.insert_top("Record-Route", f"<sip:{proxy.hostport};lr>") if cur.get("Record-Route") \
                    else cur.headers.insert(1, ["Record-Route", f"<sip:{proxy.hostport};lr>"])
            if self.cfg.proxy_join_via:
                cur.style = copy.copy(cur.style)
                cur.style.join_via = True
            src = proxy
            hop += 1
        ruri = cur.start.split()[1]
        if (self.cfg.retarget or self.cfg.gruu or self.cfg.tel_uris) and path and dest.user and (
                "@home.example" in ruri or ruri.startswith("tel:")):
            # the S-CSCF retargets the AoR/GRUU to the registered contact (RFC 3261 §16.5, §16.6 step 2)
            method, _, version = cur.start.split()
            cur.start = f"{method} sip:{dest.user}@{dest.hostport} {version}"
        self.send_hop(src, dest, cur, hop)
        return copy.deepcopy(cur)

    def respond(self, rx: Msg, uas: str, status: str, path_back: list[Node], uac: Node,
                to_tag: str | None, extra: list[tuple[str, str]] = (), body: bytes = b"", ctype: str = "",
                contact: bool = False, rr: bool = False, label: str = "") -> Msg:
        """A response built by `uas` from the request copy it received, sent back over the Vias."""
        me = self.nodes[uas]
        h = [["Via", v] for v in rx.all("Via")]
        if rr:
            h += [["Record-Route", v] for v in rx.all("Record-Route")]
        to = rx.get("To") or ""
        if to_tag and ";tag=" not in to:
            to = f"{to};tag={to_tag}"
        h += [["From", rx.get("From") or ""], ["To", to], ["Call-ID", rx.get("Call-ID") or ""],
              ["CSeq", rx.get("CSeq") or ""]]
        if contact:
            h.append(["Contact", f"<{me.contact}>{self.contact_params(me)}"])
        h += [list(x) for x in extra]
        if body:
            h.append(["Content-Type", ctype])
        resp = Msg(f"SIP/2.0 {status}", h, body, self.style(uas), label or f"{status.split()[0]}-{rx.label}")
        cur = resp
        src = me
        hop = 0
        for proxy in path_back:
            self.send_hop(src, proxy, cur, hop)
            cur = copy.deepcopy(cur)
            cur.pop_top("Via")
            src = proxy
            hop += 1
        self.send_hop(src, uac, cur, hop)
        return copy.deepcopy(cur)

    # ---------------- SDP / RTP ----------------
    def sdp(self, who: str, addr: str, port: int, direction: str = "sendrecv", bump: bool = True,
            zero: bool = False) -> bytes:
        sess = self.sdp_sess.setdefault(who, 20000 + len(self.sdp_sess) * 111)
        if who in self.sdp_ver and bump:
            self.sdp_ver[who] += 1
        ver = self.sdp_ver.setdefault(who, 1)
        fam = "IP6" if ":" in addr else "IP4"
        c = ("0.0.0.0" if fam == "IP4" else "::") if zero else addr
        session = f"a={direction}\r\n" if self.cfg.session_direction else ""
        media = "" if self.cfg.session_direction else f"a={direction}\r\n"
        return ("v=0\r\n"
                f"o={who.lower().replace('-', '')} {sess} {ver} IN {fam} {addr}\r\n"
                "s=-\r\n"
                f"c=IN {'IP4' if zero else fam} {c}\r\n"
                "t=0 0\r\n" + session
                + (f"m=audio {port} RTP/AVP 96 101\r\n"
                   "b=AS:38\r\n"
                   "a=rtpmap:96 AMR-WB/16000/1\r\n"
                   "a=fmtp:96 mode-change-capability=2;max-red=0\r\n"
                   "a=rtpmap:101 telephone-event/16000\r\n"
                   "a=fmtp:101 0-15\r\n"
                   "a=ptime:20\r\n"
                   "a=maxptime:240\r\n" if self.cfg.codec == "AMR-WB" else
                   f"m=audio {port} RTP/AVP 0 101\r\n"
                   "a=rtpmap:0 PCMU/8000\r\n"
                   "a=rtpmap:101 telephone-event/8000\r\n") + media).encode()

    def rtp(self, a: tuple[str, int], b: tuple[str, int], start: float, n: int = 6, pt: int | None = None) -> None:
        cfg = self.cfg
        if not cfg.rtp:
            return
        amr = cfg.codec == "AMR-WB"
        pt = (96 if amr else 0) if pt is None else pt
        key = (a, b)
        if key not in self.seq:
            self.seq[key] = [next(self.ssrc), 100, 8000]
        st = self.seq[key]
        sport = a[1] + cfg.rtp_src_offset if a[0] != self.mrfp_ip else a[1]
        payload = (b"\xf0\x44" + b"\x5a" * 60) if amr else b"\xff" * 160
        for i in range(n):
            hdr = struct.pack("!BBHII", 0x80, pt, st[1] & 0xFFFF, st[2] & 0xFFFFFFFF, st[0])
            st[1] += 1
            st[2] += 320 if amr else 160
            pkt = self._l3(a[0], b[0]) / UDP(sport=sport, dport=b[1]) / Raw(hdr + payload)
            self.frames.append((start + i * 0.02, bytes(pkt)))
        if cfg.dtmf:
            hdr = struct.pack("!BBHII", 0x80, 0x80 | 101, st[1] & 0xFFFF, st[2] & 0xFFFFFFFF, st[0])
            st[1] += 1
            pkt = self._l3(a[0], b[0]) / UDP(sport=sport, dport=b[1]) / Raw(hdr + b"\x05\x8a\x03\x20")
            self.frames.append((start + n * 0.02, bytes(pkt)))
        if cfg.rtcp:
            rr = struct.pack("!BBHI", 0x80, 201, 1, st[0])   # RR, no report blocks
            pkt = self._l3(a[0], b[0]) / UDP(sport=sport + 1, dport=b[1] + 1) / Raw(rr)
            self.frames.append((start + n * 0.02 + 0.001, bytes(pkt)))

    def both_ways(self, a: tuple[str, int], b: tuple[str, int], start: float, n: int = 6) -> None:
        self.rtp(a, b, start, n)
        self.rtp(b, a, start + 0.001, n)

    # ---------------- write ----------------
    def write(self, path: Path) -> Path:
        cfg = self.cfg
        keep = {self.nodes[r].ip for r in cfg.capture_at}
        pkts = []
        frames = sorted(self.frames, key=lambda f: f[0])
        if cfg.truncate:
            frames = frames[:-cfg.truncate]
        for t, data in frames:
            p = Ether(data)
            l3 = p.payload
            if keep and l3.src not in keep and l3.dst not in keep:
                continue
            parts = [l3]
            if cfg.frag_mtu and IP in p and UDP in p and len(l3) > cfg.frag_mtu:
                parts = fragment(l3, fragsize=(cfg.frag_mtu - 20) // 8 * 8)
            for i, part in enumerate(parts):
                if cfg.link == "sll":
                    proto = 0x86DD if IPv6 in p else 0x0800
                    out = CookedLinux(pkttype=4, lladdrtype=1, lladdrlen=6, src=b"\x02\0\0\0\0\x01\0\0",
                                      proto=proto) / part
                else:
                    out = Ether(src=MAC, dst=MAC2) / part
                out.time = t + i * 1e-6
                pkts.append(out)
                if cfg.duplicate_frames:
                    twin = out.copy()
                    twin.time = out.time + 20e-6
                    pkts.append(twin)
        wrpcap(str(path), pkts)
        return path


# --------------------------------------------------------------------------------------------------
# The flow


def _sipfrag(cfg: Cfg, status: str) -> bytes:
    return (f"SIP/2.0 {status}" + ("\r\n" if cfg.sipfrag_crlf else "")).encode()


class Flow:
    def __init__(self, cfg: Cfg) -> None:
        self.cfg = cfg
        self.g = Gen(cfg)
        self.tags: dict[str, str] = {}
        self.media: dict[str, tuple[str, int]] = {}

    # -- helpers --
    def path(self, a: str, b: str) -> list[Node]:
        g, cfg = self.g, self.cfg
        if a == "UE-1":
            return g.proxies(cfg.ue1_proxies)
        if b == "UE-1":
            return list(reversed(g.proxies(cfg.ue1_proxies)))
        if b == "CS":
            return g.proxies(cfg.far_proxies)
        return list(reversed(g.proxies(cfg.far_proxies)))

    def name_addr(self, role: str, tag: str | None = None) -> str:
        disp = {"UE-1": '"Alice"', "UE-2": '"Bob"', "UE-3": '"Carol"'}.get(role, "")
        if self.cfg.display_comma and disp:
            disp = f'"Doe, {disp[1:-1]}"'
        uri = self.g.aor.get(role, self.g.factory)
        return f"{disp} <{uri}>".strip() + (f";tag={tag}" if tag else "")

    def invite(self, caller: str, callee: str, ruri: str, to: str, label: str, sdp_addr: tuple[str, int],
               callee_media: tuple[str, int] | None, call_id: str | None = None,
               extra: list[tuple[str, str]] = (), cseq: int = 1, from_tag: str | None = None,
               contact_params: str = "", callee_extra: list[tuple[str, str]] = (),
               challenge: int = 0) -> tuple[Dlg, Dlg]:
        """A dialog-creating INVITE/200/ACK between caller and callee; returns (caller dlg, callee dlg)."""
        g, cfg = self.g, self.cfg
        cnode, snode = g.nodes[caller], g.nodes[callee]
        path = self.path(caller, callee)
        back = list(reversed(path))
        call_id = call_id or f"{g.uid('cid')}@{cnode.host}"
        ftag = from_tag or g.uid("ft")
        frm = self.name_addr(caller, ftag)
        offerless = cfg.offerless_conf and label == "conf"
        offer = b"" if offerless else g.sdp(caller + label, *sdp_addr, "sendrecv", bump=False)
        ex = list(extra)
        if cfg.prack:
            ex.append(("Supported", "100rel"))
        if challenge:
            req = g.request("INVITE", ruri, caller, frm, to, call_id, cseq, path, ex, offer,
                            "application/sdp", label=label + "-unauth")
            hops = [cnode, *path, snode]
            if challenge == 407 and path:
                # the first proxy challenges (RFC 3261 §22.3): it answers without forwarding
                hops = hops[:2]
                g.send_hop(cnode, hops[1], req, 0)
                copies = [req]
            else:
                g.forward(req, cnode, path, snode, rr=True)
                copies = g.last_copies
            rtag = g.uid("ct")
            reason = {401: "Unauthorized", 407: "Proxy Authentication Required", 302: "Moved Temporarily"}[challenge]
            auth = {401: "WWW-Authenticate", 407: "Proxy-Authenticate", 302: "Contact"}[challenge]
            last = copies[-1]
            resp = Msg(f"SIP/2.0 {challenge} {reason}",
                       [["Via", v] for v in last.all("Via")] +
                       [["From", frm], ["To", f"{to};tag={rtag}"], ["Call-ID", call_id], ["CSeq", f"{cseq} INVITE"],
                        [auth, getattr(self, "_conf_contact", "") if challenge == 302 else
                         'Digest realm="home.example", nonce="abc123", algorithm=MD5, qop="auth"']],
                       b"", g.style(callee if len(hops) > 2 or not path else "P-CSCF"), f"{challenge}")
            for i in range(len(hops) - 1, 0, -1):
                # each stateful hop ACKs the non-2xx itself, with the INVITE's branch of that hop
                # (RFC 3261 §17.1.1.3), then forwards the response upstream without its Via
                g.send_hop(hops[i], hops[i - 1], resp, len(hops) - 1 - i)
                inv = copies[i - 1]
                ack = Msg(f"ACK {inv.start.split()[1]} SIP/2.0",
                          [["Via", inv.all("Via")[0]], ["Max-Forwards", "70"],
                           *[["Route", r] for r in inv.all("Route")],
                           ["From", frm], ["To", f"{to};tag={rtag}"], ["Call-ID", call_id], ["CSeq", f"{cseq} ACK"]],
                          b"", g.style(hops[i - 1].name), "ack-non2xx")
                g.send_hop(hops[i - 1], hops[i], ack, 0)
                resp = copy.deepcopy(resp)
                resp.pop_top("Via")
            cseq += 1
            if challenge == 302:
                # RFC 4579 §5.4: the focus redirects to the Conf-ID; UE-1 sends a new INVITE there
                # (same Call-ID, From and To, new branch, CSeq + 1: RFC 3261 §8.1.3.4)
                ruri = self.g.conf_uri
            else:
                hdr = "Authorization" if challenge == 401 else "Proxy-Authorization"
                ex.append((hdr, f'Digest username="alice", realm="home.example", nonce="abc123", uri="{ruri}", '
                                'response="0123456789abcdef0123456789abcdef", algorithm=MD5'))
            g.tick(0.05)
        req = g.request("INVITE", ruri, caller, frm, to, call_id, cseq, path, ex, offer, "application/sdp",
                        label=label)
        if contact_params:
            req.set("Contact", f"<{cnode.contact}>{contact_params}")
        rx = g.forward(req, cnode, path, snode, rr=True)
        ttag = g.uid("tt")
        if "100" in cfg.provisional:
            # hop-local 100 Trying from every stateful element that got the INVITE
            hops = [cnode, *path, snode]
            copies = g.last_copies
            for i in range(1, len(hops)):
                t100 = Msg("SIP/2.0 100 Trying", [["Via", v] for v in copies[i - 1].all("Via")] +
                           [["From", frm], ["To", to], ["Call-ID", call_id], ["CSeq", f"{cseq} INVITE"]],
                           b"", Style(), "100")
                g.send_hop(hops[i], hops[i - 1], t100, 0)
        if callee_media is not None:
            answer_body = g.sdp(callee + label, *callee_media, "sendrecv", bump=False)
        else:
            answer_body = b""
        if cfg.prack and callee != "CS":
            r180 = g.respond(rx, callee, "180 Ringing", back, cnode, ttag,
                             [("Require", "100rel"), ("RSeq", "1")], contact=True, rr=True, label="180")
            rr = r180.all("Record-Route")
            route = list(reversed([self._rr_node(v) for v in rr]))
            prack = g.request("PRACK", f"<{snode.contact}>"[1:-1], caller, frm, r180.get("To"), call_id,
                              cseq + 1, route, [("RAck", f"1 {cseq} INVITE")], contact=False, label="PRACK")
            prx = g.forward(prack, cnode, route, snode, rr=False)
            g.respond(prx, callee, "200 OK", list(reversed(route)), cnode, None, label="200-PRACK")
        else:
            if "180" in cfg.provisional:
                g.respond(rx, callee, "180 Ringing", back, cnode, ttag, contact=True, rr=True, label="180")
            if "183" in cfg.provisional and callee_media is not None:
                g.respond(rx, callee, "183 Session Progress", back, cnode, ttag, body=answer_body,
                          ctype="application/sdp", contact=True, rr=True, label="183")
        ok = g.respond(rx, callee, "200 OK", back, cnode, ttag, list(callee_extra), answer_body,
                       "application/sdp", contact=True, rr=True, label=f"200-{label}")
        if ok.label in cfg.retransmit:
            g.tick(T1 + 0.05)   # the ACK arrives after the first 2xx retransmission
        rr = ok.all("Record-Route")
        route = list(reversed([self._rr_node(v) for v in rr]))
        target_uri = self._contact_uri(ok.get("Contact") or "")
        ack = g.request("ACK", target_uri, caller, frm, ok.get("To") or "", call_id, cseq, route, contact=False,
                        label=f"ACK-{label}",
                        body=g.sdp(caller + label, *sdp_addr, "sendrecv", bump=False) if offerless else b"",
                        ctype="application/sdp")
        g.forward(ack, cnode, route, snode, rr=False)
        caller_dlg = Dlg(call_id, frm, ok.get("To") or "", cseq + (1 if cfg.prack and callee != "CS" else 0),
                         route, snode, target_uri, cnode)
        callee_dlg = Dlg(call_id, ok.get("To") or "", frm, 0, [self._rr_node(v) for v in rx.all("Record-Route")],
                         cnode, self._contact_uri(req.get("Contact") or ""), snode)
        return caller_dlg, callee_dlg

    def _rr_node(self, value: str) -> Node:
        for n in self.g.nodes.values():
            if f"<sip:{n.hostport};" in value or f"<sip:{n.hostport}>" in value:
                return n
        raise ValueError(value)

    @staticmethod
    def _contact_uri(value: str) -> str:
        return value.split("<", 1)[1].split(">", 1)[0] if "<" in value else value.split(";", 1)[0]

    def in_dialog(self, dlg: Dlg, method: str, sender: str, extra: list[tuple[str, str]] = (),
                  body: bytes = b"", ctype: str = "", contact: bool = False, label: str = "") -> Msg:
        """Send an in-dialog request along the route set; returns the copy the peer received."""
        g = self.g
        dlg.cseq += 1
        req = g.request(method, dlg.target_uri, sender, dlg.local, dlg.remote, dlg.call_id, dlg.cseq, dlg.route,
                        extra, body, ctype, contact=contact, label=label or method)
        return g.forward(req, dlg.me, dlg.route, dlg.target, rr=False)

    # -- the flow --
    def run(self) -> Gen:
        g, cfg = self.g, self.cfg
        n = g.nodes
        ue_media = {"UE-1": (n["UE-1"].ip, 49170), "UE-2": (n["UE-2"].ip, 49180), "UE-3": (n["UE-3"].ip, 49190)}
        mrfp = {"UE-1": (g.mrfp_ip, 30000), "UE-2": (g.mrfp_ip, 30002), "UE-3": (g.mrfp_ip, 30004)}
        if cfg.mrfp_on_cs_ip:
            mrfp = {k: (g.mrfp_ip, p + 8000) for k, (_, p) in mrfp.items()}
        mrfp = {k: (a, p + cfg.mrfp_port_offset) for k, (a, p) in mrfp.items()}
        if cfg.register:
            self.registrations()
        if cfg.noise:
            self.noise("start")
        # Step 1: D12
        d12_1, d12_2 = self.invite("UE-1", "UE-2", g.aor["UE-2"], self.name_addr("UE-2"), "d12",
                                   ue_media["UE-1"], ue_media["UE-2"])
        g.both_ways(ue_media["UE-1"], ue_media["UE-2"], g.tick(0.02))
        g.tick(0.2)
        # Step 2: hold (re-INVITE in D12)
        zero = cfg.hold == "zero"
        direction = "sendonly" if cfg.hold == "zero" else cfg.hold
        g.sdp_ver["UE-1d12"] += 1
        offer = g.sdp("UE-1d12", *ue_media["UE-1"], direction, bump=False, zero=zero)
        rx = self.in_dialog(d12_1, cfg.hold_method, "UE-1", [], offer, "application/sdp", contact=True, label="hold")
        ans_dir = cfg.hold_answer or {"inactive": "inactive", "sendonly": "recvonly"}.get(direction, "sendrecv")
        g.sdp_ver["UE-2d12"] += 1
        answer = g.sdp("UE-2d12", *ue_media["UE-2"], ans_dir, bump=False)
        ok = g.respond(rx, "UE-2", "200 OK", d12_2.route, n["UE-1"], None, [], answer, "application/sdp",
                       contact=True, label="200-hold")
        if cfg.hold_method == "INVITE":
            ack = g.request("ACK", d12_1.target_uri, "UE-1", d12_1.local, d12_1.remote, d12_1.call_id, d12_1.cseq,
                            d12_1.route, contact=False, label="ACK-hold")
            g.forward(ack, n["UE-1"], d12_1.route, n["UE-2"], rr=False)
        del ok
        if cfg.ue2_rtp_on_hold:
            g.rtp(ue_media["UE-2"], ue_media["UE-1"], g.tick(0.2), 6)
        g.tick(0.3)
        # Steps 3~11: D13
        d13_1, d13_3 = self.invite("UE-1", "UE-3", g.aor["UE-3"], self.name_addr("UE-3"), "d13",
                                   (ue_media["UE-1"][0], 49172), ue_media["UE-3"])
        g.both_ways((ue_media["UE-1"][0], 49172), ue_media["UE-3"], g.tick(0.02))
        g.tick(0.2)
        # Steps 12~21: conference creation
        focus = "" if cfg.isfocus_in_uri else ";isfocus"
        conf_contact = (f"<{g.conf_uri};isfocus>" if cfg.isfocus_in_uri else f"<{g.conf_uri}>{focus}")
        self._conf_contact = conf_contact
        d1c_1, d1c_cs = self.invite_cs("UE-1", g.factory, f"<{g.factory}>", "conf", ue_media["UE-1"][0], 49174,
                                       mrfp["UE-1"], challenge=cfg.challenge)
        g.both_ways((ue_media["UE-1"][0], 49174), mrfp["UE-1"], g.tick(0.02))
        g.tick(0.2)
        if cfg.conf_subscribe:
            self.conference_subscription(d1c_1)
        # Steps 22~83: REFER, NOTIFY, join, NOTIFY, BYE for UE-2 and UE-3
        branches = {"UE-2": (d12_1, d12_2), "UE-3": (d13_1, d13_3)}
        if cfg.noise:
            self.noise("middle")
        if cfg.refer_to_focus:
            self.refer_focus(branches, d1c_1, d1c_cs, mrfp)
            return g
        order = ["UE-3", "UE-2"] if cfg.join_order == "ue3-first" else ["UE-2", "UE-3"]
        stages = [self.st_refer, self.st_notify1, self.st_join, self.st_notify2]
        state: dict[str, dict] = {r: {"dlgs": branches[r], "media": ue_media[r], "mrfp": mrfp[r]} for r in order}
        if cfg.join_order == "interleaved":
            for stage in stages:
                for r in order:
                    stage(r, state[r])
        else:
            for r in order:
                for stage in stages:
                    stage(r, state[r])
        if cfg.cs_reinvite:
            g.tick(0.3)
            g.sdp_ver["CSconf"] = g.sdp_ver.get("CSconf", 1) + 1
            body = g.sdp("CSconf", *mrfp["UE-1"], "sendrecv", bump=False)
            d1c_cs.cseq = cfg.cs_first_cseq - 1
            rx = self.in_dialog(d1c_cs, "INVITE", "CS", [("Contact", conf_contact)], body, "application/sdp",
                                contact=False, label="cs-reinvite")
            g.sdp_ver["UE-1conf"] = g.sdp_ver.get("UE-1conf", 1)
            ans = g.sdp("UE-1conf", ue_media["UE-1"][0], 49174, "sendrecv", bump=False)
            g.respond(rx, "UE-1", "200 OK", d1c_1.route, n["CS"], None, [], ans, "application/sdp",
                      contact=True, label="200-cs-reinvite")
            ack = g.request("ACK", d1c_cs.target_uri, "CS", d1c_cs.local, d1c_cs.remote, d1c_cs.call_id,
                            d1c_cs.cseq, d1c_cs.route, contact=False, label="ACK-cs-reinvite")
            g.forward(ack, n["CS"], d1c_cs.route, n["UE-1"], rr=False)
        byes = ["UE-3", "UE-2"] if cfg.bye_order == "ue3-first" else ["UE-2", "UE-3"]
        if cfg.d13_media_until_bye:
            g.both_ways((ue_media["UE-1"][0], 49172), ue_media["UE-3"], g.tick(0.02))
            g.tick(0.15)
        for r in byes:
            if state[r].get("byed") or state[r].get("refer_rejected") or (
                    state[r].get("join_failed") and not cfg.bye_after_failed_join):
                continue  # UE-1 keeps the held call when the REFER or the join failed (RFC 5589 §6)
            g.tick(0.3)
            d1, d2 = branches[r]
            if cfg.ue_sends_bye:
                rx = self.in_dialog(d2, "BYE", r, label=f"bye-{r}")
                g.respond(rx, "UE-1", "200 OK", d1.route, n[r], None, label=f"200-bye-{r}")
                continue
            rx = self.in_dialog(d1, "BYE", "UE-1", label=f"bye-{r}")
            g.respond(rx, r, "200 OK", d2.route, n["UE-1"], None, label=f"200-bye-{r}")
        # steady state: a little more conference RTP so every leg has media up to the end
        end = g.tick(0.05)
        for r in ("UE-1", "UE-2", "UE-3"):
            if r != "UE-1" and not state[r].get("conf"):
                continue
            port = 49174 if r == "UE-1" else ue_media[r][1] + 2
            g.both_ways((ue_media[r][0], port), mrfp[r], end, 3)
        if cfg.noise:
            self.noise("end")
        return g

    def noise(self, phase: str) -> None:
        """SIP that belongs to no conference: keepalive OPTIONS (UE-1 to its P-CSCF, between the
        proxies), a REGISTER and a MESSAGE by another subscriber, and a whole call between two others."""
        g = self.g
        n = g.nodes
        ue1_path = self.path("UE-1", "CS")
        first = ue1_path[0] if ue1_path else n["CS"]

        def transaction(method: str, sender: str, dest: Node, ruri: str, to: str, path: list[Node],
                        extra: list[tuple[str, str]] = (), body: bytes = b"", ctype: str = "") -> None:
            call_id = f"{g.uid('nz')}@{n[sender].host}" if sender in n else f"{g.uid('nz')}@x"
            frm = f"<sip:{n[sender].user or 'proxy'}@home.example>;tag={g.uid('nt')}"
            req = g.request(method, ruri, sender, frm, to, call_id, 1, path, extra, body, ctype,
                            contact=method != "MESSAGE", label=f"noise-{method}")
            rx = g.forward(req, n[sender], path, dest, rr=False)
            g.respond(rx, dest.name, "200 OK", list(reversed(path)), n[sender], g.uid("nr"), label=f"200-noise-{method}")
            g.tick(0.01)

        transaction("OPTIONS", "UE-1", first, f"sip:{first.hostport}", f"<sip:{first.hostport}>", [])
        if len(ue1_path) > 1:
            transaction("OPTIONS", ue1_path[0].name, ue1_path[1], f"sip:{ue1_path[1].hostport}",
                        f"<sip:{ue1_path[1].hostport}>", [])
        if phase == "start":
            registrar = ue1_path[-1] if ue1_path else n["CS"]
            transaction("REGISTER", "UE-4", registrar, "sip:home.example", f"<{g.aor['UE-4']}>", ue1_path[:-1],
                        [("Expires", "600")])
        if phase == "middle":
            transaction("MESSAGE", "UE-4", n["UE-5"], g.aor["UE-5"], f"<{g.aor['UE-5']}>", ue1_path,
                        body=b"see you at 10", ctype="text/plain")
            caller, callee = self.invite("UE-4", "UE-5", g.aor["UE-5"], f"<{g.aor['UE-5']}>", "noise-call",
                                         (n["UE-4"].ip, 40000), (n["UE-5"].ip, 40010))
            self._noise_call = (caller, callee)
        if phase == "end" and getattr(self, "_noise_call", None):
            caller, callee = self._noise_call
            rx = self.in_dialog(caller, "BYE", "UE-4", label="noise-bye")
            g.respond(rx, "UE-5", "200 OK", callee.route, n["UE-4"], None, label="200-noise-bye")

    def refer_focus(self, branches: dict[str, tuple[Dlg, Dlg]], d1c_1: Dlg, d1c_cs: Dlg,
                    mrfp: dict[str, tuple[str, int]]) -> None:
        """Checklist §8d (RFC 4579 §5.10, TS 34.229-5 A.26): UE-1 REFERs the focus in D1C with
        Refer-To = the participant plus Replaces naming D12/D13; the focus NOTIFYs UE-1, INVITEs the
        participant with Replaces, and the participant BYEs its call with UE-1 (RFC 3891 §3)."""
        g = self.g
        n = g.nodes
        for r in ("UE-2", "UE-3"):
            d1, d2 = branches[r]
            g.tick(0.3)
            to_tag = d1.remote.split(";tag=")[1]
            from_tag = d1.local.split(";tag=")[1]
            replaces = f"{d1.call_id}%3Bto-tag%3D{to_tag}%3Bfrom-tag%3D{from_tag}"
            refer_to = f"<{g.aor[r]}?Replaces={replaces}>"
            rx = self.in_dialog(d1c_1, "REFER", "UE-1", [("Refer-To", refer_to), ("Referred-By", f"<{g.aor['UE-1']}>")],
                                contact=True, label=f"refer-focus-{r}")
            g.respond(rx, "CS", "202 Accepted", d1c_cs.route, n["UE-1"], None, contact=True,
                      label=f"202-refer-focus-{r}")
            for which in ("first", "final"):
                if which == "final":
                    g.tick(0.3)
                    # the focus INVITEs the participant, replacing its call with UE-1
                    orig = n["CS"].user
                    n["CS"].user = self.cfg.conf_user
                    try:
                        cs_leg, ue_leg = self.invite(
                            "CS", r, g.aor[r], self.name_addr(r), f"focus-{r}", mrfp[r], (n[r].ip, 49200),
                            extra=[("Replaces", f"{d1.call_id};to-tag={to_tag};from-tag={from_tag}"),
                                   ("Referred-By", f"<{g.aor['UE-1']}>")])
                    finally:
                        n["CS"].user = orig
                    del cs_leg, ue_leg
                    bye = self.in_dialog(d2, "BYE", r, label=f"bye-{r}")
                    g.respond(bye, "UE-1", "200 OK", d1.route, n[r], None, label=f"200-bye-{r}")
                    g.tick(0.05)
                status = "100 Trying" if which == "first" else "200 OK"
                state = "active;expires=60" if which == "first" else "terminated;reason=noresource"
                nrx = self.in_dialog(d1c_cs, "NOTIFY", "CS", [("Event", "refer"), ("Subscription-State", state)],
                                     _sipfrag(self.cfg, status), "message/sipfrag", contact=False,
                                     label=f"notify-focus-{which}-{r}")
                g.respond(nrx, "UE-1", "200 OK", d1c_1.route, n["CS"], None, label=f"200-notify-focus-{which}-{r}")

    def registrations(self) -> None:
        g, cfg = self.g, self.cfg
        registrar = g.nodes["S-CSCF"] if cfg.far_proxies else None
        for r in ("UE-1", "UE-2", "UE-3"):
            path = self.path("UE-1", "CS")[:-1] if r == "UE-1" else []
            if registrar is None:
                return
            call_id = f"{g.uid('reg')}@{g.nodes[r].host}"
            tag = g.uid("rg")
            for cseq, auth in ((1, None), (2, 'Digest username="u", realm="home.example", nonce="n", '
                                              'uri="sip:home.example", response="0123456789abcdef0123456789abcdef"')):
                extra = [("Expires", "600")] + ([("Authorization", auth)] if auth else [])
                req = g.request("REGISTER", "sip:home.example", r, f"<{g.aor[r]}>;tag={tag}", f"<{g.aor[r]}>",
                                call_id, cseq, [], extra, label=f"register-{r}")
                rx = g.forward(req, g.nodes[r], path, registrar, rr=False)
                if auth is None:
                    g.respond(rx, "S-CSCF", "401 Unauthorized", list(reversed(path)), g.nodes[r], g.uid("rt"),
                              [("WWW-Authenticate", 'Digest realm="home.example", nonce="n", algorithm=MD5')])
                else:
                    g.respond(rx, "S-CSCF", "200 OK", list(reversed(path)), g.nodes[r], g.uid("rt"),
                              [("Contact", f"<{g.nodes[r].contact}>;expires=600")])
                g.tick(0.02)
        g.tick(0.2)

    def conference_subscription(self, d1c: Dlg) -> None:
        """UE-1 SUBSCRIBEs to the conference package at the conference URI (new dialog), the CS
        answers 200 and NOTIFYs conference-info (RFC 4575)."""
        g = self.g
        ue1, cs = g.nodes["UE-1"], g.nodes["CS"]
        path = self.path("UE-1", "CS")
        call_id = f"{g.uid('sub')}@{ue1.host}"
        frm = self.name_addr("UE-1", g.uid("sf"))
        req = g.request("SUBSCRIBE", g.conf_uri, "UE-1", frm, f"<{g.conf_uri}>", call_id, 1, path,
                        [("Event", "conference"), ("Expires", "600"), ("Accept", "application/conference-info+xml")],
                        label="subscribe-conf")
        rx = g.forward(req, ue1, path, cs, rr=True)
        ttag = g.uid("st")
        rr_nodes = [self._rr_node(v) for v in rx.all("Record-Route")]
        g.respond(rx, "CS", "200 OK", list(reversed(path)), ue1, ttag, [("Expires", "600"), ("Contact", self._conf_contact)],
                  rr=True, label="200-subscribe-conf")
        to = f"{rx.get('To')};tag={ttag}"
        d = Dlg(call_id, to, frm, 0, rr_nodes, ue1, ue1.contact, cs)
        body = ('<?xml version="1.0" encoding="UTF-8"?>\r\n<conference-info xmlns="urn:ietf:params:xml:ns:'
                f'conference-info" entity="{g.conf_uri}" state="full" version="1"><users/></conference-info>\r\n')
        nrx = self.in_dialog(d, "NOTIFY", "CS", [("Event", "conference"), ("Subscription-State", "active;expires=600"),
                                                 ("Contact", self._conf_contact)],
                             body.encode(), "application/conference-info+xml", label="notify-conf")
        g.respond(nrx, "UE-1", "200 OK", list(reversed(rr_nodes)), cs, None, label="200-notify-conf")
        del d1c

    def invite_cs(self, ue: str, ruri: str, to: str, label: str, media_ip: str, media_port: int,
                  mrfp: tuple[str, int], challenge: int = 0, extra: list[tuple[str, str]] = ()) -> tuple[Dlg, Dlg]:
        g = self.g
        callee_extra = [("Allow-Events", "conference, refer"), ("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, REFER, "
                                                                         "NOTIFY, SUBSCRIBE")]
        orig_contact = g.nodes["CS"].user
        g.nodes["CS"].user = self.cfg.conf_user
        try:
            d_ue, d_cs = self._invite_with_focus(ue, ruri, to, label, (media_ip, media_port), mrfp, extra,
                                                 callee_extra, challenge)
        finally:
            g.nodes["CS"].user = orig_contact
        return d_ue, d_cs

    def _invite_with_focus(self, ue: str, ruri: str, to: str, label: str, media: tuple[str, int],
                           mrfp: tuple[str, int], extra: list[tuple[str, str]],
                           callee_extra: list[tuple[str, str]], challenge: int) -> tuple[Dlg, Dlg]:
        # The 200's Contact gets the focus contact (isfocus) through an edit on the 200.
        prev = self.cfg.edits.get(f"200-{label}")
        contact = self._conf_contact

        def fix(msg: Msg, hop: int) -> None:
            if hop == 0:
                msg.set("Contact", contact)
            if prev is not None:
                prev(msg, hop)

        self.cfg.edits[f"200-{label}"] = fix
        try:
            return self.invite(ue, "CS", ruri, to, label, media, mrfp, extra=extra, callee_extra=callee_extra,
                               challenge=challenge)
        finally:
            if prev is None:
                del self.cfg.edits[f"200-{label}"]
            else:
                self.cfg.edits[f"200-{label}"] = prev

    # -- per-transferee stages --
    def st_refer(self, r: str, s: dict) -> None:
        g, cfg = self.g, self.cfg
        d1, d2 = s["dlgs"]
        g.tick(0.3)
        refer_to = cfg.refer_to.format(conf=g.conf_uri)
        by = self.name_addr("UE-1") if cfg.display_comma else f"<{g.aor['UE-1']}>"
        if cfg.session_refresh and r == "UE-2":
            rx = self.in_dialog(d1, "UPDATE", "UE-1", [("Session-Expires", "1800;refresher=uac")], contact=True,
                                label="refresh-UE-1")
            g.respond(rx, r, "200 OK", d2.route, d1.me, None, [("Session-Expires", "1800;refresher=uac")],
                      contact=True, label="200-refresh-UE-1")
        extra = [("Refer-To", refer_to), ("Referred-By", by)]
        if refer_to == "":
            extra = [("Referred-By", by)]
        if cfg.refer_challenge and r == "UE-2" and d1.route:
            # the P-CSCF challenges the in-dialog REFER (407, no ACK for a non-INVITE); UE-1 re-sends it
            # with credentials and CSeq + 1 (RFC 3261 §22.3, §8.1.3.5)
            d1.cseq += 1
            req = g.request("REFER", d1.target_uri, "UE-1", d1.local, d1.remote, d1.call_id, d1.cseq, d1.route,
                            extra, label="refer-unauth")
            g.send_hop(d1.me, d1.route[0], req, 0)
            resp = Msg("SIP/2.0 407 Proxy Authentication Required",
                       [["Via", req.get("Via") or ""], ["From", d1.local], ["To", d1.remote], ["Call-ID", d1.call_id],
                        ["CSeq", f"{d1.cseq} REFER"],
                        ["Proxy-Authenticate", 'Digest realm="home.example", nonce="n0nce", algorithm=MD5']],
                       b"", Style(), "407-refer")
            g.send_hop(d1.route[0], d1.me, resp, 0)
            extra = [*extra, ("Proxy-Authorization", 'Digest username="alice", realm="home.example", nonce="n0nce", '
                              f'uri="{d1.target_uri}", response="00112233445566778899aabbccddeeff"')]
            g.tick(0.05)
        code = {200: "200 OK", 202: "202 Accepted"}[cfg.refer_code]
        if cfg.refer_sub:
            extra = [*extra, ("Refer-Sub", cfg.refer_sub), ("Supported", "norefersub")]
        answer_extra = [("Refer-Sub", cfg.refer_sub_2xx)] if cfg.refer_sub_2xx else []
        if cfg.no_notify or cfg.refer_sub_2xx.lower() == "false":
            s["no_sub"] = True
        if cfg.refer_out_of_dialog:
            # a new dialog: To without tag, new Call-ID and From tag, Target-Dialog names D12/D13
            # (RFC 3515 §2, RFC 4538, RFC 7647 §4); the proxies record-route it
            call_id = f"{g.uid('rcid')}@{d1.me.host}"
            ftag = g.uid("rf")
            frm = self.name_addr("UE-1", ftag)
            peer_tag = d1.remote.split(";tag=")[1]
            my_tag = d1.local.split(";tag=")[1]
            extra = [*extra, ("Target-Dialog", f"{d1.call_id};local-tag={peer_tag};remote-tag={my_tag}")]
            path = self.path("UE-1", r)
            req = g.request("REFER", g.aor[r], "UE-1", frm, f"<{g.aor[r]}>", call_id, 1, path, extra,
                            label=f"refer-{r}")
            rx = g.forward(req, d1.me, path, g.nodes[r], rr=True)
            ttag = g.uid("rt")
            rr_nodes = [self._rr_node(v) for v in rx.all("Record-Route")]
            to = f"{rx.get('To')};tag={ttag}"
            s["sub"] = (Dlg(call_id, frm, to, 1, list(reversed(rr_nodes)), g.nodes[r], g.nodes[r].contact, d1.me),
                        Dlg(call_id, to, frm, 0, rr_nodes, d1.me, d1.me.contact, g.nodes[r]))
            s["refer_cseq"] = 1
            s["refer_rx"] = rx
            if cfg.notify_before_2xx:
                self._notify(r, s, "first")
            if r in cfg.refer_reject:
                g.respond(rx, r, cfg.refer_reject[r], rr_nodes, d1.me, ttag, label=f"rej-refer-{r}")
                s["refer_rejected"] = True
                return
            g.respond(rx, r, code, rr_nodes, d1.me, ttag, answer_extra, contact=True, rr=True,
                      label=f"2xx-refer-{r}")
            return
        rx = self.in_dialog(d1, "REFER", "UE-1", extra, contact=True, label=f"refer-{r}")
        s["refer_cseq"] = d1.cseq
        s["refer_rx"] = rx
        if r in cfg.refer_reject:
            g.respond(rx, r, cfg.refer_reject[r], d2.route, g.nodes["UE-1"], None, label=f"rej-refer-{r}")
            s["refer_rejected"] = True
            return
        if cfg.notify_before_2xx and not cfg.only_final_notify:
            self._notify(r, s, "first")
        g.respond(rx, r, code, d2.route, g.nodes["UE-1"], None, answer_extra, contact=True, label=f"2xx-refer-{r}")
        if cfg.blind_bye:
            g.tick(0.05)
            bye = self.in_dialog(d1, "BYE", "UE-1", label=f"bye-{r}")
            g.respond(bye, r, "200 OK", d2.route, g.nodes["UE-1"], None, label=f"200-bye-{r}")
            s["byed"] = True

    def _notify(self, r: str, s: dict, which: str) -> None:
        g, cfg = self.g, self.cfg
        d1, d2 = s.get("sub", s["dlgs"])
        if s.get("notified_" + which) or s.get("no_sub") or s.get("refer_rejected"):
            return
        s["notified_" + which] = True
        if which != "first":
            g.tick(cfg.notify_gap)
        status = {"first": "100 Trying", "mid": "180 Ringing", "final": s.get("final_status", "200 OK")}[which]
        state = cfg.sub_state_final if which == "final" else cfg.sub_state_first
        event = cfg.event + (f";id={s['refer_cseq']}" if cfg.event_id else "")
        if cfg.param_lws:
            event, state = (v.replace(";", " ; ").replace("=", " = ") for v in (event, state))
        extra = [("Event", event), ("Subscription-State", state)]
        frag = _sipfrag(cfg, status)
        if cfg.sipfrag_headers and which == "final":
            frag = (f"SIP/2.0 {status}\r\nFrom: {self.name_addr(r)}\r\nCSeq: 1 INVITE\r\n\r\n").encode()
        rx = self.in_dialog(d2, "NOTIFY", r, extra, frag, cfg.sipfrag_type, contact=True,
                            label=f"notify-{which}-{r}")
        g.respond(rx, "UE-1", "200 OK", d1.route, g.nodes[r], None, label=f"200-notify-{which}-{r}")

    def st_notify1(self, r: str, s: dict) -> None:
        if not self.cfg.only_final_notify:
            self._notify(r, s, "first")

    def st_join(self, r: str, s: dict) -> None:
        g = self.g
        if s.get("refer_rejected"):
            return
        g.tick(0.05)
        if r in self.cfg.join_reject:
            self.rejected_join(r, s)
            return
        if self.cfg.session_refresh and r == "UE-3":
            d1, d3 = s["dlgs"]
            rx = self.in_dialog(d3, "UPDATE", "UE-3", [("Session-Expires", "1800;refresher=uas")], contact=True,
                                label="refresh-UE-3")
            g.respond(rx, "UE-1", "200 OK", d1.route, g.nodes["UE-3"], None, [("Session-Expires", "1800;refresher=uas")],
                      contact=True, label="200-refresh-UE-3")
        ip, port = s["media"]
        d_ue, d_cs = self.invite_cs(r, g.conf_uri, f"<{g.conf_uri}>", f"join-{r}", ip, port + 2, s["mrfp"],
                                    extra=[("Referred-By", s["refer_rx"].get("Referred-By") or "")])
        s["conf"] = (d_ue, d_cs)
        g.both_ways((ip, port + 2), s["mrfp"], g.tick(0.02))
        if self.cfg.mid_notify:
            self._notify(r, s, "mid")

    def rejected_join(self, r: str, s: dict) -> None:
        """The CS answers the referee's INVITE with a final non-2xx; every stateful hop ACKs it with the
        INVITE's branch of that hop (RFC 3261 §17.1.1.3) and passes it upstream."""
        g = self.g
        node, cs = g.nodes[r], g.nodes["CS"]
        path = self.path(r, "CS")
        call_id = f"{g.uid('cid')}@{node.host}"
        frm = self.name_addr(r, g.uid("ft"))
        to = f"<{g.conf_uri}>"
        ip, port = s["media"]
        offer = g.sdp(r + f"join-{r}", ip, port + 2, "sendrecv", bump=False)
        req = g.request("INVITE", g.conf_uri, r, frm, to, call_id, 1, path,
                        [("Referred-By", s["refer_rx"].get("Referred-By") or "")], offer, "application/sdp",
                        label=f"join-{r}")
        g.forward(req, node, path, cs, rr=True)
        copies = g.last_copies
        hops = [node, *path, cs]
        status = self.cfg.join_reject[r]
        rtag = g.uid("ct")
        resp = Msg(f"SIP/2.0 {status}", [["Via", v] for v in copies[-1].all("Via")] +
                   [["From", frm], ["To", f"{to};tag={rtag}"], ["Call-ID", call_id], ["CSeq", "1 INVITE"]],
                   b"", g.style("CS"), f"rej-join-{r}")
        for i in range(len(hops) - 1, 0, -1):
            g.send_hop(hops[i], hops[i - 1], resp, len(hops) - 1 - i)
            inv = copies[i - 1]
            ack = Msg(f"ACK {inv.start.split()[1]} SIP/2.0",
                      [["Via", inv.all("Via")[0]], ["Max-Forwards", "70"], *[["Route", v] for v in inv.all("Route")],
                       ["From", frm], ["To", f"{to};tag={rtag}"], ["Call-ID", call_id], ["CSeq", "1 ACK"]],
                      b"", g.style(hops[i - 1].name), "ack-non2xx")
            g.send_hop(hops[i - 1], hops[i], ack, 0)
            resp = copy.deepcopy(resp)
            resp.pop_top("Via")
        s["final_status"] = status
        s["join_failed"] = True

    def st_notify2(self, r: str, s: dict) -> None:
        self._notify(r, s, "final")


def build(cfg: Cfg | None = None) -> Gen:
    return Flow(cfg or Cfg()).run()


def write(path: str | Path, cfg: Cfg | None = None) -> Path:
    return build(cfg).write(Path(path))


def write_many(path: str | Path, cfgs: list[Cfg]) -> Path:
    """Several instances in one capture: each Cfg is one conference (give each its own `prefix`,
    and `ue_hosts`/`conf_user`/`t0` as the scenario needs); frames are merged in time order."""
    gens = [build(c) for c in cfgs]
    first = gens[0]
    for other in gens[1:]:
        first.frames += other.frames
    return first.write(Path(path))


if __name__ == "__main__":
    import sys

    print(write(sys.argv[1] if len(sys.argv) > 1 else "/tmp/indie.pcap"))
