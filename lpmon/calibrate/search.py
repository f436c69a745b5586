"""Range searches on an aligned histogram: percentile, L2 (exhaustive, greedy), KL.

Each returns the chosen real range [lo, hi] and the method's own objective.
The histogram model: mass uniform within each bin, trimmed to the data's
[min, max]. Affine ranges keep 0 inside (it must be representable); symmetric
ranges are [-t, t].
"""

from __future__ import annotations

import math

import numpy as np

from lpmon._kernels import calibrate as _kernel

from .histogram import AlignedHistogram


def percentile_range(hist: AlignedHistogram, percentile: float) -> tuple[float, float]:
    """The (100 - p)th and pth percentiles, interpolated within bins."""
    edges, below, _, _ = hist.moments(with_zeros=True)
    total = below[-1]
    lo = float(np.interp((1 - percentile / 100) * total, below, edges))
    hi = float(np.interp(percentile / 100 * total, below, edges))
    return lo, hi


def _zero_limits(edges: np.ndarray) -> tuple[int, int]:
    """Last start index with edge <= 0 and first end index with edge >= 0.

    When all data is positive the start is pinned to bin 0 (and its edge
    replaced by 0 by the caller); likewise the end when all data is negative.
    """
    last_start = int(np.searchsorted(edges, 0.0, side="right")) - 1
    first_end = int(np.searchsorted(edges, 0.0, side="left"))
    return max(last_start, 0), min(first_end, len(edges) - 1)


def l2_range(hist: AlignedHistogram, levels: int, exhaustive: bool) -> tuple[float, float, float]:
    """Affine range minimising the expected squared error (noise plus clipping)."""
    edges, below, sums, squares = hist.moments()
    if edges[0] > 0:  # all positive: the range starts at 0, nothing below it
        edges[0] = 0.0
    if edges[-1] < 0:
        edges[-1] = 0.0
    last_start, first_end = _zero_limits(edges)
    search = _kernel.l2_search_affine if exhaustive else _kernel.l2_search_greedy
    error, s, e = search(below, sums, squares, edges, last_start, first_end, levels)
    return float(edges[s]), float(edges[e]), error


def l2_symmetric_range(hist: AlignedHistogram, levels: int) -> tuple[float, float, float]:
    """[-t, t] minimising the expected squared error, t over every bin edge."""
    edges, below, sums, squares = hist.moments()
    magnitude = max(-edges[0], edges[-1])
    t = np.unique(np.abs(edges))
    t = t[t > 0] if np.any(t > 0) else np.array([magnitude])
    # Prefix sums at -t and t by linear interpolation over the edges (exact at edges).
    c_lo, s_lo, q_lo = (np.interp(-t, edges, v) for v in (below, sums, squares))
    c_hi, s_hi, q_hi = (np.interp(t, edges, v) for v in (below, sums, squares))
    under = q_lo + 2 * t * s_lo + t * t * c_lo
    over = (squares[-1] - q_hi) - 2 * t * (sums[-1] - s_hi) + t * t * (below[-1] - c_hi)
    inside = (c_hi - c_lo) * (2 * t / (levels - 1)) ** 2 / 12
    errors = under + over + inside
    best = int(np.argmin(errors))
    return -float(t[best]), float(t[best]), float(errors[best])


def kl_range(hist: AlignedHistogram, target_bins: int) -> tuple[float, float, float]:
    """TensorRT entropy calibration: a threshold t on |x|; the range is [-t, t] cut to the data."""
    counts, width = hist.magnitude_counts()
    if not counts.any():  # only exact zeros
        return hist.lo, hist.hi, 0.0
    last = int(np.flatnonzero(counts)[-1]) + 1
    bins, divergence = _kernel.kl_threshold(counts[:last].astype(np.float64), target_bins)
    threshold = min(bins * width, max(-hist.lo, hist.hi))
    return max(hist.lo, -threshold), min(hist.hi, threshold), float(divergence)


def expected_error(hist: AlignedHistogram, lo: float, hi: float, step: float):
    """(expected squared error per value, share of values clipped) of quantizing on [lo, hi]."""
    edges, below, sums, squares = hist.moments()
    total = below[-1]
    c_lo, s_lo, q_lo = (float(np.interp(lo, edges, v)) for v in (below, sums, squares))
    c_hi, s_hi, q_hi = (float(np.interp(hi, edges, v)) for v in (below, sums, squares))
    under = q_lo - 2 * lo * s_lo + lo * lo * c_lo
    over = (squares[-1] - q_hi) - 2 * hi * (sums[-1] - s_hi) + hi * hi * (total - c_hi)
    inside = (c_hi - c_lo) * step * step / 12
    # total excludes exact zeros (no error, never clipped); divide by all values.
    return max(under + over + inside, 0.0) / hist.count, (c_lo + total - c_hi) / hist.count


def is_degenerate(hist: AlignedHistogram) -> bool:
    return not math.isfinite(hist.lo) or hist.hi <= hist.lo
