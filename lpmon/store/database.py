"""The state store's connection and schema: SQLite by default, PostgreSQL in production.

Migrations are the numbered files in sql/migrations (shipped as
lpmon._sql), applied in order, each in its own transaction, and recorded in
schema_migrations. A database whose schema is newer than this code is
refused rather than written to.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import importlib.resources
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

_MIGRATION = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class StoreError(RuntimeError):
    """The state store cannot be used as it is (version, connection)."""


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with this code, in order."""
    folder = importlib.resources.files("lpmon._sql") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text()))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise StoreError(f"migrations must be numbered 1, 2, 3... without gaps, found {versions}")
    return found


def statements(sql: str) -> list[str]:
    """A migration's statements (no semicolons inside strings in our migrations)."""
    cleaned = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in cleaned.split(";") if s.strip()]


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Database:
    """An engine plus the schema's version management."""

    def __init__(self, url: str):
        if "://" not in url:  # a plain path means SQLite
            url = f"sqlite:///{url}"
        self.url = url
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        # pool_pre_ping: a connection that died with a database restart is replaced
        # before use, instead of failing the next statement of a run.
        options = {"pool_pre_ping": True}
        if self.dialect == "sqlite":
            options["connect_args"] = {"timeout": 30}
        self.engine = sa.create_engine(url, **options)
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            # Every transaction takes SQLite's write lock when it begins: concurrent
            # writers then queue (busy_timeout) instead of failing to upgrade a read lock.
            sa.event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))

    @contextmanager
    def transaction(self):
        """A connection inside one transaction: committed on success, rolled back on error."""
        with self.engine.begin() as connection:
            yield connection

    @contextmanager
    def day_lock(self, model_id: str, day: str, timeout_s: float = 3600.0, poll_s: float = 0.2):
        """Hold the lock of one model's day: runs of the same (model, day) that
        overlap (a manual trigger during a backfill, a retry beside a zombie)
        take turns, so the day gets one result and at most one promotion.

        PostgreSQL: a session advisory lock on a connection of its own;
        SQLite: flock on a file beside the database. Both are released by the
        operating system or the server when the holder dies (SIGKILL included),
        so a killed run never blocks its retry.
        """
        key = f"{model_id}@{day}"
        deadline = time.monotonic() + timeout_s
        if self.dialect == "postgresql":
            number = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)
            with self.engine.connect() as connection:
                while not connection.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": number}).scalar():
                    connection.rollback()
                    _wait(deadline, poll_s, key, timeout_s)
                connection.commit()
                try:
                    yield
                finally:
                    try:
                        connection.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": number})
                        connection.commit()
                    except sa.exc.DBAPIError:
                        pass  # the session died (a server restart): the server dropped its locks with it
            return
        folder = self._lock_folder()
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.lock", "a+") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    _wait(deadline, poll_s, key, timeout_s)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def day_locked(self, model_id: str, day: str) -> bool:
        """Whether a live run holds the (model, day) lock right now."""
        try:
            with self.day_lock(model_id, day, timeout_s=0):
                return False
        except StoreError:
            return True

    def _lock_folder(self) -> Path:
        database = sa.engine.make_url(self.url).database
        if not database or database == ":memory:":
            return Path(tempfile.gettempdir()) / "lpmon-locks"
        return Path(f"{database}.locks")

    def schema_version(self) -> int:
        with self.engine.connect() as connection:
            if not sa.inspect(connection).has_table("schema_migrations"):
                return 0
            return connection.execute(sa.text("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")).scalar_one()

    def check_version(self) -> int:
        latest = migrations()[-1][0]
        version = self.schema_version()
        if version > latest:
            raise StoreError(f"{self.safe_url}: the database is at schema version {version}, newer than "
                             f"this lpmon knows ({latest}): upgrade lpmon before using it")
        if version < latest:
            raise StoreError(f"{self.safe_url}: schema version {version}, expected {latest}: "
                             "run `lpmon init` to upgrade it")
        return version

    def migrate(self) -> list[int]:
        """Apply pending migrations; returns the versions applied (none when up to date).

        One transaction under a lock, so that workers starting at once (two Airflow
        tasks on a fresh database) apply each migration exactly once: PostgreSQL
        takes an advisory lock (its DDL is transactional), SQLite's BEGIN IMMEDIATE
        takes the write lock.
        """
        shipped = migrations()
        if self.schema_version() == shipped[-1][0]:
            return []  # up to date: no lock needed
        applied = []
        with self.engine.begin() as connection:
            if self.dialect == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.execute(sa.text(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at TEXT NOT NULL)"))
            current = connection.execute(sa.text(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations")).scalar_one()
            if current > shipped[-1][0]:
                raise StoreError(f"{self.safe_url}: the database is at schema version {current}, newer than "
                                 f"this lpmon knows ({shipped[-1][0]}): upgrade lpmon before using it")
            for version, name, sql in shipped:
                if version <= current:
                    continue
                for statement in statements(sql):
                    connection.execute(sa.text(statement))
                connection.execute(sa.text(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (:v, :n, :t)"),
                    {"v": version, "n": name, "t": now()})
                applied.append(version)
        return applied

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages and logs."""
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)


def _wait(deadline: float, poll_s: float, key: str, timeout_s: float) -> None:
    if time.monotonic() > deadline:
        raise StoreError(f"{key}: another run of this model and day has held its lock for over "
                         f"{timeout_s:.0f} s; it may be hung: stop it, or wait")
    time.sleep(poll_s)


MIGRATION_LOCK_KEY = 0x6C706D6F6E  # "lpmon": the advisory lock migrations hold on PostgreSQL


def _sqlite_pragmas(connection, _record):
    connection.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN IMMEDIATE
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.close()
