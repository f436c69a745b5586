"""Pass 2 of sampling: the chosen rows' columns, checked.

Only the chosen rows are checked (non-finite values, ids out of range, nulls,
`ts`): bad rows are never scored, and rows that are not scored cost no checks.
The rows come from the day's files (only the row groups that hold some are
decoded, one at a time), or, for a day split in file groups, from the rows the
groups' workers read beside their candidates (memory-mapped: the merge then
costs what the sample does, not what the day does).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from .hashing import request_hash
from .schema import TrafficError, TrafficSchema
from .split import Chosen
from .store import TrafficStore


def read_chosen(
    store: TrafficStore, chosen: Chosen, seed: int, schema: TrafficSchema, day: dt.date
) -> tuple[list[pa.Table], list[np.ndarray]]:
    """Per file with chosen rows (in file order): the rows' schema columns, checked
    (errors name the file), and their hashes, checked against pass 1's (a file
    replaced between the passes is refused)."""
    tables, hashes = [], []
    mapped: dict[int, pa.Table] = {}
    for index in np.unique(chosen.file_index):
        mine = np.flatnonzero(chosen.file_index == index)
        mine = mine[np.argsort(chosen.rows[mine], kind="stable")]
        path = chosen.files[index]
        if chosen.tables:
            (part,) = np.unique(chosen.part[mine])
            if part not in mapped:
                mapped[part] = _mapped(chosen.tables[part])
            table = mapped[part].take(pa.array(chosen.position[mine]))
        else:
            table = store.read_rows(path, chosen.rows[mine], [*schema.columns, "ts"])
        missing = [c for c in schema.columns if c not in table.column_names]
        if missing:  # (a group's rows hold every column of its files)
            raise TrafficError(f"{path}: missing column {missing[0]}")
        batch = table.combine_chunks().to_batches()[0]
        schema.check_batch(batch, path, day)
        seen = request_hash(batch.column("request_id").to_numpy(zero_copy_only=False), seed)
        if not np.array_equal(seen, chosen.hashes[mine]):
            raise TrafficError(f"{path}: the partition changed while it was read")
        tables.append(table.select(schema.columns))
        hashes.append(seen)
    return tables, hashes


def _mapped(path: str) -> pa.Table:
    try:
        return pa.ipc.open_file(pa.memory_map(path)).read_all()
    except (pa.ArrowException, OSError) as err:
        raise TrafficError(f"{path}: a file group's rows cannot be read ({err})") from None
