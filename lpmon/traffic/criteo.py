"""Import the Criteo display-advertising TSV format into the traffic store.

Each line: label, 13 integer features, 26 hashed categorical features (hex),
tab-separated, empty when missing. Dense values as DLRM feeds them: integers below 0
become 0, then log(x + 1) as float32 (missing: 0). Categories become DLRM's own ids
when DLRM's dictionaries are given (see dlrm_vocabulary), else they are hashed into
each table's rows (id 0 is kept for a missing category). Streams: each chunk of lines
is converted and written out before the next is read, so memory stays constant
whatever the file's size.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import itertools
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from .dlrm_vocabulary import DlrmVocabulary
from .schema import TrafficError
from .store import TrafficStore, as_day

N_DENSE, N_SPARSE = 13, 26
COLUMNS = ["label"] + [f"I{i}" for i in range(1, N_DENSE + 1)] + [f"C{i}" for i in range(1, N_SPARSE + 1)]


HEX_ID = r"[0-9a-fA-F]{1,16}"  # a hashed category: up to 64 bits of hex, nothing else
INTEGER = r"-?[0-9]{1,18}"  # an integer feature (negative values occur; they become 0)


def _malformed(values: pd.Series, pattern: str) -> np.ndarray:
    """Rows whose (present) value does not match the pattern exactly."""
    return (values.notna() & ~values.str.fullmatch(pattern, na=True)).to_numpy()


def _hashes(values: pd.Series, path: str, column: str, first_line: int) -> np.ndarray:
    """The hashed categories as unsigned integers (a missing one is 0, as DLRM reads it)."""
    bad = np.flatnonzero(_malformed(values, HEX_ID))
    if bad.size:
        raise TrafficError(f"{path}:{first_line + bad[0]}: column {column} is not a hex id: {values.iloc[bad[0]]!r}")
    hashes = np.zeros(len(values), dtype=np.uint64)
    present = values.notna().to_numpy()
    if present.any():
        hashes[present] = np.array([int(v, 16) for v in values[present]], dtype=np.uint64)
    return hashes


@dataclass
class CriteoImport:
    """What an import did: rows written, each table's rows, and per sparse column the
    values outside the DLRM vocabulary (mapped to unknown_row)."""

    rows: int
    table_rows: tuple[int, ...]
    unknown: dict[str, int] = field(default_factory=dict)
    unknown_row: int = 0


class _Ids:
    """Categories to ids: DLRM's dictionaries, or hashing into each table's rows."""

    def __init__(
        self,
        table_rows: int | Sequence[int],
        vocabulary: DlrmVocabulary | None,
        unknown_row: int,
        refuse_unknown: bool,
    ):
        self.rows: tuple[int, ...]
        if vocabulary is not None:
            self.rows = vocabulary.rows
        else:
            rows = (table_rows,) * N_SPARSE if isinstance(table_rows, int) else tuple(table_rows)
            if len(rows) == 1:
                rows = rows * N_SPARSE
            if len(rows) != N_SPARSE:
                raise ValueError(f"table_rows: {len(rows)} sizes given, expected 1 or {N_SPARSE}")
            if min(rows) < 2:
                raise ValueError(f"table_rows must be at least 2, got {min(rows)}")
            self.rows = rows
        if vocabulary is not None and not 0 <= unknown_row < min(self.rows):
            raise ValueError(f"unknown_row {unknown_row} is outside the smallest table ({min(self.rows)} rows)")
        self.vocabulary, self.unknown_row, self.refuse_unknown = vocabulary, unknown_row, refuse_unknown
        self.unknown: dict[str, int] = {}

    def __call__(self, values: pd.Series, j: int, path: str, first_line: int) -> np.ndarray:
        column = f"C{j + 1}"
        hashes = _hashes(values, path, column, first_line)
        if self.vocabulary is None:
            ids = 1 + (hashes % np.uint64(self.rows[j] - 1)).astype(np.int64)
            return np.where(values.notna().to_numpy(), ids, 0)
        ids, known = self.vocabulary.ids(j, hashes)
        missing = np.flatnonzero(~known)
        if missing.size:
            if self.refuse_unknown:
                raise TrafficError(
                    f"{path}:{first_line + missing[0]}: column {column} value {values.iloc[missing[0]]!r} is not in "
                    f"{self.vocabulary.prefix}_fea_dict_{j}.npz ({missing.size} such rows in this chunk)"
                )
            self.unknown[f"sparse_{j}"] = self.unknown.get(f"sparse_{j}", 0) + int(missing.size)
            ids[missing] = self.unknown_row
        return ids


def import_criteo(
    tsv: str | Path,
    store: TrafficStore,
    day,
    *,
    table_rows: int | Sequence[int] = 100_000,
    vocabulary: DlrmVocabulary | None = None,
    unknown_row: int = 0,
    refuse_unknown: bool = False,
    chunk_rows: int = 100_000,
    first_request_id: int = 0,
    progress=sys.stderr,
) -> CriteoImport:
    """Import one TSV file as the day's partition, chunk by chunk (nothing is published
    if a line is refused). table_rows: one size for all 26 tables or one per table
    (ignored with a vocabulary, whose sizes are the tables'); vocabulary: DLRM's
    dictionaries, whose ids the import then gives; a value outside them is mapped to
    unknown_row and counted, or refused with refuse_unknown."""
    ids = _Ids(table_rows, vocabulary, unknown_row, refuse_unknown)
    day = as_day(day)
    path = str(tsv)
    midnight = np.datetime64(dt.datetime.combine(day, dt.time()), "s")
    rows = 0
    handle = _open_text(path)
    terminal = progress is not None and getattr(progress, "isatty", lambda: False)()
    with handle, store.day_writer(day) as writer:
        while True:
            try:
                lines = list(itertools.islice(handle, chunk_rows))
            except UnicodeDecodeError as err:
                raise TrafficError(f"{path}: not UTF-8 text near line {rows + 1} ({err.reason})") from None
            except (OSError, EOFError, zlib.error) as err:  # a damaged or truncated .gz
                raise TrafficError(f"{path}: not a readable gzip file near line {rows + 1} ({err})") from None
            if not lines:
                break
            first_line = rows + 1
            # Every line has 40 fields, empty ones included: pandas would pad short lines.
            for offset, line in enumerate(lines):
                if line.count("\t") != len(COLUMNS) - 1:
                    raise TrafficError(
                        f"{path}:{first_line + offset}: {line.count(chr(9)) + 1} "
                        f"tab-separated fields, expected {len(COLUMNS)}"
                    )
            chunk = pd.read_csv(
                io.StringIO("".join(lines)),
                sep="\t",
                header=None,
                names=COLUMNS,
                dtype={c: str for c in COLUMNS},
                engine="c",
                quoting=csv.QUOTE_NONE,
                keep_default_na=False,
                na_values=[""],
            )
            del lines
            writer.write(_convert(chunk, path, first_line, ids, first_request_id + rows, midnight))
            rows += len(chunk)
            if progress is not None:  # one line per chunk off a terminal, a line redrawn on one
                print(
                    f"{chr(13) if terminal else ''}import-criteo {Path(path).name}: {rows:,} rows",
                    end="" if terminal else "\n",
                    file=progress,
                    flush=True,
                )
        if terminal:
            print(file=progress)
        if rows == 0:
            raise TrafficError(f"{path}: no rows")
    return CriteoImport(rows, ids.rows, ids.unknown, unknown_row)


def _open_text(path: str):
    """The TSV as UTF-8 text: `-` is standard input; a name ending in .gz is gunzipped
    (Criteo ships its day files gzipped)."""
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="strict")
    try:
        if path.endswith(".gz"):
            return gzip.open(path, "rt", encoding="utf-8", errors="strict")
        return open(path, encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise TrafficError(f"{path}: no such file") from None


def _convert(chunk: pd.DataFrame, path, first_line, ids: _Ids, first_id, midnight) -> pa.Table:
    n = len(chunk)
    label = pd.to_numeric(chunk["label"], errors="coerce")
    bad = np.flatnonzero(~label.isin([0, 1]).to_numpy())
    if bad.size:
        raise TrafficError(
            f"{path}:{first_line + bad[0]}: column label must be 0 or 1, got "
            f"{chunk['label'].iloc[bad[0]]!r} ({bad.size} such rows in this chunk)"
        )
    data = {
        "request_id": np.arange(first_id, first_id + n, dtype=np.int64),
        "ts": pa.array(np.full(n, midnight)),
        "label": label.to_numpy().astype(np.int8),
    }
    for i in range(N_DENSE):
        column = f"I{i + 1}"
        malformed = np.flatnonzero(_malformed(chunk[column], INTEGER))
        if malformed.size:
            raise TrafficError(
                f"{path}:{first_line + malformed[0]}: column {column} is not an integer: "
                f"{chunk[column].iloc[malformed[0]]!r}"
            )
        values = pd.to_numeric(chunk[column]).fillna(0).to_numpy(dtype=np.float64)
        # As DLRM feeds them: negatives to 0, then log(x + 1), correctly rounded to float32
        # (DLRM's torch.log in float32 is within one unit in the last place of it).
        data[f"dense_{i}"] = np.log1p(np.maximum(values, 0)).astype(np.float32)
    for i in range(N_SPARSE):
        data[f"sparse_{i}"] = ids(chunk[f"C{i + 1}"], i, path, first_line)
    return pa.table(data)
