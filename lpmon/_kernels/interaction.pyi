"""Stub of the compiled lpmon._kernels.interaction (kernels/interaction.pyx): DLRM's pairwise dot
interaction, each dot product rounded once to the float32 nearest its exact value. Wrapped by
lpmon.model.interaction; inputs are C-contiguous and validated by the caller, outputs are passed in."""

import numpy as np
from numpy.typing import NDArray

def dot_interaction(parts: list[NDArray[np.float32]], out: NDArray[np.float32], n_threads: int = 1) -> int:
    """out = [parts[0], dot(parts[i], parts[j]) for i > j]; returns how many pairs took the exact path."""

def available_isas() -> tuple[str, ...]:
    """The instruction sets this CPU runs and this build contains, lowest first."""

def current_isa() -> str:
    """The instruction set whose kernels are in use."""

def use_isa(name: str | None = None) -> str:
    """Switch to ISA `name` (default: LPMON_ISA, else the best available); returns its name."""
