"""What an lpmon Airflow task reads from its context: the lpmon config (the
lpmon_config Variable or $LPMON_CONFIG, its store password masked in task
logs), the monitored day of the run, the mapped task's model label and the
run's link in the UI. Imported inside task bodies only, like lpmon.airflow.tasks.
"""

from __future__ import annotations

import datetime as dt
import os
import zoneinfo
from urllib.parse import quote

from lpmon.config import Config, ConfigError, load

CONFIG_VARIABLE = "lpmon_config"


def config() -> Config:
    """The lpmon config: the Airflow Variable lpmon_config, else $LPMON_CONFIG."""
    path = None
    try:
        from airflow.sdk import Variable

        path = Variable.get(CONFIG_VARIABLE, default=None)
    except Exception:  # noqa: BLE001 - outside a task (no execution API) only the environment can say
        path = None
    path = path or os.environ.get("LPMON_CONFIG")
    if not path:
        raise ConfigError(
            f"no lpmon config: set the Airflow Variable {CONFIG_VARIABLE} or LPMON_CONFIG on every worker"
        )
    cfg = load(path)
    mask_store_password(cfg.store)
    return cfg


def mask_store_password(url: str) -> None:
    """Register the state store's password with Airflow's secrets masker, so that
    no task log line (a traceback with a connection string, say) shows it. SMTP
    and Airflow's own credentials come from connections, which Airflow masks."""
    from airflow.sdk import log

    from lpmon.store.url import url_secrets

    for secret in url_secrets(url):  # whatever the URL looks like (a typo included)
        log.mask_secret(secret)


def day_of(context, timezone: str = "UTC") -> str:
    """The monitored day: the `day` param, else the date (in the configured zone)
    at which the run's data interval starts: the run for D covers [D 00:00, D+1
    00:00) and starts once D has ended. A run without an interval monitors the
    last complete day before it ran."""
    override = _day_param(context)
    if override:
        return override
    start = context.get("data_interval_start")
    if start is not None:
        return start.astimezone(zoneinfo.ZoneInfo(timezone)).date().isoformat()
    after = context.get("data_interval_end") or context["dag_run"].run_after
    return (after.astimezone(zoneinfo.ZoneInfo(timezone)).date() - dt.timedelta(days=1)).isoformat()


def last_day_of(context, timezone: str = "UTC") -> str:
    """The last complete day of the run's data interval (lpmon_recalibrate's week
    ends on it), or the `day` param."""
    override = _day_param(context)
    if override:
        return override
    end = context.get("data_interval_end") or context["dag_run"].run_after
    return (end.astimezone(zoneinfo.ZoneInfo(timezone)).date() - dt.timedelta(days=1)).isoformat()


def _day_param(context) -> str:
    from lpmon.pipeline.days import calendar_day

    value = (context.get("params") or {}).get("day")
    try:
        return calendar_day(value, "param day") if value else ""
    except ValueError as err:
        raise ConfigError(str(err)) from None


def label(model_id: str) -> None:
    """Name the running mapped task after its model: the DAGs' map_index_template
    renders `lpmon_model` from the task's context once the task has run."""
    from airflow.sdk import get_current_context

    get_current_context()["lpmon_model"] = model_id


def run_url(cfg: Config, context) -> str:
    """The run's page in the Airflow UI ("" without a web server: [airflow] base_url "")."""
    run, base = context["dag_run"], cfg.airflow.base_url.rstrip("/")
    return f"{base}/dags/{quote(run.dag_id)}/runs/{quote(run.run_id)}" if base else ""
