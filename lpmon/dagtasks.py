"""The bodies of the Airflow tasks in dags/: build the run key from the task
context, call one lpmon function, return a small JSON-able summary.

This module is imported inside task bodies (never when a DAG file is parsed),
so it may import the heavy parts of lpmon. Between tasks the day's work
travels through the shared work directory (lpmon.daywork).
"""

from __future__ import annotations

import datetime as dt
import os
from urllib.parse import quote

from lpmon import pipeline
from lpmon.config import Config, ConfigError, load
from lpmon.daywork import DayWork

CONFIG_VARIABLE = "lpmon_config"


def config() -> Config:
    """The lpmon config: the Airflow Variable lpmon_config, else $LPMON_CONFIG."""
    path = None
    try:
        from airflow.sdk import Variable

        path = Variable.get(CONFIG_VARIABLE, default=None)
    except Exception:  # outside a task (no execution API) only the environment can say
        path = None
    path = path or os.environ.get("LPMON_CONFIG")
    if not path:
        raise ConfigError(f"no lpmon config: set the Airflow Variable {CONFIG_VARIABLE} or LPMON_CONFIG "
                          "on every worker")
    cfg = load(path)
    mask_store_password(cfg.store)
    return cfg


def mask_store_password(url: str) -> None:
    """Register the state store's password with Airflow's secrets masker, so that
    no task log line (a traceback with a connection string, say) shows it. SMTP
    and Airflow's own credentials come from connections, which Airflow masks."""
    import sqlalchemy as sa

    try:
        password = sa.engine.make_url(url).password
    except sa.exc.ArgumentError:
        return
    if password:
        from airflow.sdk.log import mask_secret

        mask_secret(password)


def day_of(context) -> str:
    """The monitored day: the run's logical date (the start of its data interval);
    a manual run without one monitors the last complete day before it ran."""
    override = (context.get("params") or {}).get("day")
    if override:
        return str(dt.date.fromisoformat(str(override)))
    logical = context.get("logical_date") or context.get("data_interval_start")
    if logical is not None:
        return logical.date().isoformat()
    after = context.get("data_interval_end") or context["dag_run"].run_after
    return (after.date() - dt.timedelta(days=1)).isoformat()


def run_url(cfg: Config, context) -> str:
    run = context["dag_run"]
    return f"{cfg.airflow.base_url.rstrip('/')}/dags/{quote(run.dag_id)}/runs/{quote(run.run_id)}"


def models() -> list[str]:
    return sorted(config().models)


def _step(model_id: str, context, step, *, fresh: bool = False, branch: str = ""):
    """Load the day's work, run one step, save. A branch step that the day's
    decision did not choose skips itself: branching inside mapped task groups
    does not skip in Airflow 3.2-3.3 (apache/airflow#67265), so the tasks make
    sure of it themselves."""
    cfg, day = config(), day_of(context)
    with pipeline.day_lock(cfg, model_id, day):  # an overlapping run of the same day waits its turn
        work = DayWork(model_id, day) if fresh else DayWork.load(cfg.work_dir, model_id, day)
        if branch and branch not in work.next_steps:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"{model_id} {day}: the decision was {work.next_steps}, not {branch}")
        out = step(cfg, work)
        work.save(cfg.work_dir)
    return work, out


def sample(model_id: str, context) -> dict:
    work, _ = _step(model_id, context, pipeline.sample_step, fresh=True)
    return {"model": model_id, "day": work.day, "examples": work.sample_size, "failure": work.failure}


def score(model_id: str, context) -> dict:
    work, _ = _step(model_id, context, pipeline.score_step)
    return {"model": model_id, "plan_version": work.plan_version}


def compare(model_id: str, context) -> dict:
    work, _ = _step(model_id, context, pipeline.compare_step)
    return {"model": model_id, "dne_pct": (work.comparison or {}).get("dne_pct")}


def decide(model_id: str, context) -> str:
    """"record" or "recalibrate"."""
    _, branch = _step(model_id, context, pipeline.decide_step)
    return branch


def record(model_id: str, context) -> dict:
    work, _ = _step(model_id, context, pipeline.record_step, branch="record")
    return {"model": model_id, "action": work.action}


def recalibrate(model_id: str, context) -> bool:
    """True when the candidate did not hold and the fallback search must run."""
    _, needs_fallback = _step(model_id, context, pipeline.recalibrate_step, branch="recalibrate")
    return needs_fallback


def fallback(model_id: str, context) -> dict:
    work, _ = _step(model_id, context, pipeline.fallback_step, branch="fallback")
    return {"model": model_id, "new_plan_version": work.new_plan_version}


def report(model_id: str, context) -> dict:
    """The day's rows, the exported plan, and the HTML report file."""
    from lpmon import dayreport

    cfg, day = config(), day_of(context)
    with pipeline.day_lock(cfg, model_id, day):
        work = DayWork.load(cfg.work_dir, model_id, day, arrays=False)
        result = pipeline.report_step(cfg, work)
        work.drop_arrays(cfg.work_dir)
    store = work.context.store  # the step's own store, already open
    path = dayreport.write_file(cfg, dayreport.build(cfg, store, model_id, day, run_url(cfg, context)))
    return {"model": model_id, "day": day, "status": result.status, "action": result.action,
            "dne_pct": result.dne_pct, "plan_version": result.plan_version,
            "new_plan_version": result.new_plan_version, "report": str(path)}


def smtp_settings(conn_id: str):
    """SMTP host, port, sender and credentials from the Airflow connection."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    from lpmon.alerts import SmtpSettings

    hook = SmtpHook(smtp_conn_id=conn_id)
    hook.smtp_connection = hook.get_connection(conn_id)  # what get_conn() sets, without connecting
    return SmtpSettings(host=hook.host, port=int(hook.port or 25), from_email=hook.from_email or "lpmon@localhost",
                        user=hook.smtp_user or "", password=hook.smtp_password or "", use_ssl=hook.use_ssl,
                        starttls=hook.smtp_starttls, timeout=float(hook.timeout))


def alert(model_id: str, context) -> dict:
    """Email the day's events (once each); a failed send is recorded, never raised."""
    from lpmon import alerts, dayreport

    cfg, day = config(), day_of(context)
    store = pipeline.open_store(cfg)
    day_report = dayreport.build(cfg, store, model_id, day, run_url(cfg, context))
    if not alerts.events(day_report):
        return {"model": model_id, "day": day, "alerts": {}}
    outcome = alerts.alert_day(store, day_report, list(cfg.model(model_id).recipients),
                               smtp_settings(cfg.airflow.smtp_conn_id))
    return {"model": model_id, "day": day, "alerts": outcome}


def proactive_recalibration(model_id: str, context) -> dict:
    from lpmon import alerts, dayreport

    cfg, day = config(), day_of(context)
    outcome = pipeline.proactive_recalibration(cfg, model_id, day)
    if outcome["promoted"] and outcome.get("old_plan_version"):
        store = pipeline.open_store(cfg)
        report = dayreport.promotion(cfg, store, model_id, day, outcome["old_plan_version"],
                                     outcome["new_plan_version"], outcome["reason"], run_url(cfg, context))
        outcome["alerts"] = alerts.alert_day(store, report, list(cfg.model(model_id).recipients),
                                             smtp_settings(cfg.airflow.smtp_conn_id), only=["PROMOTION"])
    return outcome


def onboard_from_events(context) -> list[dict]:
    """Onboard every model named by the triggering snapshot events (extra: model_id, optional day)."""
    cfg = config()
    done = []
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in events:
            extra = event.extra or {}
            model_id = extra.get("model_id")
            if not model_id:
                raise ValueError(f"snapshot event {event} has no model_id in its extra")
            day = extra.get("day") or day_of(context)
            version = pipeline.onboard_snapshot(cfg, model_id, day)
            done.append({"model": model_id, "day": day, "active_plan": version})
    return done


def notify_failure(context) -> None:
    """on_failure_callback: an email through SmtpNotifier to the failed model's
    recipients (every model's, if the task is not a model's)."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    cfg = config()
    ti = context["ti"]
    model_id = None
    if getattr(ti, "map_index", -1) is not None and ti.map_index >= 0:
        names = ti.xcom_pull(task_ids="models") or []
        model_id = names[ti.map_index] if ti.map_index < len(names) else None
    if model_id in cfg.models:
        recipients = list(cfg.model(model_id).recipients)
    else:
        recipients = sorted({r for m in cfg.models.values() for r in m.recipients})
    if not recipients:
        return
    import html

    what = f"{ti.dag_id}.{ti.task_id}" + (f" for {model_id}" if model_id else "")
    error = html.escape(str(context.get("exception") or "unknown error"))
    SmtpNotifier(
        to=recipients, smtp_conn_id=cfg.airflow.smtp_conn_id,
        subject=f"[lpmon] task failed: {what} ({day_of(context)})",
        html_content=(f"<p>Task <b>{html.escape(what)}</b> failed for {day_of(context)} after its retries.</p>"
                      f"<pre>{error}</pre><p><a href=\"{html.escape(run_url(cfg, context))}\">The Airflow run</a>"
                      "</p>"),
    ).notify(context)
