"""The command line over the daily job: init, run, backfill, status, onboard, plans, report."""

import json

import pytest

from lpmon.pipeline import open_store
from lpmon.quant import QuantPlan
from support.world import world


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
    # what the plan saves: bytes served by v1 against fp32 and all-int8 (the search's cost model)
    from lpmon.pipeline.assembly import plan_bytes, unit_precisions, units
    from lpmon.pipeline.context import load_model

    model_units = units(load_model(config.model("stable")))
    plan = QuantPlan.from_json(open_store(config).active_plan("stable").plan_json)
    assert status["bytes_served"] == round(plan_bytes(model_units, unit_precisions(plan)))
    assert status["fp32_bytes"] == round(plan_bytes(model_units, dict.fromkeys(model_units, "fp32")))
    assert status["int8_bytes"] == round(plan_bytes(model_units, dict.fromkeys(model_units, "int8")))
    assert status["int8_bytes"] <= status["bytes_served"] < status["fp32_bytes"]
    share = 100 * status["bytes_served"] / status["fp32_bytes"]
    assert cli.main(["status", "--config", path]) == 0
    out = capsys.readouterr().out
    assert "plan v1" in out and f"v1 serves {share:.0f} % of the fp32 bytes" in out
    assert cli.main(["report", "--config", path, "--model", "stable"]) == 0
    out = capsys.readouterr().out
    assert f"bytes served now: v1 serves {share:.0f} % of the fp32 bytes" in out
    assert "2026-11-01: v1 serves" in out and "against fp32 (no plan))" in out
    # the page: the capacity, the plan change with its bytes, tables grouped by precision
    from lpmon.airflow.webapp import model_data
    from lpmon.report.page import model_page

    page = model_page(model_data(config, open_store(config), "stable"))
    assert f"v1 serves {share:.0f} % of the fp32 bytes" in page and 'id="plan-changes"' in page
    tables = [p for name, p in unit_precisions(plan).items() if name.startswith("emb_l.")]
    assert f"{tables.count('int8')} embedding tables (emb_l.0..emb_l.{len(tables) - 1})" in page
    assert "v-" not in page and "[-, -]" not in page and "v1->v1" not in page and "v1 (onboarded)" in page
    assert cli.main(["run", "--config", path, "--model", "nope", "--date", "2026-11-01"]) == 1
    assert "no model 'nope'" in capsys.readouterr().err
    assert (
        cli.main(["backfill", "--config", path, "--model", "stable", "--start", "2026-11-03", "--end", "2026-11-01"])
        == 1
    )


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
