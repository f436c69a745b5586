"""Alert emails: one per model and day, grouping the day's events (DEGRADED,
PROMOTION, FALLBACK, RESOLVED when a model that was DEGRADED is back under the
gate, FAILED or INSUFFICIENT_DATA when the day could not be judged: a missing or
unreadable partition, a missing snapshot, too few examples; ONBOARDING on the
first day a model waits for onboarding's evidence, ONBOARDED the day it onboards).
Bodies, subject and first line come from lpmon/report/templates/.

A mail's first line says what happened and what is needed; it links the
model's lpmon page, the day report and the model's runbook. Its headers let
mail clients thread a model's mails (List-Id, References to one thread id per
model). It is HTML with inline styles, a plain-text part and the dNE chart
inline (PNG). Before sending, the store is asked whether each (model, day, event) was sent already,
so a retried task or a rerun day never mails twice. Sending is lpmon.report.notify's:
a failed send is retried with backoff, then recorded as failed with its error
(also when no SMTP connection exists), and never raises: an alert must not
fail the monitoring result it reports.
"""

from __future__ import annotations

import email.policy
import logging
import re
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from lpmon.report import day as dayreport
from lpmon.report import render
from lpmon.report.day import DayReport, events, headline
from lpmon.report.notify import NO_CONNECTION, Mailer
from lpmon.report.render import chart, render_html, render_text
from lpmon.store import StateStore

log = logging.getLogger(__name__)

CHANNEL = "email"
EVENTS = ("DEGRADED", "PROMOTION", "FALLBACK", "FAILED", "INSUFFICIENT_DATA", "ONBOARDING", "ONBOARDED", "RESOLVED")
MAIL_POLICY = email.policy.default.clone(max_line_length=998)  # headers are not folded (one-line subjects)


def subject(report: DayReport, event: str) -> str:
    """One line: the events, and dNE against the gate. event: events joined by '+'."""
    dne = "" if report.dne_pct is None else f" (dNE {report.dne_pct:.4f} % vs gate {report.gate_pct:g} %)"
    return " ".join(f"[lpmon] {headline(report, event)}{dne}".split())  # no line breaks from data


def thread_id(model_id: str) -> str:
    """The Message-ID every mail of a model refers to, so that clients thread them."""
    return f"<lpmon.{_token(model_id)}@lpmon>"


def _token(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "-", model_id) or "model"


def compose(report: DayReport, event: str, recipients: list[str], sender: str) -> EmailMessage:
    """event: one event, or the day's events joined by '+' (one mail per model and day)."""
    message = EmailMessage(policy=MAIL_POLICY)
    message["Subject"] = subject(report, event)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(idstring=f"{_token(report.model_id)}.{report.day}", domain="lpmon")
    message["List-Id"] = f"lpmon alerts for {_token(report.model_id)} <{_token(report.model_id)}.lpmon>"
    message["In-Reply-To"] = thread_id(report.model_id)
    message["References"] = thread_id(report.model_id)
    message["X-Lpmon-Event"] = f"{report.model_id}/{report.day}/{event}"
    message.set_content(render_text(report, event))
    cid = make_msgid(domain="lpmon")
    message.add_alternative(render_html(report, f"cid:{cid[1:-1]}", event), subtype="html")
    message.get_payload()[1].add_related(
        chart(report), maintype="image", subtype="png", cid=cid, filename=f"dne-{report.model_id}-{report.day}.png"
    )
    return message


def alert_day(
    store: StateStore, report: DayReport, recipients: list[str], mailer: Mailer, *, only: list[str] | None = None
) -> dict[str, str]:
    """Send the day's alerts that were not sent yet; returns {event: status}.
    Never raises: a send that fails (or cannot be tried) is recorded with its error."""
    recorded = store.alerts(report.model_id, report.day, CHANNEL)
    sent = {(r["event"], r["status"]) for r in recorded}
    wanted = only if only is not None else events(report)
    if only is None:
        _supersede(store, report, recorded, wanted)
    outcome = {event: "sent" for event in wanted if (event, "sent") in sent}
    pending = [event for event in wanted if event not in outcome]
    if not pending:
        return outcome
    if not recipients:
        for event in pending:
            store.record_alert(
                report.model_id, report.day, event, CHANNEL, "skipped", error="no recipients configured", attempts=0
            )
            outcome[event] = "skipped"
        return outcome
    joined = "+".join(pending)  # one mail for the day's unsent events
    try:
        error, tries = mailer.send(compose(report, joined, recipients, mailer.from_email))
    except Exception as err:  # noqa: BLE001 - composing failed (a bad address, a chart): record it
        error, tries = f"{type(err).__name__}: {err}", 0
    status = "failed" if error else "sent"
    if error:  # a missing connection is said once per run (the models task): here only at info level
        log.log(
            logging.INFO if error.startswith(NO_CONNECTION) else logging.WARNING,
            "lpmon alert %s/%s/%s not sent: %s",
            report.model_id,
            report.day,
            joined,
            error,
        )
    for event in pending:
        store.record_alert(
            report.model_id,
            report.day,
            event,
            CHANNEL,
            status,
            recipients=", ".join(recipients),
            error=error,
            attempts=tries,
        )
        outcome[event] = status
    return outcome


def _supersede(store: StateStore, report: DayReport, recorded: list[dict], wanted: list[str]) -> None:
    """A rerun's day says something else than the run that failed to mail (a FAILED
    day now judged, say): the old unsent alerts are not owed any more. Marked
    "superseded", they leave the page's and status's failures, with what replaced them."""
    now = "+".join(wanted) or "nothing to mail"
    for row in recorded:
        if row["status"] in ("failed", "skipped") and row["event"] not in wanted:
            store.record_alert(
                report.model_id,
                report.day,
                row["event"],
                CHANNEL,
                "superseded",
                recipients=row["recipients"],
                error=f"the day was run again: {now}",
                attempts=row["attempts"],
            )


def deliver_day(
    config, store: StateStore, model_id: str, day: str, *, run_url: str = "", mailer=None, write_report: bool = True
) -> dict:
    """The outputs of a day, for the DAG's report and alert tasks and for `lpmon run`
    and `backfill` alike: the HTML day report (write_report) and the day's alert
    mail (when mailer is a Mailer, or a function that makes one: it is called
    only when the day has something to say). Returns {"report": path or None,
    "alerts": {event: status}}; never raises for a mail."""
    report = dayreport.build(config, store, model_id, day, run_url)
    out = {"report": str(render.write_file(config, report)) if write_report else None, "alerts": {}}
    if write_report and report.previous_day:  # the day before now has a next day to link to
        before = dayreport.build(
            config, store, model_id, report.previous_day, dayreport.run_link_of(config, model_id, report.previous_day)
        )
        if before.next_day == day:
            render.write_file(config, before)
    if mailer is not None and not events(report):  # a rerun with nothing to say: earlier failures are moot
        _supersede(store, report, store.alerts(model_id, day, CHANNEL), [])
    if mailer is not None and events(report):
        recipients = list(config.model(model_id).recipients)
        if not recipients:  # recorded as skipped; no need to look up the SMTP connection
            mailer = Mailer(None, "no recipients configured")
        elif not isinstance(mailer, Mailer):
            mailer = mailer()
        out["alerts"] = alert_day(store, report, recipients, mailer)
    return out
