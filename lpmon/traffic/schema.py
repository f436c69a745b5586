"""What a traffic partition must hold for a model, and the checks applied on read.

Columns: request_id (int64 or string, unique), ts (timestamp), label (0/1),
the model's dense columns (float: dense_*) and sparse features (list<int64> of ids,
or int64 for one id: sparse_* for lpmon's own models, any name the spec gives a
feature, e.g. an imported TorchRec model's cat_0). Every
file of a partition is checked (its schema, then every row); a problem is
reported with the file, the column and the number of bad rows; bad rows are
never scored silently. Two limits keep one hostile row from costing
gigabytes or a mislabelled partition from passing: at most max_ids_per_row
ids in a row of a multi-hot column, and `ts` (when present) within the
partition's day, give or take ts_tolerance_s.
"""

from __future__ import annotations

import datetime as dt
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


MAX_IDS_PER_ROW = 10_000  # default: far above real multi-hot features, far below a hostile row
TS_TOLERANCE_S = 12 * 3600  # default: late or early events, or a timezone, but not another day


@dataclass(frozen=True)
class TrafficSchema:
    dense: tuple[str, ...]
    sparse: tuple[str, ...]
    table_rows: tuple[int, ...]
    max_ids_per_row: int = MAX_IDS_PER_ROW
    ts_tolerance_s: float = TS_TOLERANCE_S
    predictions: tuple[str, ...] = ()  # logged probabilities (scorer = "logged"): floats in [0, 1]
    extra: tuple[str, ...] = ()  # further columns carried into the sample as they are (segments)

    @classmethod
    def for_model(
        cls,
        spec: ModelSpec,
        max_ids_per_row: int = MAX_IDS_PER_ROW,
        ts_tolerance_s: float = TS_TOLERANCE_S,
        extra: tuple[str, ...] = (),
    ) -> "TrafficSchema":
        return cls(
            spec.dense,
            spec.sparse,
            tuple(spec.tables[t].rows for t in spec.feature_tables()),
            max_ids_per_row,
            ts_tolerance_s,
            extra=tuple(extra),
        )

    @classmethod
    def logged(
        cls,
        p_ref: str,
        p_q: str,
        max_ids_per_row: int = MAX_IDS_PER_ROW,
        ts_tolerance_s: float = TS_TOLERANCE_S,
        extra: tuple[str, ...] = (),
    ) -> "TrafficSchema":
        """Traffic whose serving logged both models' predictions beside the label."""
        return cls((), (), (), max_ids_per_row, ts_tolerance_s, predictions=(p_ref, p_q), extra=tuple(extra))

    @property
    def columns(self) -> list[str]:
        base = ["request_id", "label", *self.dense, *self.sparse, *self.predictions]
        return base + [c for c in self.extra if c not in base]

    def check_columns(self, schema: pa.Schema, partition: str) -> None:
        names = set(schema.names)
        missing = [c for c in self.columns if c not in names]
        if missing:
            raise TrafficError(
                f"{partition}: missing column {missing[0]}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        for column in self.extra:
            kind = schema.field(column).type
            if pa.types.is_dictionary(kind):
                kind = kind.value_type
            if not (
                pa.types.is_string(kind)
                or pa.types.is_large_string(kind)
                or pa.types.is_integer(kind)
                or pa.types.is_boolean(kind)
            ):
                raise TrafficError(
                    f"{partition}: segment column {column} has type {kind}, expected strings "
                    "or integers (one value per segment)"
                )
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
        for column in self.predictions:
            kind = schema.field(column).type
            if not pa.types.is_floating(kind):
                raise TrafficError(
                    f"{partition}: column {column} has type {kind}, expected float probabilities in [0, 1]"
                )
        for column in self.sparse:
            kind = schema.field(column).type
            value = kind.value_type if pa.types.is_list(kind) or pa.types.is_large_list(kind) else kind
            if not pa.types.is_integer(value):
                raise TrafficError(f"{partition}: column {column} has type {kind}, expected list<int64> or int64 ids")
        if "ts" in names and not pa.types.is_timestamp(schema.field("ts").type):
            raise TrafficError(f"{partition}: column ts has type {schema.field('ts').type}, expected timestamp")

    def check_batch(self, batch: pa.RecordBatch, partition: str, day: dt.date | None = None) -> None:
        """Row-level checks: labels, non-finite dense values, list lengths, ids out of
        range, nulls; and `ts` within the day (when the batch has it and day is given)."""
        n = batch.num_rows
        for column in batch.schema.names:
            if column in self.columns and batch.column(column).null_count:
                raise TrafficError(
                    f"{partition}: column {column} has {batch.column(column).null_count} null values of {n} rows"
                )
        self.labels(batch, partition)
        for column in self.dense:
            values = batch.column(column).to_numpy(zero_copy_only=False)
            bad = np.count_nonzero(~np.isfinite(values))
            if bad:
                raise TrafficError(f"{partition}: column {column} has {bad} rows with NaN or inf (of {n})")
        for column in self.predictions:
            values = batch.column(column).to_numpy(zero_copy_only=False)
            bad = np.count_nonzero(np.isnan(values))
            if bad:
                raise TrafficError(f"{partition}: column {column} has {bad} rows with NaN (of {n})")
            bad = np.count_nonzero((values < 0) | (values > 1))
            if bad:
                raise TrafficError(
                    f"{partition}: column {column} has {bad} rows outside [0, 1] (of {n}): not probabilities"
                )
        for column in self.sparse:
            self._check_lengths(batch.column(column), column, partition, n)
        if day is not None and "ts" in batch.schema.names:
            self._check_ts(batch.column("ts"), day, partition, n)
        for column, rows in zip(self.sparse, self.table_rows):
            ids, owner = sparse_ids(batch.column(column))
            outside = (ids < 0) | (ids >= rows)
            if outside.any():
                bad_rows = np.unique(owner[outside]).size
                raise TrafficError(
                    f"{partition}: column {column} has {bad_rows} rows with ids outside [0, {rows}) (of {n})"
                )

    def _check_lengths(self, values: pa.Array, column: str, partition: str, n: int) -> None:
        if not (pa.types.is_list(values.type) or pa.types.is_large_list(values.type)):
            return
        lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
        over = int(np.count_nonzero(lengths > self.max_ids_per_row))
        if over:
            raise TrafficError(
                f"{partition}: column {column} has {over} rows with more than "
                f"{self.max_ids_per_row:,} ids (the longest {int(lengths.max()):,}; "
                f"setting max_ids_per_row) (of {n})"
            )

    def _check_ts(self, values: pa.Array, day: dt.date, partition: str, n: int) -> None:
        if values.null_count:
            raise TrafficError(f"{partition}: column ts has {values.null_count} null values of {n} rows")
        seconds = (
            values.cast(pa.timestamp("us", tz=values.type.tz)).cast(pa.int64()).to_numpy(zero_copy_only=False) / 1e6
        )
        start = dt.datetime.combine(day, dt.time(), dt.timezone.utc).timestamp() - self.ts_tolerance_s
        end = start + 86_400 + 2 * self.ts_tolerance_s
        outside = int(np.count_nonzero((seconds < start) | (seconds >= end)))
        if outside:
            first = dt.datetime.fromtimestamp(float(seconds[(seconds < start) | (seconds >= end)][0]), dt.timezone.utc)
            raise TrafficError(
                f"{partition}: column ts has {outside} rows outside {day} (give or take "
                f"{self.ts_tolerance_s / 3600:g} h; setting ts_tolerance_hours), e.g. "
                f"{first:%Y-%m-%d %H:%M:%S} UTC (of {n}): is the partition mislabelled?"
            )

    @staticmethod
    def labels(batch: pa.RecordBatch, partition: str) -> np.ndarray:
        """The batch's labels as int8, every one checked to be 0 or 1."""
        column = batch.column("label")
        if column.null_count:
            raise TrafficError(
                f"{partition}: column label has {column.null_count} null values of {batch.num_rows} rows"
            )
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
