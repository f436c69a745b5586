"""lpmon_monitor's `turn` sensor: a model's day waits, without holding a worker
(reschedule mode), while an earlier run of the DAG is queued or running, or an
earlier day of the model is being judged by another run (a CLI backfill, say).

A backfill of any width starts all its runs at once (its own max_active_runs,
not the DAG's): this is what makes its days go one after the other, oldest
first. The store enforces the order anyway (lpmon.pipeline.order); the sensor
only keeps the runs that would wait there from waiting on a worker.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def turn_ready(model_id: str, context) -> bool:
    """Whether the model's day may start: no earlier run of this DAG queued or
    running (Airflow's view), no earlier day of the model being judged (the store's)."""
    from lpmon.airflow import tasks as dagtasks
    from lpmon.pipeline import open_store
    from lpmon.store import StoreError
    from lpmon.store.order import earlier_in_progress

    dagtasks.label(model_id)
    cfg = dagtasks.config()
    day = dagtasks.day_of(context, cfg.airflow.timezone)
    ti = context["ti"]
    for state in ("running", "queued"):
        earlier = ti.get_previous_dagrun(state=state)
        if earlier is not None:
            log.info(
                "lpmon: %s %s: waiting for the earlier run %s (%s) to finish", model_id, day, earlier.run_id, state
            )
            return False
    try:
        store = open_store(cfg)
    except StoreError as err:  # the sample step fails on it, saying so; the order is the store's anyway
        log.warning("lpmon: %s %s: cannot look at the store for earlier days: %s", model_id, day, err)
        return True
    try:
        busy = earlier_in_progress(store, model_id, day)
    finally:
        store.db.engine.dispose()
    if busy:
        log.info("lpmon: %s %s: waiting for the run of %s to finish", model_id, day, ", ".join(busy))
        return False
    return True
