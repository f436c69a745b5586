"""The daily job end to end on the synthetic world, on SQLite and PostgreSQL."""

import datetime as dt
import json
from pathlib import Path

import pytest

from lpmon.config import load
from lpmon.demo.world import WorldConfig, write_world
from lpmon.pipeline import open_store, run_day
from lpmon.quant import QuantPlan
from lpmon.store import init_store
from lpmon.traffic import TrafficStore

START = dt.date(2026, 11, 1)
TABLES = ("runs", "run_metrics", "layer_metrics", "decisions", "plans")


# The test worlds drift within days: a false-alarm budget of 20 days puts the single
# look at 1.96 standard errors (the single-day 95 % test lpmon used before), so their
# drift is DEGRADED within a test's dozen days. The default budget (1000 days) is
# exercised in test_policy.py and test_evidence_days.py.
FAST_ALARMS = "sequential_run_length_days = 20"


def world(
    tmp_path,
    database_url,
    scenario="gradual_drift",
    days=12,
    per_day=60_000,
    sample=40_000,
    init=True,
    extra=FAST_ALARMS,
):
    write_world(tmp_path, WorldConfig(scenario, days=days, seed=1, examples_per_day=per_day))
    text = (tmp_path / "lpmon.toml").read_text()
    text = f'store = "{database_url}"\n\n[defaults]\nsample_size = {sample}\n{extra}\n\n' + text.split("\n", 1)[1]
    (tmp_path / "lpmon.toml").write_text(text)
    if init:
        init_store(database_url)  # as `lpmon init` does
    return load(tmp_path / "lpmon.toml", environ={})


def snapshot_rows(store, model_id):
    rows = {}
    for table in TABLES:
        rows[table] = [
            {k: v for k, v in r.items() if k not in ("finished_at", "created_at", "timings_json")}
            for r in store.rows(table, model_id)
        ]
    return rows


def day(i):
    return START + dt.timedelta(days=i)


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
def test_cli_init_run_backfill_status(tmp_path, capsys):
    from lpmon import cli

    config = world(
        tmp_path,
        f"sqlite:///{tmp_path / 'state.db'}",
        scenario="stable",
        days=3,
        per_day=60_000,
        sample=15_000,
        init=False,
    )
    path = str(config.path)
    assert cli.main(["run", "--config", path, "--model", "stable", "--date", "2026-11-01"]) == 1
    assert "run `lpmon init` to create it" in capsys.readouterr().err  # only init creates a store
    assert cli.main(["init", "--config", path]) == 0
    assert "applied migrations [1, 2" in capsys.readouterr().out
    assert cli.main(["run", "--config", path, "--model", "stable", "--date", "2026-11-01"]) == 0
    assert (
        cli.main(["backfill", "--config", path, "--model", "stable", "--start", "2026-11-01", "--end", "2026-11-03"])
        == 0
    )
    out = capsys.readouterr().out
    days = [line for line in out.splitlines() if line.startswith("stable ")]
    assert len(days) == 4 and "plan v1" in out
    # the DAG's outputs too: a report file for each day (no recipients: no mail)
    assert sorted(p.name for p in (config.work_dir / "reports" / "stable").glob("*.html")) == [
        "2026-11-01.html",
        "2026-11-02.html",
        "2026-11-03.html",
    ]
    assert cli.main(["status", "--config", path, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)["stable"]
    assert status["last_run"]["date"] == "2026-11-03" and status["active_plan"]["version"] == 1
    assert status["active_plan"]["precisions"]["bot_l.0"] in ("int8", "fp16", "fp32")
    assert cli.main(["status", "--config", path]) == 0
    assert "plan v1" in capsys.readouterr().out
    assert cli.main(["run", "--config", path, "--model", "nope", "--date", "2026-11-01"]) == 1
    assert "no model 'nope'" in capsys.readouterr().err
    assert (
        cli.main(["backfill", "--config", path, "--model", "stable", "--start", "2026-11-03", "--end", "2026-11-01"])
        == 1
    )


@pytest.mark.slow
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
def test_cli_onboard_plans_and_report(tmp_path, capsys):
    from lpmon import cli

    config = world(
        tmp_path, f"sqlite:///{tmp_path / 'state.db'}", scenario="stable", days=2, per_day=60_000, sample=15_000
    )
    path = str(config.path)
    assert cli.main(["onboard", "--config", path, "--model", "stable", "--date", "2026-11-01"]) == 0
    assert "plan v1 onboarded and promoted: candidate dNE" in capsys.readouterr().out
    assert cli.main(["onboard", "--config", path, "--model", "stable", "--date", "2026-11-01"]) == 0
    assert "nothing done, already onboarded: plan v1 is in force" in capsys.readouterr().out
    assert (config.plans_dir / "stable" / "active.json").exists()
    assert cli.main(["run", "--config", path, "--model", "stable", "--date", "2026-11-02"]) == 0
    store = open_store(config)
    plan = QuantPlan.from_json(store.active_plan("stable").plan_json)
    import dataclasses

    from lpmon.quant import LayerPlan

    changed = dataclasses.replace(
        plan,
        version=2,
        layers=tuple(LayerPlan(x.name, x.kind, "fp16") if x.name == "top_l.2" else x for x in plan.layers),
    )
    store.add_plan("stable", changed.to_json(), "2026-11-02", reason="manual")
    capsys.readouterr()
    assert cli.main(["plans", "list", "--config", path, "--model", "stable"]) == 0
    listing = capsys.readouterr().out
    assert "v1" in listing and "active" in listing and "candidate" in listing
    assert cli.main(["plans", "diff", "v1", "2", "--config", path, "--model", "stable"]) == 0
    assert "top_l.2: precision int8 -> fp16" in capsys.readouterr().out
    out = tmp_path / "exported.json"
    assert cli.main(["plans", "export", "--config", path, "--model", "stable", "--out", str(out)]) == 0
    assert QuantPlan.from_json(out.read_text()).version == 1
    assert cli.main(["plans", "show", "7", "--config", path, "--model", "stable"]) == 1
    assert "no plan v7 (versions: v1, v2)" in capsys.readouterr().err
    assert cli.main(["report", "--config", path, "--model", "stable"]) == 0
    report = capsys.readouterr().out
    assert "2026-11-02" in report and "HEALTHY" in report
    assert cli.main(["report", "--config", path, "--model", "stable", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["logical_date"] == "2026-11-02"


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


def test_cli_refuses_a_newer_database_with_a_message(tmp_path, capsys):
    import sqlalchemy as sa

    from lpmon import cli
    from lpmon.store import Database

    config = world(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", scenario="stable", days=1, per_day=500, sample=500)
    db = Database(config.store)
    with db.transaction() as c:
        c.execute(sa.text("INSERT INTO schema_migrations VALUES (99, 'future', 'x')"))
    db.engine.dispose()
    assert cli.main(["init", "--config", str(config.path)]) == 1
    assert "newer than this lpmon knows" in capsys.readouterr().err


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
