"""The embedding rows a day's forward passes touch: read, checked and prepared once.

A day's sample touches a small share of each table's rows, so forward passes
never read, check or quantize whole tables. For each table and batch the
executor asks `TouchedRows.take` for the batch's ids; rows not yet
prepared under that (table, precision, search, layout) are gathered from the weight
(read from the snapshot's file with pread when it is memory-mapped: see
tensors.read_rows), checked finite and
quantized or rounded, then kept for the day. The executor pools from the
prepared rows with remapped ids (the slots `take` returns).

Row-wise quantization is per row, so prepared rows are the bytes whole-table
quantization gives for the same rows, and the pooled sums are the same sums
in the same order. Prepared rows are shared by every plan run on the model
that day (the fallback search moving one unit prepares only that unit's rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lpmon.quant import tbe
from lpmon.quant.halfprec import FP16_MAX, to_fp16
from lpmon.quant.rowwise import quantize_rows, row_bytes

from .spec import SpecError
from .tensors import read_rows

#: (table name, precision, search, embedding layout): what one set of prepared rows is keyed by.
Key = tuple[str, str, bool, str]


def prepare_rows(
    rows: np.ndarray, precision: str, search: bool, name: str, ids: np.ndarray, layout: str = "prepack"
) -> np.ndarray:
    """Rows of table `name` (float32 [n, dim], the rows `ids` of its weight) as the executor
    pools them: packed uint8 rows for int8/int4/int2 (layout "tbe": quantized as TorchRec
    serves them, lpmon.quant.tbe), float32 rows for fp32, fp16-rounded float32 rows for
    fp16. A row that is not finite, or (rows whose scale and bias are fp16: 4/2-bit, and
    int8 in the TBE layout) beyond fp16's range, is a SpecError naming the table and the row id."""
    bad = ~np.isfinite(rows).all(axis=1)
    what = "NaN or inf values"
    if precision in ("int4", "int2") or (precision == "int8" and layout == "tbe"):
        bad |= np.abs(rows).max(axis=1, initial=0) > FP16_MAX
        what = f"NaN, inf or values beyond fp16's +-65504 ({precision} rows keep fp16 scales and biases)"
    if bad.any():
        first = np.flatnonzero(bad)
        raise SpecError(
            f"{name}: row {int(ids[first[0]])} has {what}; {first.size} of the {len(ids)} rows read are bad"
        )
    if precision == "fp32":
        return rows
    if precision == "fp16":
        return to_fp16(rows).astype(np.float32)
    bits = int(precision[3:])
    if layout == "tbe":
        return tbe.pooling_rows(tbe.quantize(rows, bits, search=search, name=name), bits, rows.shape[1])
    return quantize_rows(rows, bits, search=search, name=name)


@dataclass
class _Prepared:
    """One key's rows: rows[i] is the prepared row of id ids[i] (in the order prepared)."""

    ids: pd.Index
    rows: np.ndarray


@dataclass
class TouchedRows:
    """A model's prepared rows for the day, per (table, precision, search, layout).

    Owned by the loaded model (Model.cache), so it lives as long as the day's model;
    `prepared` counts the rows prepared per key (what the day paid for)."""

    _sets: dict[Key, _Prepared] = field(default_factory=dict)
    prepared: dict[Key, int] = field(default_factory=dict)

    def take(
        self, weight: np.ndarray, name: str, precision: str, search: bool, indices: np.ndarray, layout: str = "prepack"
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, slots): rows[slots[i]] is the prepared row of indices[i], an id of `weight`
        (the table `name`'s float32 [rows, dim] weight; ids in range, checked by the caller).
        Only ids not prepared before under (name, precision, search, layout) are read and prepared.

        Ids are found through a hash index of the prepared ids (pandas'), which costs
        O(len(indices)) a pass: np.unique would sort every id of the batch on every pass,
        a binary search is several times slower on unsorted ids."""
        key = (name, precision, bool(search), layout)
        held = self._sets.get(key)
        if held is None:
            dim = weight.shape[1]
            if precision in ("fp32", "fp16"):
                empty = np.empty((0, dim), np.float32)
            else:
                empty = np.empty((0, row_bytes(int(precision[3:]), dim)), np.uint8)
            held = self._sets[key] = _Prepared(pd.Index(np.empty(0, np.int64)), empty)
        indices = np.asarray(indices, dtype=np.int64)
        slots = held.ids.get_indexer(indices)
        if (slots < 0).any():
            missing = np.unique(indices[slots < 0])  # sorted: the weight's pages are read in order
            rows = prepare_rows(
                np.ascontiguousarray(read_rows(weight, missing), dtype=np.float32),
                precision,
                search,
                name,
                missing,
                layout,
            )
            held.ids = pd.Index(np.concatenate([held.ids.to_numpy(), missing]))
            held.rows = np.concatenate([held.rows, rows])
            self.prepared[key] = self.prepared.get(key, 0) + missing.size
            slots = held.ids.get_indexer(indices)
        return held.rows, slots

    def clear(self) -> None:
        self._sets.clear()
        self.prepared.clear()

    @property
    def nbytes(self) -> int:
        """Bytes held by the prepared rows and their ids."""
        return sum(held.rows.nbytes + held.ids.nbytes for held in self._sets.values())
