"""Plain NumPy versions of the calibration kernels and searches: the test oracle.

Brute force by design: every candidate range is scored with whole-array
NumPy expressions, so each is obviously what its docstring says.
"""

from __future__ import annotations

import numpy as np


def histogram_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts on [edges[i], edges[i+1]) (np.histogram closes the last bin; the data never reaches it)."""
    return np.histogram(values.astype(np.float64), bins=edges)[0]


def range_errors(below, sums, squares, edges, levels):
    """Expected squared error of every [edges[s], edges[e]], as an [s, e] matrix (inf where e <= s)."""
    a, b = edges[:, None], edges[None, :]
    under = squares[:, None] - 2 * a * sums[:, None] + a * a * below[:, None]
    over = (squares[-1] - squares[None, :]) - 2 * b * (sums[-1] - sums[None, :]) + b * b * (below[-1] - below[None, :])
    inside = (below[None, :] - below[:, None]) * ((b - a) / (levels - 1)) ** 2 / 12
    errors = under + over + inside
    s, e = np.indices(errors.shape)
    return np.where(e > s, errors, np.inf)


def l2_search_affine(below, sums, squares, edges, last_start, first_end, levels):
    errors = range_errors(below, sums, squares, edges, levels)
    errors[last_start + 1 :, :] = np.inf
    errors[:, :first_end] = np.inf
    s, e = np.unravel_index(np.argmin(errors), errors.shape)
    return errors[s, e], int(s), int(e)


def kl_threshold(counts: np.ndarray, target_bins: int):
    """TensorRT entropy calibration, written out with NumPy slices per candidate."""
    n = len(counts)
    if n <= target_bins:
        return n, 0.0
    best_i, best = n, np.inf
    for i in range(target_bins, n + 1):
        p = counts[:i].astype(np.float64).copy()
        p[i - 1] += counts[i:].sum()
        q = np.zeros(i)
        bounds = [g * i // target_bins for g in range(target_bins + 1)]
        for start, stop in zip(bounds[:-1], bounds[1:]):
            nonzero = p[start:stop] != 0
            if nonzero.any():
                q[start:stop][nonzero] = counts[start:stop].sum() / nonzero.sum()
        if q.sum() <= 0:
            continue
        pn, qn = p / p.sum(), q / q.sum()
        mask = pn > 0
        divergence = np.sum(pn[mask] * np.log(pn[mask] / np.where(qn[mask] > 0, qn[mask], 1e-12)))
        if divergence < best:
            best, best_i = divergence, i
    return best_i, best


def fake_quant_sse(values, scale, zero_point, qmin, qmax) -> float:
    x = values.astype(np.float64)
    q = np.rint(np.clip(x / scale, qmin - zero_point, qmax - zero_point))
    return float(np.sum((x - q * scale) ** 2))
