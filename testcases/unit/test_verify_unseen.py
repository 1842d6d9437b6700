"""The verifier on A.2.1 captures it has never seen: made by an independent generator
(testcases/data/indie_a21.py, written from the spec text, the checklist and the RFCs, sharing no code
with make_a21_pcap.py) in other topologies, header styles and behaviours a real vendor produces.

Each test states the verdict per step that the checklist/RFCs call for; valid variants must pass
every step (warnings only where the checklist says SHOULD or [checker] WARN); faults must fail the
right step with the right requirement id and leave the others alone. Where the verifier is wrong
the test is xfail(strict=True) with the bug named, so it turns red the day the bug is fixed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from scapy.layers.inet import UDP
from scapy.utils import rdpcap, wrpcap

from harness.flows.a2_1.steps import FLOW
from harness.verify import FlowResult, verify_capture
from testcases.data.indie_a21 import Cfg, Msg, Style, write

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")

STEPS = ("1", "2", "3~11", "12~14", "15", "16~21", "22~27", "28~33", "34~35", "36", "37~40", "41~46",
         "47~52", "53~58", "59~64", "65~66", "67", "68~71", "72~77", "78~83")
UAS = ("UE-1", "UE-2", "UE-3", "CS")


def judge(tmp_path: Path, cfg: Cfg, roles: dict[str, str] | None = None) -> FlowResult:
    result = verify_capture(write(tmp_path / "a21.pcap", cfg), roles=roles)
    assert isinstance(result, FlowResult), "one A.2.1 instance expected"
    return result


def expect(result: FlowResult, fails: dict[str, str] | None = None, warns: dict[str, str] | None = None,
           free: tuple[str, ...] = ()) -> None:
    """Steps in `fails` fail with that MUST id; every other step passes, except those in `free`
    (consequences of the fault that the checklist leaves open). Warnings only as listed."""
    fails, warns = fails or {}, warns or {}
    problems = []
    for step in STEPS:
        s = result.step(step)
        failed = {c.id for c in s.checks if c.verdict == "fail" and c.level == "MUST"}
        if step in fails:
            if s.verdict != "fail" or fails[step] not in failed:
                problems.append(f"{step}: expected fail {fails[step]}, got {s.verdict} {sorted(failed)}: "
                                + "; ".join(f"{c.id} {c.verdict} {c.detail}" for c in s.checks if c.verdict != "pass"))
        elif step not in free and s.verdict != "pass":
            problems.append(f"{step}: expected pass, got {s.verdict}: "
                            + "; ".join(f"{c.id} {c.verdict} {c.detail}" for c in s.checks if c.verdict != "pass"))
        seen_warns = {c.id for c in s.checks if c.verdict == "warn"}
        if step in warns and warns[step] not in seen_warns:
            problems.append(f"{step}: expected a {warns[step]} warning, saw {sorted(seen_warns)}")
        if step not in free and step not in fails and seen_warns - {warns.get(step)}:
            problems.append(f"{step}: unexpected warnings: "
                            + "; ".join(f"{c.id} {c.detail}" for c in s.checks if c.verdict == "warn"
                                        and c.id != warns.get(step)))
    assert not problems, "\n".join(problems)


def set_header(name: str, value: str | None, hop: int = 0) -> Callable[[Msg, int], None]:
    def edit(msg: Msg, at: int) -> None:
        if at == hop:
            if value is None:
                msg.remove(name)
            else:
                msg.set(name, value)
    return edit


def set_body(body: bytes, hop: int = 0) -> Callable[[Msg, int], None]:
    def edit(msg: Msg, at: int) -> None:
        if at == hop:
            msg.body = body
    return edit


# ---------------------------------------------------------------------------------------------------
# Topologies: every one is RFC-valid and must pass every step.

TOPOLOGIES = {
    "figure-a2": Cfg(),
    "no-proxies": Cfg(ue1_proxies=(), far_proxies=()),
    "one-proxy": Cfg(ue1_proxies=("S-CSCF",), far_proxies=("S-CSCF",)),
    "proxies-5080-5070": Cfg(ports={"P-CSCF": 5080, "S-CSCF": 5070}),
    "sip-on-5090-everywhere": Cfg(sip_port=5090),
    "odd-ports-per-role": Cfg(ports={"UE-1": 5062, "UE-2": 15060, "UE-3": 5064, "CS": 5066, "P-CSCF": 5080,
                                     "S-CSCF": 5070}),
    "mrfp-on-cs-ip": Cfg(mrfp_on_cs_ip=True),
    "ipv6": Cfg(ipv6=True),
    "tcp-split-coalesced-ephemeral": Cfg(transport="TCP"),
    "tcp-listening-ports": Cfg(transport="TCP", tcp_ephemeral=False),
    "tcp-ipv6-5062": Cfg(transport="TCP", ipv6=True, sip_port=5062),
    "only-p-cscf-record-routes": Cfg(rr_proxies=("P-CSCF",)),
    "only-s-cscf-record-routes": Cfg(rr_proxies=("S-CSCF",)),
    # No Record-Route on the joins: each ACK goes straight to the CS on a new TCP connection from an
    # ephemeral port, the first thing the UE sends there (its Via names its listening port).
    "only-p-cscf-record-routes-tcp": Cfg(rr_proxies=("P-CSCF",), transport="TCP"),
    "domain-name-factory-and-conf-uri": Cfg(domain_uris=True),
    "s-cscf-retargets-aor-to-contact": Cfg(retarget=True),
    "ims-core-rport-pai-retarget-domains": Cfg(retarget=True, domain_uris=True, pai=True, rport=True),
    "rport-received-tcp": Cfg(rport=True, transport="TCP"),
    "linux-cooked-capture": Cfg(link="sll"),
    "linux-cooked-capture-ipv6": Cfg(link="sll", ipv6=True),
    "every-frame-captured-twice": Cfg(duplicate_frames=True),
    "ip-fragmented-udp-sip": Cfg(frag_mtu=576),
    "default-port-5060-omitted": Cfg(omit_port_5060=True),
    "default-port-5060-omitted-tcp": Cfg(omit_port_5060=True, transport="TCP", tcp_ephemeral=False),
    "ims-everything-at-once": Cfg(omit_port_5060=True, display_comma=True, instance_params=True, param_lws=True,
                                  join_routes=True, via_lws=True, rport=True, pai=True, retarget=True, gruu=True,
                                  refer_out_of_dialog=True, domain_uris=True),
}


@pytest.mark.parametrize("name", list(TOPOLOGIES))
def test_topology_passes_every_step(tmp_path, name: str) -> None:
    result = judge(tmp_path, TOPOLOGIES[name])
    expect(result)
    if name == "no-proxies":
        assert "P-CSCF" not in result.roles and "S-CSCF" not in result.roles


def test_roles_pinned_on_odd_ports(tmp_path) -> None:
    cfg = Cfg(ports={"P-CSCF": 5080, "S-CSCF": 5070})
    roles = {"UE-1": "10.77.0.1:5060", "UE-2": "10.77.0.2:5060", "UE-3": "10.77.0.3:5060",
             "CS": "10.77.0.4:5060", "P-CSCF": "10.77.0.11:5080", "S-CSCF": "10.77.0.12:5070"}
    expect(judge(tmp_path, cfg, roles))


# ---------------------------------------------------------------------------------------------------
# Header styles (RFC 3261 §7.3, §20; RFC 3515; RFC 4579; RFC 3420): all valid.

STYLES = {
    "compact-forms": Cfg(styles={r: Style(compact=True) for r in UAS}),
    "compact-forms-tcp": Cfg(transport="TCP", styles={r: Style(compact=True) for r in UAS}),
    # A longer SDP cut over two segments after "l: 281": tshark reassembles only up to its segment
    # (its desegmentation knows "Content-Length", not "l") and shows the rest as a Continuation (IPv4
    # here) or as plain TCP (IPv6 here); the reader completes the body from the segments after it.
    "compact-forms-tcp-long-body-split": Cfg(transport="TCP", codec="AMR-WB", tcp_coalesce=False,
                                             styles={r: Style(compact=True) for r in UAS}),
    "compact-forms-tcp-long-body-split-ipv6": Cfg(transport="TCP", codec="AMR-WB", tcp_coalesce=False, ipv6=True,
                                                  styles={r: Style(compact=True) for r in UAS}),
    # The same, with every frame captured twice: the copy of a segment is not the rest of the body.
    "compact-forms-tcp-every-frame-twice": Cfg(transport="TCP", duplicate_frames=True, rr_proxies=("P-CSCF",),
                                               styles={r: Style(compact=True) for r in UAS}),
    "lower-case-names": Cfg(styles={r: Style(case="lower") for r in UAS}),
    "upper-case-names": Cfg(styles={r: Style(case="upper") for r in UAS}),
    "whitespace-around-colon": Cfg(styles={r: Style(ws=True) for r in UAS}),
    "line-folding": Cfg(styles={r: Style(fold=True) for r in UAS}),
    "via-comma-joined": Cfg(proxy_join_via=True),
    "via-comma-joined-tcp": Cfg(proxy_join_via=True, transport="TCP"),
    "refer-to-method-invite": Cfg(refer_to="<{conf};method=INVITE>"),
    "refer-to-addr-spec": Cfg(refer_to="{conf}"),          # no , ; ? in the value: addr-spec allowed (RFC 8217)
    "refer-to-replaces-header": Cfg(refer_to="<{conf}?Replaces=abc%40x%3Bto-tag%3D1%3Bfrom-tag%3D2>"),
    "refer-to-isfocus-header-param": Cfg(refer_to="<{conf}>;isfocus"),
    "isfocus-as-uri-param": Cfg(isfocus_in_uri=True),
    "isfocus-uri-param-tcp-ipv6-method": Cfg(refer_to="<{conf};method=INVITE>", isfocus_in_uri=True,
                                             transport="TCP", ipv6=True),
    "subscription-state-retry-after": Cfg(sub_state_final="terminated;reason=noresource;retry-after=0"),
    "subscription-state-extension-param": Cfg(sub_state_first="active;expires=60;x-vendor=1"),
    "subscription-state-pending": Cfg(sub_state_first="pending;expires=60"),
    "event-refer-with-id": Cfg(event_id=True),
    "sipfrag-version-param": Cfg(sipfrag_type="message/sipfrag;version=2.0"),
    "sipfrag-with-header-fields": Cfg(sipfrag_headers=True),
    "refer-to-display-name": Cfg(refer_to='"Conference" <{conf}>'),
    "session-level-direction": Cfg(session_direction=True),
    "display-name-with-comma": Cfg(display_comma=True),
    "contact-sip-instance-and-icsi": Cfg(instance_params=True),
    "lws-around-param-separators": Cfg(param_lws=True, event_id=True),
    "route-record-route-comma-joined": Cfg(join_routes=True),
    "via-lws-around-slashes": Cfg(via_lws=True),
    "sipfrag-content-type-mixed-case": Cfg(sipfrag_type="Message/SIPfrag"),
    "tel-uri-identities": Cfg(tel_uris=True),
    "tel-uri-identities-refer-out-of-dialog": Cfg(tel_uris=True, refer_out_of_dialog=True),
}


@pytest.mark.parametrize("name", list(STYLES))
def test_header_style_passes_every_step(tmp_path, name: str) -> None:
    expect(judge(tmp_path, STYLES[name]))


# ---------------------------------------------------------------------------------------------------
# Behaviour variants of checklist §8 ([checker] rows: accept).

BEHAVIOURS = {
    "refer-answered-200": Cfg(refer_code=200),
    "notify-before-202": Cfg(notify_before_2xx=True),
    "notify-before-202-tcp": Cfg(notify_before_2xx=True, transport="TCP"),
    "100-trying-every-hop": Cfg(provisional=("100",)),
    "180-and-183-early-sdp": Cfg(provisional=("100", "180", "183")),
    "prack-100rel": Cfg(prack=True),
    "intermediate-notify-180": Cfg(mid_notify=True),
    "hold-inactive": Cfg(hold="inactive"),
    "ue3-joins-first": Cfg(join_order="ue3-first"),
    "joins-interleaved": Cfg(join_order="interleaved"),
    # Both transferees' 2xx to REFER held for coalescing at once (the generator once lost one of them).
    "joins-interleaved-tcp-notify-before-202": Cfg(join_order="interleaved", transport="TCP", notify_before_2xx=True),
    "bye-ue3-first": Cfg(bye_order="ue3-first"),
    "cs-reinvite-cseq-101": Cfg(cs_reinvite=True, cs_first_cseq=101),
    "udp-request-retransmissions": Cfg(retransmit=("refer-UE-2", "notify-first-UE-3", "bye-UE-2", "d13",
                                                   "join-UE-3", "notify-final-UE-2")),
    "udp-2xx-retransmissions": Cfg(retransmit=("200-join-UE-2", "200-d13", "2xx-refer-UE-3", "200-hold",
                                               "200-conf")),
    "401-on-factory-invite": Cfg(challenge=401),
    "407-from-p-cscf-on-factory-invite": Cfg(challenge=407),
    "hold-answered-inactive": Cfg(hold_answer="inactive"),
    "offerless-invite-to-factory": Cfg(offerless_conf=True),
    "ue3-keeps-d13-media-until-bye": Cfg(d13_media_until_bye=True),
    "transferees-send-the-bye": Cfg(ue_sends_bye=True),
    "refer-out-of-dialog-target-dialog": Cfg(refer_out_of_dialog=True),
    "refer-out-of-dialog-retargeted": Cfg(refer_out_of_dialog=True, retarget=True),
    "refer-out-of-dialog-notify-before-202": Cfg(refer_out_of_dialog=True, notify_before_2xx=True, retarget=True),
    "refer-out-of-dialog-tcp-compact-notify-first": Cfg(refer_out_of_dialog=True, notify_before_2xx=True,
                                                        transport="TCP",
                                                        styles={r: Style(compact=True) for r in UAS}),
    "refer-out-of-dialog-gruu": Cfg(refer_out_of_dialog=True, gruu=True),
    "hold-by-update": Cfg(hold_method="UPDATE"),
    "single-final-notify": Cfg(only_final_notify=True),
    "blind-bye-then-notifies-in-d12": Cfg(blind_bye=True),
    "amr-wb-dynamic-payload-type": Cfg(codec="AMR-WB"),
    "dtmf-telephone-event-packets": Cfg(dtmf=True),
    "rtcp-on-port-plus-one": Cfg(rtcp=True),
    "asymmetric-rtp-source-ports": Cfg(rtp_src_offset=10),
    "amr-wb-dtmf-rtcp-ipv6": Cfg(codec="AMR-WB", dtmf=True, rtcp=True, ipv6=True),
    "registrations-with-401-first": Cfg(register=True),
    "conference-event-subscription": Cfg(conf_subscribe=True),
    "registrations-and-conference-subscription-tcp": Cfg(conf_subscribe=True, register=True, transport="TCP"),
    "update-session-refreshes-in-d12-d13": Cfg(session_refresh=True),
    "session-refreshes-refer-out-of-dialog": Cfg(session_refresh=True, refer_out_of_dialog=True),
}


@pytest.mark.parametrize("name", list(BEHAVIOURS))
def test_behaviour_variant_passes_every_step(tmp_path, name: str) -> None:
    expect(judge(tmp_path, BEHAVIOURS[name]))


def test_hold_with_c_0000_warns_only(tmp_path) -> None:
    """Checklist §3 step 2 / §8h: legacy c=0.0.0.0 hold is accepted with a WARN (RFC 6337 §5.4)."""
    expect(judge(tmp_path, Cfg(hold="zero")), warns={"2": "HOLD-1"})


def test_in_dialog_refer_to_a_gruu_warns_dlg1(tmp_path) -> None:
    """Checklist §8a: an in-dialog REFER when the peer's Contact is a GRUU is a [checker] WARN."""
    expect(judge(tmp_path, Cfg(gruu=True)), warns={"22~27": "DLG-1", "53~58": "DLG-1"})


def test_capture_taken_at_the_s_cscf_only(tmp_path) -> None:
    """A capture on one node (the S-CSCF) misses UE-1's first hop and every RTP packet. The
    signalling steps are all evidenced and valid, so they pass; media checks are inconclusive."""
    media = ("1", "2", "15", "36", "37~40", "67", "68~71")
    result = judge(tmp_path, Cfg(capture_at=("S-CSCF",)))
    expect(result, free=media)
    for step in media:
        assert result.step(step).verdict == "inconclusive", step


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_capture_at_the_cs_where_only_the_p_cscf_record_routes(tmp_path, transport: str) -> None:
    """The CS sees UE-1's INVITE from the S-CSCF but its ACK from the P-CSCF (the S-CSCF does not
    Record-Route): both are UE-1's side, told by the From tag (§12.2.1.1), so ACK-1 judges the ACK
    against the CS's Contact, not UE-1's. Nothing fails; what the CS cannot see is inconclusive."""
    result = judge(tmp_path, Cfg(capture_at=("CS",), rr_proxies=("P-CSCF",), transport=transport))
    assert result.step("16~21").verdict == "pass", result.step("16~21").checks
    assert not [s.step for s in result.steps if s.verdict == "fail"]


def test_subscription_state_values_in_upper_case(tmp_path) -> None:
    """RFC 6665 §8.4 ABNF: substate-value and event-reason-value are quoted literals, which are
    case-insensitive (RFC 3261 §25.1, RFC 2234 §2.3): ACTIVE / TERMINATED;reason=NoResource pass."""
    cfg = Cfg(sub_state_final="TERMINATED;reason=NoResource", sub_state_first="ACTIVE;expires=60")
    expect(judge(tmp_path, cfg))


def test_focus_redirects_the_factory_invite_with_302(tmp_path) -> None:
    """Checklist §3 12~14 (MAY, RFC 4579 §5.4 Fig. 4): the CS answers the INVITE to the factory URI
    with 302 Contact <Conf-ID>;isfocus; UE-1 ACKs and sends a new INVITE (same Call-ID/From/To, CSeq
    + 1) to the Conf-ID, which the CS accepts. The conference was requested at the factory: pass."""
    expect(judge(tmp_path, Cfg(challenge=302)))


def test_content_length_missing_on_udp_warns_only(tmp_path) -> None:
    """G8: Content-Length SHOULD be present over UDP: a warning, not a failure."""
    cfg = Cfg(edits={"notify-first-UE-3": set_header("Content-Length", "omit")})
    expect(judge(tmp_path, cfg), warns={"59~64": "G8"})


NOTIFY_STEPS = tuple(s.id for s in FLOW.steps if "NOT-3" in s.checks)


def test_sipfrag_without_crlf_warns_not3_only(tmp_path) -> None:
    """RFC 3420 §2 / RFC 3261 §25.1: the sipfrag Status-Line ends with CRLF; without one every
    NOTIFY step warns NOT-3 and still passes."""
    expect(judge(tmp_path, Cfg(sipfrag_crlf=False)), warns=dict.fromkeys(NOTIFY_STEPS, "NOT-3"))


def test_sipfrag_with_bare_lf_warns_not3_at_that_notify(tmp_path) -> None:
    """baresip ends the sipfrag Status-Line with a bare LF: a NOT-3 warning at that NOTIFY's step."""
    cfg = Cfg(edits={"notify-first-UE-3": set_body(b"SIP/2.0 100 Trying\n")})
    result = judge(tmp_path, cfg)
    warned = [s.step for s in result.steps for c in s.checks if c.id == "NOT-3" and c.verdict == "warn"]
    assert len(warned) == 1 and "bare LF" in next(c.detail for c in result.step(warned[0]).checks if c.id == "NOT-3")
    expect(result, warns={warned[0]: "NOT-3"})


def test_notifies_closer_than_a_second_warn_only(tmp_path) -> None:
    """NOT-6 (RFC 3515 §3.10 SHOULD): NOTIFYs 50 ms apart warn at the final NOTIFY steps."""
    expect(judge(tmp_path, Cfg(notify_gap=0.05)), warns={"41~46": "NOT-6", "72~77": "NOT-6"})


ROLES = {"UE-1": "10.77.0.1:5060", "UE-2": "10.77.0.2:5060", "UE-3": "10.77.0.3:5060", "CS": "10.77.0.4:5060",
         "P-CSCF": "10.77.0.11:5060", "S-CSCF": "10.77.0.12:5060"}


def test_refer_challenged_by_p_cscf_roles_inferred(tmp_path) -> None:
    """Checklist §1.1/§8j: 401/407 challenges are accepted. The P-CSCF answers UE-1's REFER to UE-2
    with 407; UE-1 re-sends it with Proxy-Authorization and CSeq + 1. Every step passes."""
    expect(judge(tmp_path, Cfg(refer_challenge=True)))


def test_refer_challenged_by_p_cscf_roles_pinned(tmp_path) -> None:
    """As above with --role pinned: the challenged REFER never reached UE-2 and created no
    subscription, so the accepted REFER is the first of the dialog and Event: refer needs no id
    (RFC 3515 §2.4.6); DLG-1 accepts CSeq + 1 over the challenged copy (checklist G7)."""
    expect(judge(tmp_path, Cfg(refer_challenge=True), roles=ROLES))


def test_cs_reinvite_with_cseq_1_after_the_joins(tmp_path) -> None:
    """The CS (a UAS of D1C) re-INVITEs UE-1's leg; its first CSeq may be any value, 1 included (RFC
    3261 §8.1.1.5, §12.1.1: the UAS's local sequence number is its own). Every step passes."""
    expect(judge(tmp_path, Cfg(cs_reinvite=True, cs_first_cseq=1)))


# ---------------------------------------------------------------------------------------------------
# Faults: the right step fails with the right id, nothing else is blamed.


def test_notify_with_event_presence_fails_not1(tmp_path) -> None:
    """RFC 3515 §2.4.4: the NOTIFY of the implicit subscription carries Event: refer (NOT-1 MUST).
    D12 holds no other subscription, so UE-2's first NOTIFY with Event: presence (sipfrag body,
    Subscription-State, in the REFER's dialog) is a wrong Event, not someone else's NOTIFY."""
    cfg = Cfg(edits={"notify-first-UE-2": set_header("Event", "presence")})
    expect(judge(tmp_path, cfg), fails={"28~33": "NOT-1"})


def test_notify_without_subscription_state_fails_not2(tmp_path) -> None:
    cfg = Cfg(edits={"notify-first-UE-2": set_header("Subscription-State", None)})
    expect(judge(tmp_path, cfg), fails={"28~33": "NOT-2"})


def test_refer_without_refer_to_fails_ref1(tmp_path) -> None:
    """RFC 3515 §2.4.1: exactly one Refer-To. UE-2 acting on it anyway leaves JOIN-1 open."""
    cfg = Cfg(edits={"refer-UE-2": set_header("Refer-To", None)})
    expect(judge(tmp_path, cfg), fails={"22~27": "REF-1"}, free=("34~35",))


def test_final_notify_active_fails_not4(tmp_path) -> None:
    cfg = Cfg(edits={"notify-final-UE-2": set_header("Subscription-State", "active;expires=60")})
    expect(judge(tmp_path, cfg), fails={"41~46": "NOT-4"})


def test_sipfrag_without_status_line_fails_not3(tmp_path) -> None:
    cfg = Cfg(edits={"notify-final-UE-3": set_body(b"200 OK\r\n")})
    expect(judge(tmp_path, cfg), fails={"72~77": "NOT-3"}, free=("72~77",))


def test_proxy_changes_notify_body_fails_g5(tmp_path) -> None:
    cfg = Cfg(edits={"notify-first-UE-3": set_body(b"SIP/2.0 180 Ringing\r\n", hop=1)})
    expect(judge(tmp_path, cfg), fails={"59~64": "G5"})


def test_proxy_changes_call_id_fails_g5(tmp_path) -> None:
    cfg = Cfg(edits={"refer-UE-2": set_header("Call-ID", "rewritten@proxy", hop=1)})
    expect(judge(tmp_path, cfg), fails={"22~27": "G5"}, free=("28~33", "41~46", "47~52"))


def test_proxy_does_not_decrement_max_forwards_fails_g3(tmp_path) -> None:
    cfg = Cfg(edits={"refer-UE-3": set_header("Max-Forwards", "69", hop=2)})
    expect(judge(tmp_path, cfg), fails={"53~58": "G3"})


def test_proxy_does_not_decrement_max_forwards_tcp_ipv6(tmp_path) -> None:
    cfg = Cfg(transport="TCP", ipv6=True, edits={"bye-UE-2": set_header("Max-Forwards", "70", hop=1)})
    expect(judge(tmp_path, cfg), fails={"47~52": "G3"})


def test_proxy_changes_referred_by_blames_the_proxy_not_ue2(tmp_path) -> None:
    """RFC 3892 §3 (G5): the P-CSCF rewrites Referred-By; UE-2 copies what it received (JOIN-2 pass)."""
    cfg = Cfg(edits={"refer-UE-2": set_header("Referred-By", "<sip:mallory@home.example>", hop=1)})
    expect(judge(tmp_path, cfg), fails={"22~27": "G5"})


def test_join_without_referred_by_fails_join2(tmp_path) -> None:
    cfg = Cfg(edits={"join-UE-3": set_header("Referred-By", None)})
    expect(judge(tmp_path, cfg), fails={"65~66": "JOIN-2"})


def add_header(name: str, value: str, hop: int = 0) -> Callable[[Msg, int], None]:
    def edit(msg: Msg, at: int) -> None:
        if at == hop:
            msg.headers.append([name, value])
    return edit


def test_second_refer_to_in_compact_form_fails_ref1(tmp_path) -> None:
    cfg = Cfg(edits={"refer-UE-2": add_header("r", "<sip:other@10.77.0.4>")})
    expect(judge(tmp_path, cfg), fails={"22~27": "REF-1"})


def test_two_refer_to_values_comma_joined_fail_ref1(tmp_path) -> None:
    cfg = Cfg(refer_to="<{conf}>, <sip:other@10.77.0.4>")
    expect(judge(tmp_path, cfg), fails={"22~27": "REF-1", "53~58": "REF-1"})


def test_two_referred_by_values_comma_joined_fail_ref4(tmp_path) -> None:
    cfg = Cfg(edits={"refer-UE-3": set_header("Referred-By", "<sip:alice@home.example>, <sip:eve@home.example>")})
    expect(judge(tmp_path, cfg), fails={"53~58": "REF-4"})


def test_refer_to_addr_spec_with_method_param_fails_ref6(tmp_path) -> None:
    """RFC 8217: a Refer-To with ';' must be a name-addr; without <> ';method' is a header param."""
    expect(judge(tmp_path, Cfg(refer_to="{conf};method=INVITE")), fails={"22~27": "REF-6", "53~58": "REF-6"})


def test_proxy_branch_without_magic_cookie_fails_g2(tmp_path) -> None:
    def edit(msg: Msg, at: int) -> None:
        if at == 2:
            msg.headers[0] = ["Via", msg.headers[0][1].replace("z9hG4bK", "x9")]
    expect(judge(tmp_path, Cfg(edits={"refer-UE-2": edit})), fails={"22~27": "G2"})


def test_bye_without_from_tag_fails_g1(tmp_path) -> None:
    """G1 (RFC 3261 §8.1.1.3): every request's From has a tag. UE-1's BYE to UE-3 has none: 78~83
    fails with G1; the report must not claim UE-1 sent no BYE."""
    cfg = Cfg(edits={"bye-UE-3": set_header("From", '"Alice" <sip:alice@home.example>')})
    expect(judge(tmp_path, cfg), fails={"78~83": "G1"})


def test_cs_contact_without_isfocus_fails_conf2(tmp_path) -> None:
    cfg = Cfg(edits={"200-conf": set_header("Contact", "<sip:conf-7f3a@10.77.0.4:5060>", hop=0)})
    expect(judge(tmp_path, cfg), fails={"16~21": "CONF-2"})


def test_ue2_rtp_while_held_fails_hold2(tmp_path) -> None:
    expect(judge(tmp_path, Cfg(ue2_rtp_on_hold=True)), fails={"2": "HOLD-2"})


FOREIGN_FAULTS = {
    # name: (cfg, step, id)
    "ue2-rtp-on-hold-ipv6-amr-asymmetric": (Cfg(ue2_rtp_on_hold=True, ipv6=True, codec="AMR-WB", rtp_src_offset=10),
                                            "2", "HOLD-2"),
    "join-200-without-isfocus-tcp": (Cfg(transport="TCP", isfocus_in_uri=True, edits={
        "200-join-UE-3": set_header("Contact", "<sip:conf-7f3a@10.77.0.4:5060>")}), "68~71", "JOIN-3"),
    "final-notify-active-compact-lowercase": (Cfg(styles={"UE-3": Style(compact=True, case="lower")}, edits={
        "notify-final-UE-3": set_header("Subscription-State", "active;expires=60")}), "72~77", "NOT-4"),
    "sipfrag-version-only-out-of-dialog": (Cfg(refer_out_of_dialog=True, edits={
        "notify-first-UE-2": set_body(b"SIP/2.0\r\n")}), "28~33", "NOT-3"),
    "max-forwards-kept-via-joined": (Cfg(proxy_join_via=True, edits={
        "notify-final-UE-2": set_header("Max-Forwards", "70", hop=1)}), "41~46", "G3"),
    "proxy-changes-sdp-answer-tcp": (Cfg(transport="TCP", edits={"200-join-UE-2": set_body(b"v=0\r\n", hop=1)}),
                                     "37~40", "G5"),
}


@pytest.mark.parametrize("name", list(FOREIGN_FAULTS))
def test_fault_in_a_foreign_capture_fails_its_step(tmp_path, name: str) -> None:
    cfg, step, check_id = FOREIGN_FAULTS[name]
    expect(judge(tmp_path, cfg), fails={step: check_id})


def test_hold_reinvite_with_sendrecv_fails_hold1(tmp_path) -> None:
    """Checklist §3 step 2 / HOLD-1: the hold offer is sendonly or inactive. UE-1's only re-INVITE
    in D12 before calling UE-3 offers sendrecv (answered sendrecv): step 2 fails HOLD-1."""
    expect(judge(tmp_path, Cfg(hold="sendrecv")), fails={"2": "HOLD-1"}, free=("1",))


def _without_join(tmp_path: Path, cfg: Cfg) -> Path:
    """The generator's capture with every frame of UE-2's join dialog (its Call-ID) left out."""
    packets = rdpcap(str(write(tmp_path / "full.pcap", cfg)))

    def sip(p) -> bytes:  # noqa: ANN001 - (the UDP payload as bytes: Scapy's SIP layer may own 5060)
        return bytes(p[UDP].payload) if UDP in p else b""

    join = next(sip(p) for p in packets if sip(p).startswith(b"INVITE sip:conf-") and b"bob@" in sip(p).split(b"\r\nTo:")[0])
    call_id = next(line for line in join.split(b"\r\n") if line.lower().startswith(b"call-id:")).split(b":", 1)[1].strip()
    path = tmp_path / "no-join.pcap"
    wrpcap(str(path), [p for p in packets if call_id not in sip(p)])
    return path


def test_a_join_missing_from_a_full_capture_fails_join1(tmp_path) -> None:
    """RFC 3515 §2.4.3: UE-2's final NOTIFY reports 200 for a join the capture (taken everywhere) never
    shows: JOIN-1 fails - the referee reported a success it did not have."""
    result = verify_capture(_without_join(tmp_path, Cfg(rtp=False)))
    assert isinstance(result, FlowResult)
    join1 = next(c for c in result.step("34~35").checks if c.id == "JOIN-1")
    assert join1.verdict == "fail" and "reports success" in join1.detail, join1


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_a_capture_at_the_p_cscf_that_the_joins_bypass(tmp_path, transport: str) -> None:
    """Only the P-CSCF Record-Routes, the capture is taken at the P-CSCF: UE-2's NOTIFYs cross it, its
    join goes UE-2 -> S-CSCF -> CS and never does. Every message has the P-CSCF at one end, so the
    missing join is inconclusive, not a failure; nothing fails."""
    result = judge(tmp_path, Cfg(capture_at=("P-CSCF",), rr_proxies=("P-CSCF",), transport=transport))
    assert not [s.step for s in result.steps if s.verdict == "fail"], [
        (s.step, [c.detail for c in s.failed]) for s in result.steps if s.verdict == "fail"]
    join1 = next(c for c in result.step("34~35").checks if c.id == "JOIN-1")
    assert join1.verdict == "inconclusive" and "the capture was taken at" in join1.detail, join1
