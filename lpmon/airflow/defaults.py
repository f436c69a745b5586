"""What every lpmon DAG file shares at parse time: the timetable (one data
interval per monitored day, in the configured zone), the start date, the task
defaults (retries with backoff, the failure email) and the asset that
announces a promoted plan; airflow_settings reads the config's [airflow] table.
Only the standard library, pendulum and airflow.sdk (lpmon.config imports
sqlalchemy only once a whole config is loaded), so that parsing a DAG file stays fast; the failure callback imports
lpmon.airflow.tasks when it runs."""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import Asset, CronDataIntervalTimetable

from lpmon.config import AirflowSettings, airflow_settings

__all__ = ["PLAN_PROMOTED", "airflow_settings", "catchup", "default_args", "start_date", "timetable"]

# Emitted when a model's new plan reaches serving; extra: model, version, path, day.
PLAN_PROMOTED = Asset(name="lpmon_plan_promoted", uri="lpmon://plan-promoted")


def timetable(expression: str, settings: AirflowSettings) -> CronDataIntervalTimetable:
    """Data intervals, not trigger times: the run for day D covers [D 00:00, D+1
    00:00) in the configured zone, starts after D has ended, and its logical date
    is D (Airflow 3's default for a cron string would make it D+1's midnight)."""
    return CronDataIntervalTimetable(expression, timezone=settings.timezone)


def start_date(settings: AirflowSettings):
    """[airflow] start_date in the configured zone, or None: no catchup then; the
    first scheduled run covers the last complete day, backfills any day."""
    return pendulum.parse(settings.start_date, tz=settings.timezone) if settings.start_date else None


def catchup(settings: AirflowSettings) -> bool:
    """Catchup needs somewhere to start: without a start_date it would run nothing."""
    return settings.monitor_catchup and bool(settings.start_date)


def notify_failure(context) -> None:
    """on_failure_callback of every lpmon task (after its retries): see lpmon.airflow.failures."""
    from lpmon.airflow.failures import notify_failure as notify

    notify(context)


def default_args(settings: AirflowSettings) -> dict:
    return {
        "retries": settings.task_retries,
        "retry_delay": dt.timedelta(seconds=settings.retry_delay_s),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=10),
        "on_failure_callback": notify_failure,
    }
