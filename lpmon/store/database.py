"""The state store's connection and schema: SQLite by default, PostgreSQL in production.

Migrations are the numbered files in sql/migrations (shipped as
lpmon._sql), applied in order and recorded in schema_migrations. Only
`lpmon init` creates or upgrades a store (Database(url, create=True).migrate());
every other use opens an existing store and refuses, with one line naming
the URL, a store that is missing, damaged, read-only, without lpmon's schema
or at another version. A SQLite file is then opened read-write without
creation, so a wrong path never becomes an empty store, and a damaged file is
never written to.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import importlib.resources
import os
import re
import sqlite3
import urllib.parse
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from lpmon.store.errors import StoreError
from lpmon.store.locks import _HELD  # noqa: F401 - tests look at the held locks here
from lpmon.store.url import StoreUrlError, check_store_url, masked_url

from . import locks, schema

_MIGRATION = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


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
    if len(set(versions)) != len(versions) or not versions or versions[0] != 1:
        raise StoreError(f"migrations must be numbered from 1, each number once, found {versions}")
    return found


def statements(sql: str) -> list[str]:
    """A migration's statements (no semicolons inside strings in our migrations)."""
    cleaned = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in cleaned.split(";") if s.strip()]


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


TABLES = tuple(schema.METADATA.tables)  # what a usable store must have (besides schema_migrations)
# What SQLite says about a file it cannot use, and what lpmon tells the user to do.
_SQLITE_FAULTS = (
    (
        "readonly database",
        "the state store is read-only for this user ({error}): make the file and its "
        "folder writable by the user that runs lpmon",
    ),
    ("file is not a database", "the state store is damaged ({error}); it was left as it is: restore it from a backup"),
    ("malformed", "the state store is damaged ({error}); it was left as it is: restore it from a backup"),
    ("disk i/o error", "the state store cannot be read or written ({error}): check the disk and the file"),
    (
        "database or disk is full",
        "the disk holding the state store is full ({error}): the write was rolled back; free space, then rerun the day",
    ),
    (
        "unable to open database file",
        "the state store cannot be opened ({error}): check that the file "
        "and its folder exist and are readable and writable",
    ),
)
_CHECKED: dict[tuple, bool] = {}  # SQLite files that passed the integrity check: (path, inode, size, mtime)
# quick_check reads the whole file (about 8 ms a MB here): every open checks stores up to
# this size, `lpmon status` and `lpmon init` any size; beyond it SQLite's own page checks
# (errors explained by Database._explain) still refuse what they touch.
QUICK_CHECK_BYTES = 256 << 20


class Database:
    """An engine plus the schema's version management.

    create=False (every use but `lpmon init`): a SQLite file must exist and is
    opened without creation; create=True lets migrate() make a new store.
    """

    def __init__(self, url: str, *, create: bool = False):
        try:
            parsed = check_store_url(url)
        except StoreUrlError as err:
            raise StoreError(str(err)) from None
        self.url = url
        self.dialect = parsed.get_backend_name()
        self.create = create
        # pool_pre_ping: a connection that died with a database restart is replaced
        # before use, instead of failing the next statement of a run.
        options = {"pool_pre_ping": True}
        engine_url = parsed
        if self.dialect == "sqlite":
            self.path = Path(parsed.database).expanduser().absolute()
            options["connect_args"] = {"timeout": 30}
            if not create:  # SQLite's URI mode=rw opens an existing file and never creates one
                engine_url = parsed.set(
                    database=f"file:{urllib.parse.quote(str(self.path))}?mode=rw", query={"uri": "true"}
                )
        self.engine = sa.create_engine(engine_url, **options)
        sa.event.listen(self.engine, "handle_error", self._explain)
        sa.event.listen(self.engine, "commit", locks.check_locks_held)
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            # Every transaction takes SQLite's write lock when it begins: concurrent
            # writers then queue (busy_timeout) instead of failing to upgrade a read lock.
            sa.event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))

    def _explain(self, context) -> None:
        """SQLite's errors about the file itself become one-line StoreErrors naming the store."""
        error = context.original_exception
        if getattr(error, "sqlstate", None) == "53100":  # PostgreSQL's disk_full
            raise StoreError(
                f"{self.safe_url}: the database server's disk is full ({str(error).strip().splitlines()[0]}): "
                "the write was rolled back; free space, then rerun the day"
            ) from None
        if self.dialect != "sqlite" or not isinstance(error, sqlite3.DatabaseError):
            return
        text = str(error).lower()
        for needle, message in _SQLITE_FAULTS:
            if needle in text:
                raise StoreError(f"{self.safe_url}: {message.format(error=error)}") from None

    @contextmanager
    def transaction(self):
        """A connection inside one transaction: committed on success, rolled back on error."""
        with self.engine.begin() as connection:
            yield connection

    # --- is this a usable store? --------------------------------------------------------
    def verify(self, thorough: bool = False) -> int:
        """Refuse (StoreError) a store that cannot be used as it is; returns its schema version.

        SQLite: the file exists, is a regular non-empty SQLite file that passes
        `PRAGMA quick_check` (once per process and file state; thorough=False
        skips it above QUICK_CHECK_BYTES) and is writable. Both engines:
        lpmon's tables are there, at this code's schema version.
        """
        if self.dialect == "sqlite":
            self._check_sqlite_file(must_exist=True, thorough=thorough)
        version = self.check_version()
        with self.engine.connect() as connection:
            missing = sorted(set(TABLES) - set(sa.inspect(connection).get_table_names()))
        if missing:
            raise StoreError(
                f"{self.safe_url}: the store's schema is at version {version} but tables are "
                f"missing ({', '.join(missing)}): it is damaged; restore it from a backup"
            )
        return version

    def _check_sqlite_file(self, must_exist: bool, thorough: bool = True) -> None:
        path, where = self.path, self.safe_url
        if not path.exists():
            if must_exist:
                raise StoreError(
                    f"{where}: no state store at {path}: run `lpmon init` to create it (or fix `store` / LPMON_STORE)"
                )
            return
        if not path.is_file():
            raise StoreError(f"{where}: {path} is not a regular file: point `store` at a SQLite file")
        stat = path.stat()
        if stat.st_size == 0:
            raise StoreError(
                f"{where}: {path} is empty (0 bytes): if it held lpmon's history the file was "
                "truncated, so restore it from a backup; to start a new store, delete it and run "
                "`lpmon init`"
            )
        # The file is never opened here: closing any descriptor of it would drop the
        # POSIX locks this process's SQLite connections hold on it (SQLite's own
        # warning), so SQLite itself reads the header ("file is not a database").
        if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
            raise StoreError(
                f"{where}: the state store is read-only for this user ({path} or its folder): "
                "make both writable by the user that runs lpmon"
            )
        key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if key not in _CHECKED and (thorough or stat.st_size <= QUICK_CHECK_BYTES):
            problems = self.integrity_problems()
            if problems:
                more = f", and {len(problems) - 1} more problems" if len(problems) > 1 else ""
                raise StoreError(
                    f"{where}: the state store is damaged ({problems[0]}{more}); it was left as "
                    "it is: restore it from a backup"
                )
            _CHECKED[key] = True

    def integrity_problems(self) -> list[str]:
        """SQLite's quick_check findings (empty when the file is sound; PostgreSQL: always empty)."""
        if self.dialect != "sqlite":
            return []
        with self.engine.connect() as connection:
            rows = [r[0] for r in connection.exec_driver_sql("PRAGMA quick_check").fetchall()]
        if rows == ["ok"]:
            return []
        lines = [line for row in rows for line in str(row).splitlines() if line and not line.startswith("***")]
        return lines or ["quick_check failed"]

    # --- schema versions ------------------------------------------------------------------
    def applied_versions(self) -> set[int]:
        with self.engine.connect() as connection:
            if not sa.inspect(connection).has_table("schema_migrations"):
                return set()
            return set(connection.execute(sa.text("SELECT version FROM schema_migrations")).scalars())

    def schema_version(self) -> int:
        return max(self.applied_versions(), default=0)

    def check_version(self) -> int:
        shipped = {v for v, _, _ in migrations()}
        applied = self.applied_versions()
        if not applied:
            raise StoreError(
                f"{self.safe_url}: no lpmon state store here (no lpmon schema): run `lpmon init` "
                "to create one, or fix `store` / LPMON_STORE"
            )
        unknown = sorted(applied - shipped)
        if unknown:
            raise StoreError(
                f"{self.safe_url}: the database is at schema version {max(applied)}, newer than "
                f"this lpmon knows ({max(shipped)}; unknown migrations {unknown}): upgrade lpmon "
                "before using it"
            )
        missing = sorted(shipped - applied)
        if missing:
            raise StoreError(
                f"{self.safe_url}: schema version {max(applied)}, expected {max(shipped)} "
                f"(migrations {missing} not applied): run `lpmon init` to upgrade it"
            )
        return max(applied)

    def migrate(self) -> list[int]:
        """Create or upgrade the store (`lpmon init` only): apply the shipped
        migrations not yet recorded, in order; returns the versions applied.

        A SQLite file that exists must be a sound SQLite database (an empty or
        damaged file is refused, never overwritten). One transaction under a
        lock, so that two inits at once apply each migration exactly once:
        PostgreSQL takes an advisory lock (its DDL is transactional), SQLite's
        BEGIN IMMEDIATE takes the write lock.
        """
        if not self.create:
            raise StoreError(f"{self.safe_url}: only `lpmon init` creates or upgrades a store")
        if self.dialect != "sqlite":
            return self._migrate()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        folder = self._lock_folder()
        folder.mkdir(parents=True, exist_ok=True)
        # Inits at once on a new file: one creates it (empty until its first write) while
        # the others, waiting here, would take it for a truncated store.
        with open(folder / "init.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            self._check_sqlite_file(must_exist=False)
            return self._migrate()

    def _migrate(self) -> list[int]:
        shipped = migrations()
        if {v for v, _, _ in shipped} <= self.applied_versions():
            self.check_version()  # refuses a store newer than this code
            return []  # up to date: no lock needed
        applied = []
        with self.engine.begin() as connection:
            if self.dialect == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.execute(
                sa.text(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, "
                    "name TEXT NOT NULL, applied_at TEXT NOT NULL)"
                )
            )
            done = set(connection.execute(sa.text("SELECT version FROM schema_migrations")).scalars())
            unknown = sorted(done - {v for v, _, _ in shipped})
            if unknown:
                raise StoreError(
                    f"{self.safe_url}: the database is at schema version {max(done)}, newer than "
                    f"this lpmon knows ({shipped[-1][0]}): upgrade lpmon before using it"
                )
            for version, name, sql in shipped:
                if version in done:
                    continue
                for statement in statements(sql):
                    connection.execute(sa.text(statement))
                connection.execute(
                    sa.text("INSERT INTO schema_migrations (version, name, applied_at) VALUES (:v, :n, :t)"),
                    {"v": version, "n": name, "t": now()},
                )
                applied.append(version)
        return applied

    # --- the (model, day) lock (lpmon.store.locks) ----------------------------------------
    def day_lock(self, model_id: str, day: str, timeout_s: float = 3600.0, poll_s: float = 0.2):
        """Hold the lock of one model's day (see lpmon.store.locks.day_lock)."""
        return locks.day_lock(self, model_id, day, timeout_s, poll_s)

    def day_locked(self, model_id: str, day: str) -> bool:
        """Whether a live run holds the (model, day) lock right now."""
        return locks.day_locked(self, model_id, day)

    def _lock_folder(self) -> Path:
        return Path(f"{self.path}.locks")

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages and logs."""
        return masked_url(self.url)


def init_store(url: str) -> list[int]:
    """`lpmon init`: create the store, or upgrade it to this code's schema, then
    check it; returns the migrations applied. The one way a store is made."""
    db = Database(url, create=True)
    try:
        applied = db.migrate()
        db.verify(thorough=True)
        return applied
    except sa.exc.OperationalError as err:
        raise StoreError(f"{db.safe_url}: the state store is unreachable ({err.orig})") from None
    finally:
        db.engine.dispose()


MIGRATION_LOCK_KEY = 0x6C706D6F6E  # "lpmon": the advisory lock migrations hold on PostgreSQL


def _sqlite_pragmas(connection, _record):
    connection.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN IMMEDIATE
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.close()
