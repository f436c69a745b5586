"""Compiled core of lpmon.metrics: chunked sums for NE and the fused comparison.

The per-example arithmetic and the SIMD block loops are C (lpmon_logloss.h,
logloss_body.h), built once per instruction set and chosen here at import.
This module validates nothing: lpmon.metrics does, and calls these with
contiguous float32/float64 predictions, uint8 labels and at least one example.

Chunks of CHUNK examples are summed independently (in parallel when
n_threads > 1) and their float64 partial sums are then added in chunk order,
so results do not depend on the number of threads.
"""

import numpy as np

from lpmon._kernels import isa

from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t, uint8_t


cdef extern from "lpmon_logloss.h":
    enum:
        LP_NE_LOSS
        LP_NE_POS
        LP_NE_BAD
        LP_NE_FIELDS
        LP_CMP_LOSS_REF
        LP_CMP_LOSS_REF_SQ
        LP_CMP_LOSS_Q
        LP_CMP_DIFF
        LP_CMP_DIFF_SQ
        LP_CMP_DIFF_X_LOSS
        LP_CMP_KL
        LP_CMP_P_REF
        LP_CMP_P_Q
        LP_CMP_ABS_DIFF
        LP_CMP_MAX_ABS_DIFF
        LP_CMP_POS
        LP_CMP_BAD
        LP_CMP_FIELDS


cdef extern from "logloss_dispatch.h" nogil:
    ctypedef void (*lp_ne_fn_f32)(const float *, const uint8_t *, int64_t, double *)
    ctypedef void (*lp_ne_fn_f64)(const double *, const uint8_t *, int64_t, double *)
    ctypedef void (*lp_cmp_fn_f32)(const float *, const float *, const uint8_t *, int64_t, double *)
    ctypedef void (*lp_cmp_fn_f64)(const double *, const double *, const uint8_t *, int64_t, double *)
    ctypedef void (*lp_seg_fn_f32)(const float *, const float *, const uint8_t *, const int64_t *,
                                   int64_t, double *)
    ctypedef void (*lp_seg_fn_f64)(const double *, const double *, const uint8_t *, const int64_t *,
                                   int64_t, double *)
    ctypedef struct lp_kernels:
        lp_ne_fn_f32 ne_f32
        lp_ne_fn_f64 ne_f64
        lp_cmp_fn_f32 cmp_f32
        lp_cmp_fn_f64 cmp_f64
        lp_seg_fn_f32 seg_f32
        lp_seg_fn_f64 seg_f64
    int lp_best_isa()
    lp_kernels lp_kernels_for(int isa)


EPS = 1e-7
cdef enum:
    C_CHUNK = 1 << 16
CHUNK = C_CHUNK

#: Index of each sum in the arrays returned by ne_sums / compare_sums.
NE_FIELDS = {"loss": LP_NE_LOSS, "positives": LP_NE_POS, "invalid": LP_NE_BAD}
CMP_FIELDS = {
    "loss_ref": LP_CMP_LOSS_REF,
    "loss_ref_sq": LP_CMP_LOSS_REF_SQ,
    "loss_q": LP_CMP_LOSS_Q,
    "diff": LP_CMP_DIFF,
    "diff_sq": LP_CMP_DIFF_SQ,
    "diff_x_loss": LP_CMP_DIFF_X_LOSS,
    "kl": LP_CMP_KL,
    "p_ref": LP_CMP_P_REF,
    "p_q": LP_CMP_P_Q,
    "abs_diff": LP_CMP_ABS_DIFF,
    "max_abs_diff": LP_CMP_MAX_ABS_DIFF,
    "positives": LP_CMP_POS,
    "invalid": LP_CMP_BAD,
}
assert len(NE_FIELDS) == LP_NE_FIELDS and len(CMP_FIELDS) == LP_CMP_FIELDS

cdef lp_kernels _kernels
cdef int _isa = -1


cdef lp_kernels _table_for(int index):
    return lp_kernels_for(index)


include "isa_select.pxi"


cdef inline int64_t _n_chunks(int64_t n) noexcept nogil:
    return (n + C_CHUNK - 1) // C_CHUNK


cdef inline void _ne_chunk(lp_kernels k, const floating[::1] p, const uint8_t[::1] y,
                           int64_t c, double[:, ::1] out) noexcept nogil:
    cdef int64_t start = c * C_CHUNK, length = min(C_CHUNK, p.shape[0] - start)
    if floating is float:
        k.ne_f32(&p[start], &y[start], length, &out[c, 0])
    else:
        k.ne_f64(&p[start], &y[start], length, &out[c, 0])


cdef inline void _compare_chunk(lp_kernels k, const floating[::1] p_ref, const floating[::1] p_q,
                                const uint8_t[::1] y, int64_t c, double[:, ::1] out) noexcept nogil:
    cdef int64_t start = c * C_CHUNK, length = min(C_CHUNK, p_ref.shape[0] - start)
    if floating is float:
        k.cmp_f32(&p_ref[start], &p_q[start], &y[start], length, &out[c, 0])
    else:
        k.cmp_f64(&p_ref[start], &p_q[start], &y[start], length, &out[c, 0])


cdef inline void _segment_part(lp_kernels k, const floating[::1] p_ref, const floating[::1] p_q,
                               const uint8_t[::1] y, const int64_t[::1] segment, int64_t part,
                               int64_t n_parts, double[:, :, ::1] out) noexcept nogil:
    # A part is a contiguous range of whole chunks with its own accumulators.
    cdef int64_t n = p_ref.shape[0], n_chunks = _n_chunks(n)
    cdef int64_t start = (n_chunks * part // n_parts) * C_CHUNK
    cdef int64_t stop = min(n, (n_chunks * (part + 1) // n_parts) * C_CHUNK)
    if stop <= start:
        return
    if floating is float:
        k.seg_f32(&p_ref[start], &p_q[start], &y[start], &segment[start], stop - start,
                  &out[part, 0, 0])
    else:
        k.seg_f64(&p_ref[start], &p_q[start], &y[start], &segment[start], stop - start,
                  &out[part, 0, 0])


# Threads are opt-in: with n_threads=1 no OpenMP region is entered at all, so a
# process that forks later (Airflow's LocalExecutor, Celery) never inherits an
# OpenMP thread pool.

def ne_sums(const floating[::1] p, const uint8_t[::1] y, int n_threads=1):
    """Totals (see NE_FIELDS) of the clipped log loss, positives and invalid examples."""
    cdef int64_t n_chunks = _n_chunks(p.shape[0]), c
    partial = np.zeros((max(n_chunks, 1), LP_NE_FIELDS))
    cdef double[:, ::1] out = partial
    cdef lp_kernels k = _kernels
    if n_threads <= 1:
        with nogil:
            for c in range(n_chunks):
                _ne_chunk(k, p, y, c, out)
    else:
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule="static"):
            _ne_chunk(k, p, y, c, out)
    return partial.sum(axis=0)


def compare_sums(const floating[::1] p_ref, const floating[::1] p_q, const uint8_t[::1] y,
                 int n_threads=1):
    """Totals (see CMP_FIELDS) of one fused pass over both predictions and the labels."""
    cdef int64_t n_chunks = _n_chunks(p_ref.shape[0]), c
    partial = np.zeros((max(n_chunks, 1), LP_CMP_FIELDS))
    cdef double[:, ::1] out = partial
    cdef lp_kernels k = _kernels
    if n_threads <= 1:
        with nogil:
            for c in range(n_chunks):
                _compare_chunk(k, p_ref, p_q, y, c, out)
    else:
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule="static"):
            _compare_chunk(k, p_ref, p_q, y, c, out)
    totals = partial.sum(axis=0)
    totals[LP_CMP_MAX_ABS_DIFF] = partial[:, LP_CMP_MAX_ABS_DIFF].max()
    return totals


def compare_segment_sums(const floating[::1] p_ref, const floating[::1] p_q, const uint8_t[::1] y,
                         const int64_t[::1] segment, int64_t n_segments, int n_threads=1):
    """Totals per segment, shape [n_segments, len(CMP_FIELDS)]; segment[i] in [0, n_segments)."""
    cdef int64_t n_parts = max(1, min(n_threads, _n_chunks(p_ref.shape[0]))), part
    partial = np.zeros((n_parts, n_segments, LP_CMP_FIELDS))
    cdef double[:, :, ::1] out = partial
    cdef lp_kernels k = _kernels
    if n_parts == 1:
        with nogil:
            _segment_part(k, p_ref, p_q, y, segment, 0, 1, out)
    else:
        for part in prange(n_parts, nogil=True, num_threads=n_parts, schedule="static"):
            _segment_part(k, p_ref, p_q, y, segment, part, n_parts, out)
    totals = partial.sum(axis=0)
    totals[:, LP_CMP_MAX_ABS_DIFF] = partial[:, :, LP_CMP_MAX_ABS_DIFF].max(axis=0)
    return totals
