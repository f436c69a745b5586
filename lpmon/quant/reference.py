"""Plain NumPy versions of the row-wise and int8 kernels: the test oracle.

Written row by row from FBGEMM's reference code's definitions, in float32
arithmetic (NumPy does not contract a * b + c into one rounding; where FBGEMM
fuses one, fma32 does it).
"""

from __future__ import annotations

import numpy as np

from .qparams import fma32

f32 = np.float32


def quantize_rows(table: np.ndarray, bits: int, fp16_scale_bias: bool = False) -> np.ndarray:
    """FBGEMM's fused rows; 4- and 2-bit rows, and 8-bit ones with fp16_scale_bias, by
    FloatOrHalfToFusedNBitRowwiseQuantizedSBHalf."""
    rows, dim = table.shape
    out = []
    for x in table.astype(f32):
        lo, hi = x.min(), x.max()
        if bits == 8 and not fp16_scale_bias:
            rng = f32(hi - lo)
            inverse = f32(f32(255) / f32(rng + f32(1e-8)))
            q = np.rint((x - lo) * inverse).astype(np.uint8)
            tail = np.array([f32(rng / f32(255)), lo], f32).view(np.uint8)
            out.append(np.concatenate([q, tail]))
            continue
        qmax = f32((1 << bits) - 1)
        bias = f32(np.float16(lo))
        rng = f32(hi - bias)
        scale = f32(np.float16(f32(1) if rng == 0 else f32(rng / qmax)))
        if scale == 0:
            scale = f32(1)
        inverse = f32(f32(1) / scale)
        if np.isinf(inverse):
            scale, inverse = f32(1), f32(1)
        q = np.clip(np.rint((x - bias) * inverse), 0, qmax).astype(np.uint8)
        per_byte = 8 // bits
        padded = np.zeros(-(-dim // per_byte) * per_byte, np.uint8)
        padded[:dim] = q
        packed = np.zeros(len(padded) // per_byte, np.uint8)
        for k in range(per_byte):
            packed |= (padded[k::per_byte] << (k * bits)).astype(np.uint8)
        tail = np.array([scale, bias], np.float16).view(np.uint8)
        out.append(np.concatenate([packed, tail]))
    return np.array(out, dtype=np.uint8).reshape(rows, -1)


def codes_scale_bias(packed: np.ndarray, bits: int, dim: int):
    """Each row's codes [rows, dim] and its scale and bias [rows, 1], as float32."""
    if bits == 8:
        scale = packed[:, dim : dim + 4].copy().view(f32)
        bias = packed[:, dim + 4 : dim + 8].copy().view(f32)
        return packed[:, :dim].astype(f32), scale, bias
    per_byte = 8 // bits
    data = -(-dim // per_byte)
    scale = packed[:, data : data + 2].copy().view(np.float16).astype(f32)
    bias = packed[:, data + 2 : data + 4].copy().view(np.float16).astype(f32)
    codes = np.stack([(packed[:, :data] >> (k * bits)) & ((1 << bits) - 1) for k in range(per_byte)], axis=2).reshape(
        len(packed), -1
    )[:, :dim]
    return codes.astype(f32), scale, bias


def dequantize_rows(packed: np.ndarray, bits: int, dim: int) -> np.ndarray:
    """q * scale + bias: fused for 8-bit rows (FBGEMM's AVX2 kernel); for n-bit rows
    the product is exact, so fused or not is the same."""
    codes, scale, bias = codes_scale_bias(packed, bits, dim)
    return fma32(codes, scale, bias) if bits == 8 else codes * scale + bias


def embedding_bag(packed, bits, dim, indices, offsets, mode="sum", per_sample_weights=None):
    """FBGEMM's EmbeddingSpMDM: per row a = scale * w, b = bias * w, then
    out = fma(a, q, out + b) in bag order, in float32; mean times 1 / size."""
    codes, scale, bias = codes_scale_bias(packed, bits, dim)
    bounds = list(offsets) + [len(indices)]
    out = np.zeros((len(offsets), dim), f32)
    for b in range(len(offsets)):
        for i in range(bounds[b], bounds[b + 1]):
            row = indices[i]
            w = f32(1) if per_sample_weights is None else f32(per_sample_weights[i])
            a, bias_w = f32(scale[row, 0] * w), f32(bias[row, 0] * w)
            out[b] = fma32(a, codes[row], (out[b] + bias_w).astype(f32))
        if mode == "mean" and bounds[b + 1] > bounds[b]:
            out[b] *= f32(1) / f32(bounds[b + 1] - bounds[b])
    return out


def int8_linear_accumulators(x_q, x_zero_point, w_q) -> np.ndarray:
    """acc[b, n] = sum_k (x_q - zp) * w_q[n, k] in int64 (exact)."""
    return (x_q.astype(np.int64) - x_zero_point) @ w_q.astype(np.int64).T


def dequantize_output(acc, multiplier, bias, relu=False) -> np.ndarray:
    """fma(acc[i, j], multiplier[j], bias[j]) rounded once, then max(., 0) if relu.

    acc * multiplier (float32 values) is exact in float64; the float64 sum with the
    bias, rounded to float32, is the fused result unless that sum fell exactly on a
    midpoint between two float32 values (double rounding) or in float32's subnormal
    range: those few are redone with fma32.
    """
    acc, multiplier, bias = (np.asarray(a, f32) for a in (acc, multiplier, bias))
    total = acc.astype(np.float64)
    total *= multiplier.astype(np.float64)
    total += bias.astype(np.float64)
    out = total.astype(f32)
    low = total.view(np.int64) & 0x1FFFFFFF  # the 29 bits float32 drops
    redo = (low == 0x10000000) | (np.abs(total) < 2.0**-125)
    if redo.any():
        rows, cols = np.nonzero(redo)
        out[rows, cols] = fma32(acc[rows, cols], multiplier[cols], bias[cols])
    return np.maximum(out, f32(0)) if relu else out


def embedding_bag_float(table, indices, offsets, mode="sum") -> np.ndarray:
    """torch's embedding_bag over a float32 table: each bag's rows added one after
    another in the ids' order, from zeros; mean divides by the bag's size.

    Vectorised over bags: step k adds the k-th row of every bag that has one (bags
    sorted by length, so those are a prefix), one pass over the ids in all.
    """
    indices, offsets = np.asarray(indices, np.int64), np.asarray(offsets, np.int64)
    n, bags = len(indices), len(offsets)
    out = np.zeros((bags, table.shape[1]), table.dtype)
    if n == 0:
        return out
    counts = np.diff(np.append(offsets, n))
    longest_first = np.argsort(-counts, kind="stable")
    ordered = counts[longest_first]
    for k in range(int(ordered[0])):
        live = longest_first[: np.searchsorted(-ordered, -k, side="left")]
        out[live] += table[indices[offsets[live] + k]]
    if mode == "mean":
        filled = counts > 0
        out[filled] /= counts[filled, None]
    return out
