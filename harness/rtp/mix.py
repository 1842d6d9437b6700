"""The N-1 mix (RFC 4353 §2 "mixer"): each participant receives the sum of the OTHER participants'
audio, clipped to 16 bits. Pure numpy on one 20 ms tick, so it is tested without sockets or clocks.

`include_self` and `silent` exist only to commit the MRFP faults "mrfp-echo" and "mrfp-silence".
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

import numpy as np
import numpy.typing as npt

K = TypeVar("K", bound=Hashable)
Samples = npt.NDArray[np.int16]


def mix_n_minus_1(frames: Mapping[K, Samples | None], listeners: list[K] | None = None,
                  samples: int = 160, include_self: bool = False, silent: bool = False) -> dict[K, Samples]:
    """For each listener (default: every key of `frames`), the clipped sum of the others' frames.

    `frames[k]` is participant k's latest frame this tick, or None when k has nothing fresh to say.
    Short frames are zero-padded, long ones cut to `samples`.
    """
    present: dict[K, npt.NDArray[np.int32]] = {}
    for key, frame in frames.items():
        if frame is None or silent:
            continue
        padded = np.zeros(samples, dtype=np.int32)
        cut = np.asarray(frame[:samples], dtype=np.int32)
        padded[: len(cut)] = cut
        present[key] = padded
    total = np.sum(list(present.values()), axis=0, dtype=np.int32) if present else np.zeros(samples, np.int32)
    out: dict[K, Samples] = {}
    for key in frames.keys() if listeners is None else listeners:
        mixed = total if include_self or key not in present else total - present[key]
        out[key] = np.clip(mixed, -32768, 32767).astype(np.int16)
    return out


def contributors(frames: Mapping[K, Samples | None], listener: K, include_self: bool = False) -> list[K]:
    """Whose audio is in `listener`'s mix (for the CSRC list, RFC 3550 §7.1)."""
    return [k for k, f in frames.items() if f is not None and (include_self or k != listener)]
