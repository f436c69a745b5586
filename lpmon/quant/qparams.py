"""Affine quantization parameters: q = clamp(round(x / scale + zero_point), qmin, qmax).

Affine parameters are chosen as FBGEMM's ChooseQuantizationParams does: the
range is first extended to include 0 (so that 0 is exactly representable),
scale = (max - min) / (qmax - qmin), the zero point comes from whichever end
gives the smaller rounding error, then is rounded half-to-even and clamped,
and the scale is stored as float32. Symmetric parameters follow PyTorch's
convention (zero point 0 for signed, the middle code for unsigned, scale =
max|x| / ((qmax - qmin) / 2)), the usual choice for per-channel weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QParams:
    scale: float
    zero_point: int
    qmin: int
    qmax: int

    @property
    def lo(self) -> float:
        """The smallest representable real value."""
        return self.scale * (self.qmin - self.zero_point)

    @property
    def hi(self) -> float:
        return self.scale * (self.qmax - self.zero_point)


def integer_range(bits: int, signed: bool) -> tuple[int, int]:
    if not 1 < bits <= 16:
        raise ValueError(f"bits must be between 2 and 16, got {bits}")
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def choose_qparams(
    lo: float,
    hi: float,
    bits: int = 8,
    signed: bool = False,
    symmetric: bool = False,
    only_relu_consumers: bool = False,
) -> QParams:
    """Quantization parameters for the real range [lo, hi].

    only_relu_consumers: the tensor is only ever read through a ReLU (net-aware
    ranges, as DNNLOWP does), so negative values need no codes: the range
    becomes [0, hi] and all the grid's codes go to what survives the ReLU.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"range must be finite with lo <= hi, got [{lo}, {hi}]")
    qmin, qmax = integer_range(bits, signed)
    if only_relu_consumers:
        lo, hi = 0.0, max(float(hi), 0.0)
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if symmetric:
        scale = max(-lo, hi) / ((qmax - qmin) / 2.0)
        zero_point = 0 if signed else (qmin + qmax + 1) // 2
    else:
        scale = (hi - lo) / (qmax - qmin)
    scale = float(np.float32(scale))  # the scale serving uses; the zero point follows it
    if scale == 0.0 or math.isinf(1.0 / np.float32(scale)):
        scale = float(np.float32(0.1))  # an all-zero range: any scale represents it; FBGEMM picks 0.1
    if not symmetric:
        # The zero point from whichever end adds the smaller terms (less rounding).
        from_min, from_max = qmin - lo / scale, qmax - hi / scale
        use_min = abs(qmin) + abs(lo / scale) < abs(qmax) + abs(hi / scale)
        zero_point = int(min(max(np.rint(from_min if use_min else from_max), qmin), qmax))
    return QParams(scale=scale, zero_point=zero_point, qmin=qmin, qmax=qmax)


def quantize(x: np.ndarray, qp: QParams) -> np.ndarray:
    """Integer codes of x (as float64), as FBGEMM's Quantize computes them in float32:
    round_half_even(fma(x, 1 / scale, zero_point)), clamped. The zero point is
    added before rounding and the product is not rounded on its own; either
    change moves values that land on a tie by one code."""
    inverse = np.float32(1) / np.float32(qp.scale)
    v = fma32(np.asarray(x, np.float32), inverse, np.float32(qp.zero_point))
    return np.clip(np.rint(v.astype(np.float64)), qp.qmin, qp.qmax)


def fake_quantize(x: np.ndarray, qp: QParams) -> np.ndarray:
    """Quantize (as FBGEMM does, see quantize) then dequantize x, in float32."""
    scale = np.float32(qp.scale)
    return ((quantize(x, qp) - qp.zero_point) * scale).astype(np.float32)


def fma32(a, b, c) -> np.ndarray:
    """float32 a * b + c rounded once (NumPy has no fused multiply-add).

    The product of two float32 values is exact in float64; the sum is rounded
    to odd (the float64 sum, moved one ulp toward the exact value when inexact
    and even), which makes the final rounding to float32 correct (Boldo and
    Melquiond). The same emulation as the kernels' copy without FMA.
    """
    f64 = np.float64
    p = np.asarray(a, np.float32).astype(f64) * np.asarray(b, np.float32).astype(f64)
    d = np.asarray(c, np.float32).astype(f64)
    s = p + d
    v = s - p
    err = (p - (s - v)) + (d - v)
    bits = np.asarray(s, f64).view(np.int64)
    toward = np.where((err > 0) == (s > 0), 1, -1)
    bits = bits + np.where((err != 0) & ((bits & 1) == 0), toward, 0)
    return bits.view(f64).astype(np.float32)
