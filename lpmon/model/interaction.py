"""DLRM's pairwise dot interaction, compiled (lpmon._kernels.interaction).

Every dot product is rounded once, to the float32 nearest its exact value: the
float32 products are summed in float64 and a rounding-error bound shows that
the float64 sum rounds to that float32; the few pairs where it cannot (about 1
in 10^5 for random vectors) are summed again exactly. A float64 sum in any
order rounded to float32 (what the interaction computed before, with NumPy's
matmul, and what serving's module does with torch's bmm) gives the same
float32 but in those rare cases where its own rounding error crosses a float32
rounding boundary. The NumPy reference is lpmon.model.reference.dot_interaction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lpmon._kernels import interaction as _kernel


def dot_interaction(
    bottom: np.ndarray, pooled: Sequence[np.ndarray], *, order: str = "lower", n_threads: int = 1
) -> np.ndarray:
    """float32 [batch, d + V (V - 1) / 2]: bottom, then dot(x_i, x_j) over the V = 1 + len(pooled)
    vectors [bottom, *pooled], for i > j in np.tril_indices(V, k=-1)'s order ("lower",
    facebookresearch/dlrm), or for i < j in np.triu_indices(V, k=1)'s ("upper", TorchRec)."""
    parts = [np.ascontiguousarray(p, dtype=np.float32) for p in [bottom, *pooled]]
    if any(p.ndim != 2 or p.shape != parts[0].shape for p in parts):
        raise ValueError(f"bottom and pooled must all be [batch, d] of one shape, got {[p.shape for p in parts]}")
    rows, d = parts[0].shape
    v = len(parts)
    out = np.zeros((rows, d + v * (v - 1) // 2), np.float32)
    if rows and d:
        _kernel.dot_interaction(parts, out, n_threads)
    if order == "upper":
        out[:, d:] = out[:, d + upper_to_lower(v)]
    elif order != "lower":
        raise ValueError(f"order must be 'lower' or 'upper', got {order!r}")
    return out


def upper_to_lower(vectors: int) -> np.ndarray:
    """For each pair (i < j) in np.triu_indices(vectors, k=1)'s order, the place of its
    mirror (j, i) in np.tril_indices(vectors, k=-1)'s: the dot products are the same."""
    place = np.zeros((vectors, vectors), np.int64)
    rows, cols = np.tril_indices(vectors, k=-1)
    place[rows, cols] = np.arange(len(rows))
    i, j = np.triu_indices(vectors, k=1)
    return place[j, i]
