"""Benchmark: a monitored day's cost follows the sample, not the model or the day.

    python bench/bench_scale.py [--rows 100000 2000000 8000000] [--samples 200000 20000]
                                [--day-rows 1000000 10000000 50000000] [--work DIR]
    LPMON_BENCH_HUGE=1 python bench/bench_scale.py     # also a model larger than the machine's memory

Part 1, table sizes. For each table size (8 tables x R rows x 64 dims, 1x / 20x / 80x), `lpmon world`
writes a world (2 days), a child process deploys an all-int8 plan calibrated on day 1 (forced, as
bench_pipeline does: onboarding's search is not what is measured) and another child runs day 2
with lpmon.pipeline.run_day, once per sample size. Printed per run: wall and CPU time, the peak of
anonymous memory (RssAnon, polled from /proc every 10 ms), the peak of file pages (RssFile: the
mapped snapshot's pages, which the kernel may drop), the snapshot's size on disk and the day's
verdict. Targets (issue 27): peak RssAnon within 1.25x across table sizes and at most 1.5 GiB at
the default sample size; wall time within 2x across table sizes.

Part 2, day sizes. A narrow world (2 tables, 13 dense features) whose day 2 is replaced by N
rows of traffic (1M / 10M / 50M, in files of at most 2M rows); day 2 is run at the default sample
size. Printed: the sample step's and the score step's time, wall, CPU and RssAnon. Target: the
sample step at 50M rows at most the score step's time.

Everything runs in the one invocation, side by side; nothing here is a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from timing import machine_banner

GiB = 2**30
TARGET_MEMORY_SPREAD, TARGET_ANON_GIB, TARGET_WALL_SPREAD = 1.25, 1.5, 2.0
DAY1, DAY2 = "2026-11-01", "2026-11-02"

# Deploys an all-int8 plan calibrated on day 1's first 20,000 examples (forced: daily runs are measured).
DEPLOY = r"""
import sys
from pathlib import Path
from lpmon.config import load
from lpmon.store import init_store
from lpmon.model import load_snapshot
from lpmon.pipeline.context import begin, draw
from lpmon.pipeline.assembly import Ranges, assemble, units
from lpmon.pipeline.lifecycle import Origin, PlanLifecycle

root, model_id = Path(sys.argv[1]), sys.argv[2]
config = load(root / "lpmon.toml", environ={})
init_store(config.store)
_, settings, store = begin(config, model_id, sys.argv[3])
model = load_snapshot(settings.snapshot)
sample = draw(settings, model, sys.argv[3], 20_000)
plan = assemble(model, Ranges.calibrate(model, sample.batch), {u: "int8" for u in units(model)}, model_id=model_id)
lifecycle = PlanLifecycle(store, model_id)
version = lifecycle.store_candidate(plan, sys.argv[3], Origin.USER)
lifecycle.propose(plan, sys.argv[3], Origin.USER, None, expected_active=None, forced=True, stored=version)
"""

# One monitored day, alone in its process (so its memory is the day's own).
RUN = r"""
import dataclasses, datetime as dt, json, resource, sys, time
from pathlib import Path
from lpmon.config import load
from lpmon.pipeline import open_store, run_day

root, model_id, day, n = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
config = load(root / "lpmon.toml", environ={})
config.models[model_id] = dataclasses.replace(config.models[model_id], sample_size=n)
cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
t, c = time.perf_counter(), cpu()
result = run_day(config, model_id, dt.date.fromisoformat(day))
wall, cpu_s = time.perf_counter() - t, cpu() - c
run = [r for r in open_store(config).rows("runs", model_id) if r["logical_date"] == day][0]
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_s": wall, "cpu_s": cpu_s, "status": result.status,
                  "steps": json.loads(run["timings_json"]), "maxrss_gib": usage.ru_maxrss / 2**20}))
"""

# Day 2 replaced by N rows of the same columns, written in files of at most 2M rows.
WIDE_DAY = r"""
import sys
from pathlib import Path
import numpy as np, pyarrow as pa, pyarrow.parquet as pq

partition, rows, table_rows = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
schema = pq.read_schema(next(partition.glob("*.parquet")))
for old in partition.glob("*.parquet"):
    old.unlink()
rng = np.random.default_rng(7)
per_file, start = 2_000_000, 0
while start < rows:
    n = min(per_file, rows - start)
    columns = {}
    for field in schema:
        name = field.name
        if name == "request_id":
            columns[name] = pa.array(np.arange(start, start + n, dtype=np.int64))
        elif name == "label":
            columns[name] = pa.array((rng.random(n) < 0.04).astype(field.type.to_pandas_dtype()))
        elif name == "ts":
            noon = np.full(n, np.datetime64("2026-11-02T12:00:00"), dtype="datetime64[us]")
            columns[name] = pa.array(noon).cast(field.type)
        elif name.startswith("dense_"):
            columns[name] = pa.array(rng.normal(0, 1, n).astype(np.float32))
        elif pa.types.is_list(field.type):
            ids = np.minimum(rng.pareto(1.2, n).astype(np.int64), table_rows - 1)
            columns[name] = pa.ListArray.from_arrays(np.arange(n + 1, dtype=np.int32), pa.array(ids))
        else:
            columns[name] = pa.array(np.minimum(rng.pareto(1.2, n).astype(np.int64), table_rows - 1))
    pq.write_table(pa.table(columns).cast(schema), partition / f"part-{start // per_file:04d}.parquet",
                   row_group_size=250_000)
    start += n
"""


class Watch:
    """Peak RssAnon and RssFile of a running process, polled from /proc every 10 ms."""

    def __init__(self, pid: int):
        self.pid, self.anon, self.file = pid, 0, 0
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        path = f"/proc/{self.pid}/status"
        while True:
            try:
                with open(path) as f:
                    status = f.read()
            except OSError:
                return
            for line in status.splitlines():
                if line.startswith("RssAnon:"):
                    self.anon = max(self.anon, int(line.split()[1]) * 1024)
                elif line.startswith("RssFile:"):
                    self.file = max(self.file, int(line.split()[1]) * 1024)
            time.sleep(0.01)

    def join(self):
        self._thread.join(timeout=1)


def child(script: str, *args) -> dict:
    """Run a script in a fresh interpreter; its last stdout line (JSON) plus the watched peaks."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    watch = Watch(proc.pid)
    out, err = proc.communicate()
    watch.join()
    if proc.returncode:
        raise SystemExit(f"benchmark child failed ({args}):\n{err[-3000:]}")
    lines = out.strip().splitlines()
    result = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    return {**result, "anon_gib": watch.anon / GiB, "file_gib": watch.file / GiB}


def lpmon(*args) -> dict:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lpmon"), *map(str, args), "--json", "--quiet"],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"lpmon {' '.join(map(str, args))} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def write_world(root: Path, tables: int, rows: int, dim: int, examples: int) -> tuple[Path, float]:
    """A two-day stable world; returns its root and the seconds the writing took."""
    start = time.perf_counter()
    lpmon(
        "world",
        "--root",
        root,
        "--scenario",
        "stable",
        "--days",
        2,
        "--start",
        DAY1,
        "--model-id",
        "scale",
        "--tables",
        tables,
        "--table-rows",
        rows,
        "--dim",
        dim,
        "--examples-per-day",
        examples,
    )
    return root, time.perf_counter() - start


def disk_gib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / GiB


def table_sizes(args, work: Path) -> None:
    rows_list = list(args.rows) + ([16_000_000] if os.environ.get("LPMON_BENCH_HUGE") == "1" else [])
    print(
        f"\n1. table sizes: {args.tables} tables x R rows x {args.dim} dims, one monitored day (day 2) "
        "under a deployed all-int8 plan"
    )
    print(
        f"{'rows/table':>11} {'snapshot GiB':>13} {'sample':>8} {'wall s':>8} {'cpu s':>8} {'RssAnon GiB':>12} "
        f"{'RssFile GiB':>12} {'sample s':>9} {'score s':>8} {'verdict':>10}"
    )
    results: dict[int, list[dict]] = {n: [] for n in args.samples}
    for rows in rows_list:
        root = work / f"tables-{rows}"
        root, _ = write_world(root, args.tables, rows, args.dim, args.examples)
        snapshot = disk_gib(root / "models")
        child(DEPLOY, root, "scale", DAY1)
        for n in args.samples:
            r = child(RUN, root, "scale", DAY2, n)
            results[n].append(r)
            steps = r["steps"]
            print(
                f"{rows:>11,} {snapshot:>13.2f} {n:>8,} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f} "
                f"{r['anon_gib']:>12.2f} {r['file_gib']:>12.2f} {steps.get('sample_s', 0):>9.1f} "
                f"{steps.get('score_s', 0):>8.1f} {r['status']:>10}",
                flush=True,
            )
        shutil.rmtree(root)
    for n, runs in results.items():
        anon = [r["anon_gib"] for r in runs]
        wall = [r["wall_s"] for r in runs]
        spread_m, spread_w = max(anon) / min(anon), max(wall) / min(wall)
        verdict = [
            f"RssAnon spread {spread_m:.2f}x (target <= {TARGET_MEMORY_SPREAD}x): "
            + ("met" if spread_m <= TARGET_MEMORY_SPREAD else "MISSED"),
            f"wall spread {spread_w:.2f}x (target <= {TARGET_WALL_SPREAD}x): "
            + ("met" if spread_w <= TARGET_WALL_SPREAD else "MISSED"),
        ]
        if n == args.samples[0]:
            verdict.append(
                f"peak RssAnon {max(anon):.2f} GiB (target <= {TARGET_ANON_GIB} GiB at the default "
                "sample): " + ("met" if max(anon) <= TARGET_ANON_GIB else "MISSED")
            )
        print(f"  sample {n:,}: " + "; ".join(verdict))


def day_sizes(args, work: Path) -> None:
    print(
        f"\n2. day sizes: 2 tables x {args.narrow_rows:,} rows x 16 dims, 13 dense features; day 2 holds N rows, "
        f"sample {args.samples[0]:,}"
    )
    print(
        f"{'day rows':>11} {'traffic GiB':>12} {'wall s':>8} {'cpu s':>8} {'RssAnon GiB':>12} {'sample s':>9} "
        f"{'score s':>8} {'sample/score':>13}"
    )
    last = None
    for rows in args.day_rows:
        root = work / f"day-{rows}"
        write_world(root, 2, args.narrow_rows, 16, 20_000)
        partition = next((root / "traffic").rglob(f"date={DAY2}"))
        subprocess.run([sys.executable, "-c", WIDE_DAY, str(partition), str(rows), str(args.narrow_rows)], check=True)
        child(DEPLOY, root, "scale", DAY1)
        r = child(RUN, root, "scale", DAY2, args.samples[0])
        steps = r["steps"]
        ratio = steps.get("sample_s", 0) / max(steps.get("score_s", 1e-9), 1e-9)
        print(
            f"{rows:>11,} {disk_gib(partition):>12.2f} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f} "
            f"{r['anon_gib']:>12.2f} {steps.get('sample_s', 0):>9.1f} {steps.get('score_s', 0):>8.1f} "
            f"{ratio:>13.2f}",
            flush=True,
        )
        last = ratio
        shutil.rmtree(root)
    if last is not None:
        print(
            f"  largest day: sample step / score step {last:.2f}x (target <= 1.0x): "
            + ("met" if last <= 1.0 else "MISSED")
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=8)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument(
        "--rows",
        type=int,
        nargs="+",
        default=[100_000, 2_000_000, 8_000_000],
        help="rows per table, one world each (LPMON_BENCH_HUGE=1 adds 16M: 33 GB fp32)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        nargs="+",
        default=[200_000, 20_000],
        help="sample sizes; the first is the default sample size",
    )
    parser.add_argument("--examples", type=int, default=250_000, help="traffic per day of the table-size worlds")
    parser.add_argument("--day-rows", type=int, nargs="*", default=[1_000_000, 10_000_000, 50_000_000])
    parser.add_argument("--narrow-rows", type=int, default=100_000, help="rows per table of the day-size world")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--skip-tables", action="store_true")
    args = parser.parse_args(argv)
    print("lpmon scale benchmark: a monitored day's time and memory by table size and by day size")
    print(machine_banner())
    work = args.work or Path(tempfile.mkdtemp(prefix="lpmon-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if not args.skip_tables:
            table_sizes(args, work)
        if args.day_rows:
            day_sizes(args, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
