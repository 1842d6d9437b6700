"""MEDIA-3, MEDIA-4, MIX-1 at the join steps (37~40, 68~71): payload types, RTP destinations and the
MRFP's mix, judged from the capture alone (docs/requirements.md)."""

from __future__ import annotations

from collections import Counter

from harness.flows.step import Step
from harness.verify.a21 import Evidence
from harness.verify.checks.base import Findings, inconclusive, memo
from harness.verify.media import detect_from_levels, tone_levels
from harness.verify.model import Exchange
from harness.verify.verdict import CheckResult
from harness.verify.wire import RtpPacket, SdpView

GRACE = 0.06      # RTP already in flight when the answer changed the destination
SETTLE = 0.1      # the mixer needs a frame or two from a new participant before its tone is in the mix
MIN_FRAMES = 10   # 0.2 s: tones 25 Hz apart resolve (harness/verify/media.py)
TONES = {"UE-1": 400.0, "UE-2": 650.0, "UE-3": 1000.0}
FREQS = tuple(TONES.values())
DECODABLE = (0, 8)


def _sdp_history(ev: Evidence, ex: Exchange) -> list[tuple[float, str, SdpView]]:
    """(time, sending node, SDP) of every SDP in the dialog `ex` created (same Call-ID), time order."""
    out = []
    for method in ("INVITE", "UPDATE"):
        for e in ev.model.requests(method):
            if e is not ex and not _same_dialog(ex, e):
                continue
            for lg in e.all_logicals():
                if lg.origin.sdp is not None and (lg.is_request or 200 <= (lg.status or 0) < 300):
                    out.append((lg.origin.time, ev.node(lg.origin.src_ep), lg.origin.sdp))
    return sorted(out, key=lambda t: t[0])


def _same_dialog(ex: Exchange, e: Exchange) -> bool:
    """`e` is a request inside the dialog `ex` created (Call-ID and both tags; a reused Call-ID is
    another dialog)."""
    r = e.request
    if r.call_id != ex.request.call_id or not r.time > ex.request.time:
        return False   # the common answer, before looking for ex's 2xx
    tags = {ex.request.from_tag, ex.ok.to_tag if ex.ok else None} - {None}
    return {r.from_tag, r.to_tag} <= tags


def _latest(history: list[tuple[float, str, SdpView]], node: str, before: float) -> SdpView | None:
    """The last SDP `node` sent at or before `before` (asked once per RTP packet: scans from the end)."""
    for t, n, s in reversed(history):
        if n == node and t <= before:
            return s
    return None


class Leg:
    """One participant's conference leg: its node, the CS node, SDP history, start and end."""

    def __init__(self, ev: Evidence, who: str, ex: Exchange) -> None:
        self.who, self.ex = who, ex
        self.ue = ev.node(ex.request.sender)
        self.cs = ev.node(ex.ok.sender) if ex.ok else ev.node(ex.request.receiver)
        self.history = _sdp_history(ev, ex)
        ack = ex.ack_2xx
        self.start = ack.time if ack is not None else ex.ok.time if ex.ok else ex.request.time
        self.answered = ex.ok.time if ex.ok else None
        byes = [e.request.time for e in ev.model.requests("BYE") if _same_dialog(ex, e)]
        self.end = min(byes, default=float("inf"))

    def ue_sdp(self, at: float) -> SdpView | None:
        return _latest(self.history, self.ue, at)

    def cs_sdp(self, at: float) -> SdpView | None:
        return _latest(self.history, self.cs, at)

    def ue_addr(self, at: float) -> tuple[str, int] | None:
        sdp = self.ue_sdp(at)
        return sdp.address() if sdp else None

    def mrfp_addr(self, at: float) -> tuple[str, int] | None:
        sdp = self.cs_sdp(at)
        return sdp.address() if sdp else None


def _legs(ev: Evidence) -> dict[str, Leg]:
    """The accepted conference legs, by participant: UE-1's conference-creating INVITE and the joins."""
    key = ("legs", "")
    if key not in ev._memo:
        legs: dict[str, Leg] = {}
        if ev.conf is not None and ev.conf.ok is not None:
            legs["UE-1"] = Leg(ev, "UE-1", ev.conf)
        for who, br in ev.branches.items():
            if br.join is not None and br.join.ok is not None:
                legs[who] = Leg(ev, who, br.join)
        ev._memo[key] = legs
    return ev._memo[key]  # type: ignore[return-value]


def _subject_leg(ev: Evidence, step: Step, check_id: str) -> tuple[Leg | None, CheckResult | None]:
    ex, why = ev.subject(step)
    if ex is None:
        return None, inconclusive(check_id, why)
    if ex.ok is None:
        return None, inconclusive(check_id, f"the CS did not accept the INVITE of frame {ex.request.origin.frame}")
    if not ev.data.rtp:
        return None, inconclusive(check_id, "the capture holds no RTP at all (captured without media?)")
    leg = _legs(ev).get(step.branch or "")
    if leg is None:
        return None, inconclusive(check_id, f"no conference leg of {step.branch}")
    return leg, None


def _last_time(ev: Evidence) -> float:
    return ev.last_time


def _from(ev: Evidence, src: tuple[str, int], after: float, until: float) -> list[RtpPacket]:
    return [p for p in ev.rtp_from(src) if after <= p.time <= until]


def media_3(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3264 §6.1, §7: every RTP packet on the join leg carries a payload type the receiver's latest
    SDP in that dialog lists on its m= line."""
    leg, bad = _subject_leg(ev, step, "MEDIA-3")
    if leg is None:
        return bad  # type: ignore[return-value]
    f = Findings("MEDIA-3")
    assert leg.answered is not None
    start, end = leg.answered, min(leg.end, _last_time(ev))
    directions = ((leg.ue, leg.cs, leg.ue_sdp, leg.cs_sdp, f"{leg.who} -> MRFP"),
                  (leg.cs, leg.ue, leg.cs_sdp, leg.ue_sdp, f"MRFP -> {leg.who}"))
    for _sender, _receiver, sender_sdp, receiver_sdp, label in directions:
        rx = receiver_sdp(start)
        tx = sender_sdp(start)
        if rx is None or rx.address() is None or tx is None or tx.address() is None:
            f.fail(f"{label}: no SDP pair in the join dialog to judge payload types by", leg.ex.request.origin.frame)
            continue
        packets = [p for p in ev.rtp_to(rx.address()) if start <= p.time <= end]  # type: ignore[arg-type]
        if not packets:
            f.ok(f"{label}: no RTP to {rx.address()} to judge")
            continue
        wrong: Counter[int] = Counter()
        first: dict[int, int] = {}
        listed: dict[int, set[str]] = {}   # m= formats by id of the SDP in force (one per offer/answer)
        for p in packets:
            allowed = receiver_sdp(p.time) or rx
            fmts = listed.get(id(allowed))
            if fmts is None:
                fmts = listed[id(allowed)] = set(allowed.media[0].fmts) if allowed.media else set()
            if str(p.pt) not in fmts and not 72 <= p.pt <= 76:  # 72-76: RTCP that looked like RTP
                wrong[p.pt] += 1
                first.setdefault(p.pt, p.frame)
        fmts = " ".join(rx.media[0].fmts) if rx.media else ""
        if wrong:
            for pt, n in sorted(wrong.items()):
                f.fail(f"{label}: {n} RTP packets with payload type {pt} (first frame {first[pt]}), but the "
                       f"receiver's SDP lists m= formats {fmts or 'none'} (RFC 3264 §6.1)", first[pt])
        else:
            pts = sorted({p.pt for p in packets})
            f.ok(f"{label}: {len(packets)} RTP packets, payload type {'/'.join(map(str, pts))} listed in "
                 f"the receiver's m= formats {fmts}", packets[0].frame)
    return f.result()


def media_4(ev: Evidence, step: Step) -> CheckResult:
    """RFC 3264 §5.1, §6.1: after joining, the UE sends RTP from its conference leg only to the
    c=/m= address the CS's latest SDP in that dialog named (the MRFP)."""
    leg, bad = _subject_leg(ev, step, "MEDIA-4")
    if leg is None:
        return bad  # type: ignore[return-value]
    f = Findings("MEDIA-4")
    assert leg.answered is not None
    source = leg.ue_addr(leg.answered)
    if source is None or source[0] == "0.0.0.0":
        return inconclusive("MEDIA-4", f"{leg.who}'s join SDP names no media address")
    end = min(leg.end, _last_time(ev))
    packets = _from(ev, source, leg.answered + GRACE, end)
    stray: Counter[tuple[str, int]] = Counter()
    first: dict[tuple[str, int], int] = {}
    good = 0
    for p in packets:
        target = leg.mrfp_addr(p.time - GRACE) or leg.mrfp_addr(p.time)
        if target is not None and (p.dst, p.dport) == target:
            good += 1
        else:
            stray[(p.dst, p.dport)] += 1
            first.setdefault((p.dst, p.dport), p.frame)
    mrfp = leg.mrfp_addr(end)
    for (ip, port), n in sorted(stray.items()):
        f.fail(f"after the join's 2xx (frame {leg.ex.ok.origin.frame}), {n} RTP packets from {leg.who}'s "
               f"conference leg {source[0]}:{source[1]} went to {ip}:{port} (first frame {first[(ip, port)]}), "
               f"not to the MRFP address {mrfp[0] if mrfp else '?'}:{mrfp[1] if mrfp else '?'} of the CS's SDP",
               first[(ip, port)], leg.ex.ok.origin.frame)  # type: ignore[union-attr]
    if not stray:
        f.ok(f"{good} RTP packets from {leg.who}'s conference leg {source[0]}:{source[1]}, all to the MRFP "
             f"address {mrfp[0] if mrfp else '?'}:{mrfp[1] if mrfp else '?'} of the CS's SDP",
             *([packets[0].frame] if packets else []))
    return f.result()


def _stream(packets: list[RtpPacket]) -> tuple[list[bytes], int | None, list[int]]:
    """The main stream (most packets by SSRC) in sequence order: payloads, payload type, frames."""
    if not packets:
        return [], None, []
    ssrc = Counter(p.ssrc for p in packets).most_common(1)[0][0]
    mine = sorted((p for p in packets if p.ssrc == ssrc), key=lambda p: (p.time, p.seq))
    pt = Counter(p.pt for p in mine).most_common(1)[0][0]
    mine = [p for p in mine if p.pt == pt]
    return [p.payload for p in mine], pt, [p.frame for p in mine]


def _fmt(levels: dict[float, float]) -> str:
    return ", ".join(f"{f:.0f} Hz {db:.1f} dBFS" for f, db in sorted(levels.items()))


def _own_tones(ev: Evidence, legs: dict[str, Leg], start: float, end: float) -> \
        tuple[dict[str, float | None], list[str]]:
    """The tone each participant sends in the window, and what was found: the same at both join
    steps, so decoded once per instance (the notes are a copy each step may add to)."""
    table = memo(ev, "mix-own")
    found = table.get((start, end))
    if found is None:
        found = table[(start, end)] = _detect_own(ev, legs, start, end)
    own, notes = found
    return dict(own), list(notes)


def _detect_own(ev: Evidence, legs: dict[str, Leg], start: float, end: float) -> \
        tuple[dict[str, float | None], list[str]]:
    own: dict[str, float | None] = {}
    notes = []
    for who, lg in sorted(legs.items()):
        src = lg.ue_addr(start)
        payloads, pt, _ = _stream(_from(ev, src, start, end) if src else [])
        if pt not in DECODABLE or len(payloads) < MIN_FRAMES:
            own[who] = None
            notes.append(f"{who} sends {len(payloads)} decodable frames")
            continue
        levels = tone_levels(payloads, pt, FREQS)
        found = detect_from_levels(levels)
        tone = TONES[who] if TONES[who] in found else (max(found, key=levels.__getitem__) if found else None)
        own[who] = tone
        notes.append(f"{who} sends {f'{tone:.0f} Hz' if tone else 'no known tone'} ({_fmt(levels)})")
    return own, notes


def mix_1(ev: Evidence, step: Step) -> CheckResult:
    """RFC 4353 §2 [checker]: in the window when every joined participant is present, what the MRFP
    sends the joining UE holds every other participant's tone (MUST) and not its own (SHOULD: warn);
    UE-1's mix is judged at the first join. Only tones detected in what each UE sends
    are judged (a foreign capture's UEs may send speech or silence)."""
    leg, bad = _subject_leg(ev, step, "MIX-1")
    if leg is None:
        return bad  # type: ignore[return-value]
    legs = _legs(ev)
    start = max(lg.start for lg in legs.values()) + SETTLE
    end = min([lg.end for lg in legs.values()] + [_last_time(ev)])
    if end - start < MIN_FRAMES * 0.02:
        return inconclusive("MIX-1", f"the window with all of {', '.join(sorted(legs))} joined is "
                            f"{max(0.0, end - start) * 1000:.0f} ms, too short for tone analysis")
    f = Findings("MIX-1")
    own, notes = _own_tones(ev, legs, start, end)
    if not any(own.values()):
        f.ok(f"no UE sends a known tone ({'; '.join(notes)}): mixing not judged")
        return f.result()
    window = f"{(end - start) * 1000:.0f} ms window with {len(legs)} participants"
    joins = sorted((lg for lg in legs.values() if lg.who != "UE-1"), key=lambda lg: lg.start)
    # The joining UE's mix is judged at its step; UE-1's at the first join (when it first has company).
    listeners = [leg.who] + (["UE-1"] if "UE-1" in legs and joins and joins[0] is leg else [])
    for who in listeners:
        lg = legs[who]
        dst = lg.ue_addr(start)
        mrfp = lg.mrfp_addr(start)
        packets = [p for p in ev.rtp_to(dst) if start <= p.time <= end
                   and (mrfp is None or p.src == mrfp[0])] if dst else []
        payloads, pt, frames = _stream(packets)
        wanted = [o for o in sorted(legs) if o != who and own.get(o)]
        if pt not in DECODABLE or len(payloads) < MIN_FRAMES:
            if wanted and who != leg.who:
                notes.append(f"{who} receives {len(payloads)} decodable frames in the window: its mix not judged")
            elif wanted:
                f.fail(f"{who} receives {len(payloads)} decodable frames from the MRFP in the window ({window}); "
                       f"it should hear {', '.join(wanted)}", *frames[:1], lg.ex.ok.origin.frame)  # type: ignore[union-attr]
            continue
        levels = tone_levels(payloads, pt, FREQS)
        heard = detect_from_levels(levels)
        missing = [o for o in wanted if own[o] not in heard]
        if missing:
            f.fail(f"{who}'s mix from the MRFP (frames {frames[0]}-{frames[-1]}, {window}) lacks "
                   f"{', '.join(f'{o} ({own[o]:.0f} Hz)' for o in missing)}: {_fmt(levels)}", frames[0])
        elif wanted:
            f.ok(f"{who} hears {', '.join(f'{o} ({own[o]:.0f} Hz)' for o in wanted)} ({_fmt(levels)})", frames[0])
        mine = own.get(who)
        if mine is not None and mine in heard:
            f.warn(f"{who} hears its own tone {mine:.0f} Hz in the MRFP's mix (frames {frames[0]}-{frames[-1]}; "
                   f"{_fmt(levels)}): N-1 mixing SHOULD leave the listener out (RFC 4353 §2)", frames[0])
    f.ok("; ".join(notes))
    return f.result()
