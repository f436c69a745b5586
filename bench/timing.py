"""Shared helpers of the benchmarks (imported as a sibling module): timing and the machine banner."""

from __future__ import annotations

import os
import time


def best(fn, repeat: int) -> float:
    """The fastest of `repeat` calls of fn, in seconds (the least disturbed on a shared machine)."""
    fastest = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        fastest = min(fastest, time.perf_counter() - start)
    return fastest


def best_side_by_side(fns: dict, repeat: int) -> dict:
    """Best time of each fn, with the calls interleaved round by round, so a burst
    of load on the shared machine hits every contender alike (ratios stay fair)."""
    fastest = {name: float("inf") for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            fastest[name] = min(fastest[name], time.perf_counter() - start)
    return fastest


def machine_banner() -> str:
    """The BLAS NumPy uses, the OpenBLAS core type forced by the environment, CPU and load.

    These machines set OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE), which slows
    NumPy's BLAS here by about 1.4x (PERF.md); benchmarks leave it as it is and
    say so, and compare ratios measured in one run.
    """
    import numpy as np

    blas = "unknown"
    try:
        config = np.show_config(mode="dicts")
        found = config.get("Build Dependencies", {}).get("blas", {})
        blas = f"{found.get('name', '?')} {found.get('version', '')}".strip()
    except (TypeError, ValueError, AttributeError):
        pass
    try:
        from threadpoolctl import threadpool_info

        running = [
            f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')})"
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        ]
        if running:
            blas = ", ".join(running)
    except ImportError:
        pass
    model = "?"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    coretype = os.environ.get("OPENBLAS_CORETYPE", "unset")
    l2 = os.environ.get("OPENBLAS_L2_SIZE", "unset")
    return (
        f"machine: {model}, {os.cpu_count()} CPUs, load {load:.1f}; NumPy BLAS: {blas}; "
        f"OPENBLAS_CORETYPE={coretype}, OPENBLAS_L2_SIZE={l2}"
        + (" (forced by the environment: NumPy's BLAS runs about 1.4x slower here)" if coretype != "unset" else "")
    )
