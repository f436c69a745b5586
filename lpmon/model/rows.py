"""The embedding rows a day's forward passes touch: read, checked and prepared once.

A day's sample touches a small share of each table's rows, so forward passes
never read, check or quantize whole tables. For each table and batch the
executor asks `TouchedRows.take` for the batch's unique ids; rows not yet
prepared under that (table, precision, search) are gathered from the weight
(only their pages are read when it is memory-mapped), checked finite and
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

from lpmon.quant.halfprec import FP16_MAX, to_fp16
from lpmon.quant.rowwise import quantize_rows, row_bytes

from .spec import SpecError

#: (table name, precision, search): what one set of prepared rows is keyed by.
Key = tuple[str, str, bool]


def prepare_rows(rows: np.ndarray, precision: str, search: bool, name: str, ids: np.ndarray) -> np.ndarray:
    """Rows of table `name` (float32 [n, dim], the rows `ids` of its weight) as the executor
    pools them: packed uint8 rows for int8/int4/int2, float32 rows for fp32, fp16-rounded
    float32 rows for fp16. A row that is not finite, or (4/2-bit rows, whose scale and bias
    are fp16) beyond fp16's range, is a SpecError naming the table and the row id."""
    bad = ~np.isfinite(rows).all(axis=1)
    what = "NaN or inf values"
    if precision in ("int4", "int2"):
        bad |= np.abs(rows).max(axis=1, initial=0) > FP16_MAX
        what = "NaN, inf or values beyond fp16's +-65504 (its scale and bias are fp16)"
    if bad.any():
        first = np.flatnonzero(bad)
        raise SpecError(
            f"{name}: row {int(ids[first[0]])} has {what} "
            f"({first.size} such rows among the {len(ids)} read; under {precision})"
        )
    if precision == "fp32":
        return rows
    if precision == "fp16":
        return to_fp16(rows).astype(np.float32)
    return quantize_rows(rows, int(precision[3:]), search=search, name=name)


@dataclass
class _Prepared:
    """One key's rows: buffer[slot[i]] is the prepared row of id ids[i] (ids sorted)."""

    ids: np.ndarray
    slot: np.ndarray
    buffer: np.ndarray
    filled: int = 0


@dataclass
class TouchedRows:
    """A model's prepared rows for the day, per (table, precision, search).

    Owned by the loaded model (Model.cache), so it lives as long as the day's model;
    `prepared` counts the rows prepared per key (what the day paid for)."""

    _sets: dict[Key, _Prepared] = field(default_factory=dict)
    prepared: dict[Key, int] = field(default_factory=dict)

    def take(
        self, weight: np.ndarray, name: str, precision: str, search: bool, ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, slots): rows[slots[i]] is the prepared row of ids[i] (sorted, unique ids
        of `weight`, the table `name`'s float32 [rows, dim] weight). Only ids not prepared
        before under (name, precision, search) are read and prepared."""
        key = (name, precision, bool(search))
        held = self._sets.get(key)
        if held is None:
            dim = weight.shape[1]
            width, dtype = (
                (dim, np.float32) if precision in ("fp32", "fp16") else (row_bytes(int(precision[3:]), dim), np.uint8)
            )
            empty = np.empty(0, np.int64)
            held = self._sets[key] = _Prepared(empty, empty, np.empty((0, width), dtype))
        where = np.searchsorted(held.ids, ids)
        known = where < held.ids.size
        known[known] = held.ids[where[known]] == ids[known]
        if not known.all():
            missing = ids[~known]
            rows = prepare_rows(
                np.ascontiguousarray(weight[missing], dtype=np.float32), precision, search, name, missing
            )
            start, stop = held.filled, held.filled + missing.size
            if stop > held.buffer.shape[0]:  # grow by doubling: appends cost O(1) per row
                grown = np.empty((max(stop, 2 * held.buffer.shape[0]), held.buffer.shape[1]), held.buffer.dtype)
                grown[:start] = held.buffer[:start]
                held.buffer = grown
            held.buffer[start:stop] = rows
            held.ids = np.insert(held.ids, where[~known], missing)
            held.slot = np.insert(held.slot, where[~known], np.arange(start, stop, dtype=np.int64))
            held.filled = stop
            self.prepared[key] = self.prepared.get(key, 0) + missing.size
            where = np.searchsorted(held.ids, ids)
        return held.buffer[: held.filled], held.slot[where]

    def clear(self) -> None:
        self._sets.clear()
        self.prepared.clear()

    @property
    def nbytes(self) -> int:
        """Bytes held by the prepared rows (buffers at their capacity)."""
        return sum(held.buffer.nbytes + held.ids.nbytes + held.slot.nbytes for held in self._sets.values())
