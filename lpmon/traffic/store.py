"""The traffic store: Parquet partitioned by day (date=YYYY-MM-DD/), local or any pyarrow filesystem."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .schema import EmptyDay, MissingDay, TrafficError

# What a damaged file can raise while its footer or pages are decoded (a
# flipped byte in a column name surfaces as a UnicodeDecodeError, a ValueError).
UNREADABLE = (pa.ArrowException, OSError, ValueError)


def as_day(day) -> dt.date:
    if isinstance(day, dt.datetime):
        return day.date()
    if isinstance(day, dt.date):
        return day
    try:
        return dt.date.fromisoformat(str(day))
    except ValueError:
        raise ValueError(f"not a date (YYYY-MM-DD): {day!r}") from None


class TrafficStore:
    """Days of labelled traffic under one root (a path, or a URI such as s3://bucket/prefix)."""

    def __init__(self, uri: str | Path):
        uri = str(uri)
        if "://" in uri:
            self.filesystem, self.root = pafs.FileSystem.from_uri(uri)
        else:
            self.filesystem, self.root = pafs.LocalFileSystem(), str(Path(uri).resolve())
        self.uri = uri

    def partition(self, day) -> str:
        return f"{self.root}/date={as_day(day).isoformat()}"

    def days(self) -> list[dt.date]:
        selector = pafs.FileSelector(self.root, allow_not_found=True)
        days = []
        for info in self.filesystem.get_file_info(selector):
            name = info.base_name
            if info.type == pafs.FileType.Directory and name.startswith("date="):
                try:
                    days.append(dt.date.fromisoformat(name[5:]))
                except ValueError:
                    continue
        return sorted(days)

    def files(self, day) -> list[str]:
        partition = self.partition(day)
        info = self.filesystem.get_file_info(partition)
        if info.type != pafs.FileType.Directory:
            raise MissingDay(f"{partition}: no traffic for {as_day(day)}")
        selector = pafs.FileSelector(partition, recursive=True)
        return sorted(
            i.path
            for i in self.filesystem.get_file_info(selector)
            if i.type == pafs.FileType.File and i.path.endswith(".parquet")
        )

    def write_day(self, day, table: pa.Table, rows_per_file: int = 1_000_000, row_group_rows: int = 65_536) -> str:
        """Write (or replace) a day's partition from one table (see day_writer)."""
        with self.day_writer(day, rows_per_file, row_group_rows) as writer:
            writer.write(table)
        return writer.partition

    @contextlib.contextmanager
    def day_writer(self, day, rows_per_file: int = 1_000_000, row_group_rows: int = 65_536):
        """A DayWriter that writes (or replaces) a day's partition from tables written
        one after another, each written out as it comes (constant memory). Files land
        in a temporary directory moved into place when the block ends, so readers never
        see half a day; if the block raises, nothing is published. Small row groups keep
        the memory of a streamed read small."""
        partition = self.partition(day)
        staging = f"{self.root}/.staging-{uuid.uuid4().hex}"
        self.filesystem.create_dir(staging, recursive=True)
        writer = DayWriter(self.filesystem, staging, partition, rows_per_file, row_group_rows)
        try:
            yield writer
            writer.close()
        except BaseException:
            writer.close()
            self.filesystem.delete_dir(staging)
            raise
        if self.filesystem.get_file_info(partition).type != pafs.FileType.NotFound:
            self.filesystem.delete_dir(partition)
        self.filesystem.move(staging, partition)

    def row_count(self, day) -> int:
        """Rows of the day, from the files' footers (no data read)."""
        total = 0
        for path in self.files(day):
            try:
                total += pq.ParquetFile(self.filesystem.open_input_file(path)).metadata.num_rows
            except UNREADABLE as err:
                raise TrafficError(f"{path}: unreadable Parquet ({err})") from None
        return total

    def open(self, path: str) -> pq.ParquetFile:
        """One file of the store, its footer read (an unreadable file is a TrafficError naming it)."""
        try:
            return pq.ParquetFile(self.filesystem.open_input_file(path))
        except UNREADABLE as err:
            raise TrafficError(f"{path}: unreadable Parquet ({err})") from None

    def read_rows(self, path: str, rows, columns: list[str] | None = None) -> pa.Table:
        """Some rows (ascending indices) of one file, with its columns among columns
        (None: all): each row group holding some is read whole (Parquet's smallest
        unit here, one at a time) and the rows taken from it."""
        handle = self.open(path)
        meta = handle.metadata
        present = None if columns is None else [c for c in columns if c in handle.schema_arrow.names]
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

    def batches(self, day, columns: list[str], batch_size: int = 65_536):
        """Record batches of the day's columns, file by file (bounded memory)."""
        for _, batch in self.file_batches(day, columns, batch_size):
            yield batch

    def file_batches(self, day, columns: list[str], batch_size: int = 65_536):
        """(file path, record batch) of the day's columns present in each file, file by file."""
        files = self.files(day)
        if not files:
            raise EmptyDay(f"{self.partition(day)}: the partition holds no Parquet files")
        for path in files:
            try:
                handle = pq.ParquetFile(self.filesystem.open_input_file(path))
                present = [c for c in columns if c in handle.schema_arrow.names]
                for batch in handle.iter_batches(batch_size=batch_size, columns=present):
                    yield path, batch
            except UNREADABLE as err:
                raise TrafficError(f"{path}: unreadable Parquet ({err})") from None

    def schema(self, day) -> pa.Schema:
        """The first file's schema (see schemas for every file's)."""
        return self.schemas(day)[0][1]

    def schemas(self, day) -> list[tuple[str, pa.Schema]]:
        """(path, schema) of every file of the day, from the footers (no data read)."""
        files = self.files(day)
        if not files:
            raise EmptyDay(f"{self.partition(day)}: the partition holds no Parquet files")
        out = []
        for path in files:
            try:
                out.append((path, pq.ParquetFile(self.filesystem.open_input_file(path)).schema_arrow))
            except UNREADABLE as err:
                raise TrafficError(f"{path}: unreadable Parquet ({err})") from None
        return out


class DayWriter:
    """Parquet files of one day's staging directory, written table by table: a new file
    every rows_per_file rows, row groups of row_group_rows (see TrafficStore.day_writer)."""

    def __init__(self, filesystem, staging: str, partition: str, rows_per_file: int, row_group_rows: int):
        self.filesystem, self.staging, self.partition = filesystem, staging, partition
        self.rows_per_file, self.row_group_rows = rows_per_file, row_group_rows
        self.files, self.rows, self._in_file = 0, 0, 0
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        start = 0
        while start < table.num_rows or self._writer is None:  # an empty day is one empty file
            writer = self._writer
            if writer is None or self._in_file >= self.rows_per_file:
                writer = self._next_file(table.schema)
            take = min(table.num_rows - start, self.rows_per_file - self._in_file)
            writer.write_table(table.slice(start, take), row_group_size=self.row_group_rows)
            start, self._in_file, self.rows = start + take, self._in_file + take, self.rows + take

    def _next_file(self, schema: pa.Schema) -> pq.ParquetWriter:
        self.close()
        path = f"{self.staging}/part-{self.files:05d}.parquet"
        self._writer = pq.ParquetWriter(path, schema, filesystem=self.filesystem)
        self.files, self._in_file = self.files + 1, 0
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
