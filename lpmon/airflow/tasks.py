"""The bodies of the Airflow tasks in dags/: build the run key from the task
context, call one lpmon function, return a small JSON-able summary.

This module is imported inside task bodies (never when a DAG file is parsed),
so it may import the heavy parts of lpmon. Between tasks the day's work
travels through the shared work directory (lpmon.pipeline.daywork).
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo

from lpmon import pipeline
from lpmon.airflow import smtp
from lpmon.airflow.context import config, day_of, label, last_day_of, run_url
from lpmon.pipeline import split_day, steps
from lpmon.pipeline.daywork import DayWork
from lpmon.policy import Action, Status

log = logging.getLogger(__name__)

__all__ = ["label", "last_day_of"]  # the DAG files' other names, from lpmon.airflow.context


def models(context, day: str | None = None) -> list[str]:
    """The config's models; says once per run (in this task's log) what the run
    cannot do: send alerts without an SMTP connection, find traffic for its day,
    or cover a day before [airflow] start_date."""
    from lpmon.traffic import TrafficStore

    cfg = config()
    day = day or day_of(context, cfg.airflow.timezone)
    mailer = smtp.from_airflow(cfg.airflow.smtp_conn_id)
    if mailer.problem:
        log.warning("lpmon: alerts of this run will be recorded as not sent: %s", mailer.problem)
    if cfg.airflow.start_date and day < cfg.airflow.start_date:
        log.warning(
            "lpmon: %s is before [airflow] start_date %s (a backfill or a manual run): monitoring it anyway",
            day,
            cfg.airflow.start_date,
        )
    for model_id, settings in sorted(cfg.models.items()):
        try:
            days = TrafficStore(settings.traffic).days()
        except (OSError, ValueError) as err:
            log.warning("lpmon: %s: cannot list the traffic at %s: %s", model_id, settings.traffic, err)
            continue
        if dt.date.fromisoformat(day) not in days:
            covered = f"{days[0]} to {days[-1]}" if days else "no day at all"
            log.warning(
                "lpmon: %s: no traffic partition for %s (the store has %s): the day will be INSUFFICIENT_DATA",
                model_id,
                day,
                covered,
            )
    return sorted(cfg.models)


def partition_ready(model_id: str, context) -> tuple[bool, dict]:
    """The optional wait for late traffic ([airflow] partition_wait_s): done when the
    day's partition has its marker file, or when the wait is over (then the day is
    recorded as INSUFFICIENT_DATA); (done, what the sample step gets)."""
    from pyarrow import fs as pafs

    from lpmon.traffic import TrafficStore

    label(model_id)
    cfg = config()
    settings, day = cfg.airflow, day_of(context, cfg.airflow.timezone)
    if not settings.partition_wait_s:
        return True, {"complete": True, "waited": False}
    traffic = TrafficStore(cfg.model(model_id).traffic)
    marker = f"{traffic.partition(day)}/{settings.partition_marker}"
    if traffic.filesystem.get_file_info(marker).type == pafs.FileType.File:
        return True, {"complete": True, "waited": True}
    zone = zoneinfo.ZoneInfo(settings.timezone)
    day_end = dt.datetime.combine(dt.date.fromisoformat(day) + dt.timedelta(days=1), dt.time(), zone)
    deadline = day_end + dt.timedelta(seconds=settings.partition_wait_s)
    if dt.datetime.now(zone) < deadline:
        log.info("lpmon: %s: waiting for %s (until %s)", model_id, marker, deadline.isoformat())
        return False, {}
    message = (
        f"{marker}: the partition for {day} was not complete {settings.partition_wait_s} s after the "
        f"day ended (no {settings.partition_marker})"
    )
    log.warning("lpmon: %s", message)
    return True, {"complete": False, "message": message}


def _step(model_id: str, context, step, *, fresh: bool = False, branch: str = ""):
    """Load the day's work, run one step, save. A branch step that the day's
    decision did not choose skips itself: branching inside mapped task groups
    does not skip in Airflow 3.2-3.3 (apache/airflow#67265), so the tasks make
    sure of it themselves."""
    label(model_id)
    cfg = config()
    day = day_of(context, cfg.airflow.timezone)
    with pipeline.day_lock(cfg, model_id, day):  # an overlapping run of the same day waits its turn
        work = DayWork(model_id, day) if fresh else DayWork.load(cfg.work_dir, model_id, day)
        if branch and branch not in work.next_steps:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"{model_id} {day}: the decision was {work.next_steps}, not {branch}")
        out = step(cfg, work)
        work.save(cfg.work_dir)
    return work, out


def sample(model_id: str, context, partition: dict | None = None) -> dict:
    """Draw the day's sample, or record the day as INSUFFICIENT_DATA when its
    partition did not complete in time (partition: what partition_ready gave).
    A day split by sample_groups is merged from its sample_part results."""
    step = split_day.sample_step
    if partition and not partition.get("complete", True):
        step = lambda cfg, work: _late(work, partition["message"])  # noqa: E731
    work, _ = _step(model_id, context, step, fresh=True)
    return {"model": model_id, "day": work.day, "examples": work.sample_size, "failure": work.failure}


def _late(work: DayWork, message: str) -> DayWork:
    """The day ends here, as for a missing partition: the later steps see the failure."""
    work.failure = work.status = Status.INSUFFICIENT_DATA.value
    work.message, work.action, work.reasons = message, Action.RECORD.value, [message]
    return work


def score(model_id: str, context) -> dict:
    work, _ = _step(model_id, context, steps.score_step)
    return {"model": model_id, "plan_version": work.plan_version}


def compare(model_id: str, context) -> dict:
    work, _ = _step(model_id, context, steps.compare_step)
    return {"model": model_id, "dne_pct": (work.comparison or {}).get("dne_pct")}


def decide(model_id: str, context) -> str:
    """ "record" or "recalibrate"."""
    _, branch = _step(model_id, context, steps.decide_step)
    return branch


def record(model_id: str, context) -> dict:
    work, _ = _step(model_id, context, steps.record_step, branch="record")
    return {"model": model_id, "action": work.action}


def recalibrate(model_id: str, context) -> bool:
    """True when the candidate did not hold and the fallback search must run."""
    _, needs_fallback = _step(model_id, context, steps.recalibrate_step, branch="recalibrate")
    return needs_fallback


def fallback(model_id: str, context) -> dict:
    work, _ = _step(model_id, context, steps.fallback_step, branch="fallback")
    return {"model": model_id, "new_plan_version": work.new_plan_version}


def report(model_id: str, context) -> dict:
    """The day's rows, the exported plan, and the HTML report file."""
    from lpmon.report import alerts

    label(model_id)
    cfg = config()
    day = day_of(context, cfg.airflow.timezone)
    with pipeline.day_lock(cfg, model_id, day):
        work = DayWork.load(cfg.work_dir, model_id, day, arrays=False)
        result = pipeline.report_day(cfg, work)  # and the later days its turn put back, judged again
        work.drop_arrays(cfg.work_dir)
    store = work.context.store  # the step's own store, already open
    path = alerts.deliver_day(cfg, store, model_id, day, run_url=run_url(cfg, context))["report"]
    return {
        "model": model_id,
        "day": day,
        "status": result.status,
        "action": result.action,
        "dne_pct": result.dne_pct,
        "plan_version": result.plan_version,
        "new_plan_version": result.new_plan_version,
        "promoted": result.promoted,
        "report": str(path),
    }


def publish(result: dict, context, asset) -> dict:
    """The `lpmon_plan_promoted` asset event when the model's new plan reached
    serving (extra: model, version, path of the exported plan, day), so that
    serving-side DAGs can reload it; skipped (no event) otherwise."""
    label(result.get("model") or "")
    if not result.get("promoted"):
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(f"{result.get('model')} {result.get('day')}: no plan promoted")
    cfg = config()
    extra = {
        "model": result["model"],
        "version": result["new_plan_version"],
        "day": result["day"],
        "path": str(cfg.plans_dir / result["model"] / "active.json"),
    }
    context["outlet_events"][asset].extra = extra
    return extra


def alert(model_id: str, context) -> dict:
    """Email the day's events (one mail, each event once); a failed send is recorded, never raised."""
    from lpmon.report import alerts

    label(model_id)
    cfg = config()
    day = day_of(context, cfg.airflow.timezone)
    store = pipeline.open_store(cfg)
    out = alerts.deliver_day(
        cfg,
        store,
        model_id,
        day,
        run_url=run_url(cfg, context),
        write_report=False,
        mailer=lambda: smtp.from_airflow(cfg.airflow.smtp_conn_id),
    )
    return {"model": model_id, "day": day, "alerts": out["alerts"]}


def proactive_recalibration(model_id: str, context) -> dict:
    from lpmon.report import alerts
    from lpmon.report import day as dayreport

    label(model_id)
    cfg = config()
    day = last_day_of(context, cfg.airflow.timezone)
    outcome = pipeline.proactive_recalibration(cfg, model_id, day)
    if outcome["promoted"] and outcome.get("old_plan_version"):
        store = pipeline.open_store(cfg)
        report = dayreport.promotion(
            cfg,
            store,
            model_id,
            day,
            outcome["old_plan_version"],
            outcome["new_plan_version"],
            outcome["reason"],
            run_url(cfg, context),
        )
        outcome["alerts"] = alerts.alert_day(
            store,
            report,
            list(cfg.model(model_id).recipients),
            smtp.from_airflow(cfg.airflow.smtp_conn_id),
            only=["PROMOTION"],
        )
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
            day = extra.get("day") or last_day_of(context, cfg.airflow.timezone)
            version = pipeline.onboard_snapshot(cfg, model_id, day)
            done.append({"model": model_id, "day": day, "active_plan": version})
    return done
