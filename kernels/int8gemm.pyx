"""Compiled core of lpmon.quant.linear's int8 accumulation: the exact int32 product of
uint8 activations and packed int8 weights (vpdpbusd where the CPU has AVX-512 VNNI,
else vpmaddwd in the avx2 and avx512 copies, a plain loop in the base copy).

The C loops (int8gemm_body.h) are built once per instruction set and chosen at import,
like the other per-ISA kernels. Packing and validation happen in lpmon.quant.linear.
"""

import numpy as np

from lpmon._kernels import isa

from cython.parallel cimport prange
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t


cdef extern from "int8gemm_dispatch.h" nogil:
    ctypedef void (*lp_gemm_u8s8_fn)(const uint8_t *, int64_t, int64_t, const int8_t *, const int32_t *,
                                     int64_t, int32_t, float *)
    ctypedef int (*lp_gemm_fast_fn)()
    ctypedef struct lp_int8gemm_kernels:
        lp_gemm_u8s8_fn gemm_u8s8
        lp_gemm_fast_fn fast
    int lp_best_isa()
    lp_int8gemm_kernels lp_int8gemm_kernels_for(int isa)


cdef lp_int8gemm_kernels _kernels
cdef int _isa = -1

#: Outputs per packed block and inputs per group of the packed weight layout.
BLOCK = 32
GROUP = 4


cdef lp_int8gemm_kernels _table_for(int index):
    return lp_int8gemm_kernels_for(index)


include "isa_select.pxi"


def fast():
    """True if the copy in use beats a float32 BLAS product (the avx2 and avx512 copies)."""
    return bool(_kernels.fast())


# Threads are opt-in: with n_threads=1 no OpenMP region is entered at all (see logloss.pyx).

def gemm_u8s8(const uint8_t[:, ::1] x, const int8_t[:, :, :, ::1] packed, const int32_t[::1] colsum,
              int32_t zero_point, float[:, ::1] out, int n_threads=1):
    """out[m, n] = float32(sum_k x[m, k] * w[n, k] - zero_point * colsum[n]), exact int32 arithmetic;
    packed: w as [ceil(N / BLOCK), ceil(K / GROUP), BLOCK, GROUP] int8, colsum padded likewise."""
    cdef int64_t rows = x.shape[0], k_in = x.shape[1], n_out = out.shape[1]
    cdef int64_t n_chunks = max(1, min(n_threads, rows // 64)), c, r0, r1
    cdef lp_int8gemm_kernels k = _kernels
    if rows == 0 or n_out == 0 or k_in == 0:
        return
    if n_chunks == 1:
        with nogil:
            k.gemm_u8s8(&x[0, 0], rows, k_in, &packed[0, 0, 0, 0], &colsum[0], n_out, zero_point, &out[0, 0])
    else:
        for c in prange(n_chunks, nogil=True, num_threads=n_chunks, schedule="static"):
            r0 = c * rows // n_chunks
            r1 = (c + 1) * rows // n_chunks
            k.gemm_u8s8(&x[r0, 0], r1 - r0, k_in, &packed[0, 0, 0, 0], &colsum[0], n_out, zero_point,
                        &out[r0, 0])
