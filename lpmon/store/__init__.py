"""lpmon's state store: SQL schema (sql/migrations), connection, repositories."""

from .database import Database, StoreError, migrations
from .reports import report_names, run_report
from .repository import PlanRecord, StateStore

__all__ = ["Database", "PlanRecord", "StateStore", "StoreError", "migrations", "report_names", "run_report"]
