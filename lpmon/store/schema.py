"""The store's tables as SQLAlchemy Core objects, for the statements lpmon builds.

The migrations in sql/migrations create the tables and stay the source of truth
for DDL; these declarations mirror them (columns in migration order, types,
NULLs, defaults, primary keys) so that writes are built as SQLAlchemy
constructs, not SQL in strings. tests/unit/store/test_store_schema.py holds the
two together on SQLite and PostgreSQL: a migration that adds a column adds it
here too (one Column line in its table).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

METADATA = sa.MetaData()
TEXT, BIGINT, DOUBLE = sa.TEXT, sa.BIGINT, sa.DOUBLE_PRECISION


def _key(name: str) -> sa.Column:
    return sa.Column(name, TEXT, primary_key=True)


def _text(name: str, default: str | None = None) -> sa.Column:
    """A TEXT NOT NULL column (with its DEFAULT, if the migration gives one)."""
    server_default = None if default is None else sa.text(f"'{default}'")
    return sa.Column(name, TEXT, nullable=False, server_default=server_default)


def _doubles(*names: str) -> list[sa.Column]:
    return [sa.Column(name, DOUBLE) for name in names]


models = sa.Table("models", METADATA, _key("model_id"), _text("created_at"), _text("config_json", "{}"))
snapshots = sa.Table("snapshots", METADATA, _key("model_id"), _key("snapshot_id"), _text("uri"), _text("registered_at"))
plans = sa.Table(
    "plans",
    METADATA,
    _key("model_id"),
    sa.Column("version", BIGINT, primary_key=True, autoincrement=False),
    _text("plan_json"),
    _text("status"),
    _text("logical_date"),
    _text("reason", ""),
    _text("created_at"),
)
runs = sa.Table(
    "runs",
    METADATA,
    _key("model_id"),
    _key("logical_date"),
    _text("status"),
    _text("message", ""),
    sa.Column("plan_version", BIGINT),
    sa.Column("sample_size", BIGINT),
    sa.Column("positives", BIGINT),
    sa.Column("started_at", TEXT),
    sa.Column("finished_at", TEXT),
    _text("timings_json", "{}"),
    sa.Column("examples_scored", BIGINT),  # 0005_day_spend: what the day spent on its verdict
    sa.Column("looks", BIGINT),
    sa.Column("stop_reason", TEXT),
)
run_metrics = sa.Table(
    "run_metrics",
    METADATA,
    _key("model_id"),
    _key("logical_date"),
    sa.Column("segment", TEXT, primary_key=True, server_default=sa.text("''")),
    sa.Column("n", BIGINT, nullable=False),
    sa.Column("positives", BIGINT, nullable=False),
    *_doubles("ne_ref", "ne_q", "dne_pct", "dne_pct_lo", "dne_pct_hi", "calibration_ref", "calibration_q"),
    *_doubles("mean_abs_diff", "max_abs_diff", "kl_gap_pct"),
)
layer_metrics = sa.Table(
    "layer_metrics",
    METADATA,
    _key("model_id"),
    _key("logical_date"),
    _key("layer"),
    _text("layer_precision"),
    *_doubles("sqnr_db", "saturation_below", "saturation_above"),
)
decisions = sa.Table(
    "decisions",
    METADATA,
    _key("model_id"),
    _key("logical_date"),
    _text("action"),
    _text("reasons_json", "[]"),
    sa.Column("new_plan_version", BIGINT),
)
alerts = sa.Table(
    "alerts",
    METADATA,
    _key("model_id"),
    _key("logical_date"),
    _key("event"),
    _key("channel"),
    _text("recipients", ""),
    _text("status"),
    _text("error", ""),
    sa.Column("attempts", BIGINT, nullable=False, server_default=sa.text("0")),
    sa.Column("sent_at", TEXT),
)
calibration_histograms = sa.Table(
    "calibration_histograms", METADATA, _key("model_id"), _key("logical_date"), _key("layer"), _text("state_json")
)
fallback_progress = sa.Table(
    "fallback_progress",
    METADATA,
    _key("model_id"),
    _key("logical_date"),
    sa.Column("step", BIGINT, nullable=False),
    _text("best_plan_json"),
    _text("state_json", "{}"),
    _text("updated_at"),
)
plan_events = sa.Table(
    "plan_events",
    METADATA,
    _key("model_id"),
    sa.Column("version", BIGINT, primary_key=True, autoincrement=False),
    _text("logical_date"),
    _text("origin"),
    sa.Column("forced", BIGINT, nullable=False, server_default=sa.text("0")),
    _text("units_json", "[]"),
    _text("reason", ""),
    _text("created_at"),
)
plan_pins = sa.Table(
    "plan_pins",
    METADATA,
    _key("model_id"),
    _key("layer"),
    sa.Column("version", BIGINT, nullable=False),
    _text("layer_json"),
    _text("pinned_at"),
)
exports = sa.Table(
    "exports",
    METADATA,
    _key("model_id"),
    _text("target"),
    sa.Column("version", BIGINT, nullable=False),
    _text("status"),
    sa.Column("serving_version", BIGINT),
    _text("error", ""),
    _text("updated_at"),
)

_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def upsert(table: str, keys: tuple[str, ...], values: dict, update: tuple[str, ...] | None = None) -> Upsert:
    """An idempotent insert-or-update of one row of `table` keyed by its primary key
    `keys` (named, so a call says what makes the row unique). update: the columns a
    conflicting row takes from `values` (None: every non-key column given; (): none,
    the existing row is kept)."""
    target = METADATA.tables[table]
    primary = tuple(c.name for c in target.primary_key)
    if tuple(keys) != primary:
        raise ValueError(f"upsert into {table}: keys {keys} are not its primary key {primary}")
    if update is None:
        update = tuple(c for c in values if c not in keys)
    return Upsert(target, dict(values), tuple(update))


class Upsert:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE / DO NOTHING, built for the
    dialect of the connection that runs it (SQLite's and PostgreSQL's constructs)."""

    def __init__(self, table: sa.Table, values: dict, update: tuple[str, ...]):
        self.table, self.values, self.update = table, values, update

    def statement(self, dialect: str) -> sa.Insert:
        try:
            insert = _INSERTS[dialect](self.table).values(self.values)
        except KeyError:
            raise ValueError(f"the state store supports SQLite and PostgreSQL, not {dialect}") from None
        keys = [c.name for c in self.table.primary_key]
        if not self.update:
            return insert.on_conflict_do_nothing(index_elements=keys)
        return insert.on_conflict_do_update(index_elements=keys, set_={c: insert.excluded[c] for c in self.update})

    def run(self, connection) -> None:
        connection.execute(self.statement(connection.dialect.name))
