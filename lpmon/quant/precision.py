"""Precisions, their ladders and what a unit costs to serve at each.

A unit is what the fallback search moves: one FC layer, or one embedding
table. Its cost is the bytes serving holds for it at a precision (row-wise
formats add their per-row scale and bias), so raising a 1M-row table costs
more than raising a 10-row one.
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


def bytes_served(kind: str, rows: int, cols: int, precision: str) -> float:
    """Bytes serving holds for one unit: a linear layer's weight [rows x cols], or an
    embedding table of rows x cols (row-wise int8 adds fp32 scale and bias per row,
    int4/int2 fp16 ones, as FBGEMM's fused layouts do)."""
    p = Precision(precision)
    body = rows * cols * p.bits / 8
    if kind == "embedding" and p in (Precision.INT8, Precision.INT4, Precision.INT2):
        body = rows * (-(-cols * p.bits // 8) + (8 if p is Precision.INT8 else 4))
    return float(body)
