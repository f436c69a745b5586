"""A 10M-example day is sampled and scored in bounded memory: the peak of
`lpmon run` on a 10M-row day stays within a small margin of its peak on a
1M-row day with the same sample size (the reader streams the day in row
groups; only hashes and labels of the whole day are held, 9 bytes a row).
Prints both peaks and times.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lpmon.traffic import TrafficStore
from lpmon.store import init_store
from lpmon.demo.world import WorldConfig, write_world

pytestmark = [pytest.mark.slow, pytest.mark.faults]

DAY, MODEL, BASE_ROWS = "2026-11-01", "stable", 100_000
MEASURE = ("import json, resource, sys, time; from lpmon.cli import main; t = time.perf_counter(); "
           "rc = main(sys.argv[1:]); print(json.dumps({'peak_mib': resource.getrusage(resource.RUSAGE_SELF)"
           ".ru_maxrss / 1024, 'seconds': time.perf_counter() - t})); sys.exit(rc)")


def write_big_day(root: Path, base: pa.Table, copies: int, per_file: int = 10) -> None:
    """`copies` copies of the base day with fresh request ids, written file by file."""
    partition = Path(TrafficStore(root).partition(DAY))
    partition.mkdir(parents=True)
    ids = base.schema.get_field_index("request_id")
    for start in range(0, copies, per_file):
        parts = [base.set_column(ids, "request_id", pc.add(base.column("request_id"), k * base.num_rows))
                 for k in range(start, min(copies, start + per_file))]
        pq.write_table(pa.concat_tables(parts), partition / f"part-{start // per_file:05d}.parquet",
                       row_group_size=65_536)


def run_measured(config: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, "run", "--config", str(config), "--model", MODEL,
                          "--date", DAY], capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_10m_example_day_is_sampled_and_scored_in_bounded_memory(tmp_path):
    write_world(tmp_path / "world", WorldConfig(MODEL, days=1, seed=5, examples_per_day=BASE_ROWS))
    base = pa.concat_tables(pq.read_table(f) for f in TrafficStore(tmp_path / "world" / "traffic" / MODEL).files(DAY))
    peaks = {}
    for rows in (1_000_000, 10_000_000):
        root = tmp_path / f"day-{rows}"
        started = time.perf_counter()
        write_big_day(root / "traffic", base, rows // BASE_ROWS)
        written = time.perf_counter() - started
        config = root / "lpmon.toml"
        config.write_text(f'store = "sqlite:///{root / "state.db"}"\n[defaults]\nsample_size = 100000\n\n'
                          f'[models.{MODEL}]\ntraffic = "{root / "traffic"}"\n'
                          f'snapshot = "{tmp_path / "world" / "models" / MODEL / "snapshot"}"\n')
        init_store(f"sqlite:///{root / 'state.db'}")
        assert TrafficStore(root / "traffic").row_count(DAY) == rows
        peaks[rows] = dict(run_measured(config), written_s=round(written, 1))
        status = subprocess.run([sys.executable, "-m", "lpmon.cli", "status", "--config", str(config), "--json"],
                                capture_output=True, text=True, check=True).stdout
        assert '"HEALTHY"' in status or '"WARN"' in status, status
    print("\nbig day (sample 100k): " + "; ".join(
        f"{rows:,} rows: peak {p['peak_mib']:.0f} MiB, run {p['seconds']:.0f} s (written in {p['written_s']} s)"
        for rows, p in peaks.items()))
    # 9M more rows may cost their hashes and labels (81 MB) and allocator slack, not the rows themselves.
    assert peaks[10_000_000]["peak_mib"] < peaks[1_000_000]["peak_mib"] + 256, peaks
