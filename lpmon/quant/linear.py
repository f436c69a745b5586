"""int8 fully-connected layers, emulated exactly as FBGEMM computes them.

Weights: per-output-channel symmetric int8 (zero point 0). Activations:
per-tensor affine uint8 with static ranges, quantized as FBGEMM's Quantize
does: round_half_even(fma(x, 1 / scale, zero_point)) in float32, the zero
point added before rounding. The product accumulates in int32: acc[b, n] =
sum_k (x_q[b, k] - zp_x) * w_q[n, k]. On x86-64 with AVX2 (vpmaddwd) or
AVX-512 VNNI (vpdpbusd), a compiled kernel (lpmon._kernels.int8gemm) computes
it in int32 as FBGEMM does, from weights packed once per layer. Elsewhere (the
base copy) the emulation runs that product
through float32 BLAS, which is exact as long as every partial sum stays below
2**24 in magnitude: each term is at most 255 * 128 = 32640, so blocks of at
most 512 terms are exact in any summation order, and blocks are added in
float64 (exact too). Both give the same accumulators. The output is requantized as FBGEMM does with a float
bias: with s = s_x * s_w[n] (float32), round((float(acc) + bias[n] / s) *
(s / s_y)) + zp_y, clamped (a fused ReLU clamps at zp_y). A float32 output
(FBGEMM's ReQuantizeForFloat) is fma(float(acc), s, bias[n]), rounded once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lpmon._kernels import affine as _kernel
from lpmon._kernels import int8gemm as _gemm

from .qparams import QParams, choose_qparams

# Terms per exactly-summed float32 block: 512 * 255 * 128 < 2**24.
EXACT_BLOCK = 512
# Inputs the int32 kernel sums exactly: K * 255 * 128 < 2**31.
INT32_MAX_INPUTS = 65_536


@dataclass(frozen=True)
class Saturation:
    """How many values fell outside the quantization range, below and above."""

    below: int
    above: int
    total: int

    @property
    def fraction(self) -> float:
        return (self.below + self.above) / self.total if self.total else 0.0


def quantize_activation(x, qp: QParams) -> tuple[np.ndarray, Saturation]:
    """Quantize activations [rows, features] to uint8 (or int8), counting saturation."""
    x = np.asarray(x)
    shape = x.shape
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ValueError(f"activations have {np.count_nonzero(~np.isfinite(x))} NaN or inf values")
    if x.dtype.itemsize > 4:  # beyond float32's range they saturate anyway
        x = np.clip(x, -np.finfo(np.float32).max, np.finfo(np.float32).max)
    # FBGEMM quantizes float32: wider inputs are rounded to it first.
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty(flat.size, dtype=np.uint8)
    below, above = _kernel.quantize_affine(flat, qp.scale, qp.zero_point, qp.qmin, qp.qmax, out)
    codes = out if qp.qmin >= 0 else out.view(np.int8)
    return codes.reshape(shape), Saturation(int(below), int(above), flat.size)


def dequantize(q: np.ndarray, qp: QParams) -> np.ndarray:
    return ((q.astype(np.float32) - np.float32(qp.zero_point)) * np.float32(qp.scale)).astype(np.float32)


def dequantize_output(acc, multiplier, bias, *, relu: bool = False) -> np.ndarray:
    """float32 outputs [rows, out] of int32 accumulators, FBGEMM's float output stage
    (ReQuantizeForFloat): fma(acc[i, j], multiplier[j], bias[j]) rounded once, where
    multiplier[j] = float32(s_x * s_w[j]); relu then clamps at 0.

    acc holds the accumulators as float32 (exact integers, see accumulate); a product
    rounded before the bias is added differs by an ulp in about 1 output in 20.
    """
    acc = np.ascontiguousarray(acc, dtype=np.float32)
    if acc.ndim != 2:
        raise ValueError(f"acc must be 2-D [rows, out], got shape {acc.shape}")
    multiplier = np.ascontiguousarray(multiplier, dtype=np.float32).reshape(-1)
    bias = np.ascontiguousarray(bias, dtype=np.float32).reshape(-1)
    if multiplier.shape != (acc.shape[1],) or bias.shape != (acc.shape[1],):
        raise ValueError(
            f"multiplier and bias must have shape ({acc.shape[1]},), got {multiplier.shape} and {bias.shape}"
        )
    out = np.empty(acc.shape, dtype=np.float32)
    _kernel.dequantize_output(acc, multiplier, bias, relu, out)
    return out


def pack_weight(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 weights [out, in] in the int8gemm kernel's layout: [ceil(out / 32), ceil(in / 4), 32, 4],
    zero-padded, and the sums of each output's weights (int32, padded likewise)."""
    block, group = _gemm.BLOCK, _gemm.GROUP
    n, k = weight.shape
    n_pad, k_pad = -(-n // block) * block, -(-k // group) * group
    padded = np.zeros((n_pad, k_pad), np.int8)
    padded[:n, :k] = weight
    packed = np.ascontiguousarray(padded.reshape(n_pad // block, block, k_pad // group, group).transpose(0, 2, 1, 3))
    colsum = np.zeros(n_pad, np.int32)
    colsum[:n] = weight.sum(axis=1, dtype=np.int64)
    return packed, colsum


@dataclass(frozen=True)
class QuantizedLinear:
    """An int8 linear layer: weight [out, in] int8 with per-output-channel scales."""

    weight: np.ndarray  # int8 [out, in]
    weight_scale: np.ndarray  # float32 [out]
    bias: np.ndarray  # float32 [out]
    _weight_t: np.ndarray = field(init=False, repr=False, compare=False)
    _packed: np.ndarray = field(init=False, repr=False, compare=False)
    _colsum: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        # The int8 weights as float32 [in, out] for BLAS: exact, made once per layer.
        object.__setattr__(self, "_weight_t", np.ascontiguousarray(self.weight.T, dtype=np.float32))
        packed, colsum = pack_weight(self.weight)
        object.__setattr__(self, "_packed", packed)
        object.__setattr__(self, "_colsum", colsum)

    @classmethod
    def from_float(cls, weight, bias=None) -> "QuantizedLinear":
        """Per-channel symmetric int8 weights (scale = max|w| / 127.5, zero point 0)."""
        weight = np.asarray(weight, dtype=np.float32)
        if weight.ndim != 2:
            raise ValueError(f"weight must be 2-D [out, in], got shape {weight.shape}")
        if not np.isfinite(weight).all():
            raise ValueError(f"weight has {np.count_nonzero(~np.isfinite(weight))} NaN or inf values")
        scales = np.array(
            [choose_qparams(-m, m, 8, signed=True, symmetric=True).scale for m in np.abs(weight).max(axis=1)],
            dtype=np.float32,
        )
        q = np.clip(np.rint(weight / scales[:, None]), -128, 127).astype(np.int8)
        bias = np.zeros(weight.shape[0], np.float32) if bias is None else np.asarray(bias, np.float32)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {bias.shape}")
        return cls(q, scales, bias)

    def dequantized_weight(self) -> np.ndarray:
        return self.weight.astype(np.float32) * self.weight_scale[:, None]

    def accumulate(self, x_q: np.ndarray, x_zero_point: int) -> np.ndarray:
        """Exact int32 accumulators as float32 [batch, out] (see the module docstring)."""
        if x_q.ndim != 2 or x_q.shape[1] != self.weight.shape[1]:
            raise ValueError(f"input must be [batch, {self.weight.shape[1]}], got {x_q.shape}")
        if _gemm.fast() and x_q.dtype in (np.uint8, np.int8) and x_q.shape[1] <= INT32_MAX_INPUTS:
            return self._accumulate_int32(x_q, x_zero_point)
        a = x_q.astype(np.float32) - np.float32(x_zero_point)
        w = self._weight_t
        k = a.shape[1]
        if k <= EXACT_BLOCK:
            return a @ w
        total = np.zeros((a.shape[0], w.shape[1]), np.float64)
        for start in range(0, k, EXACT_BLOCK):
            total += a[:, start : start + EXACT_BLOCK] @ w[start : start + EXACT_BLOCK]
        return total.astype(np.float32)  # |acc| < 2**31 is exact in float64, int32 range fits

    def _accumulate_int32(self, x_q: np.ndarray, x_zero_point: int) -> np.ndarray:
        if x_q.dtype == np.int8:  # int8 codes as uint8: x + 128, the zero point likewise
            x_q, x_zero_point = x_q.view(np.uint8) ^ np.uint8(0x80), x_zero_point + 128
        out = np.empty((x_q.shape[0], self.weight.shape[0]), np.float32)
        _gemm.gemm_u8s8(np.ascontiguousarray(x_q), self._packed, self._colsum, int(x_zero_point), out)
        return out

    def forward_float(self, x_q: np.ndarray, x_qp: QParams, *, relu: bool = False) -> np.ndarray:
        """float32 outputs [batch, out] from uint8 inputs, as FBGEMM's float output stage
        computes them: fma(acc, float32(s_x * s_w[n]), bias[n]) rounded once (see
        dequantize_output), then max(., 0) if relu."""
        acc = self.accumulate(x_q, x_qp.zero_point)
        multiplier = (np.float32(x_qp.scale) * self.weight_scale).astype(np.float32)
        return dequantize_output(acc, multiplier, self.bias, relu=relu)

    def forward(self, x_q: np.ndarray, x_qp: QParams, out_qp: QParams, relu: bool = False):
        """uint8 outputs [batch, out] from uint8 inputs."""
        acc = self.accumulate(x_q, x_qp.zero_point)
        # torch's fbgemm Linear: act_times_w_scale and the output multiplier in float32.
        act_times_w = (np.float32(x_qp.scale) * self.weight_scale).astype(np.float32)
        multiplier = (act_times_w / np.float32(out_qp.scale)).astype(np.float32)
        bias_over_scale = (self.bias / act_times_w).astype(np.float32)
        out = np.empty(acc.shape, dtype=np.uint8)
        lo = out_qp.zero_point if relu else out_qp.qmin
        _kernel.requantize(
            np.ascontiguousarray(acc, dtype=np.float32),
            multiplier,
            bias_over_scale,
            out_qp.zero_point,
            lo,
            out_qp.qmax,
            out,
        )
        return out
