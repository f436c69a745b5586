"""A run that stops with an error: its day's first-run row must not say RUNNING
for ever (a full disk, a lost database). Best effort: the store may be the
thing that failed, so this never raises; the caller raises the error itself."""

from __future__ import annotations

import datetime as dt
import logging

from lpmon.config import Config

log = logging.getLogger(__name__)


def mark_failed(config: Config, model_id: str, day, error: BaseException) -> None:
    """Record the day's RUNNING row as failed with the error's first line (or drop it)."""
    from lpmon.pipeline.context import open_store

    message = (str(error).strip().splitlines() or [type(error).__name__])[0][:1000]
    store = None
    try:
        store = open_store(config)
        store.fail_running(model_id, str(dt.date.fromisoformat(str(day))), f"failed: {message}")
    except Exception as err:  # noqa: BLE001 - the run's own error is the one to report
        log.info("lpmon: %s %s: could not record the failed run (%s)", model_id, day, err)
    finally:
        if store is not None:
            store.db.engine.dispose()
