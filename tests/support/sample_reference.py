"""The sampler as it was before pass 2 read only the sampled rows (kept as the
oracle: the new one must draw the same examples in the same order).

Deterministic, reproducible daily samples with bounded memory.

Membership is decided by a 64-bit hash of (request id, seed): the sample is
the n requests with the smallest hashes (optionally n in proportion per
label), so a rerun or a backfill draws exactly the same examples, whatever
the files' layout. Two streamed passes: request ids (and labels) first, to
find the hash threshold; then every needed column, keeping the rows under it
and checking every row of the day on the way.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from lpmon.traffic.hashing import request_hash  # unchanged by the new sampler: the oracle shares it
from lpmon.traffic.sample import Sample, to_batch
from lpmon.traffic.schema import EmptyDay, TrafficError, TrafficSchema
from lpmon.traffic.store import TrafficStore, as_day


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
    partition = store.partition(day)
    kinds: dict[bool, str] = {}  # integer ids? -> the first file that has them
    for path, file_schema in store.schemas(day):  # every file: a partition may mix writers
        schema.check_columns(file_schema, path)
        kinds.setdefault(pa.types.is_integer(file_schema.field("request_id").type), path)
    if len(kinds) > 1:
        raise TrafficError(
            f"{kinds[False]}: column request_id holds strings, but {kinds[True]} holds "
            "integers: one partition needs one kind of request id"
        )

    # Pass 1: hashes (and labels) of every request, into arrays sized from the files'
    # metadata (9 bytes a row, nothing else of the day is held); duplicates are an error.
    day_rows = store.row_count(day)
    hashes, labels, filled = np.empty(day_rows, np.uint64), np.empty(day_rows, np.int8), 0
    for record in store.batches(day, ["request_id", "label"], batch_size):
        end = filled + record.num_rows
        if end > day_rows:
            raise TrafficError(f"{partition}: the partition changed while it was read")
        hashes[filled:end] = request_hash(record.column("request_id").to_numpy(zero_copy_only=False), seed)
        labels[filled:end] = schema.labels(record, partition)
        filled = end
    if filled != day_rows:
        raise TrafficError(f"{partition}: the partition changed while it was read")
    if day_rows == 0:
        raise EmptyDay(f"{partition}: the day has no rows")
    threshold = _thresholds(hashes, labels, n, stratify, partition)
    del hashes, labels  # only the thresholds are needed from here on

    # Pass 2: every column, every row checked, rows under the threshold kept.
    kept = []
    for path, record in store.file_batches(day, [*schema.columns, "ts"], batch_size):
        schema.check_batch(record, path, day)
        h = request_hash(record.column("request_id").to_numpy(zero_copy_only=False), seed)
        label = schema.labels(record, path)
        record = record.select(schema.columns)
        keep = h <= threshold[label.clip(0, 1)]
        if keep.any():
            kept.append((h[keep], record.filter(pa.array(keep))))
    order = np.argsort(np.concatenate([h for h, _ in kept]), kind="stable")
    table = _concat([r for _, r in kept], partition).take(pa.array(order))
    del kept  # the ordered copy is all that is needed: free the filtered batches first
    batch = to_batch(table, schema) if schema.dense or schema.sparse else None
    predictions = {c: table.column(c).to_numpy().astype(np.float32) for c in schema.predictions} or None
    extras = {c: table.column(c).to_numpy(zero_copy_only=False) for c in schema.extra}
    return Sample(
        str(day),
        batch,
        table.column("label").to_numpy().astype(np.uint8),
        table.column("request_id").to_numpy(),
        day_rows,
        predictions,
        extras,
    )


def _concat(batches: list[pa.RecordBatch], partition: str) -> pa.Table:
    """One table of batches from several files, whose types may differ where the
    checks allow it (float32 and float64 dense values, int32 and int64 ids)."""
    try:
        return pa.concat_tables([pa.Table.from_batches([b]) for b in batches], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise TrafficError(f"{partition}: the files' columns have types that do not combine ({err})") from None


def _thresholds(hashes, labels, n, stratify, partition: str) -> np.ndarray:
    """Per-label hash thresholds (index 0: negatives, 1: positives); refuses duplicate
    request ids. One sorted copy of the hashes serves both (8 bytes a row)."""
    ordered = np.sort(hashes)
    duplicates = int(np.count_nonzero(ordered[1:] == ordered[:-1]))
    if duplicates:
        raise TrafficError(f"{partition}: column request_id has {duplicates} duplicate rows")
    if n >= len(hashes):
        top = np.iinfo(np.uint64).max
        return np.array([top, top], dtype=np.uint64)
    if not stratify:
        return np.array([ordered[n - 1]] * 2, dtype=np.uint64)
    del ordered
    out = np.zeros(2, dtype=np.uint64)
    positives = int(labels.sum())
    wanted = {1: int(round(n * positives / len(hashes)))}
    wanted[0] = n - wanted[1]
    for label in (0, 1):
        group = hashes[labels == label]
        k = min(wanted[label], len(group))
        out[label] = np.partition(group, k - 1)[k - 1] if k > 0 else 0  # (a hash of 0: 2**-64)
    return out
