"""The state store on SQLite and PostgreSQL: migrations, idempotent upserts, safe promotion."""

import json
import threading

import numpy as np
import pytest
import sqlalchemy as sa

from lpmon.metrics import compare
from lpmon.store import Database, StateStore, StoreError, migrations


@pytest.fixture
def store(database_url):
    db = Database(database_url, create=True)
    assert db.migrate() == [v for v, _, _ in migrations()]
    yield StateStore(db)
    db.engine.dispose()


def comparison():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.5, 2000)
    y = (rng.random(2000) < p).astype(np.uint8)
    return compare(p, np.clip(p * 1.01, 0, 1), y)


def test_migrations_are_recorded_and_idempotent(database_url):
    db = Database(database_url, create=True)
    assert db.schema_version() == 0
    assert db.migrate() == [v for v, _, _ in migrations()]
    assert db.migrate() == []
    assert db.check_version() == migrations()[-1][0] == db.verify()
    db.engine.dispose()


def test_newer_database_is_refused(database_url):
    db = Database(database_url, create=True)
    db.migrate()
    with db.transaction() as c:
        c.execute(sa.text("INSERT INTO schema_migrations VALUES (99, 'future', 'x')"))
    with pytest.raises(StoreError, match="schema version 99, newer than this lpmon knows"):
        db.check_version()
    with pytest.raises(StoreError, match="newer than this lpmon knows"):
        db.migrate()
    db.engine.dispose()


def test_writes_are_idempotent_upserts(store):
    store.register_model("ctr", {"gate": 0.05})
    store.register_model("ctr", {"gate": 0.05})
    assert store.models() == ["ctr"]
    c = comparison()
    for _ in range(2):  # a rerun of the same day leaves the same rows
        store.record_run("ctr", "2026-11-02", "done", plan_version=1, sample_size=c.n, positives=c.positives)
        store.record_metrics("ctr", "2026-11-02", c)
        store.record_layer_metrics(
            "ctr",
            "2026-11-02",
            {"bot_l.0": {"precision": "int8", "sqnr_db": 31.5, "saturation_below": 0.0, "saturation_above": 1e-4}},
        )
        store.record_decision("ctr", "2026-11-02", "HEALTHY", ["dNE within the gate"])
        store.record_alert("ctr", "2026-11-02", "degraded", "email", "sent", "a@b.c")
    rows = {t: store.rows(t, "ctr") for t in ("runs", "run_metrics", "layer_metrics", "decisions", "alerts")}
    assert {t: len(r) for t, r in rows.items()} == dict.fromkeys(rows, 1)
    metrics = rows["run_metrics"][0]
    assert metrics["dne_pct"] == pytest.approx(c.dne_pct, rel=1e-12) and metrics["n"] == 2000
    assert json.loads(rows["decisions"][0]["reasons_json"]) == ["dNE within the gate"]
    # An upsert updates in place.
    store.record_run("ctr", "2026-11-02", "failed", message="boom")
    assert [r["status"] for r in store.rows("runs", "ctr")] == ["failed"]


def test_what_a_day_spent_is_stored_and_read_back(store):
    """Migration 0005: examples scored, looks and why the looks stopped, on both engines."""
    store.register_model("m")
    store.record_run("m", "2026-11-03", "WARN", sample_size=40_000, positives=9_000, spent=(40_000, 3, "cap"))
    store.record_run("m", "2026-11-04", "failed", message="no traffic")
    first, second = store.day_summary("m", "2026-11-03"), store.day_summary("m", "2026-11-04")
    assert (first.examples_scored, first.looks, first.stop_reason) == (40_000, 3, "cap")
    assert (second.examples_scored, second.looks, second.stop_reason) == (None, None, None)
    with pytest.raises(sa.exc.IntegrityError):  # the reasons are the three the pipeline writes
        store.record_run("m", "2026-11-05", "WARN", spent=(1, 1, "bored"))


def test_nan_metrics_are_stored_as_null(store):
    store.register_model("m")
    store.record_run("m", "2026-11-03", "insufficient_data")
    c = comparison()
    import dataclasses

    store.record_metrics("m", "2026-11-03", dataclasses.replace(c, ne_ref=float("nan")), segment="lu")
    assert store.rows("run_metrics", "m")[0]["ne_ref"] is None


def test_one_active_plan_enforced_by_the_database(store):
    store.register_model("ctr")
    v1 = store.add_plan("ctr", '{"v": 1}', "2026-11-01")
    assert store.add_plan("ctr", '{"v": 1}', "2026-11-01") == v1  # idempotent
    v2 = store.add_plan("ctr", '{"v": 2}', "2026-11-02")
    assert (v1, v2) == (1, 2)
    assert store.promote("ctr", v1, expected_active=None)
    assert store.active_plan("ctr").version == v1
    assert not store.promote("ctr", v2, expected_active=None)  # someone is active already
    assert store.promote("ctr", v2, expected_active=v1)
    assert store.active_plan("ctr").version == v2
    statuses = {r["version"]: r["status"] for r in store.rows("plans", "ctr")}
    assert statuses == {1: "retired", 2: "active"}
    # Promoting v1 again (the rerun of its day) reports it promoted and brings nothing back.
    assert store.promote("ctr", v1, expected_active=None)
    assert {r["version"]: r["status"] for r in store.rows("plans", "ctr")} == statuses
    # Even a hand-written second 'active' row is refused by the partial unique index.
    with pytest.raises(sa.exc.IntegrityError):
        with store.db.transaction() as c:
            c.execute(sa.text("UPDATE plans SET status = 'active' WHERE model_id = 'ctr' AND version = 1"))


def test_racing_promotions_have_exactly_one_winner(store):
    store.register_model("ctr")
    base = store.add_plan("ctr", '{"base": 1}', "2026-11-01")
    assert store.promote("ctr", base, None)
    candidates = [store.add_plan("ctr", json.dumps({"c": i}), "2026-11-02") for i in range(6)]
    results = {}
    barrier = threading.Barrier(len(candidates))

    def race(version):
        barrier.wait()
        results[version] = store.promote("ctr", version, expected_active=base)

    threads = [threading.Thread(target=race, args=(v,)) for v in candidates]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [v for v, won in results.items() if won]
    assert len(winners) == 1
    assert store.active_plan("ctr").version == winners[0]
    assert sum(r["status"] == "active" for r in store.rows("plans", "ctr")) == 1


def test_failed_transaction_leaves_nothing_half_written(store):
    store.register_model("ctr")
    with pytest.raises(RuntimeError):
        with store.db.transaction() as c:
            store.record_run("ctr", "2026-11-05", "done", connection=c)
            store.record_decision("ctr", "2026-11-05", "HEALTHY", [], connection=c)
            raise RuntimeError("crash midway")
    assert store.rows("runs", "ctr") == [] and store.rows("decisions", "ctr") == []


def test_reporting_queries(store):
    from lpmon.store import report_names, run_report

    assert report_names() == ["current_plans", "dne_history", "open_alerts"]
    store.register_model("ctr")
    c = comparison()
    for date in ("2026-11-02", "2026-11-01"):
        store.record_run("ctr", date, "HEALTHY", plan_version=1)
        store.record_metrics("ctr", date, c)
        store.record_decision("ctr", date, "RECORD", [])
    store.record_alert("ctr", "2026-11-02", "degraded", "email", "failed", error="smtp down")
    store.record_alert("ctr", "2026-11-01", "degraded", "email", "sent")
    store.promote("ctr", store.add_plan("ctr", "{}", "2026-11-01"), None)
    history = run_report(store.db, "dne_history", model_id="ctr")
    assert [h["logical_date"] for h in history] == ["2026-11-01", "2026-11-02"]
    assert history[0]["dne_pct"] == pytest.approx(c.dne_pct) and history[0]["action"] == "RECORD"
    assert [p["version"] for p in run_report(store.db, "current_plans")] == [1]
    alerts = run_report(store.db, "open_alerts")
    assert len(alerts) == 1 and alerts[0]["error"] == "smtp down"
    with pytest.raises(ValueError, match="unknown report 'x'"):
        run_report(store.db, "x")


def test_workers_migrating_a_fresh_database_at_once_apply_each_migration_once(database_url):
    """Two Airflow tasks starting together on a new store raced on CREATE TABLE (seen on
    Celery workers with PostgreSQL): migrations now run under a lock."""
    import threading

    errors, barrier = [], threading.Barrier(6)

    def worker():
        db = Database(database_url, create=True)
        try:
            barrier.wait()
            db.migrate()
        except Exception as err:  # noqa: BLE001 (collected for the assertion)
            errors.append(err)
        finally:
            db.engine.dispose()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db = Database(database_url)
    assert db.check_version() == migrations()[-1][0]
    import sqlalchemy as sa

    with db.engine.connect() as c:
        assert c.execute(sa.text("SELECT COUNT(*) FROM schema_migrations")).scalar_one() == len(migrations())
    db.engine.dispose()
