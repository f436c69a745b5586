"""Stub of the compiled lpmon._kernels.rowwise (kernels/rowwise.pyx): FBGEMM's fused row-wise
embedding formats and pooled lookups, and ordered float32 bag sums. Wrapped by
lpmon.quant.rowwise; inputs are C-contiguous and validated by the caller, outputs are passed in."""

import numpy as np
from numpy.typing import NDArray

def quantize_rows8(table: NDArray[np.float32], out: NDArray[np.uint8]) -> int:
    """Packs 8-bit rows into out; returns the first row holding NaN or inf, or -1."""

def quantize_rows_nbit(bits: int, table: NDArray[np.float32], out: NDArray[np.uint8],
                       row_lo: NDArray[np.float32] | None = None,
                       row_hi: NDArray[np.float32] | None = None) -> int:
    """Packs 4- or 2-bit rows into out; returns the first row with NaN, inf or beyond fp16, or -1."""

def dequantize_rows(packed: NDArray[np.uint8], bits: int, dim: int, out: NDArray[np.float32]) -> None:
    """Unpacks rows into out: q * scale + bias per row."""

def embedding_bag(packed: NDArray[np.uint8], bits: int, dim: int, indices: NDArray[np.int64],
                  offsets: NDArray[np.int64], weights: NDArray[np.float32] | None, mean: bool,
                  out: NDArray[np.float32]) -> int:
    """Pooled lookups into out; returns the position of the first index out of range, or -1."""

def embedding_bag_float(table: NDArray[np.float32], indices: NDArray[np.int64],
                        offsets: NDArray[np.int64], out: NDArray[np.float32]) -> int:
    """Bag sums of float32 rows in the ids' order into out; first index out of range, or -1."""

def available_isas() -> tuple[str, ...]:
    """The instruction sets this CPU runs and this build contains, lowest first."""

def current_isa() -> str:
    """The instruction set whose kernels are in use."""

def use_isa(name: str | None = None) -> str:
    """Switch to ISA `name` (default: LPMON_ISA, else the best available); returns its name."""
