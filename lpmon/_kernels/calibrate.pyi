"""Stub of the compiled lpmon._kernels.calibrate (kernels/calibrate.pyx): one-pass histograms
and range searches for calibration. Wrapped by lpmon.calibrate; inputs are C-contiguous and
validated by the caller."""

import numpy as np
from numpy.typing import NDArray

def observe_f32(x: NDArray[np.float32], counts: NDArray[np.int64], exponent: int, origin: int,
                lo: float, hi: float, counted: int) -> tuple[int, int, float, float, int] | None:
    """Counts x into counts in one pass; None if x holds NaN or inf, else (exponent, origin, lo, hi, zeros)."""

def count_bins(x: NDArray[np.float32] | NDArray[np.float64], exponent: int, origin: int,
               counts: NDArray[np.int64]) -> int:
    """Adds x into counts (bin floor(x / 2**exponent) - origin); returns how many values are 0."""

def l2_search_greedy(below_count: NDArray[np.float64], below_sum: NDArray[np.float64],
                     below_sq: NDArray[np.float64], edges: NDArray[np.float64], last_start: int,
                     first_end: int, levels: int) -> tuple[float, int, int]:
    """Greedy L2 range search (as FBGEMM's): (error, start edge, end edge)."""

def l2_search_affine(below_count: NDArray[np.float64], below_sum: NDArray[np.float64],
                     below_sq: NDArray[np.float64], edges: NDArray[np.float64], last_start: int,
                     first_end: int, levels: int) -> tuple[float, int, int]:
    """Exhaustive L2 range search over histogram edges: (error, start edge, end edge)."""

def kl_threshold(magnitude_counts: NDArray[np.float64], target_bins: int) -> tuple[int, float]:
    """TensorRT-style entropy calibration on a histogram of |x|: (best bin count, its divergence)."""

def fake_quant_sse(x: NDArray[np.float32] | NDArray[np.float64], scale: float, zero_point: int,
                   qmin: int, qmax: int) -> float:
    """Sum over x of (x - dequantize(quantize(x)))**2, rounding half to even."""

def available_isas() -> tuple[str, ...]:
    """The instruction sets this CPU runs and this build contains, lowest first."""

def current_isa() -> str:
    """The instruction set whose kernels are in use."""

def use_isa(name: str | None = None) -> str:
    """Switch to ISA `name` (default: LPMON_ISA, else the best available); returns its name."""
