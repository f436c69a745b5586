"""Shared timing helper of the benchmarks (imported as a sibling module)."""

from __future__ import annotations

import time


def best(fn, repeat: int) -> float:
    """The fastest of `repeat` calls of fn, in seconds (the least disturbed on a shared machine)."""
    fastest = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        fastest = min(fastest, time.perf_counter() - start)
    return fastest
