"""The order of days in the store: which later days count as judged, and the rewind
that puts them back (their rows, the plans they made, the plan in force before)."""

import json

import pytest

from lpmon.store import Database, StateStore, StoreError
from lpmon.store.order import REWOUND, judged_after, rewind, rewound_after

MODEL = "m"


@pytest.fixture
def store(database_url):
    db = Database(database_url, create=True)
    db.migrate()
    store = StateStore(db)
    store.register_model(MODEL)
    yield store
    db.engine.dispose()


def plan(store, day: str, origin: str, notes: str = "") -> int:
    text = json.dumps({"provenance": {"notes": notes or origin.lower()}, "day": day})
    version = store.add_candidate(MODEL, day, origin, lambda v: text)
    active = store.active_plan(MODEL)
    assert store.promote(MODEL, version, active.version if active else None)
    store.record_plan_event(MODEL, version, day, origin, "why")
    return version


def judged(store, day: str, status: str = "HEALTHY", version: int | None = 1) -> None:
    store.record_run(MODEL, day, status, plan_version=version, sample_size=100, positives=10)
    store.record_decision(MODEL, day, "RECORD", ["ok"])


def test_later_days_are_put_back_with_the_plans_they_made(store):
    v1 = plan(store, "2026-11-01", "ONBOARD", "onboarding; raised: none")
    judged(store, "2026-11-01", version=v1)
    v2 = plan(store, "2026-11-03", "RECALIBRATE")
    judged(store, "2026-11-03", "DEGRADED", v1)
    judged(store, "2026-11-04", version=v2)
    store.record_run(MODEL, "2026-11-05", "INSUFFICIENT_DATA", message="no traffic")  # not judged: no sample
    later = judged_after(store, MODEL, "2026-11-02")
    assert [(x["day"], x["running"]) for x in later] == [("2026-11-03", False), ("2026-11-04", False)]
    rewind(store, MODEL, "2026-11-02", [x["day"] for x in later])
    assert [p.version for p in store.plans(MODEL)] == [v1] and store.active_plan(MODEL).version == v1
    assert [e["version"] for e in store.plan_events(MODEL)] == [v1]
    runs = {r["logical_date"]: r for r in store.rows("runs", MODEL)}
    assert [(d, r["status"], r["plan_version"]) for d, r in sorted(runs.items())] == [
        ("2026-11-01", "HEALTHY", v1),
        ("2026-11-03", "RUNNING", None),
        ("2026-11-04", "RUNNING", None),
        ("2026-11-05", "INSUFFICIENT_DATA", None),
    ]
    assert runs["2026-11-03"]["message"] == REWOUND + "2026-11-02"
    assert [d["logical_date"] for d in store.rows("decisions", MODEL)] == ["2026-11-01"]
    assert rewound_after(store, MODEL, "2026-11-02") == ["2026-11-03", "2026-11-04"]
    assert judged_after(store, MODEL, "2026-11-02") == []  # rewound days are its rewinder's to judge


def test_a_rewind_before_the_first_plan_leaves_serving_fp32(store):
    plan(store, "2026-11-02", "ONBOARD", "onboarding; raised: none")
    judged(store, "2026-11-02")
    rewind(store, MODEL, "2026-11-01", ["2026-11-02"])
    assert store.plans(MODEL) == [] and store.active_plan(MODEL) is None


@pytest.mark.parametrize("origin, notes", [("USER", ""), ("PROACTIVE", ""), ("ONBOARD", "onboarding 1a2b; raised")])
def test_a_plan_the_days_cannot_make_again_refuses_the_rewind(store, origin, notes):
    v1 = plan(store, "2026-11-01", "ONBOARD", "onboarding; raised: none")
    judged(store, "2026-11-03", version=v1)
    plan(store, "2026-11-03", origin, notes)
    with pytest.raises(StoreError, match="re-judging the days cannot make again"):
        rewind(store, MODEL, "2026-11-02", ["2026-11-03"])
    assert store.run(MODEL, "2026-11-03")["status"] == "HEALTHY"  # nothing changed
    assert len(store.plans(MODEL)) == 2


def test_a_users_rollback_after_the_day_refuses_the_rewind(store):
    """`plans promote 1` after v2: an event of the user's, not a new plan; re-activating
    the newest plan would undo it."""
    v1 = plan(store, "2026-11-01", "ONBOARD", "onboarding; raised: none")
    v2 = plan(store, "2026-11-03", "RECALIBRATE")
    judged(store, "2026-11-03", "DEGRADED", v1)
    store.record_plan_event(MODEL, v1, "2026-12-07", "USER", "rollback")
    with pytest.raises(StoreError, match="re-judging the days cannot make again"):
        rewind(store, MODEL, "2026-11-02", ["2026-11-03"])
    assert store.run(MODEL, "2026-11-03")["status"] == "DEGRADED"  # nothing changed
    assert [p.version for p in store.plans(MODEL)] == [v1, v2]


def test_a_put_back_day_says_by_whom_until_its_run_takes_its_turn(store):
    from lpmon.store.order import put_back_by, take

    judged(store, "2026-11-03", version=None)
    rewind(store, MODEL, "2026-11-02", ["2026-11-03"])
    assert put_back_by(store, MODEL, "2026-11-03") == "2026-11-02"  # a run judging it writes nothing
    take(store, MODEL, "2026-11-03")
    assert put_back_by(store, MODEL, "2026-11-03") == "" and rewound_after(store, MODEL, "2026-11-02") == []
