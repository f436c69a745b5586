"""The soak: a long backfill of three models through the real scheduler
(LocalExecutor, Airflow metadata and lpmon store on PostgreSQL), then the same
backfill again with reprocessing. Every row must be identical, every run must
succeed, and the memory of the scheduler and its executor workers must stay
flat. Prints the time per run and the memory samples.

LPMON_SOAK_DAYS sets the length: 12 days by default (what `make test` and CI
run, about 10 minutes on 2 cores; the stable model's onboarding waits in them); the README gives the figures of the full
90-day run (LPMON_SOAK_DAYS=90, about 45 minutes).
"""

import datetime as dt
import os
import statistics
import threading
import time
from pathlib import Path

import psutil
import pytest

from support.airflow_stack import Stack
from conftest import _postgres_database, free_port
from lpmon.config import load
from lpmon.pipeline import open_store
from lpmon.store import init_store
from lpmon.demo.world import WorldConfig, write_world
from support.world import snapshot_rows
from support import REPO

pytestmark = [pytest.mark.slow, pytest.mark.faults]

DAYS = int(os.environ.get("LPMON_SOAK_DAYS", "12"))
# Days in the past (a backfill refuses the future), ending before the day that
# unpausing the DAG schedules by itself (catchup is off).
START = dt.date.today() - dt.timedelta(days=DAYS + 3)
MODELS = ("stable", "gradual_drift", "sudden_shift")


class MemoryWatch:
    """Samples the resident memory of the stack's long-lived processes (and the
    children they have at that moment: executor workers, task processes)."""

    def __init__(self, stack: Stack, every: float = 2.0):
        self.stack, self.every, self.samples = stack, every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.every):
            total = 0
            for process in self.stack.processes:
                try:
                    parent = psutil.Process(process.pid)
                    family = [parent, *parent.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
                for member in family:
                    try:
                        total += member.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
            self.samples.append((time.monotonic(), total))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def world(root: Path, store: str) -> Path:
    for scenario in MODELS:
        write_world(root, WorldConfig(scenario, days=DAYS, start=START, seed=3, examples_per_day=3_000))
    path = root / "lpmon.toml"
    path.write_text(f'store = "{store}"\n\n[defaults]\nsample_size = 2500\nmin_examples = 1000\n'
                    'recipients = ["oncall@example.com"]\n\n'
                    f'[airflow]\nstart_date = "{START}"\ntask_retries = 0\nmonitor_catchup = false\n'
                    + path.read_text().split("\n", 1)[1])
    init_store(store)
    return path


def in_range(store, end: str) -> dict:
    """Every model's rows of the backfilled days (unpausing also runs the latest day, outside them)."""
    return {m: {table: [r for r in rows if r.get("logical_date", "") <= end]
                for table, rows in snapshot_rows(store, m).items()} for m in MODELS}


def run_times(stack: Stack) -> list[float]:
    runs = stack.get("/api/v2/dags/lpmon_monitor/dagRuns?limit=1000&order_by=logical_date")["dag_runs"]
    return [(dt.datetime.fromisoformat(r["end_date"]) - dt.datetime.fromisoformat(r["start_date"])).total_seconds()
            for r in runs if r["run_type"] == "backfill" and r["end_date"]]


def test_a_long_backfill_of_three_models_twice_is_identical_with_flat_memory(tmp_path, smtp_server):
    lpmon_db, drop_lpmon = _postgres_database()
    metadata_db, drop_metadata = _postgres_database()
    config_path = world(tmp_path / "shared", lpmon_db)
    stack = Stack(tmp_path / "airflow", metadata_db, free_port(),
                  {"AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                   "LPMON_CONFIG": str(config_path),
                   "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2"}, "LocalExecutor")
    try:
        stack.start(("api-server", "-H", "127.0.0.1", "-p", str(stack.port), "-w", "1"),
                    ("scheduler", "--skip-serve-logs"), ("dag-processor",))
        end = str(START + dt.timedelta(days=DAYS - 1))
        store = open_store(load(config_path, environ={}))
        with MemoryWatch(stack) as memory:
            started = time.monotonic()
            stack.backfill("lpmon_monitor", str(START), end, timeout=DAYS * 120)
            first_s = time.monotonic() - started
            first = in_range(store, end)
            first_times = run_times(stack)
            started = time.monotonic()
            stack.backfill("lpmon_monitor", str(START), end, reprocess="completed", timeout=DAYS * 120)
            second_s = time.monotonic() - started
        runs = [r for r in stack.get("/api/v2/dags/lpmon_monitor/dagRuns?limit=1000")["dag_runs"]
                if r["run_type"] == "backfill"]
        assert len(runs) == DAYS and all(r["state"] == "success" for r in runs), \
            sorted((r["logical_date"], r["state"]) for r in runs if r["state"] != "success")
        for model in MODELS:
            statuses = [r["status"] for r in first[model]["runs"]]
            assert len(statuses) == DAYS and "RUNNING" not in statuses and "failed" not in statuses, (model, statuses)
        assert in_range(store, end) == first  # the reprocessing changed nothing
        promoted = {m: sum(p["status"] != "candidate" for p in first[m]["plans"]) for m in MODELS}

        # Memory: the highest sample of the last third against the first third's.
        rss = [value for _, value in memory.samples]
        third = max(1, len(rss) // 3)
        early, late = max(rss[:third]), max(rss[-third:])
        times = run_times(stack)
        print(f"\nsoak: {DAYS} days x {len(MODELS)} models, twice; first backfill {first_s:.0f} s, "
              f"second {second_s:.0f} s; per run: median {statistics.median(times):.1f} s, "
              f"max {max(times):.1f} s (first pass median {statistics.median(first_times):.1f} s); "
              f"memory of the stack: first third max {early / 2**20:.0f} MiB, last third max "
              f"{late / 2**20:.0f} MiB ({len(rss)} samples); plans promoted or active: {promoted}; "
              f"emails: {len(smtp_server.messages)}")
        assert late < early * 1.15 + (64 << 20), f"memory grew: {early / 2**20:.0f} -> {late / 2**20:.0f} MiB"
        store.db.engine.dispose()
    finally:
        stack.stop()
        import gc

        gc.collect()
        drop_lpmon()
        drop_metadata()
