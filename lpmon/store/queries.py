"""The named reads of lpmon's state: what the CLI, the reports, the web app, the
demo and the pipeline ask the store, filtered in SQL. The schema stays here:
no module outside lpmon.store names a table (tests/test_store_queries.py).

StateStore (lpmon.store.repository) inherits these; they need only `self.db`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from .database import Database

_PLAN_COLUMNS = "model_id, version, status, logical_date, plan_json, reason"
# A day's run with its overall metrics (segment '') and its decision, if any.
_DAY = (
    "SELECT r.model_id, r.logical_date, r.status, r.message, r.plan_version, r.examples_scored, r.looks, "
    "r.stop_reason, d.action, d.reasons_json, "
    "d.new_plan_version, m.n, m.dne_pct, m.dne_pct_lo, m.dne_pct_hi FROM runs r "
    "LEFT JOIN run_metrics m ON m.model_id = r.model_id AND m.logical_date = r.logical_date "
    "AND m.segment = '' "
    "LEFT JOIN decisions d ON d.model_id = r.model_id AND d.logical_date = r.logical_date "
    "WHERE r.model_id = :m"
)
JUDGED = ("HEALTHY", "WARN", "DEGRADED")  # the statuses of a day with a verdict


@dataclass(frozen=True)
class PlanRecord:
    model_id: str
    version: int
    status: str
    logical_date: str
    plan_json: str
    reason: str  # for the plans lpmon.pipeline.lifecycle stores: their origin (Origin.value)


@dataclass(frozen=True)
class DaySummary:
    """One model's day: its run, its overall metrics and its decision.
    action is None when the day has no decision; the dNE fields when it has no metrics."""

    model_id: str
    day: str
    status: str
    message: str = ""
    plan_version: int | None = None
    action: str | None = None
    reasons: list[str] = field(default_factory=list)
    new_plan_version: int | None = None
    n: int | None = None
    dne_pct: float | None = None
    dne_pct_lo: float | None = None
    dne_pct_hi: float | None = None
    examples_scored: int | None = None  # what the day spent (None: nothing scored, or run before lpmon recorded it)
    looks: int | None = None
    stop_reason: str | None = None

    @classmethod
    def _from_row(cls, row) -> DaySummary:
        r = row._mapping
        return cls(
            model_id=r["model_id"],
            day=r["logical_date"],
            status=r["status"],
            message=r["message"] or "",
            plan_version=r["plan_version"],
            action=r["action"],
            reasons=json.loads(r["reasons_json"] or "[]"),
            new_plan_version=r["new_plan_version"],
            n=r["n"],
            dne_pct=r["dne_pct"],
            dne_pct_lo=r["dne_pct_lo"],
            dne_pct_hi=r["dne_pct_hi"],
            examples_scored=r["examples_scored"],
            looks=r["looks"],
            stop_reason=r["stop_reason"],
        )


class Queries:
    """Read-only queries over self.db (a lpmon.store.Database)."""

    db: Database  # set by StateStore

    def _all(self, sql: str, **params) -> list[dict]:
        with self.db.engine.connect() as c:
            return [dict(row._mapping) for row in c.execute(sa.text(sql), params)]

    # --- days -------------------------------------------------------------------------------
    def day_summary(self, model_id: str, day: str) -> DaySummary | None:
        """The day's run, overall metrics and decision (None: no run that day)."""
        with self.db.engine.connect() as c:
            row = c.execute(sa.text(_DAY + " AND r.logical_date = :d"), {"m": model_id, "d": day}).first()
        return None if row is None else DaySummary._from_row(row)

    def latest_day(self, model_id: str, statuses: tuple[str, ...] | None = None) -> DaySummary | None:
        """The model's last day with a run (only runs with one of `statuses`, if given)."""
        params: dict = {"m": model_id}
        where = ""
        if statuses:
            names = [f"s{i}" for i in range(len(statuses))]
            where = f" AND r.status IN ({', '.join(':' + n for n in names)})"
            params.update(zip(names, statuses))
        with self.db.engine.connect() as c:
            row = c.execute(sa.text(_DAY + where + " ORDER BY r.logical_date DESC LIMIT 1"), params).first()
        return None if row is None else DaySummary._from_row(row)

    def latest_judged_day(self, model_id: str) -> DaySummary | None:
        """The last day with a verdict (a later day may have had no traffic, or failed)."""
        return self.latest_day(model_id, JUDGED)

    def neighbour_days(self, model_id: str, day: str) -> tuple[str, str]:
        """The days with a run just before and just after `day` ("" where there is none)."""
        with self.db.engine.connect() as c:
            earlier, later = c.execute(
                sa.text(
                    "SELECT (SELECT MAX(logical_date) FROM runs WHERE model_id = :m AND logical_date < :d), "
                    "(SELECT MIN(logical_date) FROM runs WHERE model_id = :m AND logical_date > :d)"
                ),
                {"m": model_id, "d": day},
            ).one()
        return earlier or "", later or ""

    def runs_before(self, model_id: str, before: str) -> list[dict]:
        """The run rows of the days before `before`, oldest first."""
        return self._all(
            "SELECT * FROM runs WHERE model_id = :m AND logical_date < :d ORDER BY logical_date", m=model_id, d=before
        )

    def layer_metrics(self, model_id: str, day: str) -> list[dict]:
        """A day's per-layer metrics, in layer order."""
        return self._all(
            "SELECT * FROM layer_metrics WHERE model_id = :m AND logical_date = :d ORDER BY layer", m=model_id, d=day
        )

    def latest_layer_metrics(self, model_id: str) -> dict[str, dict]:
        """Each layer's metrics of the last day that measured it: layer -> row."""
        rows = self._all(
            "SELECT l.* FROM layer_metrics l JOIN (SELECT layer, MAX(logical_date) AS last FROM layer_metrics "
            "WHERE model_id = :m GROUP BY layer) x ON x.layer = l.layer AND x.last = l.logical_date "
            "WHERE l.model_id = :m ORDER BY l.layer",
            m=model_id,
        )
        return {row["layer"]: row for row in rows}

    def decisions(self, model_id: str, *, acted_only: bool = False, last: int | None = None) -> list[dict]:
        """The model's decisions, oldest first, with their reasons as a list. acted_only:
        only those that did something (not a plain RECORD); last: only the newest `last`."""
        where = " AND (action <> 'RECORD' OR new_plan_version IS NOT NULL)" if acted_only else ""
        limit = "" if last is None else f" LIMIT {int(last)}"
        rows = self._all(
            f"SELECT * FROM decisions WHERE model_id = :m{where} ORDER BY logical_date DESC{limit}", m=model_id
        )
        for row in rows:
            row["reasons"] = json.loads(row.pop("reasons_json") or "[]")
        return rows[::-1]

    # --- alerts -----------------------------------------------------------------------------
    def alerts(self, model_id: str, day: str | None = None, channel: str | None = None) -> list[dict]:
        """The recorded alerts (of one day and channel, if given), oldest day first."""
        where = "".join(
            f" AND {column} = :{column}"
            for column, value in (("logical_date", day), ("channel", channel))
            if value is not None
        )
        return self._all(
            f"SELECT * FROM alerts WHERE model_id = :m{where} ORDER BY logical_date, event, channel",
            m=model_id,
            logical_date=day,
            channel=channel,
        )

    # --- plans ------------------------------------------------------------------------------
    def plans(self, model_id: str) -> list[PlanRecord]:
        """Every stored plan of the model, by version."""
        with self.db.engine.connect() as c:
            rows = c.execute(
                sa.text(f"SELECT {_PLAN_COLUMNS} FROM plans WHERE model_id = :m ORDER BY version"), {"m": model_id}
            ).all()
        return [PlanRecord(*row) for row in rows]

    def plan_record(self, model_id: str, version: int) -> PlanRecord | None:
        with self.db.engine.connect() as c:
            row = c.execute(
                sa.text(f"SELECT {_PLAN_COLUMNS} FROM plans WHERE model_id = :m AND version = :v"),
                {"m": model_id, "v": version},
            ).first()
        return PlanRecord(*row) if row else None

    def active_plan(self, model_id: str) -> PlanRecord | None:
        with self.db.engine.connect() as c:
            row = c.execute(
                sa.text(f"SELECT {_PLAN_COLUMNS} FROM plans WHERE model_id = :m AND status = 'active'"), {"m": model_id}
            ).first()
        return PlanRecord(*row) if row else None

    def plans_of_day(self, model_id: str, logical_date: str, origin: str | None = None) -> list[PlanRecord]:
        """The plans stored on one logical date (a rerun finds its own candidates);
        origin: only those the lifecycle stored for that origin (an Origin's value)."""
        where = "" if origin is None else " AND reason = :o"
        with self.db.engine.connect() as c:
            rows = c.execute(
                sa.text(
                    f"SELECT {_PLAN_COLUMNS} FROM plans WHERE model_id = :m AND logical_date = :d"
                    f"{where} ORDER BY version"
                ),
                {"m": model_id, "d": logical_date, "o": origin},
            ).all()
        return [PlanRecord(*row) for row in rows]

    def plan_in_force_after(self, model_id: str, day: str) -> int | None:
        """The plan serving had after `day`: the newest promoted by then (None: fp32)."""
        with self.db.engine.connect() as c:
            return c.execute(
                sa.text(
                    "SELECT MAX(version) FROM plans WHERE model_id = :m AND status IN ('active', 'retired') "
                    "AND logical_date <= :d"
                ),
                {"m": model_id, "d": day},
            ).scalar()

    def onboarded_snapshot(self, model_id: str, snapshot_id: str) -> bool:
        """Whether onboarding already stored a plan for this snapshot (promoted or not):
        a plan of origin ONBOARD whose provenance notes say "onboarding <snapshot_id>"."""
        with self.db.engine.connect() as c:
            texts = (
                c.execute(
                    sa.text("SELECT plan_json FROM plans WHERE model_id = :m AND reason = 'ONBOARD'"), {"m": model_id}
                )
                .scalars()
                .all()
            )
        wanted = f"onboarding {snapshot_id}"
        for text in texts:
            provenance = json.loads(text).get("provenance")
            notes = provenance.get("notes") if isinstance(provenance, dict) else None
            if isinstance(notes, str) and wanted in notes:
                return True
        return False
