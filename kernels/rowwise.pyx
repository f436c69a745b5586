"""Compiled core of lpmon.quant.rowwise: FBGEMM's fused row-wise formats.

The C loops (rowwise_body.h) are built once per instruction set and chosen
at import, like the log-loss kernels. Validation happens in lpmon.quant.rowwise.
"""

import numpy as np

from lpmon._kernels import isa

from libc.stdint cimport int64_t, uint8_t


cdef extern from "rowwise_dispatch.h" nogil:
    ctypedef int64_t (*lp_q8_fn)(const float *, int64_t, int64_t, uint8_t *)
    ctypedef int64_t (*lp_qn_fn)(int, const float *, int64_t, int64_t, const float *, const float *,
                              uint8_t *)
    ctypedef void (*lp_dq_fn)(const uint8_t *, int, int64_t, int64_t, int64_t, float *)
    ctypedef int64_t (*lp_bag_fn)(const uint8_t *, int64_t, int, int64_t, int64_t,
                                  const int64_t *, int64_t, const int64_t *, int64_t, const float *,
                                  int, float *)
    ctypedef int64_t (*lp_bag_float_fn)(const float *, int64_t, int64_t, const int64_t *, int64_t,
                                        const int64_t *, int64_t, float *)
    ctypedef struct lp_rowwise_kernels:
        lp_q8_fn quantize8
        lp_qn_fn quantize_nbit
        lp_dq_fn dequantize
        lp_bag_fn embedding_bag
        lp_bag_float_fn embedding_bag_float
    int lp_best_isa()
    lp_rowwise_kernels lp_rowwise_kernels_for(int isa)


cdef lp_rowwise_kernels _kernels
cdef int _isa = -1


cdef lp_rowwise_kernels _table_for(int index):
    return lp_rowwise_kernels_for(index)


include "isa_select.pxi"


def quantize_rows8(const float[:, ::1] table, uint8_t[:, ::1] out):
    """Returns the first row holding NaN or inf, or -1."""
    cdef int64_t bad
    with nogil:
        bad = _kernels.quantize8(&table[0, 0], table.shape[0], table.shape[1], &out[0, 0])
    return bad


def quantize_rows_nbit(int bits, const float[:, ::1] table, uint8_t[:, ::1] out,
                       const float[::1] row_lo=None, const float[::1] row_hi=None):
    """Returns the first row with NaN, inf or values beyond fp16, or -1."""
    cdef const float *lo = NULL
    cdef const float *hi = NULL
    if row_lo is not None:
        lo, hi = &row_lo[0], &row_hi[0]
    cdef int64_t bad
    with nogil:
        bad = _kernels.quantize_nbit(bits, &table[0, 0], table.shape[0], table.shape[1], lo, hi,
                                     &out[0, 0])
    return bad


def dequantize_rows(const uint8_t[:, ::1] packed, int bits, int64_t dim, float[:, ::1] out):
    with nogil:
        _kernels.dequantize(&packed[0, 0], bits, packed.shape[0], dim, packed.shape[1], &out[0, 0])


def embedding_bag(const uint8_t[:, ::1] packed, int bits, int64_t dim, const int64_t[::1] indices,
                  const int64_t[::1] offsets, const float[::1] weights, bint mean,
                  float[:, ::1] out):
    """Pooled lookups into out; returns the position of the first index out of range, or -1."""
    cdef const float *w = NULL
    cdef const int64_t *idx = NULL
    if weights is not None and weights.shape[0]:
        w = &weights[0]
    if indices.shape[0]:
        idx = &indices[0]
    cdef int64_t bad
    with nogil:
        bad = _kernels.embedding_bag(&packed[0, 0], packed.shape[0], bits, dim, packed.shape[1], idx,
                                     indices.shape[0], &offsets[0], offsets.shape[0], w, mean,
                                     &out[0, 0])
    return bad


def embedding_bag_float(const float[:, ::1] table, const int64_t[::1] indices,
                        const int64_t[::1] offsets, float[:, ::1] out):
    """Bag sums of float32 rows in the ids' order into out; returns the position of the
    first index out of range, or -1."""
    cdef const int64_t *idx = NULL
    cdef const float *rows = NULL
    if indices.shape[0]:
        idx = &indices[0]
    if table.shape[0] and table.shape[1]:
        rows = &table[0, 0]
    cdef int64_t bad
    with nogil:
        bad = _kernels.embedding_bag_float(rows, table.shape[0], table.shape[1], idx, indices.shape[0],
                                           &offsets[0], offsets.shape[0], &out[0, 0])
    return bad
