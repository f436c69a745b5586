"""State store URLs: parsed and checked before anything connects, so that a
typo cannot reach the wrong place (libpq's default database, a new SQLite
file named after the typo, a driver that is not installed)."""

from __future__ import annotations

import importlib.util
import re
import urllib.parse

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
    try:
        if "://" not in url:
            raise ValueError(url)
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        shown = repr(masked_url(url)) if "://" not in url else masked_url(url)
        raise StoreUrlError(f"{shown} is not a database URL: expected {EXAMPLES}") from None
    shown = masked_url(url)
    if "@" in (parsed.host or ""):
        raise StoreUrlError(f"{shown}: an '@' in the user name or password must be written %40")
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


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/+")  # "scheme:" and its slashes, however many
_SCHEME_ALONE = re.compile(r"[^:]*:/*")  # without an '@', the first ':' is taken for the scheme's


def masked_url(url: str) -> str:
    """The URL as it can be shown: no password, whatever the URL looks like (a
    typo such as one slash or a missing '@' included). Where it is unclear what
    the password is, more is hidden, never less."""
    return _split_secret(url)[0]


def url_secret(url: str) -> str:
    """The text masked_url hides ('' when none), for log maskers."""
    return _split_secret(url)[1]


def url_secrets(url: str) -> set[str]:
    """The hidden text as written in the URL and percent-decoded: what a log
    masker must hide, whichever form a traceback shows."""
    secret = url_secret(url)
    return {secret, urllib.parse.unquote(secret)} - {""}


def _split_secret(url: str) -> tuple[str, str]:
    """(url shown, text hidden). A URL SQLAlchemy reads with a password and a
    plain host: its password. Otherwise, by the text: everything between the
    user name's ':' and the last '@'; without an '@', everything after a ':'
    that follows the scheme (a password with no host reads as a port)."""
    if not isinstance(url, str):
        return "", ""
    try:
        parsed = sa.engine.make_url(url) if "://" in url else None
    except (sa.exc.ArgumentError, ValueError):
        parsed = None
    if parsed is not None and "@" not in (parsed.host or ""):
        if parsed.password is None:
            return url, ""
        return parsed.render_as_string(hide_password=True), str(parsed.password)
    head, at, tail = url.rpartition("@")
    if not at:  # no '@': the first ':' may be the scheme's own (sqlite:relative.db)
        head, tail = url, ""
    scheme = (_SCHEME if at else _SCHEME_ALONE).match(head)
    prefix = scheme.group(0) if scheme else ""
    user, colon, secret = head[len(prefix) :].partition(":")
    if not colon:
        return url, ""
    return f"{prefix}{user}:***{at}{tail}", secret
