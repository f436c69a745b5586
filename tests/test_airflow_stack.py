"""lpmon_monitor on a real Airflow deployment: scheduler + api-server +
dag-processor on PostgreSQL, backfilled with `airflow backfill create`; once
with LocalExecutor, once with CeleryExecutor workers on Redis. The store's
rows must equal running the same days one by one, and a second backfill that
reprocesses the days must change nothing."""

import datetime as dt
from pathlib import Path

import pytest

from airflow_stack import Stack
from conftest import _postgres_database, free_port
from lpmon.config import load
from lpmon.pipeline import open_store, run_day
from world_helpers import dag_world, snapshot_rows

START, DAYS = dt.date(2026, 11, 1), 5
MODEL = "gradual_drift"


def twin_rows(tmp_path: Path) -> dict:
    """The same days, one by one through the library, on a store of their own."""
    path = dag_world(tmp_path / "twin", [MODEL], days=DAYS)
    config = load(path, environ={})
    for i in range(DAYS):
        run_day(config, MODEL, START + dt.timedelta(days=i))
    return snapshot_rows(open_store(config), MODEL)


@pytest.fixture
def deployment(tmp_path, smtp_server):
    """World + lpmon store + Airflow metadata on PostgreSQL; yields a factory of stacks."""
    lpmon_db, drop_lpmon = _postgres_database()
    metadata_db, drop_metadata = _postgres_database()
    shared = tmp_path / "shared"   # what workers share besides PostgreSQL and Redis
    # Without catchup, unpausing the DAG for the backfill schedules only its latest day
    # (a day without traffic here, left out of the comparison below).
    config_path = dag_world(shared, [MODEL], days=DAYS, store=lpmon_db)
    config_path.write_text(config_path.read_text().replace("[airflow]\n", "[airflow]\nmonitor_catchup = false\n"))
    stacks = []

    def make(executor: str, extra_env: dict | None = None) -> Stack:
        stack = Stack(tmp_path / f"airflow-{executor}", metadata_db, free_port(),
                      {"AIRFLOW__CORE__DAGS_FOLDER": str(Path(__file__).resolve().parents[1] / "dags"),
                       "LPMON_CONFIG": str(config_path), **(extra_env or {})}, executor)
        stacks.append(stack)
        return stack

    try:
        yield make, config_path
    finally:
        for stack in stacks:
            stack.stop()
        import gc

        gc.collect()
        drop_lpmon()
        drop_metadata()


def backfill_twice_and_compare(stack: Stack, config_path: Path, tmp_path: Path):
    end = str(START + dt.timedelta(days=DAYS - 1))
    first = stack.backfill("lpmon_monitor", str(START), end)
    runs = stack.runs("lpmon_monitor")
    assert len(runs) == DAYS and all(r["state"] == "success" for r in runs), [(r["logical_date"], r["state"])
                                                                              for r in runs]
    store = open_store(load(config_path, environ={}))
    rows = backfilled_rows(store, end)
    assert [r["logical_date"] for r in rows["runs"]] == [str(START + dt.timedelta(days=i)) for i in range(DAYS)]
    twin = twin_rows(tmp_path)
    assert rows["plans"] == twin["plans"] and rows == twin
    second = stack.backfill("lpmon_monitor", str(START), end, reprocess="completed")
    assert second["id"] != first["id"]
    assert all(r["state"] == "success" for r in stack.runs("lpmon_monitor"))
    assert backfilled_rows(store, end) == rows
    store.db.engine.dispose()


def backfilled_rows(store, end: str) -> dict:
    return {table: [r for r in rows if r.get("logical_date", "") <= end]
            for table, rows in snapshot_rows(store, MODEL).items()}


@pytest.mark.slow
def test_backfill_with_the_local_executor_on_postgresql(deployment, tmp_path):
    make, config_path = deployment
    stack = make("LocalExecutor")
    stack.start(("api-server", "-H", "127.0.0.1", "-p", str(stack.port), "-w", "1"),
                ("scheduler", "--skip-serve-logs"), ("dag-processor",))
    backfill_twice_and_compare(stack, config_path, tmp_path)
    # Recurring training lands a new snapshot and says so with an asset event: lpmon_onboard
    # builds, validates and promotes its plan.
    from lpmon.model import Model
    from lpmon.pipeline import snapshot_digest

    config = load(config_path, environ={})
    model = Model.load(config.model(MODEL).snapshot)
    model.weights[next(iter(model.weights))] *= 1.01
    model.save(config.model(MODEL).snapshot)
    stack.wait(lambda: stack.get("/api/v2/dags/lpmon_onboard"), 60, "lpmon_onboard parsed")
    stack.airflow("dags", "unpause", "lpmon_onboard")
    (asset,) = stack.get("/api/v2/assets?name_pattern=lpmon_model_snapshot")["assets"]
    stack.post("/api/v2/assets/events", {"asset_id": asset["id"], "extra": {"model_id": MODEL, "day": "2026-11-05"}})
    (run,) = stack.wait(lambda: [r for r in stack.runs("lpmon_onboard", None) if r["state"] in ("success", "failed")],
                        300, "lpmon_onboard run")
    assert run["state"] == "success"
    active = open_store(config).active_plan(MODEL)
    assert active.reason == f"onboarding {snapshot_digest(config.model(MODEL).snapshot)}"


@pytest.mark.slow
def test_backfill_on_celery_workers_with_redis(deployment, tmp_path):
    make, config_path = deployment
    stack = make("CeleryExecutor", {"AIRFLOW__CELERY__BROKER_URL": "redis://127.0.0.1:6379/7"})
    stack.env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    stack.start(("api-server", "-H", "127.0.0.1", "-p", str(stack.port), "-w", "1"),
                ("scheduler", "--skip-serve-logs"), ("dag-processor",),
                ("celery", "worker", "--skip-serve-logs", "--concurrency", "2"))
    backfill_twice_and_compare(stack, config_path, tmp_path)
    # The tasks ran on the Celery worker, not in the scheduler.
    worker_log = (stack.home / "celery-worker.log").read_text()
    assert "lpmon_monitor" in worker_log
