"""lpmon's state store: SQL schema (sql/migrations), connection, repositories."""

from .database import Database, StoreError, migrations
from .repository import PlanRecord, StateStore

__all__ = ["Database", "PlanRecord", "StateStore", "StoreError", "migrations"]
