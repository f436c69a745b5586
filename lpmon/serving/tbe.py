"""Row-wise tables served in FBGEMM's table-batched inference layout (torch and fbgemm_gpu
are imported here), for a plan whose `embedding_layout` is "tbe".

    bag = tbe_bag(rows, 8, dim, "sum")     # rows: the executor's (lpmon.quant.tbe.pooling_rows)
    pooled = bag(indices, offsets)         # float32 [bags, dim], as lpmon's executor pools

Each table is an IntNBitTableBatchedEmbeddingBagsCodegen built as TorchRec's
quantize_inference_model builds one (QuantEmbeddingBagCollection): weight_lists of
(codes, fp16 scale and bias), TorchRec's row alignment, host memory, float32 output. A
TorchScript module holding one needs fbgemm_gpu's ops: `import fbgemm_gpu` before
`torch.jit.load`.
"""

from __future__ import annotations

import numpy as np

from lpmon.quant import tbe
from lpmon.quant.precision import TBE_ROW_ALIGNMENT, served_row_bytes

from . import require_torch

torch = require_torch()

FBGEMM_GPU_EXTRA = "pip install --no-deps fbgemm-gpu-cpu==1.8.0 (the CPU build)"
TBE_OP = "fbgemm::int_nbit_split_embedding_codegen_lookup_function (IntNBitTableBatchedEmbeddingBagsCodegen)"


def require_fbgemm_gpu():
    """fbgemm_gpu's TBE inference module class, or an ImportError that says what to install."""
    try:
        import fbgemm_gpu  # noqa: F401  (registers torch.ops.fbgemm)
        from fbgemm_gpu.split_table_batched_embeddings_ops_inference import IntNBitTableBatchedEmbeddingBagsCodegen
    except ImportError:
        raise ImportError(f'embedding_layout = "tbe" is served by fbgemm_gpu: {FBGEMM_GPU_EXTRA}') from None
    return IntNBitTableBatchedEmbeddingBagsCodegen


class TbeBag(torch.nn.Module):
    """One row-wise table in an IntNBitTableBatchedEmbeddingBagsCodegen; forward takes
    DLRM's (indices, offsets), offsets without the end (as torch's embedding_bag)."""

    def __init__(self, module):
        super().__init__()
        self.tbe = module

    def forward(self, indices, offsets):
        ends = torch.cat([offsets, torch.tensor([indices.numel()], dtype=offsets.dtype)])
        return self.tbe(indices, ends)


def tbe_bag(rows: np.ndarray, bits: int, dim: int, pooling: str, name: str = "table") -> TbeBag:
    """A table's TBE module from the rows lpmon's executor pools (lpmon.quant.tbe.pooling_rows)."""
    codegen = require_fbgemm_gpu()
    from fbgemm_gpu.split_embedding_configs import SparseType
    from fbgemm_gpu.split_table_batched_embeddings_ops_common import EmbeddingLocation, PoolingMode

    codes, scale_bias = tbe.split(tbe.sbhalf_of(rows, bits, dim))
    weight_ty = {8: SparseType.INT8, 4: SparseType.INT4, 2: SparseType.INT2}[bits]
    module = codegen(
        [(name, rows.shape[0], dim, weight_ty, EmbeddingLocation.HOST)],
        pooling_mode=PoolingMode.SUM if pooling == "sum" else PoolingMode.MEAN,
        device="cpu",
        output_dtype=SparseType.FP32,
        row_alignment=TBE_ROW_ALIGNMENT,
        weight_lists=[(torch.from_numpy(codes), torch.from_numpy(scale_bias))],
    )
    return TbeBag(module)


def served_rows(bag: TbeBag) -> np.ndarray:
    """The table's rows as the module holds them: uint8 [rows, row bytes], each row
    [fp16 scale][fp16 bias][codes][zeros] (what lpmon.quant.tbe.tbe_rows gives)."""
    return bag.tbe.split_embedding_weights(split_scale_shifts=False)[0][0].numpy()


def manifest_entry(bits: int, dim: int) -> dict:
    """What a TBE table's manifest entry says about its op and rows."""
    import fbgemm_gpu

    return {
        "op": TBE_OP,
        "layout": "tbe",
        "row_bytes": served_row_bytes(bits, dim, "tbe"),
        "row_format": f"[fp16 scale][fp16 bias][{-(-dim * bits // 8)} bytes of {bits}-bit codes, element c in "
        f"the low bits first][zeros to a multiple of {TBE_ROW_ALIGNMENT} bytes]",
        "scale_bias": "fp16",
        "load": "import fbgemm_gpu before torch.jit.load (it registers the TBE ops)",
        "fbgemm_gpu": fbgemm_gpu.__version__,
    }
