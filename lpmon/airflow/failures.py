"""The on_failure_callback of every lpmon task (after its retries): an email to the
failed model's recipients (every model's, if the task is not a model's)."""

from __future__ import annotations

import logging

from lpmon.airflow import smtp
from lpmon.airflow.context import config, day_of, run_url

log = logging.getLogger(__name__)


def notify_failure(context) -> None:
    """on_failure_callback: an email to the failed model's recipients (every
    model's, if the task is not a model's), through the same Mailer as the
    alerts. It never raises: a callback that fails would only hide the failure
    it reports; whatever goes wrong is logged."""
    try:
        _notify_failure(context)
    except Exception:
        log.exception("lpmon: the failure email could not be prepared")


def _notify_failure(context) -> None:
    import email.policy
    import html
    from email.message import EmailMessage

    cfg = config()
    ti = context["ti"]
    model_id = None
    if getattr(ti, "map_index", -1) is not None and ti.map_index >= 0:
        split = ti.task_id == "sample_part"  # mapped over (model, file group), not over models
        names = ti.xcom_pull(task_ids="sample_groups" if split else "models") or []
        model_id = names[ti.map_index] if ti.map_index < len(names) else None
        model_id = model_id.get("model_id") if split and isinstance(model_id, dict) else model_id
    if model_id in cfg.models:
        recipients = list(cfg.model(model_id).recipients)
    else:
        recipients = sorted({r for m in cfg.models.values() for r in m.recipients})
    day = day_of(context, cfg.airflow.timezone)
    error = str(context.get("exception") or "unknown error")
    if not recipients:
        return
    what = f"{ti.dag_id}.{ti.task_id}" + (f" for {model_id}" if model_id else "")
    mailer = smtp.from_airflow(cfg.airflow.smtp_conn_id)
    message = EmailMessage(policy=email.policy.default.clone(max_line_length=998))  # an unfolded subject
    message["Subject"] = f"[lpmon] task failed: {what} ({day})"
    message["From"] = mailer.from_email
    message["To"] = ", ".join(recipients)
    message.set_content(
        f"Task {what} failed for {day} after its retries.\n\n{error}\n\nThe Airflow run: {run_url(cfg, context)}\n"
    )
    message.add_alternative(
        f"<p>Task <b>{html.escape(what)}</b> failed for {day} after its retries.</p>"
        f'<pre>{html.escape(error)}</pre><p><a href="{html.escape(run_url(cfg, context))}">The Airflow run</a></p>',
        subtype="html",
    )
    problem, _ = mailer.send(message)
    if problem:
        log.warning("lpmon: the failure email for %s was not sent: %s", what, problem)
