"""Compiled core of lpmon.quant.linear: affine quantization with saturation
counts, and requantization of int32 accumulators to uint8 or float32, as
FBGEMM computes them.

The C loops (affine_body.h) are built once per instruction set and chosen at
import, like the other per-ISA kernels. Validation happens in lpmon.quant.linear.
"""

import numpy as np

from lpmon._kernels import isa

from libc.stdint cimport int64_t, uint8_t


cdef extern from "affine_dispatch.h" nogil:
    ctypedef void (*lp_quantize_fn)(const float *, int64_t, float, float, float, float, uint8_t *,
                                    int64_t *)
    ctypedef void (*lp_requantize_fn)(const float *, int64_t, int64_t, const float *, const float *,
                                      float, float, float, uint8_t *)
    ctypedef void (*lp_dequantize_output_fn)(const float *, int64_t, int64_t, const float *,
                                             const float *, int, float *)
    ctypedef struct lp_affine_kernels:
        lp_quantize_fn quantize
        lp_requantize_fn requantize
        lp_dequantize_output_fn dequantize_output
    int lp_best_isa()
    lp_affine_kernels lp_affine_kernels_for(int isa)


cdef lp_affine_kernels _kernels
cdef int _isa = -1


cdef lp_affine_kernels _table_for(int index):
    return lp_affine_kernels_for(index)


include "isa_select.pxi"


def quantize_affine(const float[::1] x, float scale, int zero_point, int qmin, int qmax,
                    uint8_t[::1] out):
    """out = clamp(round_half_even(fma(x, 1 / scale, zero_point))) as bytes (int8 codes as
    two's complement); returns (#below qmin, #above qmax)."""
    cdef int64_t counts[2]
    cdef float one = 1.0
    cdef float inverse = one / scale  # a float32 division, as FBGEMM's 1.f / scale
    counts[0] = counts[1] = 0
    if x.shape[0]:
        with nogil:
            _kernels.quantize(&x[0], x.shape[0], inverse, zero_point, qmin, qmax, &out[0], counts)
    return counts[0], counts[1]


def requantize(const float[:, ::1] acc, const float[::1] multiplier, const float[::1] bias_over_scale,
               int zero_point, int lo, int hi, uint8_t[:, ::1] out):
    """out[i, j] = clamp(round_half_even((acc + bias_over_scale[j]) * multiplier[j]) + zero_point,
    lo, hi), FBGEMM's ReQuantizeOutput with a float bias."""
    if acc.shape[0] and acc.shape[1]:
        with nogil:
            _kernels.requantize(&acc[0, 0], acc.shape[0], acc.shape[1], &multiplier[0],
                                &bias_over_scale[0], zero_point, lo, hi, &out[0, 0])


def dequantize_output(const float[:, ::1] acc, const float[::1] multiplier, const float[::1] bias,
                      bint relu, float[:, ::1] out):
    """out[i, j] = fma(acc[i, j], multiplier[j], bias[j]) rounded once (then max(., 0) if relu),
    FBGEMM's float output stage (ReQuantizeForFloat)."""
    if acc.shape[0] and acc.shape[1]:
        with nogil:
            _kernels.dequantize_output(&acc[0, 0], acc.shape[0], acc.shape[1], &multiplier[0],
                                       &bias[0], relu, &out[0, 0])
