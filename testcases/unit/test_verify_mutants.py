"""Seeded random damage to the SIP text of a clean A.2.1 capture: whatever the damage, `verify`
gives verdicts (or a one-line BadInput), never a traceback, and no check breaks on it ("checker
error" would be a verifier bug reported as inconclusive). Damage that must change the verdict
(a header removed that G1 requires) must fail the step it hit.

Each mutant: a few SIP frames each get one of: a header line removed, duplicated, emptied or given
a garbage value; two header lines swapped; the body cut; Content-Length wrong; a random byte
flipped; the message truncated. `python testcases/unit/test_verify_mutants.py N [FIRST [FRAMES]]` sweeps N seeds.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harness.verify import BadInput, CaptureResult, FlowResult, verify_capture  # noqa: E402
from testcases.data.make_a21_pcap import build, write_packets  # noqa: E402

GARBAGE = ["", ";;;", "<sip:", "\x7f\x01", "a" * 300, "SIP/2.0", "z9hG4bK", "0 INVITE", "-1", "<>;tag=",
           "sip:x@[::1", "\"unterminated", "=,=,=", "99999999999999999999 NOTIFY"]


def _head_lines(text: bytes) -> tuple[list[bytes], bytes]:
    head, sep, body = text.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body if sep else b""


def _damage(payload: bytes, rng: random.Random) -> tuple[bytes, str]:
    lines, body = _head_lines(payload)
    kind = rng.choice(["remove", "duplicate", "empty", "garbage", "swap", "cut-body", "bad-length", "flip",
                       "truncate"])
    i = rng.randrange(1, len(lines)) if len(lines) > 1 else 0
    name = lines[i].split(b":", 1)[0].decode("latin-1")
    if kind == "remove" and len(lines) > 1:
        del lines[i]
    elif kind == "duplicate":
        lines.insert(i, lines[i])
    elif kind == "empty":
        lines[i] = lines[i].split(b":", 1)[0] + b":"
    elif kind == "garbage":
        lines[i] = lines[i].split(b":", 1)[0] + b": " + rng.choice(GARBAGE).encode("latin-1")
    elif kind == "swap" and len(lines) > 2:
        j = rng.randrange(1, len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "cut-body":
        body = body[:len(body) // 2]
    elif kind == "bad-length":
        lines = [b"Content-Length: " + str(rng.choice([0, 5, 9999])).encode() if ln.lower().startswith(b"content-length")
                 else ln for ln in lines]
    elif kind == "flip":
        data = bytearray(payload)
        data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data), f"flip byte ({name})"
    elif kind == "truncate":
        return payload[:rng.randrange(1, len(payload))], "truncate"
    return b"\r\n".join(lines) + b"\r\n\r\n" + body, f"{kind} {name}"


def mutant(path: Path, seed: int, frames: int = 3) -> list[str]:
    """Write a damaged copy of the clean capture; returns what was done, per frame."""
    rng = random.Random(seed)
    pkts = build()
    sip = [k for k, (_, data) in enumerate(pkts) if b"SIP/2.0" in data[42:120]]
    done = []
    for k in rng.sample(sip, frames):
        t, data = pkts[k]
        frame = Ether(data)
        udp = frame[UDP]
        damaged, what = _damage(bytes(udp.payload), rng)
        udp.remove_payload()
        del frame[IP].len, frame[IP].chksum, udp.len, udp.chksum
        pkts[k] = (t, bytes(frame / Raw(damaged)))
        done.append(f"frame {k + 1}: {what}")
    write_packets(path, pkts)
    return done


def judge(path: Path) -> FlowResult | CaptureResult | None:
    """The verdicts (damage may split the flow into instances), or None for a one-line BadInput;
    anything else propagates (a bug)."""
    try:
        return verify_capture(path)
    except BadInput as exc:
        assert "\n" not in exc.reason
        return None


def checker_errors(result: FlowResult | CaptureResult | None) -> list[str]:
    if result is None:
        return []
    flows = result.instances if isinstance(result, CaptureResult) else [result]
    return [f"{s.step} {c.id}: {c.detail}" for r in flows for s in r.steps for c in s.checks
            if "checker error" in c.detail]


@pytest.mark.parametrize("seed", range(24))
def test_damaged_capture_gives_verdicts_not_errors(tmp_path: Path, seed: int) -> None:
    done = mutant(tmp_path / "m.pcap", seed)
    result = judge(tmp_path / "m.pcap")
    assert not checker_errors(result), done


UE_1, P_CSCF, S_CSCF = "10.21.0.10", "10.21.0.20", "10.21.0.30"   # make_a21_pcap's addresses


def _damage_copy(tmp_path: Path, src: str, start: bytes, edit) -> FlowResult:  # noqa: ANN001
    """Apply `edit` to the SIP text of the first copy `src` sent that starts with `start`; judge."""
    pkts = build()
    for k, (t, data) in enumerate(pkts):
        frame = Ether(data)
        if frame.haslayer(UDP) and frame[IP].src == src and bytes(frame[UDP].payload).startswith(start):
            udp = frame[UDP]
            text = edit(bytes(udp.payload))
            udp.remove_payload()
            del frame[IP].len, frame[IP].chksum, udp.len, udp.chksum
            pkts[k] = (t, bytes(frame / Raw(text)))
            break
    else:
        raise AssertionError(f"no copy from {src} starting {start!r}")
    result = judge(write_packets(tmp_path / "d.pcap", pkts))
    assert isinstance(result, FlowResult)
    return result


def _fails(result: FlowResult) -> dict[str, set[str]]:
    return {s.step: {c.id for c in s.checks if c.verdict == "fail"} for s in result.steps if s.verdict == "fail"}


def _drop_line(prefix: bytes, last: bool = False):  # noqa: ANN202
    def edit(text: bytes) -> bytes:
        lines = text.split(b"\r\n")
        hits = [i for i, line in enumerate(lines) if line.startswith(prefix)]
        del lines[hits[-1] if last else hits[0]]
        return b"\r\n".join(lines)
    return edit


def _set_line(prefix: bytes, value: bytes):  # noqa: ANN202
    def edit(text: bytes) -> bytes:
        return b"\r\n".join(prefix + b" " + value if line.startswith(prefix) else line for line in text.split(b"\r\n"))
    return edit


@pytest.mark.parametrize(("what", "src", "start", "edit", "step"), [
    # A forwarded copy whose identity is damaged keys a logical of its own; it must still be judged
    # as the copy it is (G5), not vanish from the flow.
    ("proxy drops the UAC's Via", P_CSCF, b"INVITE sip:ue3", _drop_line(b"Via:", last=True), "3~11"),
    ("proxy empties the Call-ID of an ACK", P_CSCF, b"ACK sip:conf", _set_line(b"Call-ID:", b""), "16~21"),
    ("proxy makes the Via of a 200 unreadable", P_CSCF, b"SIP/2.0 200", _set_line(b"Via:", b"0 INVITE"), "1"),
    ("proxy makes the CSeq unreadable", P_CSCF, b"INVITE sip:ue3", _set_line(b"CSeq:", b"<sip:"), "3~11"),
    ("proxy rewrites Subscription-State", S_CSCF, b"NOTIFY", _set_line(b"Subscription-State:", b"sip:x@[::1"),
     "28~33"),
])
def test_damaged_forwarded_copy_fails_g5(tmp_path: Path, what: str, src: str, start: bytes, edit, step: str) -> None:  # noqa: ANN001
    fails = _fails(_damage_copy(tmp_path, src, start, edit))
    assert "G5" in fails.get(step, set()), (what, fails)


def _repeat_line(prefix: bytes):  # noqa: ANN202
    def edit(text: bytes) -> bytes:
        lines = text.split(b"\r\n")
        i = next(i for i, line in enumerate(lines) if line.startswith(prefix))
        return b"\r\n".join([*lines[:i + 1], lines[i], *lines[i + 1:]])
    return edit


@pytest.mark.parametrize("header", [b"Call-ID:", b"CSeq:", b"From:", b"Max-Forwards:"])
def test_repeated_single_header_fails_g1(tmp_path: Path, header: bytes) -> None:
    """RFC 3261 §7.3.1: Call-ID, CSeq, From, Max-Forwards appear once, even with the same value twice."""
    fails = _fails(_damage_copy(tmp_path, P_CSCF, b"INVITE sip:ue3", _repeat_line(header)))
    assert "G1" in fails.get("3~11", set()), fails


def test_proxy_rewriting_contact_warns_g5(tmp_path: Path) -> None:
    result = _damage_copy(tmp_path, P_CSCF, b"INVITE sip:ue3", _set_line(b"Contact:", b"<sip:alg@192.0.2.1>"))
    warns = {c.id for c in result.step("3~11").checks if c.verdict == "warn"}
    assert "G5" in warns and "3~11" not in _fails(result)


def test_removed_required_header_fails_the_step(tmp_path: Path) -> None:
    """The sweep's damage is real: removing Max-Forwards from one REFER copy fails that step's G3/G1."""
    result = _damage_copy(tmp_path, UE_1, b"REFER ", _drop_line(b"Max-Forwards:"))
    assert {"G1", "G3"} <= {c.id for s in result.steps for c in s.checks if c.verdict == "fail"}


def main(argv: list[str]) -> int:
    import tempfile

    count = int(argv[1]) if len(argv) > 1 else 200
    start = int(argv[2]) if len(argv) > 2 else 0
    frames = int(argv[3]) if len(argv) > 3 else 3
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(start, start + count):
            path = Path(tmp) / f"m{seed}.pcap"
            done = mutant(path, seed, frames)
            try:
                errors = checker_errors(judge(path))
            except Exception as exc:  # noqa: BLE001 - the sweep reports every crash
                errors = [f"CRASH {type(exc).__name__}: {exc}"]
            if errors:
                bad += 1
                print(f"seed {seed}: {done}\n  " + "\n  ".join(errors), flush=True)
    print(f"{count} seeds, {bad} with errors")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
