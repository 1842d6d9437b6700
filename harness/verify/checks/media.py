"""HOLD-1, HOLD-2, MEDIA-1, MEDIA-2: offer/answer (RFC 3264) and where RTP actually flows."""

from __future__ import annotations

from harness.flows.step import Step
from harness.verify.a21 import Evidence
from harness.verify.checks.base import Findings, inconclusive, where
from harness.verify.model import Dialog, Exchange
from harness.verify.verdict import CheckResult
from harness.verify.wire import RtpPacket, SdpView, WireMessage

GRACE = 0.06  # RTP already in flight when the hold answer left UE-2
ANSWER_FOR = {"sendonly": ("recvonly", "inactive"), "inactive": ("inactive",),
              "recvonly": ("sendonly", "inactive"), "sendrecv": ("sendrecv", "sendonly", "recvonly", "inactive")}


def sdps(ev: Evidence, dialog: Dialog) -> list[tuple[float, str, SdpView, WireMessage]]:
    """Every SDP sent in the dialog: (time, sending node, sdp, origin copy), in time order."""
    exchanges = list(dialog.exchanges)
    creator = ev.creator(dialog)
    if creator is not None and creator not in exchanges:
        exchanges.insert(0, creator)
    out = []
    for ex in exchanges:
        for lg in ex.all_logicals():
            m = lg.origin
            if m.sdp is not None and (lg.is_request or lg.to_tag is None or lg.to_tag in dialog.tags):
                out.append((m.time, ev.node(m.src_ep), m.sdp, m))
    return sorted(out, key=lambda t: t[0])


def _latest(items: list[tuple[float, str, SdpView, WireMessage]], node: str | None, before: float) -> \
        tuple[SdpView, WireMessage] | None:
    found = [(s, m) for t, n, s, m in items if n == node and t < before]
    return found[-1] if found else None


def _rtp(ev: Evidence, dst: tuple[str, int], after: float, until: float, src_ip: str | None = None) -> list[RtpPacket]:
    return [p for p in ev.rtp_to(dst) if after <= p.time <= until and (src_ip is None or p.src == src_ip)]


def _no_rtp(ev: Evidence, check_id: str) -> CheckResult | None:
    if not ev.data.rtp:
        return inconclusive(check_id, "the capture holds no RTP at all (captured without media?)")
    return None


def _without_o(sdp: SdpView) -> list[str]:
    return [line for line in sdp.text.splitlines() if not line.startswith("o=")]


def _version_rule(f: Findings, prev: tuple[SdpView, WireMessage] | None, sdp: SdpView, m: WireMessage,
                  who: str) -> None:
    """RFC 3264 §8: a changed SDP has the same session id and version + 1; an unchanged one is identical."""
    if prev is None:
        f.ok(f"{who}: no earlier SDP in the dialog to compare o= with")
        return
    old, old_m = prev
    if old.session_id != sdp.session_id:
        f.fail(f"frame {m.frame}: {who} o= session id {sdp.session_id}, was {old.session_id} "
               f"(frame {old_m.frame})", m.frame, old_m.frame)
    if old.version is None or sdp.version is None:
        f.fail(f"frame {m.frame}: {who} o= version not a number", m.frame)
    elif _without_o(old) == _without_o(sdp):
        if sdp.version not in (old.version, old.version + 1):
            f.fail(f"frame {m.frame}: {who} SDP unchanged but o= version {sdp.version} (was {old.version})", m.frame)
    elif sdp.version != old.version + 1:
        f.fail(f"frame {m.frame}: {who} SDP changed but o= version is {sdp.version}, expected {old.version + 1} "
               f"(frame {old_m.frame})", m.frame, old_m.frame)
    else:
        f.ok(f"{who} o= version {old.version} -> {sdp.version}")
    if len(sdp.media) < len(old.media):
        f.fail(f"frame {m.frame}: {who} has {len(sdp.media)} m= lines, fewer than {len(old.media)}", m.frame)
    for i, media in enumerate(sdp.media[: len(old.media)]):
        for pt, enc in sdp.rtpmap(i).items():
            if old.rtpmap(i).get(pt, enc) != enc:
                f.fail(f"frame {m.frame}: {who} remapped payload type {pt} from {old.rtpmap(i)[pt]} to {enc}", m.frame)
        del media


def hold_1(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3264 §6.1, §8.4; RFC 6337 §5.3-5.4: hold offer sendonly/inactive, answer recvonly/inactive."""
    ex, why = ev.subject(step)
    if ex is None or ev.d12 is None:
        return inconclusive("HOLD-1", why)
    f = Findings("HOLD-1")
    offer_m = ex.request.origin
    offer = offer_m.sdp
    assert offer is not None
    items = sdps(ev, ev.d12)
    ue1, ue2 = ev.node(offer_m.src_ep), ev.node(ex.request.receiver)
    for i in range(len(offer.media)):
        direction = offer.direction(i)
        if direction not in ("sendonly", "inactive"):
            f.fail(f"frame {offer_m.frame}: hold offer m-line {i} is {direction}, expected sendonly or inactive",
                   offer_m.frame)
    if (offer.address() or ("", 0))[0] == "0.0.0.0":
        f.warn(f"frame {offer_m.frame}: legacy c=0.0.0.0 hold (RFC 6337 §5.4; use a direction attribute)",
               offer_m.frame)
    _version_rule(f, _latest(items, ue1, offer_m.time), offer, offer_m, "UE-1's hold offer")
    cut = ev.unanswered_cut(ex) if ex.final is None else None
    if cut and not f.fails:
        return inconclusive("HOLD-1", f"hold {ex.method} of frame {offer_m.frame} not answered; {cut}",
                            frames=[offer_m.frame])
    if ex.ok is None:
        f.fail(f"hold {ex.method} of frame {offer_m.frame} got no 2xx (final: "
               f"{ex.final.status if ex.final else 'none'})", offer_m.frame)
        return f.result()
    answer_m = ex.ok.origin
    answer = answer_m.sdp
    if answer is None:
        f.fail(f"frame {answer_m.frame}: the 2xx to an offer carries no SDP answer (§13.3.1)", answer_m.frame)
        return f.result()
    if len(answer.media) != len(offer.media):
        f.fail(f"frame {answer_m.frame}: answer has {len(answer.media)} m= lines, offer {len(offer.media)} "
               "(RFC 3264 §6)", answer_m.frame)
    for i in range(min(len(answer.media), len(offer.media))):
        od, ad = offer.direction(i), answer.direction(i)
        if ad not in ANSWER_FOR.get(od, ()):
            f.fail(f"frame {answer_m.frame}: answer m-line {i} is {ad} to a {od} offer, expected "
                   f"{' or '.join(ANSWER_FOR[od])} (RFC 3264 §6.1)", answer_m.frame, offer_m.frame)
        elif od == "sendonly" and ad == "inactive":
            f.ok("answer inactive to sendonly (valid, RFC 3264 §6.1)")
        else:
            f.ok(f"offer {od} -> answer {ad}")
    _version_rule(f, _latest(items, ue2, answer_m.time), answer, answer_m, "UE-2's hold answer")
    f.frames += [offer_m.frame, answer_m.frame]
    return f.result()


def _window_end(ev: Evidence, dialog: Dialog, after: float) -> float:
    """End of the held period: a BYE or a resuming offer in the dialog, else the end of the capture."""
    ends = [e.request.time for e in dialog.exchanges if e.request.time > after and (
        e.method == "BYE" or (e.method in ("INVITE", "UPDATE") and e.request.origin.sdp is not None
                              and e.request.origin.sdp.direction() == "sendrecv"))]
    return min(ends, default=ev.last_time)


def hold_2(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3264 §5.1, §6.1 ([checker] FAIL): after answering recvonly/inactive UE-2 sends no RTP to UE-1."""
    ex, why = ev.subject(step)
    if ex is None or ev.d12 is None:
        return inconclusive("HOLD-2", why)
    missing = _no_rtp(ev, "HOLD-2")
    if missing:
        return missing
    if ex.ok is None or ex.ok.origin.sdp is None:
        return inconclusive("HOLD-2", f"the hold offer of frame {ex.request.origin.frame} got no SDP answer")
    f = Findings("HOLD-2")
    items = sdps(ev, ev.d12)
    ue1, ue2 = ev.node(ex.request.sender), ev.node(ex.request.receiver)
    answer_m = ex.ok.origin
    ue1_sdps = [(s, m) for t, n, s, m in items if n == ue1 and (s.address() or ("0.0.0.0", 0))[0] != "0.0.0.0"]
    ue2_sdp = _latest(items, ue2, answer_m.time + 1e-9)
    if not ue1_sdps:
        return inconclusive("HOLD-2", "no usable media address from UE-1 in D12")
    target = ue1_sdps[-1][0].address()
    assert target is not None
    start = answer_m.time + GRACE
    end = _window_end(ev, ev.d12, answer_m.time)
    src_ip = ue2_sdp[0].address()[0] if ue2_sdp and ue2_sdp[0].address() else None
    late = _rtp(ev, target, start, end, src_ip)
    before = _rtp(ev, target, 0, answer_m.time, src_ip)
    if late:
        first = late[0]
        f.fail(f"{len(late)} RTP packets from UE-2 to UE-1's D12 address {target[0]}:{target[1]} after UE-2 "
               f"answered the hold (frame {answer_m.frame}); first frame {first.frame} at "
               f"+{(first.time - answer_m.time) * 1000:.0f} ms", *[p.frame for p in late[:20]])
    else:
        f.ok(f"no RTP from UE-2 to {target[0]}:{target[1]} from {GRACE * 1000:.0f} ms after the hold answer "
             f"(frame {answer_m.frame}) until the end of the hold ({len(before)} packets before it)", answer_m.frame)
    return f.result()


def _media_between(ev: Evidence, f: Findings, ex: Exchange, dialog_label: str, a_role: str, b_role: str,
                   start: float, end: float) -> str | None:
    """RTP both ways, each to the address the peer's SDP named (RFC 3264 §5.1, §6.1). Returns why the
    media cannot be judged (the capture ends before any could flow) instead of failing it."""
    offer_m = ex.request.origin
    answer_m = ex.ok.origin if ex.ok else None
    acks = [a.origin for a in ex.acks if a.origin.sdp is not None]
    if offer_m.sdp is None and acks:  # offerless INVITE: offer in the 2xx, answer in the ACK
        offer_m = acks[0]
    a_sdp, b_sdp = offer_m.sdp, answer_m.sdp if answer_m else None
    if a_sdp is None or b_sdp is None:
        f.fail(f"{dialog_label}: no offer/answer pair (offer frame {offer_m.frame}, answer "
               f"{answer_m.frame if answer_m else 'none'})", offer_m.frame)
        return None
    a_addr, b_addr = a_sdp.address(), b_sdp.address()
    for sdp, who, frame in ((b_sdp, b_role, answer_m.frame if answer_m else 0), (a_sdp, a_role, offer_m.frame)):
        addr = sdp.address()
        if addr is None or addr[0] == "0.0.0.0" or addr[1] == 0:
            f.fail(f"frame {frame}: {who}'s SDP names no usable media address ({addr})", frame)
    if not a_addr or not b_addr:
        return None
    # No RTP at all after `start`, or the capture ends within 0.2 s (ten 20 ms packets) of it: cut before
    # media could flow both ways.
    last_rtp = _last_rtp(ev)
    cut = ev.cut_short(start) if last_rtp <= start or max(last_rtp, ev.capture_end) - start < 0.2 else None
    for src_sdp, dst_addr, src, dst in ((a_sdp, b_addr, a_role, b_role), (b_sdp, a_addr, b_role, a_role)):
        direction = src_sdp.direction()
        packets = _rtp(ev, dst_addr, start, end)
        if direction in ("recvonly", "inactive"):
            continue
        if packets:
            f.ok(f"{len(packets)} RTP packets {src} -> {dst} at {dst_addr[0]}:{dst_addr[1]}", packets[0].frame)
        elif cut:
            return (f"{dialog_label}: no RTP {src} -> {dst} at {dst_addr[0]}:{dst_addr[1]} after frame "
                    f"{answer_m.frame if answer_m else offer_m.frame}; {cut}")
        else:
            stray = [p for p in ev.data.rtp if start <= p.time <= end and p.src == (src_sdp.address() or ("", 0))[0]]
            hint = f"; {src} sent RTP to {stray[0].dst}:{stray[0].dport} instead (frame {stray[0].frame})" if stray else ""
            f.fail(f"{dialog_label}: no RTP {src} -> {dst} at the SDP address {dst_addr[0]}:{dst_addr[1]} "
                   f"between frame {answer_m.frame if answer_m else offer_m.frame} and {end - start:.2f} s later{hint}",
                   offer_m.frame, *([answer_m.frame] if answer_m else []), *([stray[0].frame] if stray else []))
    return None


def _last_rtp(ev: Evidence) -> float:
    """Time of the instance's last RTP packet, 0.0 without any (computed once)."""
    last = ev.data.__dict__.get("_rtp_end")
    if last is None:
        last = ev.data.__dict__["_rtp_end"] = max((p.time for p in ev.data.rtp), default=0.0)
    return last  # type: ignore[no-any-return]


def media_1(ev: Evidence, step: Step) -> CheckResult:
    """Step 1: UE-1 and UE-2 are in an active call: RTP flows both ways per the D12 SDPs."""
    ex, why = ev.subject(step)
    if ex is None:
        return inconclusive("MEDIA-1", why)
    missing = _no_rtp(ev, "MEDIA-1")
    if missing:
        return missing
    if ex.ok is None:
        return inconclusive("MEDIA-1", f"the INVITE of frame {ex.request.origin.frame} got no 2xx")
    f = Findings("MEDIA-1")
    start = ex.ok.time
    end = ev.hold.request.time if ev.hold is not None else _window_end(ev, ev.d12, start) if ev.d12 else start
    cut = _media_between(ev, f, ex, "D12", ev.role(ex.request.sender), ev.role(ex.request.receiver), start, end)
    if cut and not f.fails:
        return inconclusive("MEDIA-1", cut, frames=[ex.ok.origin.frame])
    return f.result()


def media_2(ev: Evidence, step: Step) -> CheckResult:
    """Steps 15/36/67 [inferred]: the CS's SDP points at a media address (the MRFP) and RTP flows both ways."""
    ex, why = ev.subject(step)
    if ex is None:
        return inconclusive("MEDIA-2", why)
    if ex.ok is None:
        return inconclusive("MEDIA-2", f"the CS did not accept the INVITE of frame {ex.request.origin.frame} "
                            f"(final: {ex.final.status if ex.final else 'none'})")
    f = Findings("MEDIA-2")
    cs_sdp = ex.ok.origin.sdp
    if cs_sdp is None:
        f.fail(f"{where(ev, ex.ok.origin)}: the CS's 2xx carries no SDP", ex.ok.origin.frame)
        return f.result()
    missing = _no_rtp(ev, "MEDIA-2")
    if missing:
        return missing
    addr = cs_sdp.address()
    if addr and addr[0] != ex.ok.origin.src:
        f.ok(f"media at {addr[0]}:{addr[1]} (MRFP), not the CS's signalling address {ex.ok.origin.src}")
    last = _last_rtp(ev)   # there is RTP (_no_rtp above)
    cut = _media_between(ev, f, ex, f"{ev.role(ex.request.sender)}-CS", ev.role(ex.request.sender), "CS/MRFP",
                         ex.ok.time, last)
    if cut and not f.fails:
        return inconclusive("MEDIA-2", cut, frames=[ex.ok.origin.frame])
    return f.result()
