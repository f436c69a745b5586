"""Benchmark lpmon.metrics against NumPy (and scikit-learn when installed), side by side.

    python bench/bench_metrics.py [--sizes 1e6 1e7 1e8] [--repeat 3]

Prints ns/example for our NE and fused compare (1 and 2 threads) next to the
NumPy expressions a user would write instead, measured in this same run, with
the ratios, and checks the targets of the foundation issue. Absolute times on
shared machines drift; the ratios measured in one run are what to compare.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from lpmon import metrics
from lpmon._kernels import logloss as kernel
from timing import best, machine_banner

# Targets (ns/example, one thread) and the PERF.md anchors for this machine kind.
TARGET_NE, TARGET_COMPARE, TARGET_THREAD_SPEEDUP = 1.0, 1.5, 1.6
ANCHORS = {
    "numpy one-log NE": 5.4,
    "numpy multi-pass compare": 13.9,
    "memory floor NE": 0.22,
    "memory floor compare": 0.40,
}


def numpy_ne(p, y):
    """The one-log NumPy expression (PERF.md: 5.4 ns/example)."""
    p = np.clip(p, 1e-7, 1 - 1e-7)
    loss = -np.log(np.where(y == 1, p, 1 - p)).mean()
    rate = y.mean()
    return loss / -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))


def numpy_compare(p_ref, p_q, y):
    """What compare() returns, the multi-pass NumPy way (PERF.md: 13.9 ns/example)."""
    pr, pq = np.clip(p_ref, 1e-7, 1 - 1e-7), np.clip(p_q, 1e-7, 1 - 1e-7)
    positive = y == 1
    l_ref = -np.log(np.where(positive, pr, 1 - pr))
    l_q = -np.log(np.where(positive, pq, 1 - pq))
    d = l_q - l_ref
    kl = pr * np.log(pr / pq) + (1 - pr) * np.log((1 - pr) / (1 - pq))
    abs_diff = np.abs(p_ref - p_q)
    return (
        l_ref.mean(),
        l_q.mean(),
        d.mean(),
        d.var(),
        kl.mean(),
        p_ref.mean(),
        p_q.mean(),
        abs_diff.mean(),
        abs_diff.max(),
        y.mean(),
    )


def make_data(n, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(-2, 1.5, n).astype(np.float32)
    p_ref = 1 / (1 + np.exp(-logits))
    p_q = 1 / (1 + np.exp(-(logits + rng.normal(0, 0.05, n).astype(np.float32))))
    y = (rng.random(n, dtype=np.float32) < p_ref).astype(np.uint8)
    return p_ref, p_q, y


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7, 1e8])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    try:
        from sklearn.metrics import log_loss
    except ImportError:
        log_loss = None
    print(
        f"lpmon metrics benchmark: kernels '{kernel.current_isa()}' "
        f"(available: {', '.join(kernel.available_isas())}), {os.cpu_count()} CPUs, float32 "
        f"predictions, uint8 labels; best of {args.repeat}"
    )
    print(machine_banner())
    print("PERF.md anchors (ns/example): " + ", ".join(f"{k} {v}" for k, v in ANCHORS.items()))
    header = f"{'N':>11} {'implementation':<34} {'ns/ex':>8} {'vs numpy':>9}"
    results = {}
    for size in args.sizes:
        n = int(size)
        p_ref, p_q, y = make_data(n)
        repeat = args.repeat if n <= 10**7 else max(1, args.repeat - 1)
        rows = [
            ("numpy one-log NE", lambda: numpy_ne(p_ref, y)),
            ("lpmon normalized_entropy, 1 thread", lambda: metrics.normalized_entropy(p_ref, y)),
            ("lpmon normalized_entropy, 2 threads", lambda: metrics.normalized_entropy(p_ref, y, n_threads=2)),
            ("numpy multi-pass compare", lambda: numpy_compare(p_ref, p_q, y)),
            ("lpmon compare, 1 thread", lambda: metrics.compare(p_ref, p_q, y)),
            ("lpmon compare, 2 threads", lambda: metrics.compare(p_ref, p_q, y, n_threads=2)),
        ]
        if log_loss is not None and n <= 10**7:
            rows.append(("sklearn log_loss", lambda: log_loss(y, p_ref)))
        timed = {name: best(fn, repeat) / n * 1e9 for name, fn in rows}
        results[n] = timed
        print("\n" + header)
        for name, ns in timed.items():
            baseline = (
                timed["numpy one-log NE"]
                if "NE" in name or "entropy" in name or "log_loss" in name
                else timed["numpy multi-pass compare"]
            )
            print(f"{n:>11,} {name:<34} {ns:>8.3f} {baseline / ns:>8.1f}x")

    print("\ntargets (largest N):")
    timed = results[max(results)]
    checks = [
        (
            "NE <= %.1f ns/example, 1 thread" % TARGET_NE,
            timed["lpmon normalized_entropy, 1 thread"] <= TARGET_NE,
            timed["lpmon normalized_entropy, 1 thread"],
        ),
        (
            "compare <= %.1f ns/example, 1 thread" % TARGET_COMPARE,
            timed["lpmon compare, 1 thread"] <= TARGET_COMPARE,
            timed["lpmon compare, 1 thread"],
        ),
        (
            "NE 2-thread speedup >= %.1fx" % TARGET_THREAD_SPEEDUP,
            timed["lpmon normalized_entropy, 1 thread"] / timed["lpmon normalized_entropy, 2 threads"]
            >= TARGET_THREAD_SPEEDUP,
            timed["lpmon normalized_entropy, 1 thread"] / timed["lpmon normalized_entropy, 2 threads"],
        ),
        (
            "compare 2-thread speedup >= %.1fx" % TARGET_THREAD_SPEEDUP,
            timed["lpmon compare, 1 thread"] / timed["lpmon compare, 2 threads"] >= TARGET_THREAD_SPEEDUP,
            timed["lpmon compare, 1 thread"] / timed["lpmon compare, 2 threads"],
        ),
    ]
    for name, ok, value in checks:
        print(f"  {'met    ' if ok else 'MISSED '} {name}: {value:.2f}")
    return results


if __name__ == "__main__":
    main()
