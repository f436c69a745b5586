"""The plan lifecycle through the daily job: onboarding that waits for evidence,
plans a user deploys and pins, a far-off plan restored, and overlapping
backfills that leave the rows of a single one (SQLite and PostgreSQL)."""

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lpmon import cli
from lpmon.config import load
from lpmon.demo.world import WorldConfig, write_world
from lpmon.pipeline import open_store, run_day
from lpmon.pipeline.lifecycle import Origin, PlanLifecycle
from lpmon.quant import LayerPlan, QuantPlan
from lpmon.store import init_store
from support.world import snapshot_rows

START = dt.date(2026, 11, 1)


def day(i):
    return START + dt.timedelta(days=i)


def world(root: Path, store: str, scenario="stable", days=4, per_day=50_000, sample=10_000, extra=""):
    write_world(root, WorldConfig(scenario, days=days, seed=1, examples_per_day=per_day))
    text = (root / "lpmon.toml").read_text().split("\n", 1)[1]
    (root / "lpmon.toml").write_text(
        f'store = "{store}"\n\n[defaults]\nsample_size = {sample}\nmin_examples = 1000\n{extra}\n' + text
    )
    config = load(root / "lpmon.toml", environ={})
    init_store(config.store)
    return config


def rows_with_events(store, model_id):
    rows = snapshot_rows(store, model_id)
    rows["plan_events"] = [{k: v for k, v in e.items() if k != "created_at"} for e in store.plan_events(model_id)]
    return rows


def test_onboarding_waits_for_evidence_and_serving_stays_fp32(tmp_path, database_url, capsys):
    config = world(
        tmp_path, database_url, days=2, per_day=3_000, sample=2_500, extra="validation_days = 0\nmin_positives = 10"
    )
    results = [run_day(config, "stable", day(i)) for i in range(2)]
    for r in results:
        assert r.status == "INSUFFICIENT_DATA" and r.plan_version is None and not r.promoted
        assert "onboarding: waiting for evidence (1,750 examples so far)" in r.message, r.message
        assert "serving stays fp32" in r.message
    store = open_store(config)
    assert store.rows("plans", "stable") == [] and store.active_plan("stable") is None
    assert not (config.plans_dir / "stable" / "active.json").exists()  # no quantized plan reaches serving
    assert cli.main(["status", "--config", str(config.path)]) == 0
    assert "no plan: serving fp32" in capsys.readouterr().out
    store.db.engine.dispose()


@pytest.mark.slow
def test_a_user_plan_is_imported_validated_pinned_and_never_reenabled_away(tmp_path, capsys):
    config = world(
        tmp_path, f"sqlite:///{tmp_path / 's.db'}", days=6, extra="healthy_days_to_reenable = 2\ncooldown_days = 1"
    )
    path = str(config.path)
    first = run_day(config, "stable", day(0))
    assert first.promoted and first.action == "ONBOARD", first.message
    store = open_store(config)
    plan = QuantPlan.from_json(store.active_plan("stable").plan_json)
    mine = dataclasses.replace(
        plan,
        version=99,
        layers=tuple(
            LayerPlan(layer.name, layer.kind, "fp16") if layer.name == "top_l.0" else layer for layer in plan.layers
        ),
    )
    (tmp_path / "mine.json").write_text(mine.to_json())
    capsys.readouterr()
    assert cli.main(["plans", "import", "--config", path, "--model", "stable", str(tmp_path / "mine.json")]) == 0
    assert "stored as plan v2" in capsys.readouterr().out
    assert store.active_plan("stable").version == 1  # imported, not active
    bad = tmp_path / "bad.json"
    bad.write_text(dataclasses.replace(mine, layers=mine.layers[:-1]).to_json())
    assert cli.main(["plans", "import", "--config", path, "--model", "stable", str(bad)]) == 1
    assert "does not fit stable's layers; missing top_l.2" in capsys.readouterr().err
    assert cli.main(["plans", "promote", "--config", path, "--model", "stable", "v2", "--date", str(day(0))]) == 0
    assert "plan v2 of stable is in force: candidate dNE" in capsys.readouterr().out
    assert QuantPlan.from_json((config.plans_dir / "stable" / "active.json").read_text()).version == 2
    assert cli.main(["plans", "pin", "--config", path, "--model", "stable", "2", "--layers", "top_l.0"]) == 0
    assert "pinned 1 layers as in plan v2: top_l.0" in capsys.readouterr().out
    assert cli.main(["status", "--config", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stable"]["pinned"] == ["top_l.0"]
    results = [run_day(config, "stable", day(i)) for i in range(1, 6)]
    assert all(r.status != "DEGRADED" and not r.promoted for r in results), [r.message for r in results]
    assert store.active_plan("stable").version == 2  # the user's plan stays
    assert cli.main(["plans", "unpin", "--config", path, "--model", "stable"]) == 0
    assert "unpinned 1 layers" in capsys.readouterr().out
    # Unpinned, the user's choice is still the baseline: re-enabling never goes below it.
    assert not run_day(config, "stable", day(5)).promoted
    assert PlanLifecycle(store, "stable").baseline()["top_l.0"] == "fp16"
    events = store.plan_events("stable")
    assert [(e["version"], e["origin"], e["forced"]) for e in events] == [(1, "ONBOARD", 0), (2, "USER", 0)]
    store.db.engine.dispose()


@pytest.mark.slow
def test_a_far_off_plan_is_restored_under_the_gate_by_moving_its_tables(tmp_path, database_url):
    config = world(tmp_path, database_url, days=4)
    assert run_day(config, "stable", day(0)).promoted
    store = open_store(config)
    lifecycle = PlanLifecycle(store, "stable")
    plan = lifecycle.active()
    int2 = QuantPlan(
        "stable",
        1,
        tuple(
            LayerPlan(layer.name, "embedding", "int2") if layer.kind == "embedding" else layer for layer in plan.layers
        ),
    )
    from lpmon.pipeline.user_plans import promote_plan

    version = lifecycle.store_candidate(int2, str(day(0)), Origin.USER)
    outcome = promote_plan(config, "stable", version, day=str(day(0)), force=True)
    assert outcome.promoted and "forced by the user" in outcome.reason
    results = [run_day(config, "stable", day(i)) for i in range(1, 4)]
    assert results[0].status == "DEGRADED" and results[0].action == "FALLBACK" and results[0].promoted, results[
        0
    ].message
    fixed = lifecycle.active()
    assert all(layer.precision in ("int4", "int8") for layer in fixed.layers if layer.kind == "embedding")
    assert all(r.status != "DEGRADED" and not r.promoted for r in results[1:]), [r.message for r in results]
    store.db.engine.dispose()


BACKFILL = [sys.executable, "-m", "lpmon.cli", "backfill", "--model", "stable"]


@pytest.mark.slow
def test_overlapping_backfills_leave_the_rows_of_a_single_one(tmp_path, database_url):
    """Two `lpmon backfill` of a model with no plan, over 11-01..03 and 11-02..04 at
    once: one onboarding, and every day judged under the plan a single backfill gives."""
    config = world(tmp_path / "a", database_url)
    env = dict(os.environ, LPMON_CONFIG=str(config.path))
    first = subprocess.Popen(
        BACKFILL + ["--start", str(day(0)), "--end", str(day(2))],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    store = open_store(config)
    deadline = time.monotonic() + 120
    while store.run("stable", str(day(0))) is None:  # the first backfill is under way
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()[0]
        time.sleep(0.05)
    second = subprocess.Popen(
        BACKFILL + ["--start", str(day(1)), "--end", str(day(3))],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    together = rows_with_events(store, "stable")
    assert [p["version"] for p in together["plans"]] == [1]
    single = world(tmp_path / "b", f"sqlite:///{tmp_path / 'b' / 'single.db'}")
    for i in range(4):
        run_day(single, "stable", day(i))
    alone = rows_with_events(open_store(single), "stable")
    for table in together:
        assert together[table] == alone[table], table
    store.db.engine.dispose()


def test_rerunning_the_days_onboarding_waited_on_keeps_their_verdicts(tmp_path):
    """Days before the model's first plan stay as they were (serving was fp32):
    the plan a later day onboarded does not judge them when they are reprocessed."""
    config = world(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", days=8, per_day=3_000, sample=2_500)
    first = [run_day(config, "stable", day(i)) for i in range(8)]
    onboarded = next(i for i, r in enumerate(first) if r.promoted)
    assert onboarded > 0 and first[0].status == "INSUFFICIENT_DATA", [(r.status, r.message) for r in first]
    store = open_store(config)
    rows = rows_with_events(store, "stable")
    again = [run_day(config, "stable", day(i)) for i in range(8)]
    assert [(r.status, r.plan_version) for r in again] == [(r.status, r.plan_version) for r in first]
    assert rows_with_events(store, "stable") == rows


@pytest.mark.slow
def test_a_tbe_model_onboards_to_a_tbe_plan_served_as_such(tmp_path, capsys):
    """embedding_layout = "tbe": the plan onboarding searched, validated and promoted
    carries the layout, in the store and in the active.json serving reads, and
    `lpmon plans export --format torchscript` serves it in TBE modules, 0 ulp from p_q."""
    config = world(tmp_path, f"sqlite:///{tmp_path / 's.db'}", days=1, extra='embedding_layout = "tbe"')
    first = run_day(config, "stable", day(0))
    assert first.promoted and first.action == "ONBOARD", first.message
    active = QuantPlan.from_json((config.plans_dir / "stable" / "active.json").read_text())
    stored = json.loads(open_store(config).active_plan("stable").plan_json)
    assert active.embedding_layout == "tbe" == stored["embedding_layout"]
    assert any(layer.precision == "int8" for layer in active.layers if layer.kind == "embedding")
    pytest.importorskip("torch")
    pytest.importorskip("fbgemm_gpu")
    out = tmp_path / "stable.pt"
    args = ["plans", "export", "--config", str(config.path), "--model", "stable", "--format", "torchscript"]
    assert cli.main([*args, "--out", str(out)]) == 0
    assert "largest difference from lpmon's p_q 0 ulp" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "stable.pt.manifest.json").read_text())
    tables = [entry for entry in manifest["layers"].values() if entry["kind"] == "embedding"]
    assert manifest["embedding_layout"] == "tbe"
    assert all(entry["layout"] == "tbe" for entry in tables if entry["precision"] in ("int8", "int4", "int2"))
