"""Pass 1 of sampling, per file group: bottom-k candidates, merged exactly.

A day's sample is the n requests with the smallest hashes (or, stratified, the
smallest of each label, in the day's label mix). Whatever rows a group of
files holds, the sample's rows in it are among the group's own n smallest
hashes of their label; so each group (one worker each, for a large day) reads
only its request ids and labels and keeps those candidates, and one merge picks
exactly the rows one process over the whole day would. The day's pass-1 checks
(null ids and labels, labels outside {0, 1}, duplicate ids) are counted per
group and raised at the merge with the day's totals, so a split day fails with
the same message as a whole one; duplicates across groups are found from each
group's sorted hashes, spilled to a file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .hashing import request_hash
from .schema import EmptyDay, TrafficError
from .store import UNREADABLE, TrafficStore

TOP = np.iinfo(np.uint64).max
BUCKET_ROWS = 1 << 23  # hashes sorted at once by the cross-group duplicate check (64 MiB)


@dataclass(frozen=True)
class Counts:
    """What pass 1 saw in a group (summed over groups at the merge)."""

    rows: int = 0
    positives: int = 0
    null_ids: int = 0
    null_labels: int = 0
    bad_labels: int = 0
    duplicates: int = 0  # within the group


@dataclass(frozen=True)
class Candidates:
    """A file group's candidates: each label's n smallest hashes (all rows, if fewer)."""

    files: tuple[str, ...]
    counts: Counts
    hashes: np.ndarray  # uint64
    labels: np.ndarray  # int8
    file_index: np.ndarray  # int32, into files
    rows: np.ndarray  # int64, the row in its file
    sorted_hashes: str = ""  # .npy of every hash of the group, sorted (for duplicates across groups)
    table: str = ""  # Arrow IPC file of the candidates' rows, every column (pass 2 of a split day)


def file_groups(store: TrafficStore, files: list[str], max_rows: int) -> list[list[str]]:
    """Consecutive files in groups of at most max_rows rows (from the footers);
    a larger file is a group of its own."""
    groups: list[list[str]] = []
    size = 0
    for path in files:
        rows = store.open(path).metadata.num_rows
        if not groups or size + rows > max_rows:
            groups.append([])
            size = 0
        groups[-1].append(path)
        size += rows
    return groups


def draw_candidates(
    store: TrafficStore,
    files: list[str],
    n: int,
    seed: int,
    *,
    stratify: bool = False,
    batch_size: int = 65_536,
    spill: str | Path = "",
    rows_to: str | Path = "",
) -> Candidates:
    """Pass 1 over a group of files: hashes and labels of every row (9 bytes a
    row, nothing else held; the candidates are kept as the rows stream by), then
    the hashes sorted in place for the duplicate check. With spill, the group's
    sorted hashes are saved there for the merge's duplicate check; with rows_to,
    the candidates' rows (every column, unchecked) are written there, so that the
    merge reads no file of the day again."""
    handles = [store.open(path) for path in files]
    total = sum(h.metadata.num_rows for h in handles)
    hashes, labels = np.empty(total, np.uint64), np.empty(total, np.int8)
    starts = np.zeros(len(files) + 1, np.int64)
    filled, counts = 0, Counts()
    pools = [_Smallest(n), _Smallest(n)] if stratify else [_Smallest(n)]
    for index, (path, handle) in enumerate(zip(files, handles)):
        for batch in _batches(path, handle, batch_size):
            end = filled + batch.num_rows
            if end > total:
                raise TrafficError(f"{path}: the partition changed while it was read")
            hashes[filled:end], ids_null = _hashes(batch.column("request_id"), seed)
            labels[filled:end], labels_null, bad = _labels(batch.column("label"))
            rows = np.arange(filled, end)
            if stratify:
                for label, pool in enumerate(pools):
                    mine = labels[filled:end] == label
                    pool.add(hashes[filled:end][mine], rows[mine])
            else:
                pools[0].add(hashes[filled:end], rows)
            counts = replace(
                counts,
                null_ids=counts.null_ids + ids_null,
                null_labels=counts.null_labels + labels_null,
                bad_labels=counts.bad_labels + bad,
            )
            filled = end
        starts[index + 1] = filled
        if filled - starts[index] != handle.metadata.num_rows:
            raise TrafficError(f"{path}: the partition changed while it was read")
    found = [pool.result() for pool in pools]
    keep = np.concatenate([rows for _, rows in found])
    order = np.argsort(keep, kind="stable")  # (file, row) order
    keep, kept = keep[order], np.concatenate([h for h, _ in found])[order]
    positives = int(np.count_nonzero(labels))
    kept_labels = labels[keep]
    del labels
    hashes.sort()  # in place: the rows' order is no longer needed
    counts = replace(
        counts, rows=total, positives=positives, duplicates=int(np.count_nonzero(hashes[1:] == hashes[:-1]))
    )
    if spill:
        np.save(spill, hashes)
    del hashes
    file_index = (np.searchsorted(starts, keep, side="right") - 1).astype(np.int32)
    part = Candidates(tuple(files), counts, kept, kept_labels, file_index, keep - starts[file_index], str(spill or ""))
    if rows_to and write_rows(store, part, rows_to, seed):
        part = replace(part, table=str(rows_to))
    return part


class _Smallest:
    """The n smallest hashes seen so far and their rows, pruned as rows stream by
    (at most about 2n held): the same set as the n smallest of all of them."""

    def __init__(self, n: int):
        self.n, self.full, self.bound = n, False, TOP
        self.hashes, self.rows, self.size = [np.empty(0, np.uint64)], [np.empty(0, np.int64)], 0

    def add(self, hashes: np.ndarray, rows: np.ndarray) -> None:
        if self.full:  # n hashes at most the bound are held: a larger one can never be among the n smallest
            under = hashes <= self.bound
            hashes, rows = hashes[under], rows[under]
        self.hashes.append(hashes)
        self.rows.append(rows)
        self.size += len(hashes)
        if self.size > max(2 * self.n, 1 << 16):
            self._prune()

    def _prune(self) -> None:
        hashes, rows = np.concatenate(self.hashes), np.concatenate(self.rows)
        if len(hashes) > self.n:
            smallest = np.argpartition(hashes, self.n - 1)[: self.n]
            hashes, rows = hashes[smallest], rows[smallest]
            self.full, self.bound = True, hashes.max()
        self.hashes, self.rows, self.size = [hashes], [rows], len(hashes)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self._prune()
        return self.hashes[0], self.rows[0]


def write_rows(store: TrafficStore, part: Candidates, path: str | Path, seed: int) -> bool:
    """The candidates' rows, in candidate order, as one Arrow IPC file (the group's
    files' types combined); a file changed since pass 1 is refused."""
    tables = []
    for index in np.unique(part.file_index):
        mine = part.file_index == index
        table = store.read_rows(part.files[index], part.rows[mine])
        if not np.array_equal(request_hash(_ids(table), seed), part.hashes[mine]):
            raise TrafficError(f"{part.files[index]}: the partition changed while it was read")
        tables.append(table)
    if not tables:
        return False
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise TrafficError(f"{part.files[0]}: the files' columns have types that do not combine ({err})") from None
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return True


def _ids(table: pa.Table) -> np.ndarray:
    ids = table.column("request_id")
    return ids.fill_null(0 if pa.types.is_integer(ids.type) else "").to_numpy()


def _batches(path: str, handle, batch_size: int):
    try:
        yield from handle.iter_batches(batch_size=batch_size, columns=["request_id", "label"])
    except UNREADABLE as err:
        raise TrafficError(f"{path}: unreadable Parquet ({err})") from None


def _hashes(ids: pa.Array, seed: int) -> tuple[np.ndarray, int]:
    """Hashes of a batch's request ids, and how many are null (hashed as 0 or "": the day fails)."""
    nulls = ids.null_count
    if nulls:
        ids = pc.fill_null(ids, 0 if pa.types.is_integer(ids.type) else "")
    return request_hash(ids.to_numpy(zero_copy_only=False), seed), nulls


def _labels(column: pa.Array) -> tuple[np.ndarray, int, int]:
    """(labels as int8, nulls, values other than 0 and 1): only 1 counts as positive."""
    nulls = column.null_count
    if nulls:
        column = pc.fill_null(column, pa.scalar(0, pa.int8()).cast(column.type))
    values = column.to_numpy(zero_copy_only=False)
    bad = int(np.count_nonzero((values != 0) & (values != 1)))
    return (values == 1).astype(np.int8), nulls, bad


@dataclass(frozen=True)
class Chosen:
    """The day's sample rows, found by the merge (in the groups' file order)."""

    files: tuple[str, ...]
    day_rows: int
    hashes: np.ndarray
    labels: np.ndarray
    file_index: np.ndarray
    rows: np.ndarray
    part: np.ndarray  # the group of each row
    position: np.ndarray  # its place among the group's candidates
    tables: tuple[str, ...] = ()  # the groups' candidate rows (when every group has them)


def merge(parts: list[Candidates], n: int, stratify: bool, partition: str) -> Chosen:
    """The sample's rows from every group's candidates (the groups cover the day's
    files in order); raises the day's pass-1 problems with its totals."""
    total = Counts(**{k: sum(getattr(p.counts, k) for p in parts) for k in asdict(Counts())})
    rows = total.rows
    if total.null_ids:
        raise TrafficError(f"{partition}: column request_id has {total.null_ids} null values of {rows} rows")
    if total.null_labels:
        raise TrafficError(f"{partition}: column label has {total.null_labels} null values of {rows} rows")
    if total.bad_labels:
        raise TrafficError(f"{partition}: column label has {total.bad_labels} rows not 0 or 1 (of {rows})")
    if rows == 0:
        raise EmptyDay(f"{partition}: the day has no rows")
    if len(parts) > 1 and not all(p.sorted_hashes for p in parts):
        raise ValueError("merging several groups needs each group's sorted hashes (draw_candidates' spill)")
    duplicates = parts[0].counts.duplicates if len(parts) == 1 else count_duplicates([p.sorted_hashes for p in parts])
    if duplicates:
        raise TrafficError(f"{partition}: column request_id has {duplicates} duplicate rows")
    hashes = np.concatenate([p.hashes for p in parts])
    labels = np.concatenate([p.labels for p in parts])
    offsets = np.cumsum([0] + [len(p.files) for p in parts])
    index = np.concatenate([p.file_index + offset for p, offset in zip(parts, offsets)])
    threshold = _thresholds(hashes, labels, n, stratify, total)
    keep = hashes <= threshold[labels]
    files = tuple(f for p in parts for f in p.files)
    in_rows = np.concatenate([p.rows for p in parts])
    part = np.concatenate([np.full(len(p.hashes), i, np.int32) for i, p in enumerate(parts)])
    position = np.concatenate([np.arange(len(p.hashes)) for p in parts])
    tables = tuple(p.table for p in parts) if all(p.table or not len(p.hashes) for p in parts) else ()
    return Chosen(
        files, rows, hashes[keep], labels[keep], index[keep], in_rows[keep], part[keep], position[keep], tables
    )


def _thresholds(hashes: np.ndarray, labels: np.ndarray, n: int, stratify: bool, total: Counts) -> np.ndarray:
    """Per-label hash thresholds (index 0: negatives, 1: positives), from the
    candidates and the day's counts: the same as over every hash of the day."""
    if n >= total.rows:
        return np.array([TOP, TOP], np.uint64)
    if not stratify:
        return np.array([np.partition(hashes, n - 1)[n - 1]] * 2, np.uint64)
    out = np.zeros(2, np.uint64)
    wanted = {1: int(round(n * total.positives / total.rows))}
    wanted[0] = n - wanted[1]
    present = {1: total.positives, 0: total.rows - total.positives}
    for label in (0, 1):
        k = min(wanted[label], present[label])
        if k > 0:
            out[label] = np.partition(hashes[labels == label], k - 1)[k - 1]  # (else 0: a hash of 0, 2**-64)
    return out


def count_duplicates(paths: list[str], bucket_rows: int = BUCKET_ROWS) -> int:
    """Equal hashes over several groups' sorted hash files (memory-mapped), one
    range of hash values at a time: the count one sort of the whole day gives."""
    arrays = [np.load(path, mmap_mode="r") for path in paths]
    buckets = max(1, -(-sum(len(a) for a in arrays) // bucket_rows))
    found = 0
    for b in range(buckets):
        lo, hi = (b << 64) // buckets, ((b + 1) << 64) // buckets
        pieces = [
            a[np.searchsorted(a, np.uint64(lo)) : len(a) if b == buckets - 1 else np.searchsorted(a, np.uint64(hi))]
            for a in arrays
        ]
        merged = np.sort(np.concatenate(pieces), kind="stable")  # (runs already sorted: merged, not sorted anew)
        found += int(np.count_nonzero(merged[1:] == merged[:-1]))
    return found


def save(part: Candidates, path: str | Path) -> None:
    """A group's candidates as one .npz (for the merge, maybe on another worker)."""
    meta = {
        "files": list(part.files),
        "counts": asdict(part.counts),
        "sorted_hashes": part.sorted_hashes,
        "table": part.table,
    }
    with open(path, "wb") as handle:
        np.savez(
            handle,
            meta=np.array(json.dumps(meta)),
            hashes=part.hashes,
            labels=part.labels,
            file_index=part.file_index,
            rows=part.rows,
        )


def load(path: str | Path) -> Candidates:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        return Candidates(
            tuple(meta["files"]),
            Counts(**meta["counts"]),
            data["hashes"],
            data["labels"],
            data["file_index"],
            data["rows"],
            meta["sorted_hashes"],
            meta.get("table", ""),
        )
