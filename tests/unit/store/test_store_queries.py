"""The store's named reads (lpmon.store.queries) on SQLite and PostgreSQL, and the
rule that keeps the schema inside lpmon.store: no other module names a table."""

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest

import lpmon
from lpmon.metrics import compare
from lpmon.store import Database, StateStore, migrations
from lpmon.store.database import TABLES

PACKAGE = Path(lpmon.__file__).resolve().parent
ALL_TABLES = set(TABLES) | {"plan_events", "plan_pins", "exports", "schema_migrations"}


@pytest.fixture
def store(database_url):
    db = Database(database_url, create=True)
    assert db.migrate() == [v for v, _, _ in migrations()]
    store = StateStore(db)
    store.register_model("ctr")
    yield store
    db.engine.dispose()


def _comparison(seed=0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.01, 0.5, 2000)
    y = (rng.random(2000) < p).astype(np.uint8)
    return compare(p, np.clip(p * 1.01, 0, 1), y)


def _plan(note: str) -> str:
    return json.dumps({"provenance": {"notes": note}, "layers": {}})


def test_day_summary_joins_run_metrics_and_decision(store):
    c = _comparison()
    store.record_run("ctr", "2026-11-01", "HEALTHY", plan_version=1)
    store.record_metrics("ctr", "2026-11-01", c)
    store.record_metrics("ctr", "2026-11-01", _comparison(1), segment="country=FR")  # not the overall row
    store.record_decision("ctr", "2026-11-01", "RECORD", ["dNE within the gate"], new_plan_version=None)
    store.record_run("ctr", "2026-11-02", "failed", message="no traffic")
    day = store.day_summary("ctr", "2026-11-01")
    assert (day.day, day.status, day.plan_version, day.action, day.reasons) == (
        "2026-11-01",
        "HEALTHY",
        1,
        "RECORD",
        ["dNE within the gate"],
    )
    assert day.dne_pct == pytest.approx(c.dne_pct) and day.n == 2000
    bare = store.day_summary("ctr", "2026-11-02")  # no metrics, no decision
    assert (bare.action, bare.reasons, bare.dne_pct, bare.message) == (None, [], None, "no traffic")
    assert store.day_summary("ctr", "2026-11-03") is None
    assert store.day_summary("other", "2026-11-01") is None


def test_latest_days_neighbours_and_runs_before(store):
    for day, status in (
        ("2026-11-01", "HEALTHY"),
        ("2026-11-02", "DEGRADED"),
        ("2026-11-04", "INSUFFICIENT_DATA"),
        ("2026-11-05", "failed"),
    ):
        store.record_run("ctr", day, status)
    assert store.latest_day("ctr").day == "2026-11-05"
    assert store.latest_judged_day("ctr").day == "2026-11-02"
    assert store.latest_day("ctr", ("HEALTHY",)).day == "2026-11-01"
    assert store.latest_day("nope") is None and store.latest_judged_day("nope") is None
    assert store.neighbour_days("ctr", "2026-11-02") == ("2026-11-01", "2026-11-04")
    assert store.neighbour_days("ctr", "2026-11-03") == ("2026-11-02", "2026-11-04")
    assert store.neighbour_days("ctr", "2026-11-01") == ("", "2026-11-02")
    assert store.neighbour_days("ctr", "2026-11-05") == ("2026-11-04", "")
    assert [r["logical_date"] for r in store.runs_before("ctr", "2026-11-04")] == ["2026-11-01", "2026-11-02"]


def test_layer_metrics_of_a_day_and_the_latest_per_layer(store):
    for day in ("2026-11-01", "2026-11-02"):
        store.record_run("ctr", day, "HEALTHY")
    store.record_layer_metrics(
        "ctr", "2026-11-01", {"a": {"precision": "int8", "sqnr_db": 30.0}, "b": {"precision": "int8", "sqnr_db": 20.0}}
    )
    store.record_layer_metrics("ctr", "2026-11-02", {"a": {"precision": "fp16", "sqnr_db": 40.0}})
    assert [r["layer"] for r in store.layer_metrics("ctr", "2026-11-01")] == ["a", "b"]
    latest = store.latest_layer_metrics("ctr")
    assert {k: (r["logical_date"], r["sqnr_db"]) for k, r in latest.items()} == {
        "a": ("2026-11-02", 40.0),
        "b": ("2026-11-01", 20.0),
    }


def test_decisions_acted_only_and_last(store):
    for i, (action, new) in enumerate(
        (("RECORD", None), ("RECALIBRATE", 2), ("RECORD", None), ("RECORD", 3), ("FALLBACK", 4))
    ):
        day = f"2026-11-0{i + 1}"
        store.record_run("ctr", day, "HEALTHY")
        store.record_decision("ctr", day, action, [f"r{i}"], new_plan_version=new)
    assert [d["logical_date"][-1] for d in store.decisions("ctr")] == list("12345")
    assert [d["action"] for d in store.decisions("ctr", acted_only=True)] == ["RECALIBRATE", "RECORD", "FALLBACK"]
    last = store.decisions("ctr", acted_only=True, last=2)
    assert [(d["logical_date"], d["reasons"]) for d in last] == [("2026-11-04", ["r3"]), ("2026-11-05", ["r4"])]


def test_alerts_of_a_day_and_channel(store):
    store.record_alert("ctr", "2026-11-02", "DEGRADED", "email", "sent")
    store.record_alert("ctr", "2026-11-01", "DEGRADED", "email", "failed", error="smtp down")
    store.record_alert("ctr", "2026-11-02", "DEGRADED", "slack", "sent")
    assert [(a["logical_date"], a["channel"]) for a in store.alerts("ctr")] == [
        ("2026-11-01", "email"),
        ("2026-11-02", "email"),
        ("2026-11-02", "slack"),
    ]
    assert [a["status"] for a in store.alerts("ctr", "2026-11-02", "email")] == ["sent"]
    assert store.alerts("ctr", "2026-11-03", "email") == []


def test_plans_by_origin_in_force_and_onboarded_snapshots(store):
    v1 = store.add_candidate("ctr", "2026-11-01", "ONBOARD", lambda v: _plan("onboarding abc123"))
    v2 = store.add_candidate("ctr", "2026-11-03", "PROACTIVE", lambda v: _plan("proactive"))
    v3 = store.add_candidate("ctr", "2026-11-03", "USER", lambda v: _plan("onboarding def456 (a user's words)"))
    assert [p.version for p in store.plans("ctr")] == [v1, v2, v3]
    assert [p.version for p in store.plans_of_day("ctr", "2026-11-03", origin="PROACTIVE")] == [v2]
    assert [p.version for p in store.plans_of_day("ctr", "2026-11-03")] == [v2, v3]
    assert store.onboarded_snapshot("ctr", "abc123")
    assert not store.onboarded_snapshot("ctr", "def456")  # not a plan onboarding made
    assert not store.onboarded_snapshot("ctr", "abc12x") and not store.onboarded_snapshot("other", "abc123")
    # the plan serving had after each day: the newest promoted by then
    assert store.plan_in_force_after("ctr", "2026-11-02") is None  # only candidates so far
    assert store.promote("ctr", v1, None) and store.promote("ctr", v2, v1)
    assert [store.plan_in_force_after("ctr", d) for d in ("2026-10-31", "2026-11-01", "2026-11-02", "2026-11-03")] == [
        None,
        v1,
        v1,
        v2,
    ]
    assert store.plan_record("ctr", v3).status == "candidate" and store.active_plan("ctr").version == v2


# --- the schema stays in lpmon.store ------------------------------------------------------------
# SQL as lpmon writes it (upper-case keywords: prose such as "the table exports" is not SQL)
_SQL = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+(" + "|".join(sorted(ALL_TABLES)) + r")\b")


def _store_receiver(node: ast.AST) -> bool:
    """store.x(...), self.store.x(...), store.db.x(...): a call on the state store."""
    while isinstance(node, ast.Attribute):
        if node.attr in ("store", "db"):
            return True
        node = node.value
    return isinstance(node, ast.Name) and node.id in ("store", "db", "state")


def schema_leaks(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "rows":
                found.append(f"line {node.lineno}: .rows(...)")
            elif _store_receiver(node.func.value):
                found += [
                    f"line {node.lineno}: table {arg.value!r} passed to the store"
                    for arg in node.args
                    if isinstance(arg, ast.Constant) and arg.value in ALL_TABLES
                ]
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _SQL.search(node.value):
            found.append(f"line {node.lineno}: SQL naming table {_SQL.search(node.value)[1]!r}")
    return found


def test_the_checker_finds_what_it_is_meant_to():
    assert len(schema_leaks('store.rows("runs", m)\nself.store.table("plans")\nx = "SELECT * FROM runs r"')) == 3
    assert schema_leaks('data["decisions"]\ncommands.add_parser("plans")\nout.get("alerts", {})') == []


def test_no_module_outside_the_store_names_a_table():
    leaks = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if (PACKAGE / "store") in path.parents:
            continue
        found = schema_leaks(path.read_text(encoding="utf-8"))
        if found:
            leaks[str(path.relative_to(PACKAGE))] = found
    assert leaks == {}, "use (or add) a named query in lpmon/store/queries.py instead"
