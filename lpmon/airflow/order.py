"""lpmon_monitor's `turn` sensor: a run waits, without holding a worker
(reschedule mode), while an earlier run of the DAG is queued or running.

A backfill of any width starts all its runs at once (its own max_active_runs,
not the DAG's): this is what makes its days go one after the other, oldest
first. The store enforces the order anyway (lpmon.pipeline.order); the sensor
only keeps the runs that would wait there from waiting on a worker.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def turn_ready(context) -> bool:
    """Whether the run may start: no earlier run of this DAG queued or running.

    Airflow's view only: an earlier day being judged by another process (a CLI
    backfill, say) is waited for in the score step, where the store takes the
    model's turn (lpmon.pipeline.order)."""
    ti = context["ti"]
    for state in ("running", "queued"):
        earlier = ti.get_previous_dagrun(state=state)
        if earlier is not None:
            log.info("lpmon: %s: waiting for the earlier run %s (%s) to finish", ti.run_id, earlier.run_id, state)
            return False
    return True
