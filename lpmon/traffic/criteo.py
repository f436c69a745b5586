"""Import the Criteo display-advertising TSV format into the traffic store.

Each line: label, 13 integer features, 26 hashed categorical features (hex),
tab-separated, empty when missing. DLRM's preprocessing: integers below 0
become 0, then log(1 + x) (missing: 0); categories are hashed into the table
sizes (id 0 is kept for a missing category). Streams in chunks.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import itertools
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from .schema import TrafficError
from .store import TrafficStore, as_day

N_DENSE, N_SPARSE = 13, 26
COLUMNS = ["label"] + [f"I{i}" for i in range(1, N_DENSE + 1)] + [f"C{i}" for i in range(1, N_SPARSE + 1)]


HEX_ID = r"[0-9a-fA-F]{1,16}"  # a hashed category: up to 64 bits of hex, nothing else
INTEGER = r"-?[0-9]{1,18}"  # an integer feature (negative values occur; they become 0)


def _malformed(values: pd.Series, pattern: str) -> np.ndarray:
    """Rows whose (present) value does not match the pattern exactly."""
    return (values.notna() & ~values.str.fullmatch(pattern, na=True)).to_numpy()


def _hash_ids(values: pd.Series, rows: int, path: str, column: str, first_line: int) -> np.ndarray:
    ids = np.zeros(len(values), dtype=np.int64)
    bad = np.flatnonzero(_malformed(values, HEX_ID))
    if bad.size:
        raise TrafficError(f"{path}:{first_line + bad[0]}: column {column} is not a hex id: {values.iloc[bad[0]]!r}")
    present = values.notna().to_numpy()
    if present.any():
        parsed = np.array([int(v, 16) for v in values[present]], dtype=np.uint64)
        ids[present] = 1 + (parsed % np.uint64(rows - 1)).astype(np.int64)
    return ids


def import_criteo(
    tsv: str | Path,
    store: TrafficStore,
    day,
    *,
    table_rows: int = 100_000,
    chunk_rows: int = 500_000,
    first_request_id: int = 0,
    progress=sys.stderr,
) -> int:
    """Import one TSV file as the day's partition; returns the number of rows."""
    if table_rows < 2:
        raise ValueError(f"table_rows must be at least 2, got {table_rows}")
    day = as_day(day)
    path = str(tsv)
    midnight = np.datetime64(dt.datetime.combine(day, dt.time()), "s")
    parts, rows = [], 0
    handle = _open_text(path)
    terminal = progress is not None and getattr(progress, "isatty", lambda: False)()
    with handle:
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
            parts.append(_convert(chunk, path, first_line, table_rows, first_request_id + rows, midnight))
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
    store.write_day(day, pa.concat_tables(parts))
    return rows


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


def _convert(chunk: pd.DataFrame, path, first_line, table_rows, first_id, midnight) -> pa.Table:
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
        values = pd.to_numeric(chunk[column])
        x = np.maximum(values.fillna(0).to_numpy(dtype=np.float64), 0)
        data[f"dense_{i}"] = np.log1p(x).astype(np.float32)
    for i in range(N_SPARSE):
        data[f"sparse_{i}"] = _hash_ids(chunk[f"C{i + 1}"], table_rows, path, f"C{i + 1}", first_line)
    return pa.table(data)
