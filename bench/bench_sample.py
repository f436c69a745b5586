"""Sampling a day: wall time, CPU time and peak RSS, per day size, side by side.

A narrow schema (4 dense float32, 2 one-hot and 2 multi-hot sparse columns, ts,
label, int64 request ids) written as Parquet files of 1M rows in row groups of
65,536 (the store's default), then sampled at the default sample size, each
measurement in a fresh process: today's sampler (ids and labels of the day,
then the sampled rows' columns); the sampler that read every column of every
row (tests/support/sample_reference.py, with --reference); and the day split in
file groups of 2M rows (each group's pass 1 and its candidates' rows in its own
process, as on workers, then the merge). The data is written under --dir (a temporary folder by
default) and removed at the end.

    python bench/bench_sample.py [--rows 1000000,10000000] [--reference] [--split]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
DAY, N, SEED = "2026-11-01", 200_000, 0
TABLE_ROWS = (1_000_000, 100_000, 500_000, 50_000)  # sparse_0..3
FILE_ROWS, GROUP_ROWS, SPLIT_ROWS = 1_000_000, 65_536, 2_000_000


def write_day(root: Path, rows: int) -> None:
    partition = root / f"date={DAY}"
    partition.mkdir(parents=True)
    rng = np.random.default_rng(rows)
    for index, start in enumerate(range(0, rows, FILE_ROWS)):
        n = min(FILE_ROWS, rows - start)
        lengths = rng.integers(0, 6, n)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        table = {
            "request_id": np.arange(start, start + n, dtype=np.int64) * 7919 + 13,
            "ts": pa.array(np.datetime64("2026-11-01T00:00:00") + rng.integers(0, 86_400, n).astype("timedelta64[s]")),
            "label": (rng.random(n) < 0.03).astype(np.int8),
        }
        for d in range(4):
            table[f"dense_{d}"] = rng.normal(size=n).astype(np.float32)
        for s, table_rows in enumerate(TABLE_ROWS):
            ids = rng.zipf(1.2, n if s < 2 else int(offsets[-1])) % table_rows
            table[f"sparse_{s}"] = ids if s < 2 else pa.ListArray.from_arrays(offsets, ids)
        pq.write_table(pa.table(table), partition / f"part-{index:05d}.parquet", row_group_size=GROUP_ROWS)


def schema():
    from lpmon.traffic import TrafficSchema

    return TrafficSchema(tuple(f"dense_{d}" for d in range(4)), tuple(f"sparse_{s}" for s in range(4)), TABLE_ROWS)


def measure(root: str, what: str, group: int = -1) -> None:
    """One measurement in this process; prints seconds, CPU seconds, peak RSS (MiB)."""
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    from lpmon.traffic import TrafficStore
    from lpmon.traffic import split as bottomk
    from lpmon.traffic.sample import from_candidates, sample

    store = TrafficStore(root)
    started, cpu = time.perf_counter(), time.process_time()
    if what == "reference":
        from support.sample_reference import sample as reference

        drawn = reference(store, DAY, N, SEED, schema())
    elif what == "new":
        drawn = sample(store, DAY, N, SEED, schema())
    elif what == "part":
        files = bottomk.file_groups(store, store.files(DAY), SPLIT_ROWS)[group]
        part = bottomk.draw_candidates(
            store, files, N, SEED, spill=f"{root}/../part-{group}.npy", rows_to=f"{root}/../part-{group}.arrow"
        )
        bottomk.save(part, f"{root}/../part-{group}.npz")
        drawn = None
    else:  # merge
        groups = len(bottomk.file_groups(store, store.files(DAY), SPLIT_ROWS))
        parts = [bottomk.load(f"{root}/../part-{g}.npz") for g in range(groups)]
        drawn = from_candidates(store, DAY, parts, N, SEED, schema())
    out = {
        "seconds": time.perf_counter() - started,
        "cpu": time.process_time() - cpu,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ids": None if drawn is None else int(np.asarray(drawn.request_ids[:1000], np.int64).sum()),
    }
    print(json.dumps(out))


def run(root: Path, what: str, group: int = -1) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", str(root), what, str(group)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="1000000,10000000")
    parser.add_argument("--reference", action="store_true", help="also the sampler that read every row")
    parser.add_argument("--split", action="store_true", help="also the day in file groups of 2M rows")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="lpmon-bench-sample-", dir=args.dir))
    print(f"{'rows':>11} {'sampler':<22} {'wall s':>8} {'cpu s':>8} {'peak MiB':>9}  (sample {N:,}; data {base})")
    try:
        for rows in [int(r) for r in args.rows.split(",")]:
            root = base / f"day-{rows}" / "traffic"
            write_day(root, rows)
            size = sum(f.stat().st_size for f in root.rglob("*.parquet")) / 2**20
            results = {"two passes (today)": run(root, "new")}
            if args.reference:
                results["every row (before)"] = run(root, "reference")
                assert results["every row (before)"]["ids"] == results["two passes (today)"]["ids"]
            if args.split and rows > SPLIT_ROWS:
                groups = -(-rows // SPLIT_ROWS)
                parts = [run(root, "part", g) for g in range(groups)]
                merged = run(root, "merge")
                assert merged["ids"] == results["two passes (today)"]["ids"]
                results[f"split: {groups} parts, max"] = {
                    k: max(p[k] for p in parts) for k in ("seconds", "cpu", "peak_mib")
                }
                results["split: merge"] = merged
            for name, r in results.items():
                figures = f"{r['seconds']:8.2f} {r['cpu']:8.2f} {r['peak_mib']:9.0f}"
                print(f"{rows:>11,} {name:<22} {figures}  ({size:,.0f} MiB)")
            shutil.rmtree(base / f"day-{rows}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        measure(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
