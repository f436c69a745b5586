"""A model's days are judged in order, whatever runs them: three `lpmon backfill`
processes that overlap (11-01..05, 11-02..05, 11-01..03) leave the rows and plans
of one serial `lpmon backfill` over 11-01..05, on SQLite and on PostgreSQL.

The backfill of 11-02..05 starts first and has fixed 11-02's plan (onboarding the
model there) when the other two start: the interleaving that judged 11-01 under
a plan it never had. Its days are judged again, after 11-01."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lpmon.config import load
from lpmon.pipeline import open_store
from lpmon.store import init_store
from support.world import snapshot_rows

MODEL = "stable"
LPMON = [sys.executable, "-m", "lpmon.cli"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """One `lpmon world` (five days of a stable model), shared by every store below."""
    root = tmp_path_factory.mktemp("world")
    subprocess.run(
        LPMON + ["world", "--root", str(root), "--scenario", MODEL, "--days", "5", "--examples-per-day", "50000", "-q"],
        check=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )
    return root


def configured(world: Path, root: Path, store: str) -> Path:
    """The world's lpmon.toml with a store, plans and work folders of its own; the store initialised."""
    root.mkdir(parents=True, exist_ok=True)
    models = (world / "lpmon.toml").read_text().split("\n", 1)[1]
    path = root / "lpmon.toml"
    path.write_text(
        f'store = "{store}"\nplans_dir = "{root / "plans"}"\nwork_dir = "{root / "work"}"\n\n'
        f"[defaults]\nsample_size = 10000\n\n{models}"
    )
    init_store(store)
    return path


def backfill(config: Path, start: str, end: str) -> subprocess.Popen:
    return subprocess.Popen(
        LPMON + ["backfill", "--config", str(config), "--model", MODEL, "--start", start, "--end", end, "--no-alerts"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )


def rows(config: Path) -> dict:
    store = open_store(load(config, environ={}))
    out = snapshot_rows(store, MODEL)
    out["plan_events"] = [{k: v for k, v in e.items() if k != "created_at"} for e in store.plan_events(MODEL)]
    store.db.engine.dispose()
    return out


@pytest.fixture(scope="module")
def serial(world, tmp_path_factory) -> dict:
    """One `lpmon backfill` over the five days, alone."""
    root = tmp_path_factory.mktemp("serial")
    config = configured(world, root, f"sqlite:///{root / 'state.db'}")
    process = backfill(config, "2026-11-01", "2026-11-05")
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output
    return rows(config)


@pytest.mark.slow
def test_three_overlapping_backfills_leave_the_rows_of_one_serial_backfill(world, serial, database_url, tmp_path):
    config = configured(world, tmp_path, database_url)
    second = backfill(config, "2026-11-02", "2026-11-05")
    store = open_store(load(config, environ={}))
    deadline = time.monotonic() + 300
    while not (store.run(MODEL, "2026-11-02") or {}).get("plan_version"):  # 11-02 is judged first
        assert time.monotonic() < deadline and second.poll() is None, second.communicate()[0]
        time.sleep(0.05)
    store.db.engine.dispose()
    first, third = backfill(config, "2026-11-01", "2026-11-05"), backfill(config, "2026-11-01", "2026-11-03")
    outputs = [p.communicate(timeout=900)[0] for p in (first, second, third)]
    assert [p.returncode for p in (first, second, third)] == [0, 0, 0], outputs
    together = rows(config)
    assert [(r["logical_date"], r["status"], r["plan_version"]) for r in together["runs"]] == [
        (r["logical_date"], r["status"], r["plan_version"]) for r in serial["runs"]
    ]
    for table in ("runs", "decisions", "plans", "plan_events", "run_metrics", "layer_metrics"):
        assert together[table] == serial[table], table
    assert together == serial
