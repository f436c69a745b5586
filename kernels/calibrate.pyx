"""Compiled core of lpmon.calibrate: range scan, histogram counting, range searches.

The one-pass scan-and-count of float32 batches (calibrate_hist.h) is built
once per instruction set and chosen at import, like the other per-ISA kernels.

The kernels assume validated input (lpmon.calibrate checks it). Histograms
here are "aligned": bin k covers [k w, (k + 1) w) with w a power of two, so
the bin of a value is floor(x / w), computed exactly, whatever the
histogram's current offset.
"""

import numpy as np

from lpmon._kernels import isa

from cython cimport floating
from libc.math cimport INFINITY, log
from libc.stdint cimport int32_t, int64_t

cdef extern from "calibrate_dispatch.h" nogil:
    ctypedef struct lp_hist:
        int64_t n_bins
        int64_t *counts
        int32_t *copies
        int exponent
        int64_t origin
        double lo, hi
        int64_t counted
        int64_t zeros
    ctypedef int (*lp_hist_fn)(lp_hist *, const float *, int64_t)
    ctypedef void (*lp_l2_fn)(const double *, const double *, const double *, const double *, int64_t,
                              int64_t, int64_t, int, double *, double *)
    ctypedef struct lp_calibrate_kernels:
        lp_hist_fn observe_f32
        lp_l2_fn l2_search_affine
    int lp_best_isa()
    lp_calibrate_kernels lp_calibrate_kernels_for(int isa)


cdef lp_calibrate_kernels _kernels
cdef int _isa = -1


cdef lp_calibrate_kernels _table_for(int index):
    return lp_calibrate_kernels_for(index)


include "isa_select.pxi"


def observe_f32(const float[::1] x, int64_t[::1] counts, int exponent, int64_t origin, double lo,
                double hi, int64_t counted):
    """Scan and count float32 values into counts in one pass (calibrate_hist.h).

    counts (the histogram's, or a copy) is updated in place. Returns None when
    x holds NaN or inf (counts is then garbage), else the new (exponent,
    origin, lo, hi, zeros among x).
    """
    cdef lp_hist h
    cdef int32_t[::1] copies = np.zeros(4 * counts.shape[0], dtype=np.int32)
    cdef int bad
    h.n_bins, h.counts, h.copies = counts.shape[0], &counts[0], &copies[0]
    h.exponent, h.origin, h.lo, h.hi, h.counted, h.zeros = exponent, origin, lo, hi, counted, 0
    if x.shape[0] == 0:
        return exponent, origin, lo, hi, 0
    with nogil:
        bad = _kernels.observe_f32(&h, &x[0], x.shape[0])
    if bad:
        return None
    return h.exponent, h.origin, h.lo, h.hi, h.zeros


# BLOCK: values whose bin indices are computed (vectorised) before counting.
# FLUSH: the int32 per-copy counts are flushed before they could overflow.
cdef enum:
    BLOCK = 2048
    FLUSH = 1 << 28


def count_bins(const floating[::1] x, int exponent, int64_t origin, int64_t[::1] counts):
    """Add x into counts: bin floor(x / 2**exponent) - origin.

    The caller guarantees that min(x) and max(x) fall in [0, len(counts)):
    bins are monotone in x, so every value then does (no per-value check).

    Returns how many values are exactly 0 (they are counted in their bin too).

    Four interleaved copies of the counts take consecutive values, so runs of
    equal bins do not serialise on one memory location.
    """
    cdef Py_ssize_t n = x.shape[0], n_bins = counts.shape[0]
    cdef Py_ssize_t block, start, stop, j, m, k, flushed = 0
    cdef double inv_width = 2.0 ** (-exponent), shift = <double>origin
    # float32 values index in float32 (4 lanes in SSE2 rather than 2) while
    # bins fit int32: x * 2**-exponent is exact in float32, then floor, then
    # the integer origin is subtracted in integers.
    cdef bint narrow = (floating is float and -(1 << 23) < origin < (1 << 23)
                        and -126 < exponent < 127)
    cdef float inv_width_f = <float>inv_width, scaled
    cdef int32_t truncated, origin32 = <int32_t>origin if narrow else 0
    cdef int32_t[:, ::1] copies = np.zeros((4, n_bins), dtype=np.int32)
    cdef int32_t[::1] index = np.empty(BLOCK, dtype=np.int32)
    cdef int32_t *c0 = &copies[0, 0]
    cdef int32_t *c1 = &copies[1, 0]
    cdef int32_t *c2 = &copies[2, 0]
    cdef int32_t *c3 = &copies[3, 0]
    cdef int32_t *idx = &index[0]
    cdef int64_t zeros = 0
    with nogil:
        for block in range((n + BLOCK - 1) // BLOCK):  # a C loop (a range step must be a literal)
            start = block * BLOCK
            stop = min(n, start + BLOCK)
            m = stop - start
            # x * 2**-exponent is exact, and so is subtracting the integer
            # origin; the result is >= 0, so truncation is floor.
            if narrow:
                for j in range(m):
                    zeros += x[start + j] == 0
                    scaled = <float>x[start + j] * inv_width_f
                    truncated = <int32_t>scaled
                    # A negative value whose scaled form underflowed to -0 is in bin -1 too.
                    idx[j] = truncated - ((scaled < <float>truncated)
                                          | ((x[start + j] < 0) & (truncated == 0))) - origin32
            else:
                for j in range(m):
                    zeros += x[start + j] == 0
                    idx[j] = <int32_t>(x[start + j] * inv_width - shift)
            for j in range(0, m - 3, 4):
                c0[idx[j]] += 1
                c1[idx[j + 1]] += 1
                c2[idx[j + 2]] += 1
                c3[idx[j + 3]] += 1
            for j in range(m - m % 4, m):
                c0[idx[j]] += 1
            if stop - flushed >= FLUSH or stop == n:
                for k in range(n_bins):
                    counts[k] += <int64_t>c0[k] + c1[k] + c2[k] + c3[k]
                    c0[k] = 0
                    c1[k] = 0
                    c2[k] = 0
                    c3[k] = 0
                flushed = stop
    return zeros


cdef inline double _range_error(const double[::1] below_count, const double[::1] below_sum,
                                const double[::1] below_sq, const double[::1] edges,
                                Py_ssize_t s, Py_ssize_t e, double per_level) noexcept nogil:
    cdef Py_ssize_t k = edges.shape[0] - 1
    cdef double a = edges[s], b = edges[e]
    cdef double under = below_sq[s] - 2.0 * a * below_sum[s] + a * a * below_count[s]
    cdef double over = (below_sq[k] - below_sq[e]) - 2.0 * b * (below_sum[k] - below_sum[e]) \
        + b * b * (below_count[k] - below_count[e])
    return under + over + (below_count[e] - below_count[s]) * (b - a) * (b - a) * per_level


def l2_search_greedy(const double[::1] below_count, const double[::1] below_sum,
                     const double[::1] below_sq, const double[::1] edges,
                     Py_ssize_t last_start, Py_ssize_t first_end, int levels):
    """Greedy version of l2_search_affine (FBGEMM's L2 range search does the same).

    From the full range, move in whichever end (start right, end left) gives
    the smaller error, one bin at a time, until they meet; return the best
    range seen. O(bins) instead of O(bins^2); may miss the global optimum.
    The start never passes last_start, nor the end first_end (zero stays in).
    """
    cdef Py_ssize_t s = 0, e = edges.shape[0] - 1, best_s, best_e
    cdef double per_level = 1.0 / ((levels - 1.0) * (levels - 1.0) * 12.0), best, move_s, move_e
    best = _range_error(below_count, below_sum, below_sq, edges, s, e, per_level)
    best_s, best_e = s, e
    with nogil:
        while e - s > 1 and (s < last_start or e > first_end):
            move_s = _range_error(below_count, below_sum, below_sq, edges, s + 1, e, per_level) \
                if s < last_start else INFINITY
            move_e = _range_error(below_count, below_sum, below_sq, edges, s, e - 1, per_level) \
                if e > first_end else INFINITY
            if move_s <= move_e:
                s += 1
                if move_s < best:
                    best, best_s, best_e = move_s, s, e
            else:
                e -= 1
                if move_e < best:
                    best, best_s, best_e = move_e, s, e
    return best, best_s, best_e


def l2_search_affine(const double[::1] below_count, const double[::1] below_sum,
                     const double[::1] below_sq, const double[::1] edges,
                     Py_ssize_t last_start, Py_ssize_t first_end, int levels):
    """Exhaustive search of [edges[s], edges[e]] minimising the expected squared error.

    below_*[k]: count, sum and sum of squares of the values under edges[k]
    (prefix sums under the histogram's within-bin-uniform model). The error of
    a range [a, b] with step D = (b - a) / (levels - 1) is D^2 / 12 per value
    inside, plus (x - a)^2 for values under a and (x - b)^2 over b. Every
    s <= last_start and e >= max(first_end, s + 1) is tried (a vectorised C
    loop, calibrate_hist.h); the first pair reaching the minimum wins.
    Returns (best error, s, e).
    """
    cdef double[::1] row = np.empty(edges.shape[0])
    cdef double out[3]
    with nogil:
        _kernels.l2_search_affine(&below_count[0], &below_sum[0], &below_sq[0], &edges[0],
                                  edges.shape[0], last_start, first_end, levels, &row[0], out)
    return out[0], <Py_ssize_t>out[1], <Py_ssize_t>out[2]


def kl_threshold(const double[::1] magnitude_counts, int target_bins):
    """TensorRT-style entropy calibration on a histogram of |x| (bin j = [j w, (j+1) w)).

    For every candidate i >= target_bins: P is the first i bins with all the
    mass beyond folded into bin i - 1; Q quantizes the first i bins (without
    that tail) into target_bins groups, spreading each group's mass evenly over
    the bins where P is non-zero. Returns (the i minimising KL(P || Q), that
    divergence). Where Q is 0 and P is not (a group empty but for the folded
    tail), Q takes 1e-12: a large, finite penalty.
    """
    cdef Py_ssize_t n = magnitude_counts.shape[0], i, j, g, start, stop, nonzero, best_i = n
    cdef double p, q, q_mass, p_total, q_total, divergence, best = INFINITY, outliers
    if n <= target_bins:
        return n, 0.0
    cdef double[::1] tail = np.zeros(n + 1)
    cdef double[::1] q_dist = np.zeros(n)
    for j in range(n - 1, -1, -1):
        tail[j] = tail[j + 1] + magnitude_counts[j]
    p_total = tail[0]
    with nogil:
        for i in range(target_bins, n + 1):
            outliers = tail[i]
            q_total = p_total - outliers
            if q_total <= 0:
                continue
            for g in range(target_bins):
                start = g * i // target_bins
                stop = (g + 1) * i // target_bins
                q_mass = 0
                nonzero = 0
                for j in range(start, stop):
                    q_mass += magnitude_counts[j]
                    nonzero += magnitude_counts[j] != 0 or (j == i - 1 and outliers != 0)
                for j in range(start, stop):
                    if magnitude_counts[j] != 0 or (j == i - 1 and outliers != 0):
                        q_dist[j] = q_mass / nonzero
                    else:
                        q_dist[j] = 0
            divergence = 0
            for j in range(i):
                p = magnitude_counts[j] + (outliers if j == i - 1 else 0)
                if p == 0:
                    continue
                q = q_dist[j] / q_total
                divergence += p / p_total * log(p / p_total / (q if q > 0 else 1e-12))
            if divergence < best:
                best, best_i = divergence, i
    return best_i, best


def fake_quant_sse(const floating[::1] x, double scale, int zero_point, int qmin, int qmax):
    """Sum over x of (x - dequantize(quantize(x)))^2, rounding half to even."""
    cdef Py_ssize_t i
    cdef double inv = 1.0 / scale, lo = qmin - zero_point, hi = qmax - zero_point
    cdef double v, q, total = 0.0
    # Adding and subtracting 1.5 * 2**52 rounds a double (|v| < 2**51) half to even.
    cdef double magic = 6755399441055744.0
    with nogil:
        for i in range(x.shape[0]):
            v = x[i] * inv
            v = lo if v < lo else (hi if v > hi else v)
            q = (v + magic) - magic
            v = x[i] - q * scale
            total += v * v
    return total
