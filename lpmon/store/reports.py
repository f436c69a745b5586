"""The reporting queries of sql/reports (shipped as lpmon._sql/reports), by name."""

from __future__ import annotations

import importlib.resources

import sqlalchemy as sa

from .database import Database


def report_names() -> list[str]:
    folder = importlib.resources.files("lpmon._sql") / "reports"
    return sorted(entry.name[:-4] for entry in folder.iterdir() if entry.name.endswith(".sql"))


def run_report(db: Database, name: str, **params) -> list[dict]:
    if name not in report_names():
        raise ValueError(f"unknown report {name!r}; reports: {', '.join(report_names())}")
    sql = (importlib.resources.files("lpmon._sql") / "reports" / f"{name}.sql").read_text()
    with db.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.text(sql), params)]
