"""Plain NumPy / Python versions of the model's compiled kernels: the test oracle."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def dot_interaction(bottom: np.ndarray, pooled: Sequence[np.ndarray]) -> np.ndarray:
    """[bottom, dot(x_i, x_j) for i > j] with every dot product the float32 nearest its exact
    value (ties to even), pair by pair with math.fsum (slow: for tests).

    fsum gives the double nearest the exact sum of the (exact) float64 products; that
    double rounds to float32 as the exact sum does unless it is itself a float32 midpoint,
    where the sign of the exact remainder (fsum again) decides.
    """
    vectors = np.stack([bottom, *pooled], axis=1).astype(np.float64)  # [batch, V, d]
    rows, cols = np.tril_indices(vectors.shape[1], k=-1)
    out = np.empty((vectors.shape[0], vectors.shape[2] + len(rows)), np.float32)
    out[:, : vectors.shape[2]] = bottom
    for b in range(vectors.shape[0]):
        for p, (i, j) in enumerate(zip(rows, cols)):
            out[b, vectors.shape[2] + p] = _round_sum_to_float32(list(vectors[b, i] * vectors[b, j]))
    return out


def dot_interaction_float64(bottom: np.ndarray, pooled: Sequence[np.ndarray]) -> np.ndarray:
    """The interaction as lpmon computed it before its kernel: a float64 batched matmul of all
    pairs (the BLAS's summation order), the lower triangle rounded to float32."""
    vectors = np.stack([bottom, *pooled], axis=1).astype(np.float64)
    z = vectors @ vectors.transpose(0, 2, 1)
    rows, cols = np.tril_indices(vectors.shape[1], k=-1)
    return np.concatenate([np.asarray(bottom, np.float32), z[:, rows, cols].astype(np.float32)], axis=1)


def _round_sum_to_float32(terms: list[float]) -> np.float32:
    hi = math.fsum(terms)
    f = np.float32(hi)
    if float(f) == hi or not np.isfinite(f):
        return f
    g = np.nextafter(f, np.float32(np.inf) if float(f) < hi else np.float32(-np.inf))
    if float(f) + float(g) != 2.0 * hi:
        return f
    rest = math.fsum([*terms, -hi])
    if rest == 0.0:
        return f
    return g if (rest > 0) == (g > f) else f
