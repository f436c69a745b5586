"""The model's forward pass: fp32 (NumPy BLAS), and under a QuantPlan through lpmon.quant.

Both paths share every fp32 piece, so a plan that keeps every layer in fp32
reproduces forward_fp32 exactly. Taps record what each layer consumed and
produced (for calibration and per-layer error); the quantized path also
counts, per int8 layer, the activations its static range clipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lpmon.quant import QParams, reference
from lpmon.quant.halfprec import round_weight, to_fp16
from lpmon.quant.linear import QuantizedLinear, Saturation, dequantize_output, quantize_activation
from lpmon.quant.plan import QuantPlan
from lpmon.quant.rowwise import embedding_bag, embedding_bag_float

from .batch import Batch, SparseFeature
from .interaction import dot_interaction
from .rows import prepare_rows
from .snapshot import Model

DEFAULT_BATCH_SIZE = 4096

#: observe(layer name, input rows): sees what an FC layer consumed (see Executor.forward).
LayerObserver = Callable[[str, np.ndarray], None]


@dataclass(frozen=True)
class LayerTap:
    input: np.ndarray
    output: np.ndarray


@dataclass
class ForwardResult:
    probabilities: np.ndarray  # float32 [batch]
    taps: dict[str, LayerTap] | None = None
    saturation: dict[str, Saturation] = field(default_factory=dict)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def pooled_fp32(table: np.ndarray, feature: SparseFeature, mode: str) -> np.ndarray:
    """Sum (or mean) of float32 table rows per bag; an empty bag gives zeros.

    Each bag is summed in its ids' order, one row after another (as torch's
    embedding_bag and FBGEMM do), so that serving's module agrees to the bit
    (a compiled kernel: lpmon.quant.rowwise.embedding_bag_float). Other dtypes
    (the trainer's float64 gradient checks) take its NumPy reference.
    """
    if table.dtype != np.float32 or len(feature.offsets) == 0:
        return reference.embedding_bag_float(table, feature.indices, feature.offsets, mode)
    return embedding_bag_float(table, feature.indices, feature.offsets, mode=mode)


def interact(bottom: np.ndarray, pooled: list[np.ndarray], kind: str, order: str = "lower") -> np.ndarray:
    if kind == "cat":
        return np.concatenate([bottom] + pooled, axis=1)
    # Each pair's dot product rounded once, to the float32 nearest its exact value (a
    # compiled kernel: lpmon.model.interaction). A float64 sum in any order rounded to
    # float32 (NumPy's matmul here before, torch's bmm in serving's module) agrees but
    # for sums within about 2**-50 (relative) of a float32 rounding boundary.
    return dot_interaction(bottom, pooled, order=order)


def cross(x0: np.ndarray, x: np.ndarray, w_out: np.ndarray) -> np.ndarray:
    """One DCNv2 cross layer's output from W's (bias included): x0 * (W V x + b) + x,
    a product then a sum, each rounded to float32 (as torch computes it, unfused)."""
    return x0 * w_out + x


def int8_float_output(layer: QuantizedLinear, x_q: np.ndarray, qp: QParams, *, relu: bool = False) -> np.ndarray:
    """float32 outputs of an int8 layer as FBGEMM's float output stage computes them
    (ReQuantizeForFloat, torch's linear_with_input_q_dq_qweight_dq_output_fp32):
    fma(acc, s_x * s_w[n], bias[n]), one rounding (a compiled kernel: see
    lpmon.quant.linear.dequantize_output), then max(., 0) if relu.
    """
    acc = layer.accumulate(x_q, qp.zero_point)
    multiplier = (np.float32(qp.scale) * layer.weight_scale).astype(np.float32)
    return dequantize_output(acc, multiplier, layer.bias, relu=relu)


class Executor:
    """Runs a model under a plan (None: everything fp32).

    FC layers are prepared when it is built; embedding rows only as batches touch
    them, through the model's day cache (lpmon.model.rows), which every executor
    of the model shares. Build executors through lpmon.model.backends.executor,
    which keeps one per plan for the day.
    """

    def __init__(self, model: Model, plan: QuantPlan | None = None):
        self.model, self.plan = model, plan
        spec, weights = model.spec, model.weights
        self.rows = model.cache.current(weights).rows
        self.layout = plan.embedding_layout if plan is not None else "prepack"
        # Per table: (name, precision, search).
        self.embeddings: list[tuple[str, str, bool]] = []
        for t in range(len(spec.tables)):
            name = f"emb_l.{t}"
            precision = self._precision(name)
            search = plan.layer(name).search if plan is not None and precision in ("int4", "int2") else False
            self.embeddings.append((name, precision, search))
        self.linears: dict[str, tuple] = {}
        for name, _, _ in spec.linear_layers():
            precision = self._precision(name)
            w, b = model.linear(name)
            if precision == "int8":
                assert plan is not None
                activation = plan.layer(name).activation
                assert activation is not None  # the plan's validation requires one for an int8 layer
                qp = activation.qparams()
                self.linears[name] = ("int8", QuantizedLinear.from_float(w, b), qp)
            else:
                self.linears[name] = ("float", np.ascontiguousarray(round_weight(w, precision).T), b)

    @property
    def tables(self) -> list[tuple[int | None, np.ndarray]]:
        """Every row of every table as the plan stores it: (bits, packed rows as the executor
        pools them, lpmon.model.rows.prepare_rows), or (None, float32 rows) for fp32 and fp16
        tables. Whole tables, for export to serving (lpmon.serving.torchscript); forward
        passes prepare touched rows only."""
        out: list[tuple[int | None, np.ndarray]] = []
        for name, precision, search in self.embeddings:
            weight = self.model.weights[f"{name}.weight"]
            if precision == "fp32":
                out.append((None, np.ascontiguousarray(weight, dtype=np.float32)))
            elif precision == "fp16":
                out.append((None, to_fp16(weight).astype(np.float32)))
            else:
                rows = np.ascontiguousarray(weight, dtype=np.float32)
                ids = np.arange(len(rows))
                out.append((int(precision[3:]), prepare_rows(rows, precision, search, name, ids, self.layout)))
        return out

    def touched(self, batch: Batch) -> list[tuple[int | None, np.ndarray, SparseFeature]]:
        """Per sparse feature, the rows of its table the batch touches, prepared (read from
        the day cache, the missing ones read, checked and quantized once): (bits or None for
        float rows, rows, the batch's feature with its ids remapped to rows' slots)."""
        out = []
        for t, feature in zip(self.model.spec.feature_tables(), batch.sparse):
            name, precision, search = self.embeddings[t]
            weight = self.model.weights[f"{name}.weight"]
            rows, slots = self.rows.take(weight, name, precision, search, feature.indices, self.layout)
            bits = None if precision in ("fp32", "fp16") else int(precision[3:])
            out.append((bits, rows, SparseFeature(slots, feature.offsets)))
        return out

    def _precision(self, name: str) -> str:
        if self.plan is None:
            return "fp32"
        return self.plan.layer(name).precision

    def _linear(self, name, x, relu, result, observe=None):
        if observe is not None:
            observe(name, x)
        entry = self.linears[name]
        if entry[0] == "int8":
            _, layer, qp = entry
            x_q, saturation = quantize_activation(x, qp)
            y = int8_float_output(layer, x_q, qp, relu=relu)
            previous = result.saturation.get(name)
            if previous is not None:
                saturation = Saturation(
                    previous.below + saturation.below,
                    previous.above + saturation.above,
                    previous.total + saturation.total,
                )
            result.saturation[name] = saturation
        else:
            _, weight_t, bias = entry
            if weight_t.shape[1] == 1:
                # One output (the logit): a dot product per example, in float64 and
                # rounded once, so that it does not depend on the BLAS's GEMV order.
                y = (x.astype(np.float64) @ weight_t.astype(np.float64) + bias).astype(np.float32)
            else:
                y = x @ weight_t + bias
            if relu:
                y = np.maximum(y, 0, out=y)
        return y

    def _forward_chunk(
        self,
        batch: Batch,
        tables: list[tuple[int | None, np.ndarray, SparseFeature]],
        result: ForwardResult,
        taps: dict | None,
        observe: LayerObserver | None = None,
    ):
        spec = self.model.spec

        def unit(name, x, relu):
            y = self._linear(name, x, relu, result, observe)
            if taps is not None:
                taps.setdefault(name, []).append((x, y))
            return y

        x = np.ascontiguousarray(batch.dense, dtype=np.float32)
        for i in range(len(spec.bottom_mlp)):
            x = unit(f"bot_l.{2 * i}", x, spec.relu_after(f"bot_l.{2 * i}"))
        pooled = []
        for f, (t, (bits, rows, slots)) in enumerate(zip(spec.feature_tables(), tables)):
            mode = spec.table_pooling(t)
            if bits is None:
                p = pooled_fp32(rows, slots, mode)
            else:
                p = embedding_bag(rows, bits, spec.tables[t].dim, slots.indices, slots.offsets, mode=mode)
            if taps is not None:  # a shared table: its features' bags one after another
                taps.setdefault(f"emb_l.{t}", []).append((batch.sparse[f].indices, p))
            pooled.append(p)
        z = interact(x, pooled, spec.interaction, spec.pair_order)
        if taps is not None:
            taps.setdefault("interaction", []).append((x, z))
        x = z
        for v, w in spec.cross_units():
            x = cross(z, x, unit(w, unit(v, x, False), False))
        for i in range(len(spec.top_mlp)):
            x = unit(f"top_l.{2 * i}", x, spec.relu_after(f"top_l.{2 * i}"))
        return sigmoid(x[:, 0])

    def forward(
        self,
        batch: Batch,
        *,
        taps: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        observe: LayerObserver | None = None,
        observe_every: int = 1,
    ) -> ForwardResult:
        """Probabilities for every example, streaming over chunks of batch_size.

        observe, if given, is called chunk by chunk with each FC layer's input
        (float32, [rows, features]) for examples 0, k, 2k, ... of the batch
        (k = observe_every), e.g. to feed calibration observers from the
        scoring pass itself rather than from a second forward pass: with k = 2
        they see exactly the rows of batch.take(arange(n)[0::2]). Histogram
        and min/max observers do not depend on how rows are split into calls.
        """
        check_batch(self.model, batch)
        if observe_every < 1:
            raise ValueError(f"observe_every must be at least 1, got {observe_every}")
        result = ForwardResult(np.empty(len(batch), np.float32))
        collected: dict[str, list] | None = {} if taps else None
        tables = self.touched(batch)
        done = 0
        for chunk in batch.chunks(batch_size):
            end = done + len(chunk)
            prepared = [(bits, rows, slots.bag_slice(done, end)) for bits, rows, slots in tables]
            sampled = None
            if observe is not None:
                first = -done % observe_every  # the chunk's first row with a global index divisible by k
                sampled = (
                    observe
                    if observe_every == 1
                    else lambda name, x, first=first: observe(name, x[first::observe_every])
                )
            result.probabilities[done:end] = self._forward_chunk(chunk, prepared, result, collected, sampled)
            done = end
        if collected is not None:
            result.taps = {
                name: LayerTap(np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts]))
                for name, parts in collected.items()
            }
        return result


def check_batch(model: Model, batch: Batch) -> None:
    spec = model.spec
    if batch.dense.ndim != 2 or batch.dense.shape[1] != len(spec.dense):
        raise ValueError(f"batch.dense must be [batch, {len(spec.dense)}], got {batch.dense.shape}")
    if len(batch.sparse) != len(spec.sparse):
        raise ValueError(f"batch has {len(batch.sparse)} sparse features, the model {len(spec.sparse)}")
    for name, t, feature in zip(spec.sparse, spec.feature_tables(), batch.sparse):
        rows = spec.tables[t].rows
        if len(feature.offsets) != len(batch):
            raise ValueError(f"{name}: {len(feature.offsets)} bags for {len(batch)} examples")
        if len(feature.indices) and (feature.indices.min() < 0 or feature.indices.max() >= rows):
            bad = np.count_nonzero((feature.indices < 0) | (feature.indices >= rows))
            raise ValueError(f"{name}: {bad} ids outside the table's {rows} rows")
