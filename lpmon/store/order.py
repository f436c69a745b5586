"""The order of a model's days in the store: which earlier days are still being
judged, which later days were judged before an earlier one, and the rewind that
puts those later days back so that they are judged again, after it.

A day is *judged* once its first run fixes the plan in force on its row (the
score step); its verdict depends on every earlier day's (their promotions, their
streaks). A day whose sample could not be drawn (no traffic, unreadable traffic)
is not judged: its row is the same whatever came before it.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from . import schema
from .errors import StoreError

ORDER_LOCK = "order"  # the model-wide lock (Database.day_lock with this in place of a day)
REWOUND = "rewound: to be judged again after "  # how the row of a rewound day begins its message
# Plans that re-judging the days cannot make again: a user's, a proactive recalibration's.
_NOT_FROM_DAYS = ("USER", "PROACTIVE")


def earlier_in_progress(store, model_id: str, day: str) -> list[str]:
    """Earlier days of the model that a live run is judging now (row RUNNING, day lock held)."""
    return [e for e in store.days_running(model_id, before=day) if store.db.day_locked(model_id, e)]


def judged_after(store, model_id: str, day: str) -> list[dict]:
    """Later days already judged (a plan fixed on the row, or a verdict without one),
    oldest first, as {"day", "status", "running"}: "running" when a live run holds it
    now. A day rewound and not judged again yet is not among them: its rewinder
    judges it again, in order."""
    with store.db.engine.connect() as c:
        rows = c.execute(
            sa.text(
                "SELECT logical_date, status FROM runs WHERE model_id = :m AND logical_date > :d "
                "AND (plan_version IS NOT NULL OR (sample_size IS NOT NULL AND status <> 'RUNNING')) "
                "ORDER BY logical_date"
            ),
            {"m": model_id, "d": day},
        ).all()
    return [{"day": d, "status": s, "running": s == "RUNNING" and store.db.day_locked(model_id, d)} for d, s in rows]


def rewound_after(store, model_id: str, day: str) -> list[str]:
    """Later days a rewind from `day` left to be judged again, oldest first."""
    with store.db.engine.connect() as c:
        return list(
            c.execute(
                sa.text(
                    "SELECT logical_date FROM runs WHERE model_id = :m AND logical_date > :d AND status = 'RUNNING' "
                    "AND plan_version IS NULL AND message = :why ORDER BY logical_date"
                ),
                {"m": model_id, "d": day, "why": REWOUND + day},
            ).scalars()
        )


def take(store, model_id: str, day: str) -> None:
    """A rewound day's run has taken its turn: its row no longer says REWOUND."""
    with store.db.transaction() as c:
        c.execute(
            sa.text(
                "UPDATE runs SET message = '' WHERE model_id = :m AND logical_date = :d AND status = 'RUNNING' "
                "AND message LIKE :why"
            ),
            {"m": model_id, "d": day, "why": REWOUND + "%"},
        )


def put_back_by(store, model_id: str, day: str) -> str:
    """The earlier day that rewound `day` while a run was judging it ("" if none did)."""
    row = store.run(model_id, day)
    message = (row or {}).get("message") or ""
    if row and row["status"] == "RUNNING" and message.startswith(REWOUND):
        return message[len(REWOUND) :]
    return ""


def rewind(store, model_id: str, day: str, later: list[str]) -> None:
    """Undo the judgements of `later` (days after `day`, judged before it), in one
    transaction: their metrics and decisions go, their rows say RUNNING with no plan
    (REWOUND), and the plans the model's days made after `day` go with their events;
    the newest plan promoted by `day` is active again (none: serving fp32). A plan
    of a user or of a proactive recalibration after `day` is refused (StoreError):
    re-judging the days cannot make it again."""
    if not later:
        return
    params = {"m": model_id, "d": day}
    with store.db.transaction() as c:
        plans = c.execute(
            sa.text("SELECT version, reason, plan_json FROM plans WHERE model_id = :m AND logical_date > :d"), params
        ).all()
        foreign = [f"v{v}" for v, reason, text in plans if reason in _NOT_FROM_DAYS or _from_snapshot(reason, text)]
        # A user's promotion after `day` of an older plan (a rollback) is an event, not a new plan.
        foreign += [
            f"v{v}"
            for (v,) in c.execute(
                sa.text(
                    "SELECT version FROM plan_events WHERE model_id = :m AND logical_date > :d AND origin IN :origins"
                ).bindparams(sa.bindparam("origins", expanding=True)),
                {**params, "origins": list(_NOT_FROM_DAYS)},
            )
            if f"v{v}" not in foreign
        ]
        if foreign:
            raise StoreError(
                f"{model_id} {day}: later days ({later[0]} to {later[-1]}) were judged before this one, and "
                f"plans {', '.join(foreign)} were made after it by a user, a proactive recalibration or a new "
                "snapshot, which re-judging the days cannot make again: judge the days from "
                f"{later[0]} on as they are (this day is left unjudged)"
            )
        days = {"m": model_id, "days": later}
        for table in (schema.run_metrics, schema.layer_metrics, schema.decisions, schema.fallback_progress):
            c.execute(sa.delete(table).where(table.c.model_id == model_id, table.c.logical_date.in_(later)))
        c.execute(
            sa.text(
                "UPDATE runs SET status = 'RUNNING', plan_version = NULL, message = :why, finished_at = NULL "
                "WHERE model_id = :m AND logical_date IN :days"
            ).bindparams(sa.bindparam("days", expanding=True)),
            {**days, "why": REWOUND + day},
        )
        versions = [v for v, _, _ in plans]
        if versions:
            chosen = {"m": model_id, "vs": versions}
            expanding = sa.bindparam("vs", expanding=True)
            c.execute(
                sa.text("DELETE FROM plan_events WHERE model_id = :m AND version IN :vs").bindparams(expanding), chosen
            )
            c.execute(sa.text("DELETE FROM plans WHERE model_id = :m AND version IN :vs").bindparams(expanding), chosen)
        _restore_active(c, model_id)


def _from_snapshot(reason: str, plan_json: str) -> bool:
    """A plan onboarded for a new snapshot (lpmon_onboard), not by a day's first run."""
    if reason != "ONBOARD":
        return False
    notes = (json.loads(plan_json).get("provenance") or {}).get("notes", "")
    return notes.startswith("onboarding ") and not notes.startswith("onboarding;")


def _restore_active(c, model_id: str) -> None:
    """The newest promoted plan left is the active one; every other promoted plan is retired."""
    newest = c.execute(sa.text("SELECT MAX(version) FROM plan_events WHERE model_id = :m"), {"m": model_id}).scalar()
    c.execute(
        sa.text("UPDATE plans SET status = 'retired' WHERE model_id = :m AND status = 'active' AND version <> :v"),
        {"m": model_id, "v": -1 if newest is None else newest},
    )
    if newest is not None:
        c.execute(
            sa.text("UPDATE plans SET status = 'active' WHERE model_id = :m AND version = :v"),
            {"m": model_id, "v": newest},
        )
