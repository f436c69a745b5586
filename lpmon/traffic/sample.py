"""Deterministic, reproducible daily samples with bounded memory.

Membership is decided by a 64-bit hash of (request id, seed): the sample is
the n requests with the smallest hashes (optionally n in proportion per
label), so a rerun or a backfill draws exactly the same examples, whatever
the files' layout. Two passes: the request ids and labels of the whole day,
to find the hash threshold (lpmon.traffic.split, which a large day can run per
file group on several workers); then only the sampled rows' other columns,
checked as they are read (lpmon.traffic.rows). The sample is in hash order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from lpmon.model.batch import Batch, SparseFeature

from .hashing import request_hash
from .rows import read_chosen
from .schema import TrafficError, TrafficSchema, sparse_ids
from .split import Candidates, draw_candidates, merge
from .store import TrafficStore, as_day

__all__ = ["PartitionChanged", "Sample", "check_files", "from_candidates", "request_hash", "sample", "to_batch"]


class PartitionChanged(TrafficError):
    """The day's files are not those its groups' candidates were drawn from."""


@dataclass(frozen=True)
class Sample:
    day: str
    batch: Batch | None  # None when the schema has no features (logged predictions only)
    labels: np.ndarray  # uint8
    request_ids: np.ndarray
    day_rows: int  # rows in the day's partition (for the model)
    predictions: dict | None = None  # logged probabilities by column (float32), when the schema has them
    extras: dict = field(default_factory=dict)  # column -> values of the schema's extra columns

    def __len__(self) -> int:
        return len(self.labels)


def sample(
    store: TrafficStore,
    day,
    n: int,
    seed: int,
    schema: TrafficSchema,
    *,
    stratify: bool = False,
    batch_size: int = 65_536,
) -> Sample:
    """A sample of n requests from the day (all of them if the day has fewer)."""
    if n < 1:
        raise ValueError(f"sample size must be positive, got {n}")
    day = as_day(day)
    files = check_files(store, day, schema)
    part = draw_candidates(store, files, n, seed, stratify=stratify, batch_size=batch_size)
    return _finish(store, day, [part], n, seed, schema, stratify)


def from_candidates(
    store: TrafficStore, day, parts: list[Candidates], n: int, seed: int, schema: TrafficSchema, *, stratify=False
) -> Sample:
    """The day's sample from its file groups' candidates (draw_candidates over
    groups covering the day's files in order, with the same n, seed and
    stratify): exactly the sample `sample` draws. PartitionChanged if the day's
    files are no longer those."""
    day = as_day(day)
    files = check_files(store, day, schema)
    if [f for p in parts for f in p.files] != files:
        raise PartitionChanged(f"{store.partition(day)}: the partition's files changed since they were grouped")
    return _finish(store, day, parts, n, seed, schema, stratify)


def check_files(store: TrafficStore, day, schema: TrafficSchema) -> list[str]:
    """The day's files, every one's schema checked (footers only): a partition may mix writers."""
    kinds: dict[bool, str] = {}  # integer ids? -> the first file that has them
    files = []
    for path, file_schema in store.schemas(day):
        schema.check_columns(file_schema, path)
        kinds.setdefault(pa.types.is_integer(file_schema.field("request_id").type), path)
        files.append(path)
    if len(kinds) > 1:
        raise TrafficError(
            f"{kinds[False]}: column request_id holds strings, but {kinds[True]} holds "
            "integers: one partition needs one kind of request id"
        )
    return files


def _finish(store, day, parts, n, seed, schema, stratify) -> Sample:
    partition = store.partition(day)
    chosen = merge(parts, n, stratify, partition)
    del parts  # only the chosen rows are needed from here on
    tables, hashes = read_chosen(store, chosen, seed, schema, day)
    order = np.argsort(np.concatenate(hashes), kind="stable")
    table = _concat(tables, partition).take(pa.array(order))
    del tables  # the ordered copy is all that is needed: free the read rows first
    batch = to_batch(table, schema) if schema.dense or schema.sparse else None
    predictions = {c: table.column(c).to_numpy().astype(np.float32) for c in schema.predictions} or None
    extras = {c: table.column(c).to_numpy(zero_copy_only=False) for c in schema.extra}
    return Sample(
        str(day),
        batch,
        table.column("label").to_numpy().astype(np.uint8),
        table.column("request_id").to_numpy(),
        chosen.day_rows,
        predictions,
        extras,
    )


def _concat(tables: list[pa.Table], partition: str) -> pa.Table:
    """One table of several files' rows, whose types may differ where the
    checks allow it (float32 and float64 dense values, int32 and int64 ids)."""
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise TrafficError(f"{partition}: the files' columns have types that do not combine ({err})") from None


def to_batch(table: pa.Table, schema: TrafficSchema) -> Batch:
    dense = np.column_stack([table.column(c).to_numpy().astype(np.float32) for c in schema.dense])
    sparse = []
    for column in schema.sparse:
        values = table.column(column).combine_chunks()
        if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
            ids, _ = sparse_ids(values)
            offsets = values.offsets.to_numpy()[:-1].astype(np.int64) - values.offsets[0].as_py()
            sparse.append(SparseFeature(ids, offsets))
        else:
            sparse.append(SparseFeature.one_hot(values.to_numpy()))
    return Batch(np.ascontiguousarray(dense.reshape(table.num_rows, len(schema.dense))), tuple(sparse))
