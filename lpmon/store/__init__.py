"""lpmon's state store: SQL schema (sql/migrations), connection, repositories."""

from .database import Database, StoreError, init_store, migrations
from .queries import DaySummary, PlanRecord
from .reports import report_names, run_report
from .repository import StateStore

__all__ = [
    "Database",
    "DaySummary",
    "PlanRecord",
    "StateStore",
    "StoreError",
    "init_store",
    "migrations",
    "report_names",
    "run_report",
]
