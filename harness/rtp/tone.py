"""Phase-continuous sine tones: each UE speaks its own frequency so a mix can be taken apart.

Encoded frames are cached: a tone of f Hz repeats every 50 / gcd(f, 50) frames of 20 ms (400, 650
and 1000 Hz: every frame), so a stream costs a list lookup per frame instead of a sine and a G.711
encode — the difference between 30 streams fitting in a 2-core machine's 20 ms tick or not.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from harness.rtp.g711 import PCMU, encode

RATE = 8000
MAX_CACHED_FRAMES = 50


class ToneGenerator:
    """Frames of a sine tone at `frequency` Hz; the phase carries over between frames (no clicks).

    One position (samples produced so far) serves both `next_samples` and `next_frame`.
    """

    def __init__(self, frequency: float, amplitude: float = 8000.0, rate: int = RATE,
                 payload_type: int = PCMU) -> None:
        self.frequency = frequency
        self.amplitude = amplitude
        self.rate = rate
        self.payload_type = payload_type
        self._position = 0  # samples produced
        self._cache: dict[tuple[int, int], list[bytes] | None] = {}  # (count, pt) -> one period of frames
        self._prepare(160, payload_type)  # now, not inside the first 20 ms tick

    def _prepare(self, count: int, pt: int) -> list[bytes] | None:
        key = (count, pt)
        if key not in self._cache:
            period = self._period(count)
            self._cache[key] = None if period is None else [
                encode(self._samples_at(k * count, count), pt) for k in range(period)]
        return self._cache[key]

    def _samples_at(self, start: int, count: int) -> npt.NDArray[np.int16]:
        cycles = self.frequency * (start + np.arange(count)) / self.rate
        return np.round(self.amplitude * np.sin(2.0 * math.pi * np.mod(cycles, 1.0))).astype(np.int16)

    def next_samples(self, count: int = 160) -> npt.NDArray[np.int16]:
        samples = self._samples_at(self._position, count)
        self._position += count
        return samples

    def _period(self, count: int) -> int | None:
        """Frames after which the frames repeat exactly, or None when that is not a small whole number."""
        cycles = self.frequency * count / self.rate  # sine cycles per frame
        for frames in range(1, MAX_CACHED_FRAMES + 1):
            if abs(cycles * frames - round(cycles * frames)) < 1e-9:
                return frames
        return None

    def next_frame(self, count: int = 160, payload_type: int | None = None) -> bytes:
        """The next `count` samples G.711-encoded (PCMU unless told otherwise): one 20 ms frame by default."""
        pt = self.payload_type if payload_type is None else payload_type
        frames = self._prepare(count, pt)
        if frames is None or self._position % count:
            return encode(self.next_samples(count), pt)
        frame = frames[(self._position // count) % len(frames)]
        self._position += count
        return frame
