"""fp16 and bf16 layers as CPUs serve them: reduced-precision weight storage, fp32 compute.

fp16 weights are first clamped to +-65504 (fp16's largest finite value, as
PyTorch's _saturate_weight_to_fp16 does) so that large weights saturate
instead of turning into inf. bf16 keeps fp32's exponent range: float32 is
rounded to its top 16 bits, half to even (NaN stays NaN).
"""

from __future__ import annotations

import numpy as np

FP16_MAX = 65504.0


def to_fp16(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return np.clip(x, -FP16_MAX, FP16_MAX).astype(np.float16)


def to_bf16(x) -> np.ndarray:
    """bfloat16 values as uint16 bit patterns (NumPy has no bf16 dtype)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    return np.where(nan, (bits >> 16) | np.uint32(0x40), rounded).astype(np.uint16)


def from_bf16(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits, dtype=np.uint32) << 16).view(np.float32)


def round_weight(weight, precision: str) -> np.ndarray:
    """The float32 values a layer computes with when its weights are stored in `precision`."""
    if precision == "fp32":
        return np.asarray(weight, dtype=np.float32)
    if precision == "fp16":
        return to_fp16(weight).astype(np.float32)
    if precision == "bf16":
        return from_bf16(to_bf16(weight))
    raise ValueError(f"precision must be fp32, fp16 or bf16, got {precision!r}")
