"""A model under a plan as a torch module of PyTorch's FBGEMM ops (torch is imported here).

    module = build_module(model, plan)           # torch.jit.ScriptModule
    p = module(dense_x, lS_o, lS_i)              # probabilities [B], float32

The signature follows facebookresearch/dlrm: dense_x float32 [B, n_dense]; lS_o
and lS_i lists of int64 tensors, one per sparse feature in the spec's order (one
per table, but for a table shared by several features): bag b of feature f is
lS_i[f][lS_o[f][b]:lS_o[f][b + 1]]. Layer by layer:

- int8/int4/int2 tables: lpmon's packed rows (FBGEMM's fused formats, bit for
  bit) looked up by torch.ops.quantized.embedding_bag_{byte,4bit,2bit}_rowwise_offsets;
  under a plan whose embedding_layout is "tbe", lpmon's TBE rows in fbgemm_gpu's
  IntNBitTableBatchedEmbeddingBagsCodegen, as TorchRec serves them (lpmon.serving.tbe);
  fp16 tables as fp16 weights, fp32 tables as such (torch's embedding_bag);
- int8 FC layers: lpmon's per-channel int8 weights and the plan's static
  input range, through torch.ops.quantized.linear_with_input_q_dq_qweight_dq_(relu_)output_fp32
  (the input quantized as quantize_per_tensor does, the int32 product, then
  FBGEMM's float output stage fma(acc, s_x * s_w, bias));
- fp16 FC layers: torch.ops.quantized.linear_dynamic_fp16 (FBGEMM's fp16-weight
  GEMM, fp32 accumulation); bf16 and fp32 FC layers: torch's linear with the
  weights rounded as the plan stores them;
- the dot interaction in float64, rounded to float32 (as lpmon's executor does:
  see lpmon.model.forward.interact), its pairs in the spec's order; DCNv2 cross
  layers x0 * (W (V x) + b) + x, V and W FC units as above; the sigmoid in float64.

The export, its check against lpmon's executor and its manifest: lpmon.serving.torchscript.
The torch back end (lpmon.torch_backend) scores with build_eager's module.
"""

from __future__ import annotations

import warnings
from typing import List

import numpy as np

from lpmon.model import Batch, Model
from lpmon.model.forward import Executor
from lpmon.quant import QuantPlan
from lpmon.quant.halfprec import round_weight

from . import require_torch
from .tbe import tbe_bag  # (fbgemm_gpu itself is imported only for a plan in this layout)

torch = require_torch()
nn = torch.nn


class Int8Linear(nn.Module):
    """int8 weights (per output channel, symmetric) and a static per-tensor uint8 input range."""

    def __init__(self, packed, scale: float, zero_point: int, relu: bool):
        super().__init__()
        self.packed = packed
        self.scale = float(scale)
        self.zero_point = int(zero_point)
        self.relu = relu

    def forward(self, x):
        if self.relu:
            return torch.ops.quantized.linear_with_input_q_dq_qweight_dq_relu_output_fp32(
                x, self.scale, self.zero_point, self.packed._packed_params
            )
        return torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
            x, self.scale, self.zero_point, self.packed._packed_params
        )


class Fp16Linear(nn.Module):
    """fp16 weights, fp32 activations and accumulation (FBGEMM's fp16 GEMM)."""

    def __init__(self, packed, relu: bool):
        super().__init__()
        self.packed = packed
        self.relu = relu

    def forward(self, x):
        y = torch.ops.quantized.linear_dynamic_fp16(x, self.packed._packed_params)
        if self.relu:
            y = torch.relu(y)
        return y


class FloatLinear(nn.Module):
    """fp32 weights, or bf16 weights computed in fp32."""

    def __init__(self, weight, bias, relu: bool):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.relu = relu

    def forward(self, x):
        if self.weight.shape[0] == 1:  # the logit: in float64, rounded once (as lpmon's executor)
            y = torch.nn.functional.linear(x.double(), self.weight.double(), self.bias.double()).float()
        else:
            y = torch.nn.functional.linear(x, self.weight.float(), self.bias)
        if self.relu:
            y = torch.relu(y)
        return y


class RowwiseBag(nn.Module):
    """A row-wise quantized table in FBGEMM's fused layout (8, 4 or 2 bits)."""

    def __init__(self, packed, bits: int, dim: int, mode: int):
        super().__init__()
        self.register_buffer("packed", packed)
        self.bits = bits
        self.dim = dim
        self.mode = mode

    def forward(self, indices, offsets):
        if self.bits == 8:
            pooled = torch.ops.quantized.embedding_bag_byte_rowwise_offsets(
                self.packed, indices, offsets, False, self.mode
            )
        elif self.bits == 4:
            pooled = torch.ops.quantized.embedding_bag_4bit_rowwise_offsets(
                self.packed, indices, offsets, False, self.mode
            )
        else:
            pooled = torch.ops.quantized.embedding_bag_2bit_rowwise_offsets(
                self.packed, indices, offsets, False, self.mode
            )
        pooled = pooled[:, : self.dim]  # a width that does not fill its last byte has a padding code
        if self.mode == 1:
            # The quantized ops sum whatever the mode; FBGEMM's mean is the sum times 1 / size.
            ends = torch.cat([offsets[1:], torch.tensor([indices.numel()], dtype=offsets.dtype)])
            sizes = (ends - offsets).float()
            scale = torch.where(sizes > 0, 1.0 / torch.clamp(sizes, min=1.0), torch.ones_like(sizes))
            pooled = pooled * scale[:, None]
        return pooled


class FloatBag(nn.Module):
    """An fp32 table, or an fp16 one looked up in fp32."""

    def __init__(self, weight, mode: str):
        super().__init__()
        self.register_buffer("weight", weight)
        self.mode = mode

    def forward(self, indices, offsets):
        return torch.nn.functional.embedding_bag(indices, self.weight.float(), offsets, mode=self.mode)


class CrossLayer(nn.Module):
    """A DCNv2 low-rank cross layer (TorchRec's LowRankCrossNet): x0 * (W (V x) + b) + x."""

    def __init__(self, v, w):
        super().__init__()
        self.v = v
        self.w = w

    def forward(self, x0, x):
        return x0 * self.w(self.v(x)) + x


class DLRM(nn.Module):
    """forward(dense_x, lS_o, lS_i) -> probabilities [B], as facebookresearch/dlrm's DLRM_Net
    (and TorchRec's DLRM and DLRM_DCN: features sharing a table, cross layers)."""

    def __init__(self, bot_l, emb_l, top_l, interaction: str, rows, cols, features_per_table, cross=()):
        super().__init__()
        self.bot_l = nn.ModuleList(bot_l)
        self.emb_l = nn.ModuleList(emb_l)
        self.cross = nn.ModuleList(cross)
        self.top_l = nn.ModuleList(top_l)
        self.dot = interaction == "dot"
        self.features_per_table: List[int] = list(features_per_table)
        self.register_buffer("li", torch.tensor(rows, dtype=torch.int64))
        self.register_buffer("lj", torch.tensor(cols, dtype=torch.int64))

    def forward(self, dense_x: torch.Tensor, lS_o: List[torch.Tensor], lS_i: List[torch.Tensor]) -> torch.Tensor:
        x = dense_x
        for layer in self.bot_l:
            x = layer(x)
        pooled = [x]
        f = 0
        for t, table in enumerate(self.emb_l):
            for _ in range(self.features_per_table[t]):
                pooled.append(table(lS_i[f], lS_o[f]))
                f += 1
        if self.dot:
            vectors = torch.stack(pooled, dim=1).double()
            z = torch.bmm(vectors, vectors.transpose(1, 2)).float()
            x = torch.cat([x, z[:, self.li, self.lj]], dim=1)
        else:
            x = torch.cat(pooled, dim=1)
        x0 = x
        for layer in self.cross:
            x = layer(x0, x)
        for layer in self.top_l:
            x = layer(x)
        return torch.sigmoid(x[:, 0].double()).float()


def fc_units(module: DLRM) -> list:
    """The module's FC units in the spec's order (ModelSpec.linear_layers): bottom, cross, top."""
    cross = [unit for layer in module.cross for unit in (layer.v, layer.w)]
    return [*module.bot_l, *cross, *module.top_l]


def _packed_linear(dtype):
    from torch.ao.nn.quantized.modules.linear import LinearPackedParams

    return LinearPackedParams(dtype)


def build_module(model: Model, plan: QuantPlan | None) -> torch.jit.ScriptModule:
    """The model under the plan (None: every layer fp32) as a scripted DLRM module.
    Built from the tensors lpmon's executor prepares, so both run the same bytes."""
    return torch.jit.script(build_eager(model, plan))


def build_eager(model: Model, plan: QuantPlan | None) -> "DLRM":
    """The same module, not scripted (forward hooks work on its layers)."""
    torch.backends.quantized.engine = "fbgemm"
    spec = model.spec
    executor = Executor(model, plan)
    tables = []
    for t, (bits, table) in enumerate(executor.tables):
        precision = executor._precision(f"emb_l.{t}")
        pooling = spec.table_pooling(t)
        if bits is None:
            weight = torch.from_numpy(np.ascontiguousarray(table))
            tables.append(FloatBag(weight.half() if precision == "fp16" else weight.clone(), pooling))
        elif executor.layout == "tbe":
            tables.append(tbe_bag(table, bits, spec.tables[t].dim, pooling, f"emb_l.{t}"))
        else:
            mode = 0 if pooling == "sum" else 1
            tables.append(
                RowwiseBag(torch.from_numpy(np.ascontiguousarray(table)).clone(), bits, spec.tables[t].dim, mode)
            )
    linears = {}
    for name, _, _ in spec.linear_layers():
        relu = spec.relu_after(name)
        precision = executor._precision(name)
        if precision == "int8":
            _, layer, qp = executor.linears[name]
            n = layer.weight.shape[0]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # torch deprecates quantized tensors
                qweight = torch._make_per_channel_quantized_tensor(
                    torch.from_numpy(layer.weight.copy()),
                    torch.from_numpy(layer.weight_scale.astype(np.float64)),
                    torch.zeros(n, dtype=torch.int64),
                    0,
                )
                packed = _packed_linear(torch.qint8)
                packed.set_weight_bias(qweight, torch.from_numpy(layer.bias.copy()))
            linears[name] = Int8Linear(packed, qp.scale, qp.zero_point, relu)
            continue
        weight, bias = model.linear(name)
        weight = round_weight(weight, precision)
        bias = torch.from_numpy(np.ascontiguousarray(bias, np.float32).copy())
        if precision == "fp16" and weight.shape[0] > 1:
            packed = _packed_linear(torch.float16)
            packed.set_weight_bias(torch.from_numpy(weight.copy()), bias)  # exact in fp16 already
            linears[name] = Fp16Linear(packed, relu)
        else:
            stored = torch.from_numpy(weight.copy())
            stored = {"bf16": stored.bfloat16(), "fp16": stored.half()}.get(precision, stored)
            linears[name] = FloatLinear(stored, bias, relu)
    rows, cols = spec.pairs()
    module = DLRM(
        [linears[f"bot_l.{2 * i}"] for i in range(len(spec.bottom_mlp))],
        tables,
        [linears[f"top_l.{2 * i}"] for i in range(len(spec.top_mlp))],
        spec.interaction,
        rows.tolist(),
        cols.tolist(),
        [len(table.inputs) for table in spec.tables],
        [CrossLayer(linears[v], linears[w]) for v, w in spec.cross_units()],
    )
    return module.eval()


def torch_inputs(batch: Batch):
    """(dense_x, lS_o, lS_i) of a batch, as the module takes them."""
    dense = torch.from_numpy(np.ascontiguousarray(batch.dense, dtype=np.float32))
    offsets = [torch.from_numpy(np.ascontiguousarray(f.offsets, dtype=np.int64)) for f in batch.sparse]
    indices = [torch.from_numpy(np.ascontiguousarray(f.indices, dtype=np.int64)) for f in batch.sparse]
    return dense, offsets, indices
