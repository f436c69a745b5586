"""What a traffic partition must hold for a model, and the checks applied on read.

Columns: request_id (int64 or string, unique), ts (timestamp), label (0/1),
dense_* (float), sparse_* (list<int64> of ids, or int64 for one id). Every
problem is reported with the partition, the column and the number of bad
rows; bad rows are never scored silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lpmon.model.spec import ModelSpec


class TrafficError(ValueError):
    """Traffic that cannot be scored; the message names partition, column and count."""


class MissingDay(TrafficError):
    """No partition for the day (the pipeline records INSUFFICIENT_DATA)."""


class EmptyDay(TrafficError):
    """A partition without rows (the pipeline records INSUFFICIENT_DATA)."""


@dataclass(frozen=True)
class TrafficSchema:
    dense: tuple[str, ...]
    sparse: tuple[str, ...]
    table_rows: tuple[int, ...]

    @classmethod
    def for_model(cls, spec: ModelSpec) -> "TrafficSchema":
        return cls(spec.dense, spec.sparse, tuple(t.rows for t in spec.tables))

    @property
    def columns(self) -> list[str]:
        return ["request_id", "label", *self.dense, *self.sparse]

    def check_columns(self, schema: pa.Schema, partition: str) -> None:
        names = set(schema.names)
        missing = [c for c in self.columns if c not in names]
        if missing:
            raise TrafficError(f"{partition}: missing column {missing[0]}"
                               + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        rid = schema.field("request_id").type
        if not (pa.types.is_integer(rid) or pa.types.is_string(rid) or pa.types.is_large_string(rid)):
            raise TrafficError(f"{partition}: column request_id has type {rid}, expected int64 or string")
        label = schema.field("label").type
        if not (pa.types.is_integer(label) or pa.types.is_boolean(label) or pa.types.is_floating(label)):
            raise TrafficError(f"{partition}: column label has type {label}, expected 0/1 integers")
        for column in self.dense:
            kind = schema.field(column).type
            if not pa.types.is_floating(kind):
                raise TrafficError(f"{partition}: column {column} has type {kind}, expected float32")
        for column in self.sparse:
            kind = schema.field(column).type
            value = kind.value_type if pa.types.is_list(kind) or pa.types.is_large_list(kind) else kind
            if not pa.types.is_integer(value):
                raise TrafficError(f"{partition}: column {column} has type {kind}, expected "
                                   "list<int64> or int64 ids")

    def check_batch(self, batch: pa.RecordBatch, partition: str) -> None:
        """Row-level checks: labels, non-finite dense values, ids out of range, nulls."""
        n = batch.num_rows
        for column in batch.schema.names:
            if column in self.columns and batch.column(column).null_count:
                raise TrafficError(f"{partition}: column {column} has "
                                   f"{batch.column(column).null_count} null values of {n} rows")
        self.labels(batch, partition)
        for column in self.dense:
            values = batch.column(column).to_numpy(zero_copy_only=False)
            bad = np.count_nonzero(~np.isfinite(values))
            if bad:
                raise TrafficError(f"{partition}: column {column} has {bad} rows with NaN or inf (of {n})")
        for column, rows in zip(self.sparse, self.table_rows):
            ids, owner = sparse_ids(batch.column(column))
            outside = (ids < 0) | (ids >= rows)
            if outside.any():
                bad_rows = np.unique(owner[outside]).size
                raise TrafficError(f"{partition}: column {column} has {bad_rows} rows with ids "
                                   f"outside [0, {rows}) (of {n})")


    @staticmethod
    def labels(batch: pa.RecordBatch, partition: str) -> np.ndarray:
        """The batch's labels as int8, every one checked to be 0 or 1."""
        column = batch.column("label")
        if column.null_count:
            raise TrafficError(f"{partition}: column label has {column.null_count} null values of "
                               f"{batch.num_rows} rows")
        label = column.to_numpy(zero_copy_only=False)
        bad = np.count_nonzero((label != 0) & (label != 1))
        if bad:
            raise TrafficError(f"{partition}: column label has {bad} rows not 0 or 1 (of {batch.num_rows})")
        return label.astype(np.int8)


def sparse_ids(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(ids, row of each id) of a list<int> or int column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        ids = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.int64)
        owner = pc.list_parent_indices(column).to_numpy(zero_copy_only=False)
        return ids, owner
    ids = column.to_numpy(zero_copy_only=False).astype(np.int64)
    return ids, np.arange(len(ids))
