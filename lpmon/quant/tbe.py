"""FBGEMM's table-batched inference layout (TBE) of row-wise tables: what TorchRec serves.

    sbhalf = quantize(table, 8)                 # [dim x uint8][fp16 scale][fp16 bias] per row
    rows = pooling_rows(sbhalf, 8, dim)         # what lpmon.quant.rowwise.embedding_bag pools
    served = tbe_rows(sbhalf, 8, dim)           # IntNBitTableBatchedEmbeddingBagsCodegen's bytes

TorchRec's quantize_inference_model quantizes every int8, int4 and int2 table with
FBGEMM's FloatOrHalfToFusedNBitRowwiseQuantizedSBHalf (torchrec.quant.embedding_modules.
quantize_state_dict): per row bias = fp16(min), scale = fp16((max - bias) / (2^bits - 1))
(1 when that is 0), codes = round half to even of (x - bias) * float32(1 / scale), clamped
to [0, 2^bits - 1]: for int8 a different model from the prepack layout's fp32 scale and bias.
IntNBitTableBatchedEmbeddingBagsCodegen stores each row as [fp16 scale][fp16 bias][codes],
zero-padded to TBE_ROW_ALIGNMENT (16) bytes (TorchRec's default), and pools on CPU as FBGEMM's
EmbeddingSpMDM does: per looked-up row, in bag order, out = fma(scale, q, out + bias) in
float32 with the fp16 scale and bias widened; mean multiplies by 1 / bag size.

Those are lpmon's row-wise kernels' sums, so lpmon pools TBE rows with them: an int8
row's fp16 scale and bias, widened to float32 (exactly), make it a row of lpmon's 8-bit
fused layout (pooling_rows); 4- and 2-bit rows are FBGEMM's fused n-bit rows already.
"""

from __future__ import annotations

import numpy as np

from .precision import served_row_bytes
from .rowwise import quantize_rows, row_bytes


def quantize(table, bits: int, *, search: bool = False, name: str = "table") -> np.ndarray:
    """FloatOrHalfToFusedNBitRowwiseQuantizedSBHalf of a float table [rows, dim], bit for bit:
    uint8 [rows, codes + 4], each row [codes][fp16 scale][fp16 bias]. search (4/2-bit) takes
    each row's range from FBGEMM's greedy search, as lpmon's prepack rows do."""
    return quantize_rows(table, bits, search=search, name=name, fp16_scale_bias=True)


def pooling_rows(sbhalf: np.ndarray, bits: int, dim: int) -> np.ndarray:
    """The rows lpmon.quant.rowwise.embedding_bag pools as TBE does: 8-bit rows with their
    fp16 scale and bias widened to float32; 4- and 2-bit rows as they are."""
    if bits != 8:
        return sbhalf
    out = np.empty((sbhalf.shape[0], row_bytes(8, dim)), np.uint8)
    out[:, :dim] = sbhalf[:, :dim]
    out[:, dim:] = np.ascontiguousarray(sbhalf[:, dim:]).view(np.float16).astype(np.float32).view(np.uint8)
    return out


def sbhalf_of(rows: np.ndarray, bits: int, dim: int) -> np.ndarray:
    """The inverse of pooling_rows (the widened scale and bias are fp16 values: exact)."""
    if bits != 8:
        return rows
    out = np.empty((rows.shape[0], row_bytes(8, dim, fp16_scale_bias=True)), np.uint8)
    out[:, :dim] = rows[:, :dim]
    out[:, dim:] = np.ascontiguousarray(rows[:, dim:]).view(np.float32).astype(np.float16).view(np.uint8)
    return out


def split(sbhalf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, scale_bias): the pair TorchRec hands IntNBitTableBatchedEmbeddingBagsCodegen
    as a table's weight_lists entry (scale_bias: fp16 scale and bias, 4 bytes a row)."""
    return np.ascontiguousarray(sbhalf[:, :-4]), np.ascontiguousarray(sbhalf[:, -4:])


def tbe_rows(sbhalf: np.ndarray, bits: int, dim: int) -> np.ndarray:
    """The table as IntNBitTableBatchedEmbeddingBagsCodegen holds it (TorchRec's row
    alignment): uint8 [rows, served_row_bytes], each row [fp16 scale][fp16 bias][codes][zeros]."""
    codes, scale_bias = split(sbhalf)
    out = np.zeros((sbhalf.shape[0], served_row_bytes(bits, dim, "tbe")), np.uint8)
    out[:, :4] = scale_bias
    out[:, 4 : 4 + codes.shape[1]] = codes
    return out
