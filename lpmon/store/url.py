"""State store URLs: parsed and checked before anything connects, so that a
typo cannot reach the wrong place (libpq's default database, a new SQLite
file named after the typo, a driver that is not installed)."""

from __future__ import annotations

import importlib.util

import sqlalchemy as sa

# backend -> drivers lpmon runs on (synchronous DBAPI modules), the first one the default
DRIVERS = {"sqlite": ("pysqlite",), "postgresql": ("psycopg", "psycopg2")}
_MODULES = {"pysqlite": "sqlite3", "psycopg": "psycopg", "psycopg2": "psycopg2"}
EXAMPLES = "sqlite:////path/to/lpmon.db or postgresql+psycopg://user@host/database"


class StoreUrlError(ValueError):
    """A store URL lpmon cannot use; the message says why (password masked)."""


def check_store_url(url: str) -> sa.engine.URL:
    """The parsed URL, or StoreUrlError: a supported scheme with an installed
    driver, and a database named (a SQLite file path; a PostgreSQL database)."""
    if not isinstance(url, str) or not url.strip():
        raise StoreUrlError(f"the store URL is empty: expected {EXAMPLES}")
    if "://" not in url:
        raise StoreUrlError(f"{url!r} is not a database URL: expected {EXAMPLES}")
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise StoreUrlError(f"{_masked(url)} is not a database URL: expected {EXAMPLES}") from None
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend not in DRIVERS:
        raise StoreUrlError(
            f"{shown}: unsupported database {backend!r}: lpmon's store is {' or '.join(DRIVERS)} ({EXAMPLES})"
        )
    driver = parsed.get_driver_name()  # loads the dialect: only for a supported backend
    if driver not in DRIVERS[backend]:
        raise StoreUrlError(
            f"{shown}: unsupported driver {driver!r} for {backend}: use "
            + " or ".join(f"{backend}+{d}" for d in DRIVERS[backend])
        )
    if importlib.util.find_spec(_MODULES[driver]) is None:
        raise StoreUrlError(f"{shown}: the driver {_MODULES[driver]} is not installed")
    database = parsed.database or ""
    if backend == "sqlite" and (not database or database == ":memory:" or database.startswith("file:")):
        raise StoreUrlError(
            f"{shown}: a SQLite store needs a file path (sqlite:////path/to/lpmon.db); "
            "an in-memory database would lose everything at the end of the run"
        )
    if backend == "postgresql" and not database:
        raise StoreUrlError(
            f"{shown}: no database named (postgresql+psycopg://user@host/database): "
            "lpmon will not write into the server's default database"
        )
    if parsed.query and backend == "sqlite":
        raise StoreUrlError(f"{shown}: a SQLite store URL takes no options ({', '.join(parsed.query)})")
    return parsed


def _masked(url: str) -> str:
    """A URL that did not parse, with whatever stands between ':' and '@' hidden."""
    scheme, _, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
    return url
