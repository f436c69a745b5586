"""Benchmark lpmon.quant against FBGEMM (through PyTorch) or NumPy, side by side in one run.

    python bench/bench_quant.py [--rows 1000000] [--repeat 3]

Row-wise prepack (int8, int4) of a 1M x 64 table, pooled lookups (65,536
bags x 20 ids, dim 64, uniform and Zipf ids) and the exact int8 linear
emulation next to a float32 linear of the same shape (batch 4096). One
thread. Targets: prepack at least as fast as FBGEMM's; lookups at least 0.7x
FBGEMM's rows/s; int8 linear at most 1.5x the float32 linear's time.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from lpmon.quant import choose_qparams
from lpmon.quant.linear import QuantizedLinear, quantize_activation
from lpmon.quant.rowwise import embedding_bag, quantize_rows
from timing import best, best_side_by_side, machine_banner


def zipf_ids(rng, n, rows, a=1.1):
    ids = rng.zipf(a, n) - 1
    return np.where(ids < rows, ids, rng.integers(0, rows, n)).astype(np.int64)


def report(title, ours, theirs, target, higher_is_better, unit):
    ratio = ours / theirs if higher_is_better else theirs / ours
    met = ratio >= target
    print(
        f"  {title:<44} ours {ours:10.2f} {unit:<8} ref {theirs:10.2f} {unit:<8} "
        f"ratio {ratio:5.2f} (target >= {target}) {'met' if met else 'MISSED'}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bags", type=int, default=65_536)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
        ops = torch.ops.quantized
        reference = "FBGEMM via torch " + torch.__version__
    except ImportError:
        torch = None
        reference = "NumPy (torch not installed)"
    rng = np.random.default_rng(0)
    dim = 64
    table = rng.normal(0, 1, (args.rows, dim)).astype(np.float32)
    print(
        f"lpmon quantization benchmark, one thread; reference: {reference}; "
        f"ours and the reference interleaved, best of {args.repeat}"
    )
    print(machine_banner())

    print("\nrow-wise prepack of a %d x %d float32 table (GB/s of float32 input)" % (args.rows, dim))
    gb = table.nbytes / 1e9
    for bits in (8, 4):
        if torch is not None:
            prepack = ops.embedding_bag_byte_prepack if bits == 8 else ops.embedding_bag_4bit_prepack
            t = torch.from_numpy(table)
            reference_call = lambda: prepack(t)  # noqa: E731
        else:
            reference_call = lambda: (table - table.min(1, keepdims=True)).astype(np.uint8)  # noqa: E731
        times = best_side_by_side({"ours": lambda: quantize_rows(table, bits), "ref": reference_call}, args.repeat)
        report(f"int{bits} prepack", gb / times["ours"], gb / times["ref"], 1.0, True, "GB/s")

    print("\npooled lookups, %d bags x 20 ids, dim %d (million rows/s)" % (args.bags, dim))
    n_ids = args.bags * 20
    offsets = np.arange(0, n_ids, 20, dtype=np.int64)
    for bits in (8, 4):
        packed = quantize_rows(table, bits)
        for name, ids in (("uniform", rng.integers(0, args.rows, n_ids)), ("zipf", zipf_ids(rng, n_ids, args.rows))):
            if torch is not None:
                lookup = ops.embedding_bag_byte_rowwise_offsets if bits == 8 else ops.embedding_bag_4bit_rowwise_offsets
                tp, ti, to = (torch.from_numpy(a) for a in (packed, ids, offsets))
                reference_call = lambda: lookup(tp, ti, to)  # noqa: E731
            else:
                reference_call = lambda: np.add.reduceat(table[ids], offsets, axis=0)  # noqa: E731
            times = best_side_by_side(
                {"ours": lambda: embedding_bag(packed, bits, dim, ids, offsets), "ref": reference_call}, args.repeat
            )
            report(
                f"int{bits} lookup, {name} ids",
                n_ids / 1e6 / times["ours"],
                n_ids / 1e6 / times["ref"],
                0.7,
                True,
                "M rows/s",
            )

    print("\nlinear layers, batch %d (ms): exact int8 emulation vs float32 (NumPy BLAS)" % args.batch)
    for k, n in ((512, 512), (1024, 256)):
        weight = rng.normal(0, 0.05, (n, k)).astype(np.float32)
        bias = rng.normal(0, 0.1, n).astype(np.float32)
        x = np.maximum(rng.normal(0, 1, (args.batch, k)), 0).astype(np.float32)
        layer = QuantizedLinear.from_float(weight, bias)
        x_qp, out_qp = choose_qparams(0.0, float(x.max())), choose_qparams(-4.0, 4.0)
        x_q, _ = quantize_activation(x, x_qp)
        wt = np.ascontiguousarray(weight.T)
        ours = best(lambda: layer.forward(x_q, x_qp, out_qp), args.repeat) * 1e3
        float_ms = best(lambda: x @ wt + bias, args.repeat) * 1e3
        report(f"int8 linear {k} -> {n} (time vs float32)", ours, float_ms, 1 / 1.5, False, "ms")
        if torch is not None:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = torch.ao.nn.quantized.Linear(k, n)
                tw = torch.quantize_per_channel(
                    torch.from_numpy(weight),
                    torch.from_numpy(layer.weight_scale.astype(np.float64)),
                    torch.zeros(n, dtype=torch.int64),
                    0,
                    torch.qint8,
                )
                module.set_weight_bias(tw, torch.from_numpy(bias))
                tx = torch.quantize_per_tensor(torch.from_numpy(x), x_qp.scale, x_qp.zero_point, torch.quint8)
                fb = best(lambda: module(tx), args.repeat) * 1e3
            print(f"  {'':<44} FBGEMM int8 Linear (native int8 kernels): {fb:.2f} ms")


if __name__ == "__main__":
    main()
