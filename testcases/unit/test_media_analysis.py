"""harness.verify.media on synthetic signals: tone levels in dBFS, detection (and non-detection),
and RTP stream statistics (loss, duplicates, reordering, RFC 3550 A.8 jitter)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.rtp.g711 import PCMA, PCMU, encode, silence
from harness.rtp.tone import ToneGenerator
from harness.verify.media import (
    SILENT_DBFS,
    RtpSample,
    detect_tones,
    rms_dbfs,
    stream_stats,
    tone_levels,
)

TONES = (400.0, 650.0, 1000.0)


def _frames(samples: np.ndarray, pt: int = PCMU) -> list[bytes]:
    clipped = np.clip(np.round(samples), -32768, 32767).astype(np.int16)
    return [encode(clipped[i:i + 160], pt) for i in range(0, len(clipped), 160)]


def _sine(freq: float, amplitude: float, seconds: float = 1.0, phase: float = 0.3) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return amplitude * np.sin(2 * np.pi * freq * t + phase)


@pytest.mark.parametrize("pt", [PCMU, PCMA])
def test_levels_of_a_single_tone_in_dbfs(pt: int) -> None:
    levels = tone_levels(_frames(_sine(650, 8000), pt), pt, TONES)
    assert levels[650.0] == pytest.approx(20 * np.log10(8000 / 32768), abs=0.3)  # -12.2 dBFS
    assert levels[400.0] < -70 and levels[1000.0] < -70


def test_two_of_three_tones_detected_and_the_third_not() -> None:
    mix = _sine(400, 8000) + _sine(1000, 8000)
    assert detect_tones(_frames(mix), PCMU, TONES) == {400.0, 1000.0}


def test_a_tone_near_but_not_at_a_frequency_is_not_that_tone() -> None:
    assert detect_tones(_frames(_sine(700, 8000, seconds=0.2)), PCMU, TONES) == set()  # 700 is not 650
    levels = tone_levels(_frames(_sine(700, 8000, seconds=0.2)), PCMU, (650.0, 700.0))
    assert levels[700.0] - levels[650.0] > 40


def test_a_weak_tone_under_a_loud_one_is_not_detected() -> None:
    """Relative threshold: a -52 dBFS residue 40 dB under a -12 dBFS tone is not 'hearing' it."""
    mix = _sine(400, 8000) + _sine(650, 80)
    assert detect_tones(_frames(mix), PCMU, TONES) == {400.0}
    assert detect_tones(_frames(mix), PCMU, TONES, relative_db=50, floor_dbfs=-60) == {400.0, 650.0}


def test_silence_and_noise_detect_nothing() -> None:
    assert detect_tones([silence()] * 50, PCMU, TONES) == set()
    assert tone_levels([silence()] * 50, PCMU, TONES) == dict.fromkeys(TONES, SILENT_DBFS)
    assert rms_dbfs([silence()] * 50, PCMU) == SILENT_DBFS
    assert tone_levels([], PCMU, TONES) == dict.fromkeys(TONES, SILENT_DBFS)
    noise = np.random.default_rng(1).normal(0, 3000, 8000)  # about -20 dBFS of white noise
    assert detect_tones(_frames(noise), PCMU, TONES) == set()


def test_detection_survives_the_harness_tone_generator_and_frame_boundaries() -> None:
    gens = [ToneGenerator(f) for f in (400, 650)]
    frames = [encode(np.clip(sum(g.next_samples() for g in gens), -32768, 32767), PCMU) for _ in range(10)]
    assert detect_tones(frames, PCMU, TONES) == {400.0, 650.0}
    assert rms_dbfs(frames, PCMU) == pytest.approx(20 * np.log10(8000 * np.sqrt(2) / 32768), abs=0.5)


def test_unknown_payload_type_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not G.711"):
        tone_levels([b"\x00" * 160], 18, TONES)


def _samples(seqs: list[int], start_ts: int = 4_294_967_000, late: dict[int, float] | None = None) \
        -> list[RtpSample]:
    late = late or {}
    return [RtpSample(0.02 * i + late.get(i, 0.0), seq & 0xFFFF, (start_ts + 160 * (seq - seqs[0])) & 0xFFFFFFFF, 0)
            for i, seq in enumerate(seqs)]


def test_stream_stats_clean_stream_across_wraps() -> None:
    stats = stream_stats(_samples(list(range(65530, 65550))))
    assert (stats.packets, stats.expected, stats.lost, stats.duplicates, stats.reordered) == (20, 20, 0, 0, 0)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6) and stats.payload_types == {0}


def test_stream_stats_loss_duplicates_reordering() -> None:
    seqs = [10, 11, 13, 12, 14, 14, 17]  # 15, 16 lost; 12 late; 14 twice
    samples = [RtpSample(0.02 * i, s, 160 * s, 0 if s != 17 else 8) for i, s in enumerate(seqs)]
    stats = stream_stats(samples)
    assert (stats.packets, stats.expected, stats.lost, stats.duplicates, stats.reordered) == (7, 8, 2, 1, 1)
    assert stats.loss_fraction == pytest.approx(2 / 8)
    assert stats.payload_types == {0, 8}


def test_stream_stats_jitter_is_rfc3550_a8() -> None:
    stats = stream_stats(_samples(list(range(5)), start_ts=0, late={2: 0.005}))
    expected = 0.0
    for d in (0, 40, 40, 0):  # 5 ms late = 40 timestamp units, in then out
        expected += (d - expected) / 16
    assert stats.jitter == pytest.approx(expected)
    assert stats.jitter_ms == pytest.approx(expected / 8)
    assert stream_stats([]).packets == 0
