"""The audio a third-party UE sends: an 8 kHz WAV of its role's tone, played by the peer as its microphone.

Peers here have no sound card; a file source keeps their RTP real (a conference mix can then be
checked for every participant's frequency from the capture, as with the harness's own UEs).
"""

from __future__ import annotations

import math
import sys
import wave
from array import array
from pathlib import Path


def tone_wav(path: Path, freq: float, seconds: float = 60.0, rate: int = 8000, dbfs: float = -12.0) -> Path:
    """A mono 16-bit WAV of one sine tone at `dbfs`."""
    amplitude = 32767 * 10 ** (dbfs / 20)
    step = 2 * math.pi * freq / rate
    samples = array("h", (int(amplitude * math.sin(step * n)) for n in range(int(seconds * rate))))
    if sys.byteorder != "little":
        samples.byteswap()
    frames = samples.tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return path
