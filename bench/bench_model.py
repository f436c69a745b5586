"""Benchmark the model's fp32 and quantized forward passes, side by side in one run.

    python bench/bench_model.py [--examples 65536] [--batch 4096] [--rows 100000] [--repeat 3]

The default Criteo-like model: 13 dense and 26 sparse features (tables of
--rows rows), embedding dim 64, bottom MLP 512-256-64, top MLP 512-256-1,
batch 4096, one thread. Contenders, run round by round (each round times every
contender once, so a burst of load on the shared machine hits all alike; the
best round of each counts): lpmon's fp32 forward, lpmon's int8 plan (int8 FC
layers with static ranges, int8 row-wise embeddings), int8 FC with int4
embeddings, and the int8 plan as serving's TorchScript module runs it
(FBGEMM's int8 linear and embedding kernels, through torch).

Then the int8 linear layers alone (batch 4096, 512 -> 512 and 1024 -> 256):
lpmon's exact emulation against FBGEMM's native int8 linear and a float32
NumPy linear, round by round too: uint8 in and out (QuantizedLinear.forward
vs torch.ops.quantized.linear) and float in, float out as the forward pass
runs them (quantize, accumulate, fused float output vs torch's
linear_with_input_q_dq_qweight_dq_output_fp32).

Targets: the int8 plan's forward at most 0.9x the fp32 forward's time; the
exact int8 linear at most 2x FBGEMM's native int8 linear.
"""

from __future__ import annotations

import argparse
import os
import warnings

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from lpmon.model import Batch, Executor, Model, ModelSpec, SparseFeature, TableSpec
from lpmon.pipeline.assembly import EMBEDDINGS, Ranges, assemble
from lpmon.quant import QuantPlan, choose_qparams
from lpmon.quant.linear import QuantizedLinear, quantize_activation
from timing import best_side_by_side, machine_banner

FORWARD_TARGET = 0.9  # the int8 plan's forward time / the fp32 forward's
LINEAR_TARGET = 2.0  # the exact int8 linear's time / FBGEMM's native int8 linear's


def criteo_like(rows: int) -> ModelSpec:
    return ModelSpec(
        dense=tuple(f"dense_{i}" for i in range(13)),
        tables=tuple(TableSpec(f"sparse_{t}", rows, 64) for t in range(26)),
        bottom_mlp=(512, 256, 64),
        top_mlp=(512, 256, 1),
    )


def batch_of(spec, n, rng) -> Batch:
    features = tuple(SparseFeature.one_hot(np.minimum(rng.zipf(1.2, n) - 1, t.rows - 1)) for t in spec.tables)
    return Batch(rng.normal(0, 1, (n, len(spec.dense))).astype(np.float32), features)


def plan_for(model, calibration, embeddings) -> QuantPlan:
    """int8 FC layers with l2 ranges, embeddings at `embeddings` (lpmon.pipeline.search does the work)."""
    precisions = {name: "int8" for name, _, _ in model.spec.linear_layers()}
    precisions[EMBEDDINGS] = embeddings
    return assemble(model, Ranges.calibrate(model, calibration), precisions, model_id="bench")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def verdict(ratio: float, target: float) -> str:
    return f"{ratio:5.2f}x (target <= {target}x: {'met' if ratio <= target else 'MISSED'})"


def int8_path(isa: str, fast: bool) -> str:
    """Which int8 accumulation lpmon runs here (see kernels/int8gemm_body.h)."""
    if not fast:
        return "float32 BLAS emulation"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            vnni = "avx512_vnni" in cpuinfo.read()
    except OSError:
        vnni = False
    return "int32, AVX-512 VNNI vpdpbusd" if isa == "avx512" and vnni else "int32, vpmaddwd"


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    return torch


def forward_passes(args, rng, torch) -> None:
    spec = criteo_like(args.rows)
    model = Model.initialise(spec, seed=1)
    batch = batch_of(spec, args.examples, rng)
    calibration = batch.slice(0, min(8192, args.examples))
    print(
        f"\nforward passes: Criteo-like DLRM (26 tables x {args.rows:,} rows, dim 64, bottom 512-256-64, "
        f"top 512-256-1), {args.examples:,} examples, batch {args.batch}, one thread, {args.repeat} rounds"
    )
    int8_plan = plan_for(model, calibration, "int8")
    executors = {
        "fp32": Executor(model),
        "int8": Executor(model, int8_plan),
        "int8 FC + int4 embeddings": Executor(model, plan_for(model, calibration, "int4")),
    }
    contenders = {name: (lambda e=e: e.forward(batch, batch_size=args.batch)) for name, e in executors.items()}
    if torch is not None:
        from lpmon.serving.torchscript import build_module, predict

        module = build_module(model, int8_plan)
        contenders["torch/FBGEMM int8 (serving's module)"] = lambda: predict(module, batch, args.batch)
    seconds = best_side_by_side(contenders, args.repeat)
    print(f"  {load()}")
    fp32 = seconds["fp32"]
    for name, s in seconds.items():
        ratio = s / fp32
        note = ""
        if name == "int8":
            note = f"   int8 / fp32 {verdict(ratio, FORWARD_TARGET)}"
        elif name != "fp32":
            note = f"   {ratio:.2f}x fp32"
        print(f"  {name:<38} {s * 1e3:9.1f} ms {args.examples / s:>12,.0f} examples/s{note}")


def linear_layers(args, rng, torch) -> None:
    print(
        f"\nint8 linear layers, batch {args.batch}, one thread, {args.repeat * 3} rounds: "
        "lpmon's exact emulation vs FBGEMM's native int8 linear (torch) vs float32 NumPy"
    )
    for k, n in ((512, 512), (1024, 256)):
        weight = rng.normal(0, 0.05, (n, k)).astype(np.float32)
        bias = rng.normal(0, 0.1, n).astype(np.float32)
        x = np.maximum(rng.normal(0, 1, (args.batch, k)), 0).astype(np.float32)
        layer = QuantizedLinear.from_float(weight, bias)
        x_qp, out_qp = choose_qparams(0.0, float(x.max())), choose_qparams(-4.0, 4.0)
        x_q, _ = quantize_activation(x, x_qp)
        wt = np.ascontiguousarray(weight.T)

        def float_stage(x=x, layer=layer, x_qp=x_qp):
            codes, _ = quantize_activation(x, x_qp)
            return layer.forward_float(codes, x_qp)

        contenders = {
            "lpmon exact, uint8 -> uint8": lambda: layer.forward(x_q, x_qp, out_qp),
            "lpmon exact, float -> float": float_stage,
            "float32 NumPy": lambda: x @ wt + bias,
        }
        if torch is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.backends.quantized.engine = "fbgemm"
                qweight = torch.quantize_per_channel(
                    torch.from_numpy(weight),
                    torch.from_numpy(layer.weight_scale.astype(np.float64)),
                    torch.zeros(n, dtype=torch.int64),
                    0,
                    torch.qint8,
                )
                packed = torch.ops.quantized.linear_prepack(qweight, torch.from_numpy(bias))
                tx = torch.quantize_per_tensor(torch.from_numpy(x), x_qp.scale, x_qp.zero_point, torch.quint8)
                fx = torch.from_numpy(x)
            ops = torch.ops.quantized
            contenders["FBGEMM, uint8 -> uint8"] = lambda: ops.linear(tx, packed, out_qp.scale, out_qp.zero_point)
            contenders["FBGEMM, float -> float"] = lambda: ops.linear_with_input_q_dq_qweight_dq_output_fp32(
                fx, x_qp.scale, x_qp.zero_point, packed
            )
        ms = {name: s * 1e3 for name, s in best_side_by_side(contenders, args.repeat * 3).items()}
        print(f"  {k} -> {n}   ({load()})")
        for name, t in ms.items():
            print(f"    {name:<30} {t:8.2f} ms")
        if torch is not None:
            for kind in ("uint8 -> uint8", "float -> float"):
                ratio = ms[f"lpmon exact, {kind}"] / ms[f"FBGEMM, {kind}"]
                print(f"    exact / FBGEMM, {kind}:        {verdict(ratio, LINEAR_TARGET)}")
        vs_float = ms["lpmon exact, float -> float"] / ms["float32 NumPy"]
        print(f"    exact (float -> float) / float32 NumPy: {vs_float:.2f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=65_536)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    torch = torch_or_none()
    print(machine_banner())
    from lpmon._kernels import int8gemm, interaction

    print(
        f"kernels: interaction {interaction.current_isa()}, int8gemm {int8gemm.current_isa()} "
        f"({int8_path(int8gemm.current_isa(), int8gemm.fast())}); "
        + (f"torch {torch.__version__}" if torch is not None else "torch not installed: no FBGEMM contenders")
    )
    forward_passes(args, rng, torch)
    linear_layers(args, rng, torch)


if __name__ == "__main__":
    main()
