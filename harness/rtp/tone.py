"""Phase-continuous sine tones: each UE speaks its own frequency so a mix can be taken apart."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from harness.rtp.g711 import ulaw_encode

RATE = 8000


class ToneGenerator:
    """Frames of a sine tone at `frequency` Hz; phase carries over between frames (no clicks)."""

    def __init__(self, frequency: float, amplitude: float = 8000.0, rate: int = RATE) -> None:
        self.frequency = frequency
        self.amplitude = amplitude
        self.rate = rate
        self._phase = 0.0

    def next_samples(self, count: int = 160) -> npt.NDArray[np.int16]:
        step = 2.0 * math.pi * self.frequency / self.rate
        phases = self._phase + step * np.arange(count)
        self._phase = float((self._phase + step * count) % (2.0 * math.pi))
        return np.round(self.amplitude * np.sin(phases)).astype(np.int16)

    def next_frame(self, count: int = 160) -> bytes:
        """The next `count` samples as µ-law bytes (one 20 ms PCMU frame by default)."""
        return ulaw_encode(self.next_samples(count))
