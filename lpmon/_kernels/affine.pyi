"""Stub of the compiled lpmon._kernels.affine (kernels/affine.pyx): affine quantization and
requantization of int32 accumulators as FBGEMM computes them. Wrapped by lpmon.quant.linear;
inputs are C-contiguous and validated by the caller, outputs are passed in."""

import numpy as np
from numpy.typing import NDArray

def quantize_affine(x: NDArray[np.float32], scale: float, zero_point: int, qmin: int, qmax: int,
                    out: NDArray[np.uint8]) -> tuple[int, int]:
    """out = clamp(round_half_even(fma(x, 1 / scale, zero_point))); returns (#below qmin, #above qmax)."""

def requantize(acc: NDArray[np.float32], multiplier: NDArray[np.float32],
               bias_over_scale: NDArray[np.float32], zero_point: int, lo: int, hi: int,
               out: NDArray[np.uint8]) -> None:
    """uint8 outputs of accumulators [rows, cols], FBGEMM's ReQuantizeOutput with a float bias."""

def dequantize_output(acc: NDArray[np.float32], multiplier: NDArray[np.float32],
                      bias: NDArray[np.float32], relu: bool, out: NDArray[np.float32]) -> None:
    """out = fma(acc, multiplier[j], bias[j]) rounded once (then max(., 0) if relu), ReQuantizeForFloat."""

def available_isas() -> tuple[str, ...]:
    """The instruction sets this CPU runs and this build contains, lowest first."""

def current_isa() -> str:
    """The instruction set whose kernels are in use."""

def use_isa(name: str | None = None) -> str:
    """Switch to ISA `name` (default: LPMON_ISA, else the best available); returns its name."""
