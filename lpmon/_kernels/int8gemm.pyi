"""Stub of the compiled lpmon._kernels.int8gemm (kernels/int8gemm.pyx): the exact int32 product of
uint8 activations and packed int8 weights. Wrapped by lpmon.quant.linear; inputs are C-contiguous
and validated by the caller, outputs are passed in."""

import numpy as np
from numpy.typing import NDArray

BLOCK: int
GROUP: int

def fast() -> bool:
    """True if the copy in use beats a float32 BLAS product (the avx2 and avx512 copies)."""

def gemm_u8s8(
    x: NDArray[np.uint8],
    packed: NDArray[np.int8],
    colsum: NDArray[np.int32],
    zero_point: int,
    out: NDArray[np.float32],
    n_threads: int = 1,
) -> None:
    """out = float32(x @ w.T - zero_point * colsum), exact int32 arithmetic, w packed in blocks."""

def available_isas() -> tuple[str, ...]:
    """The instruction sets this CPU runs and this build contains, lowest first."""

def current_isa() -> str:
    """The instruction set whose kernels are in use."""

def use_isa(name: str | None = None) -> str:
    """Switch to ISA `name` (default: LPMON_ISA, else the best available); returns its name."""
