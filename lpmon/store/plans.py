"""The plans' side of the state store: candidates stored once per (model, day, plan),
promotion as one compare-and-swap transaction, plan events, exports and pins."""

from __future__ import annotations

import json

import sqlalchemy as sa

from . import schema
from .database import now
from .schema import upsert


class PlanStore:
    """StateStore's plan methods (a mixin: StateStore gives it `db` and `_write`)."""

    # --- plans --------------------------------------------------------------------------
    def add_plan(self, model_id: str, plan_json: str, logical_date: str, reason: str = "") -> int:
        """Store a candidate plan; the same plan for the same day returns its existing version."""
        with self.db.transaction() as c:
            existing = c.execute(
                sa.text("SELECT version FROM plans WHERE model_id = :m AND logical_date = :d AND plan_json = :p"),
                {"m": model_id, "d": logical_date, "p": plan_json},
            ).scalar()
            if existing is not None:
                return int(existing)
            version = c.execute(
                sa.text("SELECT COALESCE(MAX(version), 0) + 1 FROM plans WHERE model_id = :m"), {"m": model_id}
            ).scalar_one()
            c.execute(_new_candidate(model_id, version, plan_json, logical_date, reason))
            return int(version)

    def promote(self, model_id: str, version: int, expected_active: int | None) -> bool:
        """Make `version` the active plan if `expected_active` still is (None: no active plan).

        One transaction: retire the expected plan (only if it is still the active
        one), then activate the candidate. A run that raced and lost finds the
        active plan changed (or the one-active index taken) and gets False; the
        database never holds two active plans, nor none in between.
        """
        try:
            with self.db.transaction() as c:
                status = c.execute(
                    sa.text("SELECT status FROM plans WHERE model_id = :m AND version = :v"),
                    {"m": model_id, "v": version},
                ).scalar()
                if status in ("active", "retired"):
                    # Promoted already: a rerun of the day, perhaps after later days
                    # replaced the plan (only an active plan is ever retired). Reprocessing
                    # an old day must neither report a lost race nor bring the plan back.
                    return True
                if expected_active is None:
                    taken = c.execute(
                        sa.text("SELECT COUNT(*) FROM plans WHERE model_id = :m AND status = 'active'"), {"m": model_id}
                    ).scalar_one()
                    if taken:
                        raise _LostRace()
                else:
                    retired = c.execute(
                        sa.text(
                            "UPDATE plans SET status = 'retired' WHERE model_id = :m AND version = :v "
                            "AND status = 'active'"
                        ),
                        {"m": model_id, "v": expected_active},
                    ).rowcount
                    if retired != 1:
                        raise _LostRace()
                activated = c.execute(
                    sa.text(
                        "UPDATE plans SET status = 'active' WHERE model_id = :m AND version = :v "
                        "AND status = 'candidate'"
                    ),
                    {"m": model_id, "v": version},
                ).rowcount
                if activated != 1:
                    raise _LostRace()
            return True
        except (_LostRace, sa.exc.IntegrityError):
            return False

    # --- serving's copy of the active plan (lpmon.pipeline.export) -------------------------------------
    def record_export(
        self, model_id: str, target: str, version: int, status: str, serving_version: int | None, error: str = ""
    ) -> None:
        """The outcome of the latest export of the model's active plan: version tried,
        "ok" or "failed", and the version serving's file holds as far as is known."""
        self._write(
            None,
            [
                upsert(
                    "exports",
                    ("model_id",),
                    dict(
                        model_id=model_id,
                        target=target,
                        version=version,
                        status=status,
                        serving_version=serving_version,
                        error=error,
                        updated_at=now(),
                    ),
                )
            ],
        )

    def export_status(self, model_id: str) -> dict | None:
        """The latest export's row (None: never exported)."""
        with self.db.engine.connect() as c:
            row = c.execute(sa.text("SELECT * FROM exports WHERE model_id = :m"), {"m": model_id}).first()
        return None if row is None else dict(row._mapping)

    # --- the plan lifecycle (lpmon.pipeline.lifecycle) -------------------------------------------------
    def add_candidate(self, model_id: str, logical_date: str, reason: str, plan_json_for) -> int:
        """Store a new candidate under the next free version; plan_json_for(version)
        writes its JSON, so the version inside the plan is always the stored one."""
        with self.db.transaction() as c:
            version = int(
                c.execute(
                    sa.text("SELECT COALESCE(MAX(version), 0) + 1 FROM plans WHERE model_id = :m"), {"m": model_id}
                ).scalar_one()
            )
            c.execute(_new_candidate(model_id, version, plan_json_for(version), logical_date, reason))
        return version

    def record_plan_event(
        self,
        model_id: str,
        version: int,
        logical_date: str,
        origin: str,
        reason: str,
        *,
        forced: bool = False,
        units: list[str] = (),
    ) -> None:
        self._write(
            None,
            [
                upsert(
                    "plan_events",
                    ("model_id", "version"),
                    dict(
                        model_id=model_id,
                        version=version,
                        logical_date=logical_date,
                        origin=origin,
                        forced=int(forced),
                        units_json=json.dumps(list(units)),
                        reason=reason,
                        created_at=now(),
                    ),
                )
            ],
        )

    def plan_events(self, model_id: str) -> list[dict]:
        """Every promotion of the model, oldest first."""
        with self.db.engine.connect() as c:
            rows = c.execute(sa.text("SELECT * FROM plan_events WHERE model_id = :m ORDER BY version"), {"m": model_id})
            return [dict(row._mapping) for row in rows]

    def pin_layers(self, model_id: str, version: int, layers: dict[str, str]) -> None:
        """Pin layers as they are in plan `version` (layers: name -> the layer's JSON)."""
        self._write(
            None,
            [
                upsert(
                    "plan_pins",
                    ("model_id", "layer"),
                    dict(model_id=model_id, layer=name, version=version, layer_json=text, pinned_at=now()),
                )
                for name, text in sorted(layers.items())
            ],
        )

    def unpin_layers(self, model_id: str, layers: list[str] | None = None) -> int:
        """Unpin the named layers (every pinned layer when None); returns how many."""
        with self.db.transaction() as c:
            if layers is None:
                return c.execute(sa.text("DELETE FROM plan_pins WHERE model_id = :m"), {"m": model_id}).rowcount
            return sum(
                c.execute(
                    sa.text("DELETE FROM plan_pins WHERE model_id = :m AND layer = :l"), {"m": model_id, "l": name}
                ).rowcount
                for name in layers
            )

    def pins(self, model_id: str) -> dict[str, tuple[int, str]]:
        """Pinned layers: name -> (the version pinned from, the layer's JSON)."""
        with self.db.engine.connect() as c:
            rows = c.execute(
                sa.text("SELECT layer, version, layer_json FROM plan_pins WHERE model_id = :m ORDER BY layer"),
                {"m": model_id},
            ).all()
        return {layer: (int(version), text) for layer, version, text in rows}


def _new_candidate(model_id: str, version: int, plan_json: str, logical_date: str, reason: str) -> sa.Insert:
    """The insert of a new candidate plan (a new version: never an upsert)."""
    return sa.insert(schema.plans).values(
        model_id=model_id,
        version=version,
        plan_json=plan_json,
        status="candidate",
        logical_date=logical_date,
        reason=reason,
        created_at=now(),
    )


class _LostRace(Exception):
    pass
