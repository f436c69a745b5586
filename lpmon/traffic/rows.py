"""Pass 2 of sampling: read the chosen rows' columns, row group by row group, and check them.

Only the row groups that hold chosen rows are decoded (one at a time, so memory
stays at one row group of the needed columns), only the chosen rows are kept,
and only they are checked (non-finite values, ids out of range, nulls, `ts`):
bad rows are never scored, and rows that are not scored cost no checks.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from .hashing import request_hash
from .schema import TrafficError, TrafficSchema
from .split import Chosen
from .store import UNREADABLE, TrafficStore


def read_chosen(
    store: TrafficStore, chosen: Chosen, seed: int, schema: TrafficSchema, day: dt.date
) -> tuple[list[pa.Table], list[np.ndarray]]:
    """Per file with chosen rows (in file order): the rows' schema columns, checked,
    and their hashes (checked against pass 1's: a file replaced between the
    passes is refused)."""
    tables, hashes = [], []
    for index in np.unique(chosen.file_index):
        mine = np.flatnonzero(chosen.file_index == index)
        mine = mine[np.argsort(chosen.rows[mine], kind="stable")]
        path = chosen.files[index]
        table = _read_rows(store, path, chosen.rows[mine], [*schema.columns, "ts"])
        batch = table.combine_chunks().to_batches()[0]
        schema.check_batch(batch, path, day)
        seen = request_hash(batch.column("request_id").to_numpy(zero_copy_only=False), seed)
        if not np.array_equal(seen, chosen.hashes[mine]):
            raise TrafficError(f"{path}: the partition changed while it was read")
        tables.append(table.select(schema.columns))
        hashes.append(seen)
    return tables, hashes


def _read_rows(store: TrafficStore, path: str, rows: np.ndarray, columns: list[str]) -> pa.Table:
    """The given rows (ascending) of one file: each row group that holds some is
    read whole (Parquet's smallest unit here) and the rows taken from it."""
    handle = store.open(path)
    meta = handle.metadata
    present = [c for c in columns if c in handle.schema_arrow.names]
    starts = np.cumsum([0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
    if len(rows) and rows[-1] >= starts[-1]:
        raise TrafficError(f"{path}: the partition changed while it was read")
    group_of = np.searchsorted(starts, rows, side="right") - 1
    pieces = []
    try:
        for group in np.unique(group_of):
            local = rows[group_of == group] - starts[group]
            pieces.append(handle.read_row_group(int(group), columns=present).take(pa.array(local)))
    except UNREADABLE as err:
        raise TrafficError(f"{path}: unreadable Parquet ({err})") from None
    return pa.concat_tables(pieces)
