"""The verifier on the failure paths and flow variants of checklist §8, in captures made by the
independent generator (testcases/data/indie_a21.py: written from the spec, the checklist and the
RFCs, sharing no code with make_a21_pcap.py or harness/verify).

Every expected verdict comes from the checklist/RFCs, never from what the verifier says:

* join rejected by the CS (§8g): the INVITE 34~35 is judged as sent (pass); 36 and 37~40 have no
  2xx to judge (inconclusive: not applicable); the final NOTIFY reports the failure with
  `terminated;reason=noresource` (pass, RFC 3515 §2.4.7); UE-1 keeping the held call is expected
  (47~52 pass) and a BYE anyway is a WARN, not a failure (RFC 5589 §6, checklist 47~52);
* REFER rejected (403/405/501, checklist 22~27 error responses): 22~27 fails REF-5 (A.2.1 needs the
  referee to accept, RFC 3515 §2.4.2 / RFC 7647 §5); no subscription or join can follow, so 28~46
  are inconclusive (not applicable, reason given) and 47~52 passes (UE-1 keeps its call);
* Refer-Sub (§8c, RFC 4488 §4): "expect NOTIFY" is derived from the 2xx, not from the request;
* REFER to the focus with Replaces (§8d) is a different flow, not twenty failures;
* many instances, unrelated SIP, a capture cut short (a missing message is inconclusive, with a
  reason naming it, when the capture ends before it was due; never a crash).

Debatable choices are written next to the test that makes them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from scapy.layers.inet import UDP
from scapy.utils import rdpcap, wrpcap

from harness.verify import CaptureResult, FlowResult, verify_capture
from testcases.data.indie_a21 import Cfg, build, write, write_many
from testcases.unit.test_verify_unseen import STEPS, expect, judge, set_header

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")

NOTIFY_STEPS = ("28~33", "41~46", "59~64", "72~77")


def judge_many(tmp_path: Path, cfgs: list[Cfg]) -> CaptureResult:
    result = verify_capture(write_many(tmp_path / "many.pcap", cfgs))
    assert isinstance(result, CaptureResult), f"several instances expected, got {type(result).__name__}"
    return result


def instance(i: int, **kw: object) -> Cfg:
    """Instance i with UEs of its own (addresses, users), its own conference URI and MRFP ports,
    starting 0.37 s after instance i-1: the instances overlap in time."""
    base: dict[str, object] = dict(ue_hosts=(20 + 3 * i, 21 + 3 * i, 22 + 3 * i), prefix=f"i{i}x",
                                   conf_user=f"conf-{i}", mrfp_port_offset=100 * i, t0=1000 + 0.37 * i,
                                   user_suffix=str(i))
    base.update(kw)
    return Cfg(**base)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------
# Join rejected by the CS (checklist §8g, 41~46, 47~52).

JOIN_REJECTED = {
    "ue2-486": (Cfg(join_reject={"UE-2": "486 Busy Here"}), ("36", "37~40")),
    "ue3-603": (Cfg(join_reject={"UE-3": "603 Declined"}), ("67", "68~71")),
    "ue2-503-out-of-dialog-refer": (Cfg(join_reject={"UE-2": "503 Service Unavailable"}, refer_out_of_dialog=True),
                                    ("36", "37~40")),
    "both-486-tcp": (Cfg(join_reject={"UE-2": "486 Busy Here", "UE-3": "486 Busy Here"}, transport="TCP"),
                     ("36", "37~40", "67", "68~71")),
}


@pytest.mark.parametrize("name", list(JOIN_REJECTED))
def test_join_rejected_ue1_keeps_the_held_call(tmp_path, name: str) -> None:
    cfg, not_applicable = JOIN_REJECTED[name]
    result = judge(tmp_path, cfg)
    expect(result, free=not_applicable)
    for step in not_applicable:
        assert result.step(step).verdict == "inconclusive", step
    assert result.verdict == "inconclusive"
    for target, final, bye in (("UE-2", "41~46", "47~52"), ("UE-3", "72~77", "78~83")):
        if target in cfg.join_reject:
            not4 = next(c for c in result.step(final).checks if c.id == "NOT-4")
            assert not4.verdict == "pass", not4.detail
            assert result.step(bye).verdict == "pass"
            assert any("keeping the held call" in n for n in result.step(bye).notes), result.step(bye).notes


def test_bye_after_a_failed_join_is_a_warning(tmp_path) -> None:
    """Checklist 47~52 [checker]: a BYE although the final NOTIFY reported 503 is WARN, not FAIL."""
    cfg = Cfg(join_reject={"UE-2": "503 Service Unavailable"}, bye_after_failed_join=True)
    expect(judge(tmp_path, cfg), free=("36", "37~40"), warns={"47~52": "BYE-1"})


def test_join_rejected_final_notify_active_fails_not4(tmp_path) -> None:
    """RFC 3515 §2.4.7: the final NOTIFY is terminated;reason=noresource on failure too (NOT-4)."""
    cfg = Cfg(join_reject={"UE-2": "486 Busy Here"},
              edits={"notify-final-UE-2": set_header("Subscription-State", "active;expires=60")})
    result = judge(tmp_path, cfg)
    assert "NOT-4" in {c.id for c in result.step("41~46").failed}


# ---------------------------------------------------------------------------------------------------
# REFER rejected.

REFER_REJECTED = {
    "ue2-403": (Cfg(refer_reject={"UE-2": "403 Forbidden"}), "UE-2"),
    "ue3-405": (Cfg(refer_reject={"UE-3": "405 Method Not Allowed"}), "UE-3"),
    "ue2-501-out-of-dialog": (Cfg(refer_reject={"UE-2": "501 Not Implemented"}, refer_out_of_dialog=True), "UE-2"),
    "ue3-603-tcp": (Cfg(refer_reject={"UE-3": "603 Declined"}, transport="TCP"), "UE-3"),
}
BRANCH_STEPS = {"UE-2": ("22~27", ("28~33", "34~35", "36", "37~40", "41~46"), "47~52"),
                "UE-3": ("53~58", ("59~64", "65~66", "67", "68~71", "72~77"), "78~83")}


@pytest.mark.parametrize("name", list(REFER_REJECTED))
def test_refer_rejected_fails_ref5_and_nothing_after_it(tmp_path, name: str) -> None:
    """Debatable, chosen: the rejection fails 22~27 (REF-5: A.2.1 needs the REFER accepted, RFC 3515
    §2.4.2), and the steps that can then not happen are inconclusive (not applicable), not failed a
    second time; the BYE step passes, keeping the call being the expected behaviour."""
    cfg, target = REFER_REJECTED[name]
    refer, after, bye = BRANCH_STEPS[target]
    result = judge(tmp_path, cfg)
    expect(result, fails={refer: "REF-5"}, free=after)
    status = cfg.refer_reject[target].split()[0]
    for step in after:
        s = result.step(step)
        assert s.verdict == "inconclusive" and f"rejected with {status}" in s.notes[0], (step, s.notes)
    assert result.step(bye).verdict == "pass"


# ---------------------------------------------------------------------------------------------------
# Refer-Sub (checklist §8c, RFC 4488 §4: derive "expect NOTIFY" from the 2xx).

@pytest.mark.parametrize("cfg", [Cfg(refer_sub="false", refer_sub_2xx="false"),
                                 Cfg(refer_sub="false", refer_sub_2xx="false", refer_out_of_dialog=True),
                                 Cfg(refer_sub="false", refer_sub_2xx="false", transport="TCP", refer_code=200)],
                         ids=["in-dialog", "out-of-dialog", "tcp-200"])
def test_refer_sub_false_echoed_no_notify_expected(tmp_path, cfg: Cfg) -> None:
    result = judge(tmp_path, cfg)
    expect(result)
    for step in NOTIFY_STEPS:
        assert any("Refer-Sub: false" in n for n in result.step(step).notes), step


def test_refer_sub_false_requested_but_not_echoed_notifies_sent_passes(tmp_path) -> None:
    """The 2xx omits Refer-Sub: an implicit subscription exists; the NOTIFYs sent are judged normally."""
    expect(judge(tmp_path, Cfg(refer_sub="false")))


@pytest.mark.parametrize("cfg", [Cfg(refer_sub="false", no_notify=True),
                                 Cfg(refer_sub_2xx="true", no_notify=True),
                                 Cfg(refer_sub="false", no_notify=True, refer_out_of_dialog=True)],
                         ids=["2xx-without-refer-sub", "2xx-refer-sub-true", "out-of-dialog"])
def test_no_notify_although_the_2xx_created_a_subscription_fails(tmp_path, cfg: Cfg) -> None:
    """RFC 4488 §4: without Refer-Sub: false in the 2xx "an implicit subscription is created as in the
    default case", and RFC 3515 §2.4.4 then requires NOTIFYs. The referee went on (joined, answered
    the BYE) long after it owed them, so their absence is a failure (NOT-1), not "nothing to judge".
    The verifier used to report these steps inconclusive."""
    result = judge(tmp_path, cfg)
    expect(result, fails={step: "NOT-1" for step in NOTIFY_STEPS})
    assert "implicit subscription" in next(c for c in result.step("28~33").checks if c.id == "NOT-1").detail


# ---------------------------------------------------------------------------------------------------
# In-dialog vs out-of-dialog, intermediate NOTIFYs, NOTIFY before the 2xx (checklist §8a, §8j, O2).

VALID = {
    "in-dialog-100-180-200-notify-before-202": Cfg(mid_notify=True, notify_before_2xx=True),
    "out-of-dialog-100-180-200-notify-before-202": Cfg(mid_notify=True, notify_before_2xx=True,
                                                       refer_out_of_dialog=True),
    "out-of-dialog-100-180-200-tcp": Cfg(mid_notify=True, refer_out_of_dialog=True, transport="TCP"),
    "unrelated-sip-mixed-in": Cfg(noise=True),
    "unrelated-sip-mixed-in-tcp": Cfg(noise=True, transport="TCP"),
    "unrelated-sip-no-proxies": Cfg(noise=True, ue1_proxies=(), far_proxies=()),
    "unrelated-sip-and-out-of-dialog-refer": Cfg(noise=True, refer_out_of_dialog=True, mid_notify=True),
}


@pytest.mark.parametrize("name", list(VALID))
def test_valid_variant_passes_every_step(tmp_path, name: str) -> None:
    expect(judge(tmp_path, VALID[name]))


def test_unrelated_sip_does_not_take_a_role(tmp_path) -> None:
    result = judge(tmp_path, Cfg(noise=True))
    assert not any(addr.startswith("10.77.0.20") for addr in result.roles.values()), result.roles


# ---------------------------------------------------------------------------------------------------
# REFER to the focus with Replaces (checklist §8d).

@pytest.mark.parametrize("cfg", [Cfg(refer_to_focus=True), Cfg(refer_to_focus=True, transport="TCP"),
                                 Cfg(refer_to_focus=True, ue1_proxies=(), far_proxies=())],
                         ids=["udp", "tcp", "no-proxies"])
def test_refer_to_focus_with_replaces_is_a_different_flow(tmp_path, cfg: Cfg) -> None:
    result = judge(tmp_path, cfg)
    assert result.different_flow and "§8d" in result.different_flow, result.different_flow
    assert result.verdict == "inconclusive"
    assert not [s.step for s in result.steps if s.verdict == "fail"]
    assert [s.step for s in result.steps] == list(STEPS)


# ---------------------------------------------------------------------------------------------------
# Many instances in one capture.

@pytest.mark.parametrize("count", [3, 6])
def test_interleaved_instances_with_distinct_ues(tmp_path, count: int) -> None:
    result = judge_many(tmp_path, [instance(i) for i in range(count)])
    summary = result.summary()
    assert (summary["instances"], summary["pass"], summary["fail"]) == (count, count, 0), summary
    assert [r.instance["conference"] for r in result.instances if r.instance] == [
        f"sip:conf-{i}@10.77.0.4:5060" for i in range(count)]
    for r in result.instances:
        expect(r)


def test_twenty_instances_grouped_without_media(tmp_path) -> None:
    """No RTP in the capture: the media checks are inconclusive, every signalling step passes."""
    result = judge_many(tmp_path, [instance(i, rtp=False) for i in range(20)])
    summary = result.summary()
    assert (summary["instances"], summary["inconclusive"], summary["fail"]) == (20, 20, 0), summary
    media = ("1", "2", "15", "36", "37~40", "67", "68~71")
    for r in result.instances:
        expect(r, free=media)


@pytest.mark.parametrize("ood", [False, True], ids=["in-dialog-refer", "out-of-dialog-refer"])
def test_two_conferences_back_to_back_by_the_same_ues(tmp_path, ood: bool) -> None:
    """The same three UEs (same addresses and AoRs) hold a second conference after the first, with new
    Call-IDs and a new conference URI: two instances. The verifier used to tie them into one through
    the shared UEs and judged only the first."""
    result = judge_many(tmp_path, [Cfg(prefix="a", conf_user="conf-a", refer_out_of_dialog=ood),
                                   Cfg(prefix="b", conf_user="conf-b", t0=1100, refer_out_of_dialog=ood)])
    summary = result.summary()
    assert (summary["instances"], summary["pass"]) == (2, 2), summary
    assert [r.instance["conference"] for r in result.instances if r.instance] == [
        "sip:conf-a@10.77.0.4:5060", "sip:conf-b@10.77.0.4:5060"]
    for r in result.instances:
        expect(r)


def test_second_back_to_back_conference_faulty_fails_alone(tmp_path) -> None:
    bad = {"notify-final-UE-3": set_header("Subscription-State", "active;expires=60")}
    result = judge_many(tmp_path, [Cfg(prefix="a", conf_user="conf-a"),
                                   Cfg(prefix="b", conf_user="conf-b", t0=1100, edits=bad)])
    first, second = result.instances
    expect(first)
    expect(second, fails={"72~77": "NOT-4"})
    assert result.summary()["failed_checks"] == {"72~77 NOT-4": 1}


def test_one_faulty_instance_among_good_ones_fails_alone(tmp_path) -> None:
    bad = {"notify-final-UE-3": set_header("Subscription-State", "active;expires=60")}
    result = judge_many(tmp_path, [instance(i, **({"edits": bad} if i == 2 else {})) for i in range(4)])
    summary = result.summary()
    assert (summary["instances"], summary["pass"], summary["fail"]) == (4, 3, 1), summary
    assert summary["failed_checks"] == {"72~77 NOT-4": 1}
    for i, r in enumerate(result.instances):
        expect(r, fails={"72~77": "NOT-4"} if i == 2 else None)


def test_instances_with_failure_paths_variants_and_unrelated_sip(tmp_path) -> None:
    result = judge_many(tmp_path, [instance(0, noise=True), instance(1, refer_to_focus=True),
                                   instance(2, join_reject={"UE-2": "486 Busy Here"}),
                                   instance(3, refer_reject={"UE-3": "403 Forbidden"})])
    summary = result.summary()
    assert (summary["instances"], summary["pass"], summary["fail"], summary["different_flow"]) == (4, 1, 1, 1), summary
    good, focus, join_failed, refer_failed = result.instances
    expect(good)
    assert focus.different_flow and "§8d" in focus.different_flow
    expect(join_failed, free=("36", "37~40"))
    expect(refer_failed, fails={"53~58": "REF-5"}, free=BRANCH_STEPS["UE-3"][1])
    assert summary["failed_checks"] == {"53~58 REF-5": 1}


# ---------------------------------------------------------------------------------------------------
# A capture cut short: what is missing because the capture ended is inconclusive, with the reason.

def test_truncated_before_the_last_bye_is_answered(tmp_path) -> None:
    """The last 5 frames (the 200 OK to UE-1's BYE to UE-3 on its way back) are missing: 78~83 is
    inconclusive (the capture ends right after the BYE), not a failure "BYE answered never"."""
    result = judge(tmp_path, Cfg(truncate=5, rtp=False))
    expect(result, free=("1", "2", "15", "36", "37~40", "67", "68~71", "78~83"))
    bye1 = next(c for c in result.step("78~83").checks if c.id == "BYE-1")
    assert bye1.verdict == "inconclusive" and "not answered" in bye1.detail and "cut short" in bye1.detail


def test_truncated_after_ue2_finished(tmp_path) -> None:
    """Cut after UE-2's final NOTIFY and UE-3's REFER: UE-1's BYE to UE-2 (sent, in this flow, after
    both joins) and everything of UE-3 after its REFER are missing because the capture ends: each is
    inconclusive with a reason naming what is missing; nothing fails."""
    result = judge(tmp_path, Cfg(truncate=25, rtp=False))
    assert not [s.step for s in result.steps if s.verdict == "fail"]
    missing = {"47~52": "no BYE", "65~66": "no new INVITE from UE-3", "72~77": "no final (terminated) NOTIFY",
               "78~83": "no BYE"}
    for step, text in missing.items():
        s = result.step(step)
        assert s.verdict == "inconclusive" and any(text in c.detail for c in s.checks), (step, s.checks)
    assert "cut short" in next(c for c in result.step("47~52").checks if c.id == "BYE-1").detail


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_truncated_anywhere_never_fails_or_crashes(tmp_path, transport: str) -> None:
    """Cut the capture at 6 points (mid-transaction, mid-TCP, before media flows): no crash, and
    nothing is failed for being absent. A cut landing exactly between UE-1's BYE of one call and its
    BYE of the other is indistinguishable from UE-1 never ending the second call: BYE-1 may fail that
    one (debatable, kept: the fault "UE-1 skips a BYE" must still fail in complete captures)."""
    total = len(build(Cfg(transport=transport)).frames)
    for n in range(3, total - 30, (total - 30) // 6):
        result = verify_capture(write(tmp_path / f"cut{n}.pcap", Cfg(transport=transport, truncate=n)))
        assert isinstance(result, FlowResult)
        failed = {s.step: [c.id for c in s.failed] for s in result.steps if s.verdict == "fail"}
        if failed == {"78~83": ["BYE-1"]}:
            continue
        assert not failed, (n, failed)


def _until_conference_invite(tmp_path: Path, retransmit: bool) -> Path:
    """The generator's capture up to UE-1's conference INVITE reaching the CS, nothing answered; with
    `retransmit`, UE-1's first-hop copy again T1 later (RFC 3261 Timer A), as a UAC does when the CS
    stays silent."""
    packets = rdpcap(str(write(tmp_path / "full.pcap", Cfg(rtp=False))))
    # (the UDP payload as bytes: with the harness's Scapy SIP layer bound to 5060 it is not Raw)
    invites = [i for i, p in enumerate(packets)
               if UDP in p and bytes(p[UDP].payload).startswith(b"INVITE sip:conference-factory")]
    kept = list(packets[:invites[-1] + 1])
    if retransmit:
        again = packets[invites[0]].copy()
        again.time = kept[-1].time + 0.5
        kept.append(again)
    path = tmp_path / ("silent-cs.pcap" if retransmit else "cut-at-conf.pcap")
    wrpcap(str(path), kept)
    return path


@pytest.mark.parametrize("retransmit", [True, False])
def test_a_conference_invite_the_cs_never_answers(tmp_path, retransmit: bool) -> None:
    """RFC 4579 §5.4 and RFC 3261 §17.1.1: retransmitted and still unanswered, the CS never created the
    conference - CONF-2 fails; sent once as the capture ends, the answer may just be missing (cut
    short) - inconclusive. What comes before passes either way; nothing after the INVITE fails."""
    result = verify_capture(_until_conference_invite(tmp_path, retransmit), factory_uri="sip:conference-factory@10.77.0.4")
    assert isinstance(result, FlowResult)
    for step in ("3~11", "12~14"):  # (1 and 2 are inconclusive on media: this capture has no RTP)
        assert result.step(step).verdict == "pass", result.step(step).checks
    assert "CS = the element the INVITE to the given factory URI went to" in " ".join(result.notes)
    conf2 = next(c for c in result.step("16~21").checks if c.id == "CONF-2")
    assert "nothing answered UE-1's INVITE" in conf2.detail
    if retransmit:
        assert conf2.verdict == "fail" and "the conference was never created" in conf2.detail, conf2
    else:
        assert conf2.verdict == "inconclusive" and "cut short" in conf2.detail, conf2
    assert {s.step for s in result.steps if s.verdict == "fail"} == ({"16~21"} if retransmit else set())
