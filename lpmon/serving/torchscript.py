"""A model under a plan exported as a TorchScript module of PyTorch's FBGEMM ops, checked
against lpmon's executor, with its manifest.

    info = export(model, plan, "ctr.pt", probe)   # ctr.pt and ctr.pt.manifest.json

The module itself (its layers, build_module, build_eager, torch_inputs) is built by
lpmon.serving.torchmodule, whose names this module also exports. `check` runs the
module beside lpmon's executor on the same examples and measures the largest
difference in float32 ulps; `manifest` lists, layer by layer, what the module holds
and how it rounds.
"""

from __future__ import annotations

import io
import json
import platform
from pathlib import Path

import numpy as np

from lpmon.atomic import write_atomically
from lpmon.model import Batch, Model
from lpmon.model.forward import Executor
from lpmon.quant import QuantPlan
from lpmon.quant.linear import QuantizedLinear
from lpmon.quant.precision import ROWWISE
from lpmon.quant.rowwise import row_bytes

from . import require_torch
from .tbe import manifest_entry
from .torchmodule import (
    DLRM,
    FloatBag,
    FloatLinear,
    Fp16Linear,
    Int8Linear,
    RowwiseBag,
    build_eager,
    build_module,
    torch_inputs,
)

torch = require_torch()

__all__ = [
    "DLRM",
    "ROUNDING",
    "FloatBag",
    "FloatLinear",
    "Fp16Linear",
    "Int8Linear",
    "RowwiseBag",
    "build_eager",
    "build_module",
    "check",
    "export",
    "manifest",
    "manifest_path",
    "predict",
    "torch_inputs",
    "ulps",
]

ROUNDING = {
    "activation": "round half to even of fma(x, 1 / scale, zero_point) in float32, clamped to [0, 255] "
    "(FBGEMM's Quantize, torch.quantize_per_tensor)",
    "linear_output": "fma(int32 accumulator, float32(scale_x * scale_w[n]), bias[n]) (FBGEMM's ReQuantizeForFloat)",
    "int8_rows": "round half to even of (x - min) * float32(255 / (max - min + 1e-8)) "
    "(FBGEMM's FloatToFused8BitRowwiseQuantized)",
    "nbit_rows": "round half to even of (x - fp16(min)) * float32(1 / fp16((max - fp16(min)) / (2^bits - 1))), "
    "clamped (FBGEMM's FloatToFusedNBitRowwiseQuantizedSBHalf)",
    "pooling": "per row fma(scale, q, out + bias), in bag order, float32 (FBGEMM's EmbeddingSpMDM)",
    "interaction": "pairwise dot products in float64, rounded to float32",
    "sigmoid": "float64, rounded to float32",
}


def ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| in float32 units in the last place (ordered bit patterns; +0 and -0 are 0 apart)."""

    def ordered(x):
        bits = np.ascontiguousarray(x, dtype=np.float32).view(np.int32).astype(np.int64)
        return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)

    return np.abs(ordered(a) - ordered(b))


def predict(module, batch: Batch, batch_size: int = 4096) -> np.ndarray:
    out = np.empty(len(batch), np.float32)
    with torch.inference_mode():
        for start in range(0, len(batch), batch_size):
            part = batch.slice(start, min(start + batch_size, len(batch)))
            out[start : start + len(part)] = module(*torch_inputs(part)).numpy()
    return out


def check(module, model: Model, plan: QuantPlan | None, batch: Batch) -> dict:
    """The module's probabilities beside lpmon's executor's on the batch: the largest
    difference in float32 ulps and in value, and how many examples differ at all."""
    ours = Executor(model, plan).forward(batch).probabilities
    theirs = predict(module, batch)
    gap = ulps(ours, theirs)
    return {
        "examples": len(batch),
        "max_ulp": int(gap.max(initial=0)),
        "differing": int(np.count_nonzero(gap)),
        "max_abs_diff": float(np.max(np.abs(ours.astype(np.float64) - theirs), initial=0.0)),
    }


def manifest(model: Model, plan: QuantPlan | None, checked: dict | None = None) -> dict:
    """What the module holds, layer by layer, and what it was checked on."""
    spec = model.spec
    layers = {}
    for name, n_in, n_out in spec.linear_layers():
        layer = plan.layer(name) if plan is not None else None
        precision = layer.precision if layer else "fp32"
        entry = {
            "kind": "linear",
            "precision": precision,
            "in": n_in,
            "out": n_out,
            "scheme": layer.scheme if layer else "none",
        }
        if precision == "int8":
            q = QuantizedLinear.from_float(model.linear(name)[0])
            a = layer.activation
            entry.update(
                op="quantized::linear_with_input_q_dq_qweight_dq_"
                + ("relu_" if spec.relu_after(name) else "")
                + "output_fp32",
                weight={
                    "dtype": "qint8",
                    "qscheme": "per_channel_symmetric",
                    "axis": 0,
                    "scales": [float(s) for s in q.weight_scale],
                    "zero_points": 0,
                },
                activation={
                    "dtype": "quint8",
                    "qscheme": "per_tensor_affine",
                    "scale": a.scale,
                    "zero_point": a.zero_point,
                    "lo": a.lo,
                    "hi": a.hi,
                },
                rounding={"activation": ROUNDING["activation"], "output": ROUNDING["linear_output"]},
            )
        elif precision == "fp16":
            entry.update(op="quantized::linear_dynamic_fp16", weight={"dtype": "float16", "saturated_to": 65504.0})
        else:
            entry.update(op="aten::linear", weight={"dtype": "bfloat16" if precision == "bf16" else "float32"})
        layers[name] = entry
    for t, table in enumerate(spec.tables):
        name = f"emb_l.{t}"
        layer = plan.layer(name) if plan is not None else None
        precision = layer.precision if layer else "fp32"
        entry = {
            "kind": "embedding",
            "precision": precision,
            "feature": table.name,
            **({"features": list(table.features)} if table.features else {}),
            "rows": table.rows,
            "dim": table.dim,
            "scheme": layer.scheme if layer else "none",
            "pooling": spec.table_pooling(t),
        }
        if precision in ROWWISE and plan.embedding_layout == "tbe":
            entry.update(
                manifest_entry(int(precision[3:]), table.dim),
                range_search="greedy (200 bins, ratio 0.16)" if layer.search else "row min and max",
                rounding={"rows": ROUNDING["nbit_rows"], "pooling": ROUNDING["pooling"]},
                scales_and_zero_points="per row, inside each row (bias = row minimum, in fp16)",
            )
        elif precision in ROWWISE:
            bits = int(precision[3:])
            op = {8: "byte", 4: "4bit", 2: "2bit"}[bits]
            entry.update(
                op=f"quantized::embedding_bag_{op}_rowwise_offsets",
                row_bytes=row_bytes(bits, table.dim),
                row_format=(
                    "[dim x uint8][fp32 scale][fp32 bias]"
                    if bits == 8
                    else f"[{row_bytes(bits, table.dim) - 4} bytes of {bits}-bit codes, element c in "
                    "the low bits first][fp16 scale][fp16 bias]"
                ),
                scale_bias="fp32" if bits == 8 else "fp16",
                range_search="greedy (200 bins, ratio 0.16)" if layer.search else "row min and max",
                rounding={"rows": ROUNDING["int8_rows" if bits == 8 else "nbit_rows"], "pooling": ROUNDING["pooling"]},
                scales_and_zero_points="per row, inside each packed row (bias = row minimum)",
            )
        else:
            entry.update(op="aten::embedding_bag", weight={"dtype": "float16" if precision == "fp16" else "float32"})
        layers[name] = entry
    return {
        "format": "torchscript",
        "model_id": plan.model_id if plan is not None else "",
        "plan_version": plan.version if plan is not None else None,
        "signature": "forward(dense_x: float32 [B, n_dense], lS_o: List[int64 offsets], "
        "lS_i: List[int64 indices]) -> float32 probabilities [B]",
        "dense": list(spec.dense),
        "sparse": list(spec.sparse),
        "interaction": spec.interaction,
        "pair_order": spec.pair_order,
        "cross_layers": spec.cross_layers,
        "embedding_layout": plan.embedding_layout if plan is not None else "prepack",
        "rounding": {"interaction": ROUNDING["interaction"], "sigmoid": ROUNDING["sigmoid"]},
        "layers": layers,
        "checked_on": {
            "torch": torch.__version__,
            "quantized_engine": "fbgemm",
            "fbgemm": f"bundled with torch {torch.__version__}",
            "isa": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine(),
            **(checked or {}),
        },
    }


def export(
    model: Model, plan: QuantPlan | None, out, probe: Batch | None = None, checked_day: str | None = None
) -> dict:
    """Write the module to `out` (.pt) and its manifest beside it (<out>.manifest.json);
    probe: examples to check the module on against lpmon's executor (recorded in
    the manifest). Returns the manifest."""
    out = Path(out)
    module = build_module(model, plan)
    checked = check(module, model, plan, probe) if probe is not None and len(probe) else None
    if checked is not None and checked_day:
        checked["traffic_day"] = checked_day
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    write_atomically(out, buffer.getvalue())
    info = manifest(model, plan, checked)
    write_atomically(manifest_path(out), (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())
    return info


def manifest_path(out):
    out = Path(out)
    return out.with_name(out.name + ".manifest.json")
