"""Stub of the compiled lpmon._kernels.logloss (kernels/logloss.pyx): fused log-loss sums for
the metrics. Wrapped by lpmon.metrics; inputs are C-contiguous and validated by the caller."""

import numpy as np
from numpy.typing import NDArray

EPS: float
CHUNK: int
#: Index of each sum in the arrays returned by ne_sums / compare_sums.
NE_FIELDS: dict[str, int]
CMP_FIELDS: dict[str, int]

def ne_sums(p: NDArray[np.float32] | NDArray[np.float64], y: NDArray[np.uint8],
            n_threads: int = 1) -> NDArray[np.float64]:
    """Totals (see NE_FIELDS) of the clipped log loss, positives and invalid examples."""

def compare_sums(p_ref: NDArray[np.float32] | NDArray[np.float64],
                 p_q: NDArray[np.float32] | NDArray[np.float64], y: NDArray[np.uint8],
                 n_threads: int = 1) -> NDArray[np.float64]:
    """Totals (see CMP_FIELDS) of one fused pass over both predictions and the labels."""

def compare_segment_sums(p_ref: NDArray[np.float32] | NDArray[np.float64],
                         p_q: NDArray[np.float32] | NDArray[np.float64], y: NDArray[np.uint8],
                         segment: NDArray[np.int64], n_segments: int,
                         n_threads: int = 1) -> NDArray[np.float64]:
    """Totals per segment, shape [n_segments, len(CMP_FIELDS)]; segment[i] in [0, n_segments)."""

def available_isas() -> tuple[str, ...]:
    """The instruction sets this CPU runs and this build contains, lowest first."""

def current_isa() -> str:
    """The instruction set whose kernels are in use."""

def use_isa(name: str | None = None) -> str:
    """Switch to ISA `name` (default: LPMON_ISA, else the best available); returns its name."""
