"""Benchmark the model's fp32 and quantized forward passes, side by side in one run.

    python bench/bench_model.py [--examples 65536] [--batch 4096]

The default Criteo-like model: 13 dense and 26 sparse features (tables of
--rows rows), embedding dim 64, bottom MLP 512-256-64, top MLP 512-256-1,
batch 4096, one thread. Plans: all int8 (int8 FC layers with static
ranges, int8 row-wise embeddings) and int8 FC with int4 embeddings.
Target: the quantized forward at most 1.5x the fp32 forward's time.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from timing import best  # noqa: E402

from lpmon.model import Batch, Model, ModelSpec, SparseFeature, TableSpec  # noqa: E402
from lpmon.model import Executor  # noqa: E402
from lpmon.quant import QuantPlan  # noqa: E402
from lpmon.pipeline.assembly import EMBEDDINGS, Ranges, assemble  # noqa: E402

TARGET = 1.5


def criteo_like(rows: int) -> ModelSpec:
    return ModelSpec(dense=tuple(f"dense_{i}" for i in range(13)),
                     tables=tuple(TableSpec(f"sparse_{t}", rows, 64) for t in range(26)),
                     bottom_mlp=(512, 256, 64), top_mlp=(512, 256, 1))


def batch_of(spec, n, rng) -> Batch:
    features = tuple(SparseFeature.one_hot(np.minimum(rng.zipf(1.2, n) - 1, t.rows - 1))
                     for t in spec.tables)
    return Batch(rng.normal(0, 1, (n, len(spec.dense))).astype(np.float32), features)


def plan_for(model, calibration, embeddings) -> QuantPlan:
    """int8 FC layers with l2 ranges, embeddings at `embeddings` (lpmon.pipeline.search does the work)."""
    precisions = {name: "int8" for name, _, _ in model.spec.linear_layers()}
    precisions[EMBEDDINGS] = embeddings
    return assemble(model, Ranges.calibrate(model, calibration), precisions, model_id="bench")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=65_536)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    spec = criteo_like(args.rows)
    model = Model.initialise(spec, seed=1)
    batch = batch_of(spec, args.examples, rng)
    calibration = batch.slice(0, min(8192, args.examples))
    print(f"lpmon model benchmark: Criteo-like DLRM (26 tables x {args.rows:,} rows, dim 64, "
          f"bottom 512-256-64, top 512-256-1), {args.examples:,} examples, batch {args.batch}, one thread")
    fp32 = Executor(model)
    seconds = best(lambda: fp32.forward(batch, batch_size=args.batch), args.repeat)
    print(f"  {'fp32 forward':<40} {args.examples / seconds:>12,.0f} examples/s")
    for embeddings in ("int8", "int4"):
        executor = Executor(model, plan_for(model, calibration, embeddings))
        quantized = best(lambda: executor.forward(batch, batch_size=args.batch), args.repeat)
        ratio = quantized / seconds
        print(f"  {'int8 FC + ' + embeddings + ' embeddings forward':<40} "
              f"{args.examples / quantized:>12,.0f} examples/s   time {ratio:.2f}x fp32 "
              f"(target <= {TARGET}x: {'met' if ratio <= TARGET else 'MISSED'})")


if __name__ == "__main__":
    main()
