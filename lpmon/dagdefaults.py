"""What every lpmon DAG file shares at parse time: the task defaults (retries
with backoff, the failure email). Standard library only, so that parsing a DAG
file stays fast; the failure callback imports lpmon.dagtasks when it runs."""

from __future__ import annotations

import datetime as dt

from lpmon.config import AirflowSettings


def notify_failure(context) -> None:
    """on_failure_callback of every lpmon task (after its retries): see lpmon.dagtasks."""
    from lpmon.dagtasks import notify_failure as notify

    notify(context)


def default_args(settings: AirflowSettings) -> dict:
    return {"retries": settings.task_retries, "retry_delay": dt.timedelta(seconds=settings.retry_delay_s),
            "retry_exponential_backoff": True, "max_retry_delay": dt.timedelta(minutes=10),
            "on_failure_callback": notify_failure}
