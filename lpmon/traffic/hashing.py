"""The 64-bit hash of a request id that decides sample membership (and order)."""

from __future__ import annotations

import numpy as np
import pandas as pd

_GOLDEN, _MIX1, _MIX2 = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def request_hash(ids: np.ndarray, seed: int) -> np.ndarray:
    """A 64-bit hash of each request id under seed (SplitMix64 for integers)."""
    if ids.dtype.kind in "iu":
        with np.errstate(over="ignore"):
            z = ids.astype(np.uint64) + np.uint64(seed % (1 << 64)) * _GOLDEN + _GOLDEN
            z = (z ^ (z >> np.uint64(30))) * _MIX1
            z = (z ^ (z >> np.uint64(27))) * _MIX2
            return z ^ (z >> np.uint64(31))
    key = f"{seed % (1 << 64):016x}"[-16:]
    return pd.util.hash_array(ids.astype(object), hash_key=key, categorize=False)
