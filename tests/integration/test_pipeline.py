"""The daily job end to end on the synthetic world, on SQLite and PostgreSQL."""

import json
from pathlib import Path

import numpy as np
import pytest

from lpmon.config import load
from lpmon.pipeline import open_store, run_day
from lpmon.quant import QuantPlan
from lpmon.traffic import TrafficStore
from support.world import day, world

TABLES = ("runs", "run_metrics", "layer_metrics", "decisions", "plans")


def snapshot_rows(store, model_id):
    rows = {}
    for table in TABLES:
        rows[table] = [
            {k: v for k, v in r.items() if k not in ("finished_at", "created_at", "timings_json")}
            for r in store.rows(table, model_id)
        ]
    return rows


@pytest.mark.slow
def test_drift_is_detected_recalibrated_and_reruns_change_nothing(tmp_path, database_url):
    config = world(tmp_path, database_url)
    results = [run_day(config, "gradual_drift", day(i)) for i in range(12)]
    assert results[0].plan_version == 1 and results[0].status == "HEALTHY"
    degraded = [r for r in results if r.status == "DEGRADED"]
    assert degraded, [r.status for r in results]
    first = degraded[0]
    assert first.action in ("RECALIBRATE", "FALLBACK") and first.new_plan_version == 2
    store = open_store(config)
    assert store.active_plan("gradual_drift").version == 2
    exported = QuantPlan.from_json((config.plans_dir / "gradual_drift" / "active.json").read_text())
    assert exported.version == 2
    # Every day recorded once, with metrics and per-layer rows.
    assert [r["logical_date"] for r in store.rows("runs", "gradual_drift")] == [str(day(i)) for i in range(12)]
    assert all(r["sqnr_db"] is not None for r in store.rows("layer_metrics", "gradual_drift"))
    # Rerunning days, or the whole range, leaves identical rows.
    before = snapshot_rows(store, "gradual_drift")
    for i in (0, 5, results.index(first), 11):
        run_day(config, "gradual_drift", day(i))
    assert snapshot_rows(store, "gradual_drift") == before
    store.db.engine.dispose()


@pytest.mark.slow
def test_reprocessing_days_whose_plans_were_since_replaced_changes_nothing(tmp_path, database_url):
    """A backfill run again with reprocessing: a day that promoted a plan which
    later days replaced must report what it did then (not a lost race), and must
    not bring its plan back."""
    config = _with_defaults(world(tmp_path, database_url, days=13), "cooldown_days = 2")
    for i in range(13):
        run_day(config, "gradual_drift", day(i))
    store = open_store(config)
    plans = store.rows("plans", "gradual_drift")
    assert sum(p["status"] == "retired" for p in plans) >= 1, [(p["version"], p["reason"]) for p in plans]
    before = snapshot_rows(store, "gradual_drift")
    for i in range(13):
        run_day(config, "gradual_drift", day(i))
    assert snapshot_rows(store, "gradual_drift") == before
    store.db.engine.dispose()


@pytest.mark.slow
def test_bad_days_are_recorded_and_change_nothing_else(tmp_path, database_url):
    config = world(tmp_path, database_url, scenario="stable", days=3, per_day=30_000, sample=20_000)
    run_day(config, "stable", day(0))
    store = open_store(config)
    plans = store.rows("plans", "stable")
    missing = run_day(config, "stable", day(7))
    assert missing.status == "INSUFFICIENT_DATA" and "no traffic for 2026-11-08" in missing.message
    traffic = TrafficStore(config.model("stable").traffic)
    broken = Path(traffic.files(day(1))[0])
    broken.write_bytes(broken.read_bytes()[:1000])
    corrupt = run_day(config, "stable", day(1))
    assert corrupt.status == "failed" and "unreadable Parquet" in corrupt.message
    # A day with only negatives: NE is undefined, never a silent pass.
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables(pq.read_table(f) for f in traffic.files(day(2)))
    table = table.set_column(
        table.schema.get_field_index("label"), "label", pa.array(np.zeros(table.num_rows, np.int8))
    )
    traffic.write_day(day(2), table)
    negatives = run_day(config, "stable", day(2))
    assert negatives.status == "INSUFFICIENT_DATA" and "0 positives" in negatives.message
    assert store.rows("plans", "stable") == plans
    decisions = {r["logical_date"]: json.loads(r["reasons_json"]) for r in store.rows("decisions", "stable")}
    assert "unreadable Parquet" in decisions[str(day(1))][0]
    store.db.engine.dispose()


@pytest.mark.slow
def test_a_crash_during_promotion_keeps_the_old_plan(tmp_path, database_url, monkeypatch):
    config = world(tmp_path, database_url, days=12, sample=40_000)
    for i in range(9):
        run_day(config, "gradual_drift", day(i))
    store = open_store(config)
    active_before = store.active_plan("gradual_drift").version
    from lpmon.store import StateStore

    attempts = []

    def crash(*args, **kwargs):
        attempts.append(args)
        raise RuntimeError("worker killed during promotion")

    monkeypatch.setattr(StateStore, "promote", crash)
    with pytest.raises(RuntimeError, match="worker killed"):
        run_day(config, "gradual_drift", day(9))  # a DEGRADED day: recalibration promotes
    assert attempts, "the day did not reach promotion"
    assert store.active_plan("gradual_drift").version == active_before
    assert sum(r["status"] == "active" for r in store.rows("plans", "gradual_drift")) == 1
    store.db.engine.dispose()


def test_bad_snapshot_is_a_recorded_failure(tmp_path):
    config = world(tmp_path, f"sqlite:///{tmp_path / 's.db'}", scenario="stable", days=1, per_day=2_000, sample=1_000)
    spec = Path(config.model("stable").snapshot) / "spec.json"
    data = json.loads(spec.read_text())
    data["bottom_mlp"] = [64, 8]
    spec.write_text(json.dumps(data))
    result = run_day(config, "stable", day(0))
    assert result.status == "failed" and "model snapshot" in result.message
    store = open_store(config)
    assert store.rows("runs", "stable")[0]["status"] == "failed" and store.rows("plans", "stable") == []


@pytest.mark.slow
def test_a_nan_row_the_day_touches_fails_the_day_naming_table_and_row(tmp_path):
    """Loading reads no table byte (the finite check ran when the snapshot was written):
    a row damaged on disk since is found where the day's examples read it."""
    config = world(tmp_path, f"sqlite:///{tmp_path / 's.db'}", scenario="stable", days=1, per_day=10_000, sample=8_000)
    snapshot = Path(config.model("stable").snapshot)
    manifest = json.loads((snapshot / "weights.json").read_text())
    table = np.load(snapshot / manifest["folder"] / manifest["tensors"]["emb_l.3.weight"]["file"], mmap_mode="r+")
    ids = next(TrafficStore(config.model("stable").traffic).batches(day(0), ["sparse_3"])).column("sparse_3")
    row = int(ids.flatten()[0].as_py() if hasattr(ids, "flatten") else ids[0].as_py())
    table[row, 1] = np.nan
    table.flush()
    del table
    result = run_day(config, "stable", day(0))
    assert result.status == "failed", result.message
    assert "model snapshot" in result.message and "emb_l.3" in result.message and f"row {row}" in result.message
    store = open_store(config)
    assert store.rows("runs", "stable")[0]["status"] == "failed"
    store.db.engine.dispose()


def test_fallen_back_layers_retry_int8_after_a_healthy_streak(tmp_path):
    """A fallback left a layer in fp16 on stable traffic: it goes back to its baseline
    (int8) after the healthy streak and the cool-down, not before, and only validated."""
    config = world(tmp_path, f"sqlite:///{tmp_path / 's.db'}", scenario="stable", days=4, per_day=60_000, sample=30_000)
    config = _with_defaults(config, "healthy_days_to_reenable = 2\ncooldown_days = 1")
    first = run_day(config, "stable", day(0))
    assert first.promoted
    from lpmon.pipeline.lifecycle import Origin, PlanLifecycle, Verdict
    from lpmon.quant import LayerPlan

    store = open_store(config)
    lifecycle = PlanLifecycle(store, "stable")
    plan = lifecycle.active()
    fallen = QuantPlan(
        "stable", 2, tuple(LayerPlan(x.name, x.kind, "fp16") if x.name == "top_l.0" else x for x in plan.layers)
    )
    assert lifecycle.propose(
        fallen, str(day(0)), Origin.FALLBACK, Verdict(True, "test: fallen back"), expected_active=1
    ).promoted
    second = run_day(config, "stable", day(1))
    assert second.action == "RECORD" and second.new_plan_version is None  # streak of 1: too early
    third = run_day(config, "stable", day(2))
    assert third.action == "REENABLE" and "top_l.0 fp16 -> int8: candidate dNE" in third.message, third.message
    assert lifecycle.active().layer("top_l.0").precision == "int8"
    again = run_day(config, "stable", day(2))  # a rerun changes nothing
    assert again.new_plan_version == third.new_plan_version and again.message == third.message


@pytest.mark.slow
def test_stable_month_has_no_degraded_day_and_no_promotion(tmp_path):
    config = world(
        tmp_path, f"sqlite:///{tmp_path / 's.db'}", scenario="stable", days=30, per_day=30_000, sample=20_000
    )
    results = [run_day(config, "stable", day(i)) for i in range(30)]
    assert not [r for r in results if r.status == "DEGRADED"]
    assert {r.plan_version for r in results if r.plan_version} == {1}
    assert [r.action for r in results if r.promoted] == ["ONBOARD"]  # onboarding, and nothing after


@pytest.mark.slow
def test_outliers_fall_back_and_hold_the_gate(tmp_path):
    config = world(
        tmp_path, f"sqlite:///{tmp_path / 's.db'}", scenario="outliers", days=10, per_day=80_000, sample=60_000
    )
    results = [run_day(config, "outliers", day(i)) for i in range(10)]
    acted = [r for r in results if r.promoted and r.action != "ONBOARD"]
    assert 1 <= len(acted) <= 2, [(r.status, r.action, r.message) for r in results]
    store = open_store(config)
    plan = QuantPlan.from_json(store.active_plan("outliers").plan_json)
    raised = [layer.name for layer in plan.layers if layer.precision not in ("int8", "int4", "int2")]
    assert 1 <= len(raised) <= 4 and not any(name.startswith("emb_l.") for name in raised), raised
    # Each action was validated with confidence, and the days after it are healthy.
    assert all("with confidence" in r.message or "significantly better" in r.message for r in acted)
    after = results[results.index(acted[-1]) + 1 :]
    assert after and all(r.status != "DEGRADED" for r in after), [r.message for r in after]
    store.db.engine.dispose()


def judge_degraded(monkeypatch):
    """Make decide_step call every day DEGRADED (small samples rarely are, certainly)."""
    from lpmon.pipeline import run as pipeline  # run_day calls the steps by their names there

    real = pipeline.decide_step

    def degraded(config, work):
        real(config, work)
        work.status = "DEGRADED"
        return "recalibrate"

    monkeypatch.setattr(pipeline, "decide_step", degraded)


def _with_defaults(config, extra: str):
    text = config.path.read_text().replace("[defaults]\n", "[defaults]\n" + extra + "\n", 1)
    config.path.write_text(text)
    return load(config.path, environ={})


@pytest.mark.slow
def test_recalibration_merges_the_stored_statistics_of_earlier_days(tmp_path, monkeypatch):
    from lpmon.calibrate import from_state, observer
    from lpmon.model import Model
    from lpmon.pipeline.assembly import Ranges, observe
    from lpmon.pipeline.context import halves as _halves
    from lpmon.traffic import TrafficSchema, sample

    config = world(tmp_path, f"sqlite:///{tmp_path / 's.db'}", scenario="stable", days=3, per_day=60_000, sample=10_000)
    config = _with_defaults(config, "calibration_days = 3\nmin_examples = 1000")
    for i in range(2):
        run_day(config, "stable", day(i))
    store = open_store(config)
    stored = store.calibration_states("stable", str(day(2)), 2)
    assert sorted(stored) == [str(day(0)), str(day(1))] and "top_l.2" in stored[str(day(0))]
    assert list(store.calibration_states("stable", str(day(2)), 1)) == [str(day(1))]
    # What was stored equals observing each day's calibration half afresh.
    settings, model = config.model("stable"), Model.load(config.model("stable").snapshot)
    halves = [
        _halves(s.batch, s.labels)[0]
        for s in (
            sample(
                TrafficStore(settings.traffic),
                day(i),
                settings.sample_size,
                settings.sample_seed,
                TrafficSchema.for_model(model.spec),
            )
            for i in range(3)
        )
    ]
    merged = observe(model, halves[0])
    for half in halves[1:]:
        for name, obs in observe(model, half).items():
            merged[name].merge(obs)
    for name, obs in observe(model, halves[0]).items():
        assert from_state(stored[str(day(0))][name], lambda: observer("l2")).compute() == obs.compute()
    # A day judged DEGRADED recalibrates on all three days.
    judge_degraded(monkeypatch)
    result = run_day(config, "stable", day(2))
    assert result.status == "DEGRADED" and result.new_plan_version == 2
    plan = QuantPlan.from_json(store.active_plan("stable").plan_json)
    assert "2 earlier days" in plan.provenance.sample
    expected = Ranges.from_observers(merged).by_layer
    int8 = [layer for layer in plan.layers if layer.precision == "int8" and layer.kind == "linear"]
    assert all(layer.activation == expected[layer.name] for layer in int8)


@pytest.mark.slow
def test_a_killed_fallback_search_resumes_from_its_saved_progress(tmp_path, monkeypatch):
    import lpmon.pipeline.search

    config = world(
        tmp_path, f"sqlite:///{tmp_path / 's.db'}", scenario="outliers", days=7, per_day=60_000, sample=10_000
    )
    config = _with_defaults(config, "min_examples = 1000")
    fresh = _with_defaults(
        world(
            tmp_path / "b", f"sqlite:///{tmp_path / 'b.db'}", scenario="outliers", days=7, per_day=60_000, sample=10_000
        ),
        "min_examples = 1000",
    )
    for each in (config, fresh):
        assert run_day(each, "outliers", day(0)).promoted
    config = _with_defaults(config, "gate_pct = 1e-9")  # a gate nothing but fp32 meets: the search goes far
    judge_degraded(monkeypatch)
    real = lpmon.pipeline.search.fallback_search

    def killed_after_a_round(*args, on_step, **kwargs):
        def save_then_die(progress):
            on_step(progress)
            raise SystemExit("worker killed")

        return real(*args, on_step=save_then_die, **kwargs)

    monkeypatch.setattr("lpmon.pipeline.fallback.fallback_search", killed_after_a_round)
    with pytest.raises(SystemExit):
        run_day(config, "outliers", day(6))
    store = open_store(config)
    saved = store.fallback_progress("outliers", str(day(6)))
    assert saved["step"] >= 1 and saved["state"]["purpose"] == "fallback"
    calls = []
    monkeypatch.setattr(
        "lpmon.pipeline.fallback.fallback_search",
        lambda *a, resume, **k: calls.append(resume) or real(*a, resume=resume, **k),
    )
    resumed = run_day(config, "outliers", day(6))
    assert resumed.action == "FALLBACK" and len(calls[0][1]) == saved["step"]  # started from the saved round
    # The same day searched from scratch (a twin store) gives the same plan.
    monkeypatch.setattr("lpmon.pipeline.fallback.fallback_search", real)
    fresh = _with_defaults(fresh, "gate_pct = 1e-9")
    again = run_day(fresh, "outliers", day(6))
    assert again.message == resumed.message
    assert store.active_plan("outliers").plan_json == open_store(fresh).active_plan("outliers").plan_json


@pytest.mark.slow
def test_steps_through_the_work_directory_equal_run_day(tmp_path):
    """The Airflow path: every step in a fresh DayWork loaded from disk."""
    from lpmon.pipeline import steps as pipeline
    from lpmon.pipeline.daywork import DayWork, WorkMissing

    config = world(tmp_path, f"sqlite:///{tmp_path / 's.db'}", scenario="stable", days=2, per_day=45_000, sample=5_000)
    config = _with_defaults(config, "min_examples = 1000")
    run_day(config, "stable", day(0))
    in_memory = run_day(config, "stable", day(1))
    rows = snapshot_rows(open_store(config), "stable")
    d = str(day(1))
    with pytest.raises(WorkMissing, match="run the day from its first step"):
        DayWork.load(config.work_dir, "stable", d)
    work = pipeline.sample_step(config, DayWork("stable", d))
    work.save(config.work_dir)
    for step in (pipeline.score_step, pipeline.compare_step):
        work = step(config, DayWork.load(config.work_dir, "stable", d))
        work.save(config.work_dir)
    work = DayWork.load(config.work_dir, "stable", d)
    assert pipeline.decide_step(config, work) == "record"
    work.save(config.work_dir)
    work = pipeline.record_step(config, DayWork.load(config.work_dir, "stable", d))
    work.save(config.work_dir)
    result = pipeline.report_step(config, DayWork.load(config.work_dir, "stable", d, arrays=False))
    assert result == in_memory
    assert snapshot_rows(open_store(config), "stable") == rows
