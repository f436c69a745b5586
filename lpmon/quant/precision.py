"""Precisions, their ladders and what a unit costs to serve at each.

A unit is what the fallback search moves: one FC layer, or one embedding
table. Its cost is the bytes serving holds for it at a precision (row-wise
formats add their per-row scale and bias, as the model's embedding layout
stores them), so raising a 1M-row table costs more than raising a 10-row one.
"""

from __future__ import annotations

from enum import Enum


class Precision(str, Enum):
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    INT8 = "int8"
    INT4 = "int4"
    INT2 = "int2"

    @property
    def bits(self) -> int:
        return {"fp32": 32, "bf16": 16, "fp16": 16, "int8": 8, "int4": 4, "int2": 2}[self.value]


#: What each kind of unit can be served at (a plan's layers are checked against this).
PRECISIONS = {
    "linear": ("fp32", "fp16", "bf16", "int8"),
    "embedding": ("fp32", "fp16", "int8", "int4", "int2"),
}
#: The integer row-wise table formats (a scale and bias per row).
ROWWISE = ("int8", "int4", "int2")
#: Where row-wise tables live (a model's `embedding_layout`, carried by its plans):
#: FBGEMM's prepack (fused) rows, or its table-batched inference rows (lpmon.quant.tbe).
LAYOUTS = ("prepack", "tbe")
#: Row alignment of TBE rows in TorchRec's quantized embedding modules (DEFAULT_ROW_ALIGNMENT).
TBE_ROW_ALIGNMENT = 16

# Every unit climbs from wherever it is to fp32; whole-model fp32 is the top of every ladder.
TABLE_LADDER = (Precision.INT2, Precision.INT4, Precision.INT8, Precision.FP16, Precision.FP32)
LINEAR_LADDER = (Precision.INT8, Precision.FP16, Precision.FP32)


def step_up(precision: str, ladder=LINEAR_LADDER) -> Precision | None:
    """The next rung above `precision` (the first ladder precision with more bits),
    or None at the top. A precision off the ladder (bf16 on int8 -> fp16 -> fp32)
    climbs to the ladder's next wider rung."""
    bits = Precision(precision).bits
    for rung in ladder:
        if Precision(rung).bits > bits:
            return Precision(rung)
    return None


def served_row_bytes(bits: int, cols: int, layout: str = "prepack") -> int:
    """Bytes one row-wise quantized row takes in serving: prepack rows add an fp32 scale
    and bias (int8) or fp16 ones (int4/int2); TBE rows an fp16 scale and bias, the row
    then padded to TBE_ROW_ALIGNMENT bytes."""
    codes = -(-cols * bits // 8)
    if layout == "tbe":
        return -(-(codes + 4) // TBE_ROW_ALIGNMENT) * TBE_ROW_ALIGNMENT
    return codes + (8 if bits == 8 else 4)


def bytes_served(kind: str, rows: int, cols: int, precision: str, layout: str = "prepack") -> float:
    """Bytes serving holds for one unit: a linear layer's weight [rows x cols], or an
    embedding table of rows x cols (row-wise rows as the layout stores them)."""
    p = Precision(precision)
    if kind == "embedding" and p.value in ROWWISE:
        return float(rows * served_row_bytes(p.bits, cols, layout))
    return float(rows * cols * p.bits / 8)
