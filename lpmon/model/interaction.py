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


def dot_interaction(bottom: np.ndarray, pooled: Sequence[np.ndarray], *, n_threads: int = 1) -> np.ndarray:
    """float32 [batch, d + V (V - 1) / 2]: bottom, then dot(x_i, x_j) for i > j over the V =
    1 + len(pooled) vectors [bottom, *pooled] in np.tril_indices(V, k=-1)'s order."""
    parts = [np.ascontiguousarray(p, dtype=np.float32) for p in [bottom, *pooled]]
    if any(p.ndim != 2 or p.shape != parts[0].shape for p in parts):
        raise ValueError(f"bottom and pooled must all be [batch, d] of one shape, got {[p.shape for p in parts]}")
    rows, d = parts[0].shape
    v = len(parts)
    out = np.zeros((rows, d + v * (v - 1) // 2), np.float32)
    if rows and d:
        _kernel.dot_interaction(parts, out, n_threads)
    return out
