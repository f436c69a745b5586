"""Compiled core of lpmon.quant.linear: affine quantization with saturation
counts, and requantization of int32 accumulators (validated by the caller)."""

from cython cimport floating
from libc.stdint cimport int32_t, int64_t, uint8_t


ctypedef fused quantized:
    uint8_t
    signed char


def quantize_affine(const floating[:, ::1] x, float scale, int zero_point, int qmin, int qmax,
                    quantized[:, ::1] out):
    """out = clamp(round_half_even(x / scale) + zero_point); returns (#below qmin, #above qmax)."""
    cdef Py_ssize_t i, j, rows = x.shape[0], cols = x.shape[1]
    cdef float v, magic = 12582912.0  # 1.5 * 2**23: adding and subtracting rounds half to even
    cdef float lo = qmin, hi = qmax, limit = 4194304.0  # beyond 2**22 the trick no longer rounds
    cdef int64_t below = 0, above = 0
    with nogil:
        for i in range(rows):
            for j in range(cols):
                v = <float>x[i, j] / scale
                v = -limit if v < -limit else (limit if v > limit else v)
                v = ((v + magic) - magic) + zero_point
                below += v < lo
                above += v > hi
                v = lo if v < lo else (hi if v > hi else v)
                out[i, j] = <quantized><int32_t>v
    return below, above


def requantize(const float[:, ::1] acc, const float[::1] multiplier, const float[::1] bias,
               float inverse_out_scale, int zero_point, int qmin, int qmax, uint8_t[:, ::1] out):
    """out[i, j] = clamp(round_half_even((acc * multiplier[j] + bias[j]) / out_scale) + zp).

    acc holds exact int32 accumulators (as float32 integers); multiplier[j] is
    the float32 product of the input and weight scales, as FBGEMM computes it.
    """
    cdef Py_ssize_t i, j, rows = acc.shape[0], cols = acc.shape[1]
    cdef float v, magic = 12582912.0, lo = qmin, hi = qmax, limit = 4194304.0
    with nogil:
        for i in range(rows):
            for j in range(cols):
                v = (acc[i, j] * multiplier[j] + bias[j]) * inverse_out_scale
                v = -limit if v < -limit else (limit if v > limit else v)
                v = ((v + magic) - magic) + zero_point
                v = lo if v < lo else (hi if v > hi else v)
                out[i, j] = <uint8_t><int32_t>v
