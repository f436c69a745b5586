"""Reads and writes of lpmon's state. Every write keyed by (model, logical date)
is an idempotent upsert; a plan's promotion is one compare-and-swap transaction."""

from __future__ import annotations

import json
from dataclasses import fields

import sqlalchemy as sa

from lpmon.metrics import Comparison

from . import schema
from .database import Database, now
from .plans import PlanStore
from .queries import PlanRecord, Queries  # noqa: F401 - PlanRecord was defined here
from .schema import run_metrics, upsert

# What lpmon.metrics.compare gives that run_metrics stores (its other columns are written by name).
METRIC_COLUMNS = tuple(c.name for c in run_metrics.columns if c.name in {f.name for f in fields(Comparison)})


def _finite_or_none(value):
    return None if value is None or value != value else float(value)  # NaN is stored as NULL


class StateStore(Queries, PlanStore):
    """The repositories over one Database (its named reads: lpmon.store.queries; its
    plans, promotions, exports and pins: lpmon.store.plans)."""

    def __init__(self, database: Database | str):
        self.db = database if isinstance(database, Database) else Database(database)

    # --- models -----------------------------------------------------------------------
    def register_model(self, model_id: str, config: dict | None = None) -> None:
        values = dict(model_id=model_id, created_at=now(), config_json=json.dumps(config or {}, sort_keys=True))
        self._write(None, [upsert("models", ("model_id",), values, update=("config_json",))])

    def register_snapshot(self, model_id: str, snapshot_id: str, uri: str) -> None:
        values = dict(model_id=model_id, snapshot_id=snapshot_id, uri=uri, registered_at=now())
        self._write(None, [upsert("snapshots", ("model_id", "snapshot_id"), values, update=())])

    def models(self) -> list[str]:
        with self.db.engine.connect() as c:
            return list(c.execute(sa.text("SELECT model_id FROM models ORDER BY model_id")).scalars())

    # --- runs and their results ---------------------------------------------------------
    def record_run(
        self,
        model_id: str,
        logical_date: str,
        status: str,
        *,
        message: str = "",
        plan_version: int | None = None,
        sample_size: int | None = None,
        positives: int | None = None,
        timings: dict | None = None,
        spent: tuple[int, int, str] | None = None,
        connection=None,
    ) -> None:
        """spent: (examples scored, looks, stop reason) of a day that scored examples."""
        examples_scored, looks, stop_reason = spent or (None, None, None)
        values = dict(
            model_id=model_id,
            logical_date=logical_date,
            status=status,
            message=message,
            plan_version=plan_version,
            sample_size=sample_size,
            positives=positives,
            finished_at=now(),
            timings_json=json.dumps(timings or {}, sort_keys=True),
            examples_scored=examples_scored,
            looks=looks,
            stop_reason=stop_reason,
        )
        self._write(connection, [upsert("runs", ("model_id", "logical_date"), values)])

    def mark_started(self, model_id: str, logical_date: str) -> None:
        """A RUNNING row for a day that has none yet (a rerun keeps the row it has)."""
        values = dict(model_id=model_id, logical_date=logical_date, status="RUNNING", started_at=now())
        self._write(None, [upsert("runs", ("model_id", "logical_date"), values, update=())])

    def fail_running(self, model_id: str, logical_date: str, message: str) -> None:
        """A first run that stopped with an error: its RUNNING row says failed, and why (a
        finished day's row is left alone). Where even that cannot be written (a full
        disk), the row goes: the day then reads as never run, not as running for ever."""
        where = "WHERE model_id = :m AND logical_date = :d AND status = 'RUNNING'"
        values = {"m": model_id, "d": logical_date, "msg": message, "t": now()}
        try:
            with self.db.transaction() as c:
                failed = "UPDATE runs SET status = 'failed', message = :msg, finished_at = :t "
                c.execute(sa.text(failed + where), values)
        except Exception:  # noqa: BLE001 - the smaller write below is the fallback
            with self.db.transaction() as c:
                c.execute(sa.text("DELETE FROM runs " + where), values)

    def run(self, model_id: str, logical_date: str) -> dict | None:
        with self.db.engine.connect() as c:
            row = c.execute(
                sa.text("SELECT * FROM runs WHERE model_id = :m AND logical_date = :d"),
                {"m": model_id, "d": logical_date},
            ).first()
        return dict(row._mapping) if row else None

    def days_running(self, model_id: str, before: str) -> list[str]:
        """Days before `before` whose run row still says RUNNING (live or killed)."""
        with self.db.engine.connect() as c:
            return list(
                c.execute(
                    sa.text(
                        "SELECT logical_date FROM runs WHERE model_id = :m AND status = 'RUNNING' "
                        "AND logical_date < :d ORDER BY logical_date"
                    ),
                    {"m": model_id, "d": before},
                ).scalars()
            )

    def record_metrics(
        self, model_id: str, logical_date: str, comparison: Comparison, segment: str = "", connection=None
    ) -> None:
        values = dict(model_id=model_id, logical_date=logical_date, segment=segment)
        values.update({c: _finite_or_none(getattr(comparison, c)) for c in METRIC_COLUMNS})
        values["n"], values["positives"] = comparison.n, comparison.positives
        self._write(connection, [upsert("run_metrics", ("model_id", "logical_date", "segment"), values)])

    def plan_days(self, model_id: str, before: str, plan_version: int | None) -> list[dict]:
        """The days before `before` since plan `plan_version` last came into force,
        oldest first: each run's overall metrics (None where it has none) and the
        largest saturated share of any FC layer. Days without a plan (failed,
        missing traffic) are skipped; a day under another plan ends the tenure.
        plan_version None (a model monitored from logged predictions, which has no
        plans): every earlier day with metrics."""
        sql = sa.text(
            "SELECT r.logical_date, r.status, r.plan_version, m.n, m.positives, m.ne_ref, m.dne_pct, m.dne_pct_lo, "
            "m.dne_pct_hi, m.kl_gap_pct, m.mean_abs_diff, s.saturation FROM runs r "
            "LEFT JOIN run_metrics m ON m.model_id = r.model_id AND m.logical_date = r.logical_date "
            "AND m.segment = '' "
            "LEFT JOIN (SELECT logical_date, MAX(COALESCE(saturation_below, 0) + COALESCE(saturation_above, 0)) "
            "AS saturation FROM layer_metrics WHERE model_id = :m GROUP BY logical_date) s "
            "ON s.logical_date = r.logical_date "
            "WHERE r.model_id = :m AND r.logical_date < :d ORDER BY r.logical_date DESC"
        )
        with self.db.engine.connect() as c:
            rows = [dict(row._mapping) for row in c.execute(sql, {"m": model_id, "d": before})]
        tenure = []
        for row in rows:
            if plan_version is None:  # a model without plans (logged predictions): every judged day
                if row["plan_version"] is not None:
                    break
                if row["n"] is not None:
                    tenure.append(row)
                continue
            if row["plan_version"] is None:
                continue
            if row["plan_version"] != plan_version:
                break
            tenure.append(row)
        return tenure[::-1]

    def segment_metrics(self, model_id: str, logical_date: str) -> list[dict]:
        """A day's per-segment metrics ("column=value" segments), in segment order."""
        with self.db.engine.connect() as c:
            result = c.execute(
                sa.text(
                    "SELECT * FROM run_metrics WHERE model_id = :m AND logical_date = :d "
                    "AND segment <> '' ORDER BY segment"
                ),
                {"m": model_id, "d": logical_date},
            )
            return [dict(row._mapping) for row in result]

    def record_layer_metrics(self, model_id: str, logical_date: str, layers: dict[str, dict], connection=None) -> None:
        statements = [
            upsert(
                "layer_metrics",
                ("model_id", "logical_date", "layer"),
                dict(
                    model_id=model_id,
                    logical_date=logical_date,
                    layer=layer,
                    layer_precision=v["precision"],
                    sqnr_db=_finite_or_none(v.get("sqnr_db")),
                    saturation_below=_finite_or_none(v.get("saturation_below")),
                    saturation_above=_finite_or_none(v.get("saturation_above")),
                ),
            )
            for layer, v in sorted(layers.items())
        ]
        self._write(connection, statements)

    def record_decision(
        self,
        model_id: str,
        logical_date: str,
        action: str,
        reasons: list[str],
        new_plan_version: int | None = None,
        connection=None,
    ) -> None:
        self._write(
            connection,
            [
                upsert(
                    "decisions",
                    ("model_id", "logical_date"),
                    dict(
                        model_id=model_id,
                        logical_date=logical_date,
                        action=action,
                        reasons_json=json.dumps(list(reasons)),
                        new_plan_version=new_plan_version,
                    ),
                )
            ],
        )

    def record_alert(
        self,
        model_id: str,
        logical_date: str,
        event: str,
        channel: str,
        status: str,
        recipients: str = "",
        error: str = "",
        attempts: int = 1,
    ) -> None:
        self._write(
            None,
            [
                upsert(
                    "alerts",
                    ("model_id", "logical_date", "event", "channel"),
                    dict(
                        model_id=model_id,
                        logical_date=logical_date,
                        event=event,
                        channel=channel,
                        recipients=recipients,
                        status=status,
                        error=error,
                        attempts=attempts,
                        sent_at=now() if status == "sent" else None,
                    ),
                )
            ],
        )

    def record_fallback_progress(
        self, model_id: str, logical_date: str, step: int, best_plan_json: str, state_json: str
    ) -> None:
        self._write(
            None,
            [
                upsert(
                    "fallback_progress",
                    ("model_id", "logical_date"),
                    dict(
                        model_id=model_id,
                        logical_date=logical_date,
                        step=step,
                        best_plan_json=best_plan_json,
                        state_json=state_json,
                        updated_at=now(),
                    ),
                )
            ],
        )

    def fallback_progress(self, model_id: str, logical_date: str) -> dict | None:
        """The saved state of a fallback search for that day, if one was interrupted or finished."""
        with self.db.engine.connect() as c:
            row = c.execute(
                sa.text(
                    "SELECT step, best_plan_json, state_json FROM fallback_progress "
                    "WHERE model_id = :m AND logical_date = :d"
                ),
                {"m": model_id, "d": logical_date},
            ).first()
        return None if row is None else {"step": int(row[0]), "best": json.loads(row[1]), "state": json.loads(row[2])}

    def record_calibration_states(
        self, model_id: str, logical_date: str, states: dict[str, dict], connection=None
    ) -> None:
        """One day's calibration statistics per layer (see lpmon.calibrate.state)."""
        self._write(
            connection,
            [
                upsert(
                    "calibration_histograms",
                    ("model_id", "logical_date", "layer"),
                    dict(
                        model_id=model_id,
                        logical_date=logical_date,
                        layer=layer,
                        state_json=json.dumps(state, sort_keys=True),
                    ),
                )
                for layer, state in sorted(states.items())
            ],
        )

    def calibration_states(self, model_id: str, before: str, days: int) -> dict[str, dict[str, dict]]:
        """The stored statistics of the last `days` days before `before` that have any:
        {day: {layer: state}}."""
        if days <= 0:
            return {}
        with self.db.engine.connect() as c:
            chosen = list(
                c.execute(
                    sa.text(
                        "SELECT DISTINCT logical_date FROM calibration_histograms WHERE model_id = :m "
                        "AND logical_date < :d ORDER BY logical_date DESC LIMIT :k"
                    ),
                    {"m": model_id, "d": before, "k": days},
                ).scalars()
            )
            rows = c.execute(
                sa.text(
                    "SELECT logical_date, layer, state_json FROM calibration_histograms WHERE model_id = :m "
                    "AND logical_date >= :first AND logical_date < :d ORDER BY logical_date, layer"
                ),
                {"m": model_id, "first": min(chosen, default=before), "d": before},
            ).all()
        out: dict[str, dict[str, dict]] = {}
        for day, layer, state in rows:
            out.setdefault(day, {})[layer] = json.loads(state)
        return out

    def _write(self, connection, upserts) -> None:
        """Run the upserts inside `connection`'s transaction, or in one transaction of their own."""
        if connection is not None:
            for statement in upserts:
                statement.run(connection)
            return
        with self.db.transaction() as c:
            for statement in upserts:
                statement.run(c)

    def rows(self, table: str, model_id: str) -> list[dict]:
        """Every row of a table for a model, in key order (for reports and tests)."""
        if table not in schema.METADATA.tables or table in ("models", "exports"):
            raise ValueError(f"unknown table {table!r}")
        target = schema.METADATA.tables[table]
        with self.db.engine.connect() as c:
            result = c.execute(sa.select(target).where(target.c.model_id == model_id).order_by(*target.primary_key))
            return [dict(row._mapping) for row in result]
