"""Media analysis for the verifier: which tones a decoded RTP stream carries, and RTP stream statistics.

Pure functions over values already taken out of the capture (numpy and harness.rtp.g711 only; no
pyshark, no sockets), so the checks that use them are tested on synthetic input.

Input, for the tone functions: `payloads` are the RTP payloads of ONE stream (one SSRC, one
direction, e.g. MRFP -> UE-1), in sequence-number order, each the bytes after the RTP header
(12 bytes + 4 per CSRC + any header extension) with padding removed; `pt` is their payload type,
0 (PCMU) or 8 (PCMA), 8000 Hz. With pyshark, `rtp.payload` is a colon-separated hex string:
`bytes.fromhex(field.replace(":", ""))`. Pick a window in one phase of the flow (e.g. the frames
between 37~40 and 47~52); 0.2 s (10 frames of 20 ms) or more resolves tones 25 Hz apart. A lost
packet only shortens the window; do not insert anything for it.

The harness's UEs send sines at -12 dBFS (amplitude 8000): UE-1 400 Hz, UE-2 650 Hz, UE-3 1000 Hz.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from harness.rtp.g711 import decode

RATE = 8000
FULL_SCALE = 32768.0
SILENT_DBFS = -120.0  # the level reported for an empty or all-zero window (instead of -inf)
RELATIVE_DB = 20.0  # a tone counts when within this of the strongest tone asked about ...
FLOOR_DBFS = -45.0  # ... and at least this loud (a -12 dBFS sine survives G.711 and mixing far above it)


def samples_of(payloads: Iterable[bytes], pt: int) -> npt.NDArray[np.float64]:
    """The payloads decoded (G.711, by payload type) and joined, as float samples on the int16 scale.
    Raises ValueError for a payload type other than 0 or 8."""
    joined = b"".join(payloads)   # one table lookup for the stream: the same samples as per payload
    return decode(joined, pt).astype(np.float64) if joined else np.zeros(0)


def _dbfs(amplitude: float) -> float:
    return max(SILENT_DBFS, 20.0 * math.log10(amplitude / FULL_SCALE)) if amplitude > 0 else SILENT_DBFS


def goertzel_amplitude(samples: npt.NDArray[np.float64], freq: float, rate: int = RATE) -> float:
    """Peak amplitude of the `freq` component (Hann-windowed single-frequency DFT).

    This is the value the Goertzel recursion computes, evaluated as one dot product with numpy
    (the recursion would be a Python loop per sample). The Hann window keeps a loud tone from
    leaking into a neighbour's bin; the result is scaled so a sine of amplitude A reads A.
    """
    n = len(samples)
    if n == 0:
        return 0.0
    window, total = _window(n)
    return _amplitude(samples * window, total, freq, rate)


@lru_cache(maxsize=64)
def _window(n: int) -> tuple[npt.NDArray[np.float64], float]:
    """The Hann window of n samples and its sum (windows of equal length recur: cached)."""
    window = np.hanning(n) if n > 1 else np.ones(1)
    window.setflags(write=False)
    return window, float(window.sum())


@lru_cache(maxsize=64)
def _phasor(freq: float, n: int, rate: int) -> npt.NDArray[np.complex128]:
    phasor = np.exp(-2j * np.pi * freq * np.arange(n) / rate)
    phasor.setflags(write=False)
    return phasor


def _amplitude(weighted: npt.NDArray[np.float64], total: float, freq: float, rate: int) -> float:
    return float(2.0 * abs(np.dot(weighted, _phasor(freq, len(weighted), rate))) / total)


def tone_levels(payloads: list[bytes], pt: int, freqs: Sequence[float], rate: int = RATE) -> dict[float, float]:
    """{frequency: level in dBFS} of each asked-for tone in the decoded stream (0 dBFS = full-scale
    sine; SILENT_DBFS when there is no audio)."""
    samples = samples_of(payloads, pt)
    if len(samples) == 0 or not samples.any():   # no audio, or digital silence: every amplitude is 0
        return {f: SILENT_DBFS for f in freqs}
    window, total = _window(len(samples))
    weighted = samples * window   # once for every frequency (goertzel_amplitude per frequency, same values)
    return {f: _dbfs(_amplitude(weighted, total, f, rate)) for f in freqs}


def rms_dbfs(payloads: list[bytes], pt: int) -> float:
    """Overall level of the window in dBFS relative to a full-scale sine (silence: SILENT_DBFS)."""
    samples = samples_of(payloads, pt)
    if len(samples) == 0:
        return SILENT_DBFS
    return _dbfs(float(np.sqrt(np.mean(samples ** 2))) * math.sqrt(2.0))


def detect_tones(payloads: list[bytes], pt: int, freqs: Sequence[float], relative_db: float = RELATIVE_DB,
                 floor_dbfs: float = FLOOR_DBFS, rate: int = RATE) -> set[float]:
    """The frequencies of `freqs` present: within `relative_db` of the strongest of them and above
    `floor_dbfs`. Both bounds matter: the relative one ignores leakage and quantisation noise next to
    a loud tone, the absolute one keeps silence or noise from "detecting" its own strongest bin."""
    levels = tone_levels(payloads, pt, freqs, rate)
    return detect_from_levels(levels, relative_db, floor_dbfs)


def detect_from_levels(levels: dict[float, float], relative_db: float = RELATIVE_DB,
                       floor_dbfs: float = FLOOR_DBFS) -> set[float]:
    """`detect_tones` on levels already computed (to report the levels and the verdict from one pass)."""
    if not levels:
        return set()
    strongest = max(levels.values())
    return {f for f, db in levels.items() if db >= floor_dbfs and db >= strongest - relative_db}


# --- RTP stream statistics ------------------------------------------------------------------------

class RtpSample(NamedTuple):
    """One received RTP packet as the capture shows it: `arrival` in seconds (frame time), the
    header's sequence number, timestamp and payload type."""

    arrival: float
    seq: int
    timestamp: int
    payload_type: int


@dataclass(frozen=True)
class StreamStats:
    """Statistics of one RTP stream (one SSRC, one direction), RFC 3550 style.

    `expected` spans the lowest to the highest extended sequence number seen; `lost` counts numbers
    in that span never seen (so duplicates do not hide loss, unlike RFC 3550's cumulative count);
    `jitter` is the A.8 interarrival jitter estimate after the last packet, in timestamp units.
    """

    packets: int
    expected: int
    lost: int
    duplicates: int
    reordered: int
    jitter: float
    clock_rate: int
    payload_types: frozenset[int]

    @property
    def loss_fraction(self) -> float:
        return self.lost / self.expected if self.expected else 0.0

    @property
    def jitter_ms(self) -> float:
        return 1000.0 * self.jitter / self.clock_rate


def _signed(delta: int, bits: int) -> int:
    """A modular difference as the nearest signed value (sequence/timestamp wrap-around)."""
    half = 1 << (bits - 1)
    return ((delta + half) % (1 << bits)) - half


def stream_stats(packets: Iterable[RtpSample], clock_rate: int = RATE) -> StreamStats:
    """Statistics of one stream from its packets in arrival (capture) order."""
    count = duplicates = reordered = 0
    seen: set[int] = set()
    payload_types: set[int] = set()
    ext_seq = ext_ts = prev_seq = prev_ts = 0
    highest = 0
    transit: float | None = None
    jitter = 0.0
    for sample in packets:
        payload_types.add(sample.payload_type)
        if count == 0:
            ext_seq, ext_ts = sample.seq, sample.timestamp
            highest = ext_seq
        else:
            ext_seq += _signed(sample.seq - prev_seq, 16)
            ext_ts += _signed(sample.timestamp - prev_ts, 32)
            if ext_seq in seen:
                duplicates += 1
            elif ext_seq < highest:
                reordered += 1
            highest = max(highest, ext_seq)
        prev_seq, prev_ts = sample.seq, sample.timestamp
        seen.add(ext_seq)
        count += 1
        # RFC 3550 A.8: D = (Rj - Ri) - (Sj - Si) in timestamp units; J += (|D| - J) / 16
        now_transit = sample.arrival * clock_rate - ext_ts
        if transit is not None:
            jitter += (abs(now_transit - transit) - jitter) / 16.0
        transit = now_transit
    if count == 0:
        return StreamStats(0, 0, 0, 0, 0, 0.0, clock_rate, frozenset())
    expected = max(seen) - min(seen) + 1
    return StreamStats(count, expected, expected - len(seen), duplicates, reordered, jitter, clock_rate,
                       frozenset(payload_types))
