"""What an attacker found (issue 28, point 2): each hostile or faulty case as a
user meets it, through the `lpmon` CLI (in process, or in a subprocess where a
traceback could show), with the store looked at afterwards."""

import dataclasses
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from lpmon import cli
from lpmon.config import load
from lpmon.demo.world import WorldConfig, write_world
from lpmon.pipeline import open_store, run_day
from lpmon.quant import LayerPlan, QuantPlan
from lpmon.store import init_store

pytestmark = pytest.mark.faults

MODEL, DAY0, DAY1 = "stable", "2026-11-01", "2026-11-02"


def write_config(root: Path, world: Path, defaults: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "lpmon.toml"
    path.write_text(
        f'store = "sqlite:///{root / "state.db"}"\nplans_dir = "{root / "plans"}"\nwork_dir = "{root / "work"}"\n'
        f"[defaults]\nsample_size = 5000\nmin_examples = 1000\n{defaults}\n"
        f'[models.{MODEL}]\ntraffic = "{world / "traffic" / MODEL}"\n'
        f'snapshot = "{world / "models" / MODEL / "snapshot"}"\n'
    )
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    write_world(root, WorldConfig(MODEL, days=2, seed=1, examples_per_day=50_000))
    return root


@pytest.fixture(scope="module")
def history(world, tmp_path_factory):
    """A SQLite store holding day 0 (plan v1 active and exported), copied by each test."""
    base = tmp_path_factory.mktemp("history")
    path = write_config(base, world)
    init_store(load(path, environ={}).store)
    assert run_day(load(path, environ={}), MODEL, DAY0).plan_version == 1
    return base


@pytest.fixture
def run_dir(history, world, tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    with sqlite3.connect(history / "state.db") as source, sqlite3.connect(root / "state.db") as target:
        source.backup(target)
    shutil.copytree(history / "plans", root / "plans")
    write_config(root, world)
    return root


def lpmon(root: Path, *args: str, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main([*args, "--config", str(root / "lpmon.toml")])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(code: int, err: str, *words: str) -> str:
    """Refused with one line on stderr naming every word."""
    err = err.strip()
    assert code == 1 and "\n" not in err and "Traceback" not in err, (code, err)
    for word in words:
        assert word in err, (word, err)
    return err


def store_of(root: Path):
    return open_store(load(root / "lpmon.toml", environ={}))


def active_plan(root: Path) -> QuantPlan:
    return QuantPlan.from_json(store_of(root).active_plan(MODEL).plan_json)


def other_plan(root: Path) -> QuantPlan:
    """The active plan with top_l.0 in fp16: a plan lpmon did not make."""
    plan = active_plan(root)
    layers = tuple(LayerPlan(x.name, x.kind, "fp16") if x.name == "top_l.0" else x for x in plan.layers)
    return dataclasses.replace(plan, version=99, layers=layers)


# --- plans: import and promote ---------------------------------------------------------------


def test_a_forced_promotion_of_an_imported_plan_is_recorded(run_dir, capsys):
    (run_dir / "mine.json").write_text(other_plan(run_dir).to_json())
    code, out, _ = lpmon(
        run_dir, "plans", "import", "--model", MODEL, str(run_dir / "mine.json"), "--json", capsys=capsys
    )
    assert code == 0 and json.loads(out)["version"] == 2
    code, out, err = lpmon(run_dir, "plans", "promote", "--model", MODEL, "2", "--force", "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["promoted"] is True, (out, err)
    events = store_of(run_dir).plan_events(MODEL)
    assert [(e["version"], e["origin"], e["forced"]) for e in events] == [(1, "ONBOARD", 0), (2, "USER", 1)]
    assert json.loads(events[-1]["units_json"]) == ["top_l.0"]


def test_promoting_the_plan_in_force_says_nothing_changed(run_dir, capsys):
    for force in ([], ["--force"]):
        code, out, _ = lpmon(run_dir, "plans", "promote", "--model", MODEL, "1", *force, "--json", capsys=capsys)
        data = json.loads(out)
        assert code == 1 and data["promoted"] is False and "already in force" in data["reason"], data
    assert [e["version"] for e in store_of(run_dir).plan_events(MODEL)] == [1]


def test_importing_the_plan_in_force_says_so(run_dir, capsys):
    (run_dir / "same.json").write_text(active_plan(run_dir).to_json())
    code, out, _ = lpmon(
        run_dir, "plans", "import", "--model", MODEL, str(run_dir / "same.json"), "--json", capsys=capsys
    )
    data = json.loads(out)
    assert code == 0 and data["version"] == 1 and data["status"] == "active" and data["stored"] is False, data
    code, out, _ = lpmon(run_dir, "plans", "import", "--model", MODEL, str(run_dir / "same.json"), capsys=capsys)
    assert "identical to plan v1 (active): nothing stored" in out, out
    assert [p.version for p in store_of(run_dir).plans(MODEL)] == [1]


def test_a_plan_for_another_model_is_refused(run_dir, capsys):
    plan = dataclasses.replace(other_plan(run_dir), model_id="someone-else")
    (run_dir / "theirs.json").write_text(plan.to_json())
    code, _, err = lpmon(run_dir, "plans", "import", "--model", MODEL, str(run_dir / "theirs.json"), capsys=capsys)
    one_line(code, err, "theirs.json", "'someone-else'", MODEL)
    assert [p.version for p in store_of(run_dir).plans(MODEL)] == [1]


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000])
def test_deeply_nested_json_is_a_one_line_error(run_dir, capsys, text):
    (run_dir / "deep.json").write_text(text)
    code, _, err = lpmon(run_dir, "plans", "import", "--model", MODEL, str(run_dir / "deep.json"), capsys=capsys)
    one_line(code, err, "deep.json", "nested too deeply")


# --- date ranges have bounds -----------------------------------------------------------------


def rows_of(root: Path) -> list:
    return store_of(root).rows("runs", MODEL)


@pytest.mark.parametrize(
    "args, words",
    [
        (["backfill", "--start", "0001-01-01", "--end", "9999-12-31"], ["9999-12-31", "after tomorrow"]),
        (["run", "--date", "9999-12-31"], ["9999-12-31", "after tomorrow"]),
        (["backfill", "--start", "2026-10-01", "--end", DAY1], ["2026-10-01", "traffic", DAY0, DAY1]),
        (["run", "--date", "2026-10-31"], ["2026-10-31", "before", "traffic", DAY0, DAY1]),
        (["onboard", "--date", "2026-10-31"], ["2026-10-31", "traffic"]),
    ],
)
def test_days_outside_the_traffic_or_the_calendar_are_refused(run_dir, capsys, args, words):
    before = rows_of(run_dir)
    code, _, err = lpmon(run_dir, *args, "--model", MODEL, capsys=capsys)
    one_line(code, err, *words)
    assert rows_of(run_dir) == before


def test_a_range_longer_than_the_configured_maximum_is_refused(run_dir, world, capsys):
    write_config(run_dir, world, defaults="max_backfill_days = 1")
    before = rows_of(run_dir)
    code, _, err = lpmon(run_dir, "backfill", "--model", MODEL, "--start", DAY0, "--end", DAY1, capsys=capsys)
    one_line(code, err, "2 days", "max_backfill_days = 1")
    assert rows_of(run_dir) == before
    write_config(run_dir, world, defaults="max_backfill_days = 0")
    code, _, err = lpmon(run_dir, "status", capsys=capsys)
    assert code == 1 and "max_backfill_days: must be between 1 and" in err, err


# --- status looks at serving's file ----------------------------------------------------------


def serving_file(root: Path) -> Path:
    return root / "plans" / MODEL / "active.json"


def retable(path: Path) -> None:
    """emb_l.0 in int4 where the store's plan has int8: a valid plan, not the one in force."""
    plan = json.loads(path.read_text())
    plan["layers"]["emb_l.0"]["precision"] = "int4"
    path.write_text(json.dumps(plan))


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda p: p.write_text("garbage"), ["active.json", "not a plan"]),
        (lambda p: p.unlink(), ["active.json", "missing"]),
        (lambda p: p.write_text(p.read_text().replace('"version": 1', '"version": 7')), ["holds v7", "v1"]),
        (retable, ["differs from", "v1"]),
    ],
)
def test_status_checks_serving_file_against_the_store(run_dir, capsys, damage, words):
    code, out, _ = lpmon(run_dir, "status", "--json", capsys=capsys)
    assert code == 0 and json.loads(out)[MODEL]["serving"]["problem"] == ""
    damage(serving_file(run_dir))
    code, out, _ = lpmon(run_dir, "status", "--json", capsys=capsys)
    problem = json.loads(out)[MODEL]["serving"]["problem"]
    assert all(word in problem for word in words), problem
    code, out, _ = lpmon(run_dir, "status", capsys=capsys)
    line = next(line for line in out.splitlines() if "! serving:" in line)
    assert all(word in line for word in words), out


# --- lpmon world: the config's rule for model ids, paths under --root ---------------------------

WORLD_IDS = ["../../escape", "../x", "/abs", "a/b", "a\nb", "<b>x</b>", "a b", "é", "x" * 200, "..", ".", ""]


@pytest.mark.parametrize("model_id", WORLD_IDS)
def test_world_refuses_the_ids_the_config_refuses_and_writes_nothing(tmp_path, capsys, model_id):
    root = tmp_path / "a" / "b" / "root"
    code = cli.main(["world", "--root", str(root), "--model-id", model_id, "--days", "1", "--examples-per-day", "100"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and "a model id is letters" in err, (code, err)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == []  # nothing, not even --root


@pytest.mark.parametrize("model_id", WORLD_IDS + ["ok", "a.b-c_1", "-x", "a..b"])
def test_world_and_the_config_apply_one_rule(tmp_path, model_id):
    from lpmon.config import ConfigError
    from lpmon.demo.world import WorldConfig

    try:
        WorldConfig(model_id=model_id)
        world_ok = True
    except ValueError:
        world_ok = False
    path = tmp_path / "lpmon.toml"
    path.write_text(f'[models.{json.dumps(model_id)}]\ntraffic = "t"\nsnapshot = "s"\n')
    try:
        load(path, environ={})
        config_ok = True
    except ConfigError as err:
        config_ok = "a model id is letters" not in str(err)
    assert world_ok == config_ok, model_id


# --- a full disk ----------------------------------------------------------------------------------


@pytest.fixture
def full_store(monkeypatch):
    """SQLite's own "database or disk is full" (SQLITE_FULL) once the store may grow no more:
    every new connection is capped at the file's size (PRAGMA max_page_count)."""
    from lpmon.store import database

    real = database._sqlite_pragmas

    def capped(connection, record):
        real(connection, record)
        cursor = connection.cursor()
        cursor.execute("PRAGMA max_page_count = 1")  # clamped to the pages the file has now
        cursor.close()

    monkeypatch.setattr(database, "_sqlite_pragmas", capped)


def test_a_store_whose_disk_fills_is_one_line_and_leaves_no_day_running(run_dir, world, capsys, full_store):
    code, _, err = lpmon(run_dir, "run", "--model", MODEL, "--date", DAY1, capsys=capsys)
    one_line(code, err, "state.db", "full")
    row = store_of(run_dir).run(MODEL, DAY1)
    assert row is None or row["status"] == "failed", row
    assert all(r["status"] != "RUNNING" for r in rows_of(run_dir))


def test_a_full_work_dir_names_the_path(tmp_path, monkeypatch):
    import errno
    import os

    from lpmon.atomic import write_atomically

    def full(fd):  # where a full disk shows on delayed allocation or NFS: the data's flush
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "reports" / "m" / "2026-11-01.html"
    target.parent.mkdir(parents=True)
    with pytest.raises(OSError) as err:
        write_atomically(target, b"x" * 100_000)
    assert str(target) in str(err.value) and "No space left on device" in str(err.value)
    assert list(target.parent.iterdir()) == []


def test_a_full_work_dir_names_the_days_folder(tmp_path, monkeypatch):
    """The Airflow tasks keep a day's results under work_dir between steps."""
    import errno

    import numpy as np

    from lpmon.pipeline.daywork import DayWork

    work = DayWork(MODEL, DAY0)
    work.labels = np.zeros(10, np.uint8)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(OSError) as err:
        work.save(tmp_path / "work")
    assert str(tmp_path / "work" / MODEL / DAY0) in str(err.value) and "No space left" in str(err.value)
