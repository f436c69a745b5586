"""Which copy of the per-ISA kernels to use: the best this CPU runs, or LPMON_ISA."""

from __future__ import annotations

import os

ISAS = ("base", "avx2", "avx512")


def resolve(name: str | None, best: int) -> int:
    """Index of ISA `name` (None: LPMON_ISA, else the best), checked against what runs here."""
    available = ISAS[: best + 1]
    name = name or os.environ.get("LPMON_ISA") or available[-1]
    if name not in available:
        raise ValueError(
            f"instruction set {name!r} is not available here; this CPU and build support {', '.join(available)}"
        )
    return ISAS.index(name)
