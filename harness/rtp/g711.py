"""G.711 µ-law (PCMU) encode/decode over numpy arrays (ITU-T G.711, the Sun g711.c formulation).

PCMU is the only codec the harness offers: every peer on these machines speaks it and the
verifier can decode it back to check tones by signal analysis.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

BIAS = 0x84
CLIP = 32635


def ulaw_encode(samples: npt.ArrayLike) -> bytes:
    """Encode 16-bit linear samples to µ-law bytes (one byte per sample)."""
    x = np.asarray(samples, dtype=np.int32)
    sign = np.where(x < 0, 0x80, 0x00).astype(np.int32)
    magnitude = np.minimum(np.abs(x), CLIP) + BIAS  # 132 .. 32767
    # The segment (exponent) is the position of the highest set bit above bit 7.
    _, bit_length = np.frexp(magnitude.astype(np.float64))
    exponent = (bit_length.astype(np.int32) - 8).clip(0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    code = ~(sign | (exponent << 4) | mantissa) & 0xFF
    return code.astype(np.uint8).tobytes()


def _decode_table() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


DECODE_TABLE = _decode_table()


def ulaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    """Decode µ-law bytes to 16-bit linear samples."""
    return DECODE_TABLE[np.frombuffer(data, dtype=np.uint8)]


SILENCE = 0xFF  # µ-law code of linear 0


def silence(samples: int = 160) -> bytes:
    """A frame of µ-law silence."""
    return bytes([SILENCE]) * samples
