"""lpmon.store.schema's tables are the migrations' (SQLite and PostgreSQL), and its
upserts are SQLAlchemy's ON CONFLICT constructs keyed by the primary key."""

import re

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from lpmon.store import Database, StateStore, schema
from lpmon.store.database import TABLES


def described(table: sa.Table, types: dict[str, str]) -> list[tuple]:
    """(name, type, NOT NULL, part of the primary key, default) per column, in order.
    A primary key column counts as NOT NULL whatever its line says (SQLite reflects the line)."""
    primary = {c.name for c in table.primary_key}

    def default(column):
        if column.server_default is None:
            return None
        text = getattr(column.server_default.arg, "text", column.server_default.arg)
        return re.sub(r"::\w+( \w+)?$", "", str(text))  # PostgreSQL's '{}'::text is the migration's '{}'

    return [
        (c.name, types[c.name], not c.nullable or c.name in primary, c.name in primary, default(c))
        for c in table.columns
    ]


def migrated_types(db: Database, table: sa.Table) -> dict[str, str]:
    """Each column's type as the migration wrote it: SQLite keeps the declared text (its
    reflection would read DOUBLE PRECISION as REAL); PostgreSQL's as it spells it."""
    if db.dialect == "sqlite":
        with db.engine.connect() as c:
            return {row[1]: row[2].upper() for row in c.exec_driver_sql(f"PRAGMA table_info({table.name})")}
    return {c.name: c.type.compile(db.engine.dialect) for c in table.columns}


def test_the_declared_tables_are_the_migrated_ones(database_url):
    db = Database(database_url, create=True)
    db.migrate()
    reflected = sa.MetaData()
    reflected.reflect(db.engine)
    assert set(reflected.tables) - {"schema_migrations"} == set(schema.METADATA.tables) == set(TABLES)
    spelled = postgresql.dialect()  # the migrations' spelling: TEXT, BIGINT, DOUBLE PRECISION
    for name, declared in schema.METADATA.tables.items():
        migrated = reflected.tables[name]
        expected = described(declared, {c.name: c.type.compile(spelled) for c in declared.columns})
        assert described(migrated, migrated_types(db, migrated)) == expected, name
    db.engine.dispose()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_an_upsert_is_an_on_conflict_construct_of_the_dialect(dialect):
    values = dict(model_id="m", logical_date="2026-11-01", action="RECORD", reasons_json="[]")
    statement = schema.upsert("decisions", ("model_id", "logical_date"), values).statement(dialect)
    sql = str(statement.compile(dialect=sa.create_engine(f"{dialect}://").dialect))
    assert "ON CONFLICT (model_id, logical_date) DO UPDATE SET action = excluded.action" in sql
    assert "reasons_json = excluded.reasons_json" in sql and "model_id = excluded" not in sql
    keep = schema.upsert(
        "runs", ("model_id", "logical_date"), dict(model_id="m", logical_date="d", status="RUNNING"), ()
    )
    assert str(keep.statement(dialect).compile(dialect=sa.create_engine(f"{dialect}://").dialect)).endswith(
        "ON CONFLICT (model_id, logical_date) DO NOTHING"
    )


def test_an_upsert_names_what_is_wrong():
    with pytest.raises(ValueError, match=r"upsert into runs: keys \('model_id',\) are not its primary key"):
        schema.upsert("runs", ("model_id",), {"model_id": "m"})
    with pytest.raises(ValueError, match="supports SQLite and PostgreSQL, not mysql"):
        schema.upsert("models", ("model_id",), {"model_id": "m"}).statement("mysql")


def test_register_model_keeps_its_creation_time_and_updates_its_config(database_url):
    db = Database(database_url, create=True)
    db.migrate()
    store = StateStore(db)
    store.register_model("m", {"gate": 0.05})
    with db.transaction() as c:
        c.execute(sa.update(schema.models).values(created_at="2026-01-01T00:00:00+00:00"))
    store.register_model("m", {"gate": 0.1})
    with db.engine.connect() as c:
        row = c.execute(sa.select(schema.models)).one()
    assert (row.created_at, row.config_json) == ("2026-01-01T00:00:00+00:00", '{"gate": 0.1}')
    store.mark_started("m", "2026-11-01")
    store.record_run("m", "2026-11-01", "HEALTHY")
    store.mark_started("m", "2026-11-01")  # a rerun keeps the finished row
    assert store.run("m", "2026-11-01")["status"] == "HEALTHY"
    db.engine.dispose()
