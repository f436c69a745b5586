"""Benchmark lpmon.calibrate against PyTorch's observers, side by side in one run.

    python bench/bench_calibrate.py [--n 1e7] [--repeat 3]

For 10M float32 activations drawn from a normal, a Student-t (df=3) and a
ReLU-ed normal distribution, and for the real inputs of two layers of the
synthetic world's model (lpmon.demo.world) on its traffic, prints per method:
time (observe + compute,
best of --repeat, one thread), chosen range, int8 quantize-dequantize MSE and
SQNR. torch's MinMaxObserver and HistogramObserver (2048 bins) join the table
when torch is installed. Target: our l2 at least 10x faster than
HistogramObserver with an MSE no worse.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from lpmon.calibrate import METHODS, observer
from lpmon.quant import QParams, fake_quantize

sys.path.insert(0, str(Path(__file__).parent))
from timing import best_side_by_side, machine_banner

TARGET_SPEEDUP = 10.0


def distributions(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "normal": rng.normal(0, 1, n).astype(np.float32),
        "student_t3": rng.standard_t(3, n).astype(np.float32),
        "relu_normal": np.maximum(rng.normal(0, 1, n), 0).astype(np.float32),
        **model_activations(n, seed),
    }


def model_activations(n: int, seed: int) -> dict[str, np.ndarray]:
    """Inputs of the world model's bot_l.2 (post-ReLU) and top_l.0 (dot interaction) layers."""
    from lpmon.demo.world import World, WorldConfig
    from lpmon.model import forward_fp32

    world = World(WorldConfig("gradual_drift", seed=seed))
    layers = {"bot_l.2": [], "top_l.0": []}
    have, day = 0, 0
    rng = np.random.default_rng(seed)
    while have < n:
        taps = forward_fp32(world.model, world.batch(day % 14, 50_000, rng), taps=True).taps
        for name in layers:
            layers[name].append(taps[name].input.ravel())
        have = min(sum(a.size for a in parts) for parts in layers.values())
        day += 1
    return {f"model {name} input": np.concatenate(parts)[:n] for name, parts in layers.items()}


def timed(fn, repeat):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def error_of(values: np.ndarray, qp: QParams) -> tuple[float, float]:
    x = values.astype(np.float64)
    mse = float(np.mean((x - fake_quantize(values, qp)) ** 2))
    return mse, 10 * np.log10(np.mean(x * x) / mse)


def ours(values, method):
    """A call that observes values and computes the range, and its result as QParams."""
    return lambda: observer(method).observe(values).compute().qparams


def torch_observer(values, name):
    import torch
    from torch.ao.quantization.observer import HistogramObserver, MinMaxObserver

    torch.set_num_threads(1)
    make = {"torch MinMaxObserver": MinMaxObserver, "torch HistogramObserver": HistogramObserver}[name]
    tensor = torch.from_numpy(values)

    def run():
        obs = make(dtype=torch.quint8, qscheme=torch.per_tensor_affine)
        obs(tensor)
        scale, zero_point = obs.calculate_qparams()
        return QParams(float(scale), int(zero_point), 0, 255)

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=float, default=1e7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-mse", action="store_true", help="leave out the slow mse reference")
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401

        torch_names = ["torch MinMaxObserver", "torch HistogramObserver"]
    except ImportError:
        torch_names = []
        print("torch is not installed: its observers are left out of the table")
    methods = [m for m in METHODS if not (args.skip_mse and m == "mse")]
    print(
        f"lpmon calibration benchmark: {int(args.n):,} float32 values, uint8 affine grid, "
        f"best of {args.repeat} (calls interleaved round by round), one thread"
    )
    print(machine_banner())
    summary = {}
    for dist, values in distributions(int(args.n)).items():
        print(f"\n{dist}")
        print(f"  {'method':<26} {'ms':>8} {'lo':>9} {'hi':>9} {'MSE':>10} {'SQNR dB':>8}")
        rows = {}
        calls = {
            name: torch_observer(values, name) if name.startswith("torch") else ours(values, name)
            for name in methods + torch_names
        }
        fast = {name: fn for name, fn in calls.items() if name != "mse"}
        times = best_side_by_side(fast, args.repeat)
        if "mse" in calls:
            times["mse"] = timed(calls["mse"], 1)[0]
        for name in methods + torch_names:
            seconds, qp = times[name], calls[name]()
            mse, sqnr = error_of(values, qp)
            rows[name] = (seconds, mse)
            print(f"  {name:<26} {seconds * 1e3:>8.1f} {qp.lo:>9.3f} {qp.hi:>9.3f} {mse:>10.3e} {sqnr:>8.2f}")
        summary[dist] = rows
    if torch_names:
        print("\ntargets: l2 >= %.0fx faster than torch HistogramObserver, MSE no worse" % TARGET_SPEEDUP)
        for dist, rows in summary.items():
            speedup = rows["torch HistogramObserver"][0] / rows["l2"][0]
            ratio = rows["l2"][1] / rows["torch HistogramObserver"][1]
            ok = speedup >= TARGET_SPEEDUP and ratio <= 1.0
            print(
                f"  {'met    ' if ok else 'MISSED '} {dist:<12} speedup {speedup:5.1f}x, "
                f"MSE ratio (ours / torch) {ratio:.3f}"
            )
    return summary


if __name__ == "__main__":
    main()
