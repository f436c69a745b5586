"""The (model, day) lock that makes overlapping runs of one day take turns.

PostgreSQL: a session advisory lock held on a connection of its own, checked
before every commit of its holder's thread (check_locks_held, an engine
"commit" listener); SQLite: flock on a file beside the database. Both are
released by the server or the operating system when the holder dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import threading
import time
from contextlib import contextmanager

import sqlalchemy as sa

from .errors import StoreError


@contextmanager
def day_lock(db, model_id: str, day: str, timeout_s: float = 3600.0, poll_s: float = 0.2):
    """Hold the lock of one model's day: runs of the same (model, day) that
    overlap (a manual trigger during a backfill, a retry beside a zombie)
    take turns, so the day gets one result and at most one promotion.

    PostgreSQL: a session advisory lock on a connection of its own (see
    _AdvisoryLock: re-taken after a server restart, or every later commit
    of the holder is refused); SQLite: flock on a file beside the database.
    Both are released by the operating system or the server when the
    holder dies (SIGKILL included), so a killed run never blocks its retry.
    """
    key = f"{model_id}@{day}"
    deadline = time.monotonic() + timeout_s
    if db.dialect == "postgresql":
        lock = _AdvisoryLock(db, key)
        lock.take(deadline, poll_s, timeout_s)
        held = _HELD.setdefault(threading.get_ident(), [])
        held.append(lock)
        try:
            yield
        finally:
            held.remove(lock)
            lock.release()
        return
    folder = db._lock_folder()
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


def day_locked(db, model_id: str, day: str) -> bool:
    """Whether a live run holds the (model, day) lock right now."""
    try:
        with day_lock(db, model_id, day, timeout_s=0):
            return False
    except StoreError:
        return True


class _AdvisoryLock:
    """A PostgreSQL session advisory lock that outlives its session.

    A server restart (or a killed backend) ends the session and frees the lock
    without telling the holder. So before every commit of the holder's thread
    (any Database in the process: see _check_locks_held) the lock's session is
    checked; if it died, a new session re-takes the lock at once (the
    committing transaction is still open: nothing of it is visible yet). If
    another run took the lock meanwhile, or the server does not answer, the
    commit is refused with a StoreError: the run stops before writing anything
    more, and its retry takes its turn.
    """

    def __init__(self, db, key: str):
        self.db, self.key = db, key
        self.number = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)
        self.live = None  # the connection whose session holds the lock
        self.lost = ""  # why the lock could not be re-taken
        self.checking = False  # inside ensure_held (its own commits must not re-check)

    def take(self, deadline: float, poll_s: float, timeout_s: float) -> None:
        connection = self.db.engine.connect()
        try:
            while not self._try(connection):
                _wait(deadline, poll_s, self.key, timeout_s)
        except BaseException:
            _close(connection)
            raise
        self.live = connection

    def _try(self, connection) -> bool:
        self.checking = True
        try:
            taken = connection.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.number}).scalar()
            connection.commit()
        finally:
            self.checking = False
        return bool(taken)

    def ensure_held(self) -> None:
        """Raise StoreError unless this process's session holds the lock (re-taking it if the session died)."""
        if self.checking:
            return
        if self.lost:
            raise StoreError(self.lost)
        self.checking = True
        try:
            self.live.execute(sa.text("SELECT 1")).scalar()
            self.live.commit()
            return
        except sa.exc.DBAPIError:
            _close(self.live)
            self.live = None
        finally:
            self.checking = False
        try:
            again = self.db.engine.connect()
        except sa.exc.DBAPIError as err:
            self._lose(f"the server does not answer ({err.orig})")
        try:
            taken = self._try(again)
        except sa.exc.DBAPIError as err:
            _close(again)
            self._lose(f"the server does not answer ({err.orig})")
        if not taken:
            _close(again)
            self._lose("another run of the same day holds it now")
        self.live = again

    def _lose(self, why: str):
        self.lost = (
            f"{self.key}: the day's lock was lost when its PostgreSQL session ended (a server "
            f"restart?) and cannot be re-taken: {why}; this run stopped before writing more: "
            "retry the day"
        )
        raise StoreError(self.lost)

    def release(self) -> None:
        """Unlock and close the session (a session that died took its lock with it)."""
        if self.live is None:
            return
        try:
            self._unlock()
        except sa.exc.DBAPIError:
            pass  # the session died (a server restart): the server dropped its locks with it
        _close(self.live)
        self.live = None

    def _unlock(self) -> None:
        self.checking = True
        try:
            self.live.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.number})
            self.live.commit()
        finally:
            self.checking = False


def _close(connection) -> None:
    try:
        connection.close()
    except sa.exc.DBAPIError:
        pass


_HELD: dict[int, list[_AdvisoryLock]] = {}  # thread -> the advisory day locks it holds


def check_locks_held(connection) -> None:
    """Before a commit: the committing thread's day locks are still held (see _AdvisoryLock)."""
    for lock in list(_HELD.get(threading.get_ident(), ())):
        lock.ensure_held()


def _wait(deadline: float, poll_s: float, key: str, timeout_s: float) -> None:
    if time.monotonic() > deadline:
        raise StoreError(
            f"{key}: another run of this model and day has held its lock for over "
            f"{timeout_s:.0f} s; it may be hung: stop it, or wait"
        )
    time.sleep(poll_s)
