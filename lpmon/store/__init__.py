"""lpmon's state store: SQL schema (sql/migrations), connection, repositories."""

from .database import Database, StoreError, init_store, migrations
from .reports import report_names, run_report
from .repository import PlanRecord, StateStore

__all__ = ["Database", "PlanRecord", "StateStore", "StoreError", "init_store", "migrations", "report_names", "run_report"]
