"""G.711 µ-law (PCMU) and A-law (PCMA) encode/decode over numpy arrays (ITU-T G.711, the Sun g711.c
formulation), and the two static RTP payload types that carry them (RFC 3551 §6).

The harness offers PCMU; A-law exists so that a peer (or a fault) sending PT 8 can still be decoded,
by the MRFP and by the verifier's tone analysis.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

BIAS = 0x84
CLIP = 32635
PCMU = 0
PCMA = 8


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


def _ulaw_table() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


DECODE_TABLE = _ulaw_table()


def ulaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    """Decode µ-law bytes to 16-bit linear samples."""
    return DECODE_TABLE[np.frombuffer(data, dtype=np.uint8)]


def alaw_encode(samples: npt.ArrayLike) -> bytes:
    """Encode 16-bit linear samples to A-law bytes (13-bit magnitude, even bits inverted: XOR 0x55)."""
    x = np.asarray(samples, dtype=np.int32) >> 3  # 13-bit signed
    sign = np.where(x >= 0, 0x80, 0x00).astype(np.int32)
    magnitude = np.where(x >= 0, x, -x - 1).clip(0, 0xFFF)
    _, bit_length = np.frexp(magnitude.astype(np.float64))
    exponent = (bit_length.astype(np.int32) - 5).clip(0, 7)
    mantissa = np.where(exponent == 0, magnitude >> 1, magnitude >> exponent) & 0x0F
    code = (sign | (exponent << 4) | mantissa) ^ 0x55
    return code.astype(np.uint8).tobytes()


def _alaw_table() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


ALAW_DECODE_TABLE = _alaw_table()


def alaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    """Decode A-law bytes to 16-bit linear samples."""
    return ALAW_DECODE_TABLE[np.frombuffer(data, dtype=np.uint8)]


#: static payload type -> (encoding name as in a=rtpmap, encoder, decoder)
CODECS = {PCMU: ("PCMU/8000", ulaw_encode, ulaw_decode), PCMA: ("PCMA/8000", alaw_encode, alaw_decode)}


def payload_type_for(encoding: str) -> int | None:
    """The static payload type of an a=rtpmap encoding ("PCMU/8000" -> 0), None if not G.711."""
    for pt, (name, _, _) in CODECS.items():
        if name.lower() == encoding.strip().lower():
            return pt
    return None


def encode(samples: npt.ArrayLike, payload_type: int = PCMU) -> bytes:
    """Encode for a G.711 payload type (0 PCMU, 8 PCMA); ValueError for any other."""
    if payload_type not in CODECS:
        raise ValueError(f"payload type {payload_type} is not G.711 (0 PCMU, 8 PCMA)")
    return CODECS[payload_type][1](samples)


def decode(data: bytes, payload_type: int = PCMU) -> npt.NDArray[np.int16]:
    """Decode a G.711 payload (0 PCMU, 8 PCMA); ValueError for any other payload type."""
    if payload_type not in CODECS:
        raise ValueError(f"payload type {payload_type} is not G.711 (0 PCMU, 8 PCMA)")
    return CODECS[payload_type][2](data)


SILENCE = 0xFF  # µ-law code of linear 0
ALAW_SILENCE = 0xD5  # A-law code of linear +0


def silence(samples: int = 160, payload_type: int = PCMU) -> bytes:
    """A frame of G.711 silence."""
    return bytes([ALAW_SILENCE if payload_type == PCMA else SILENCE]) * samples
