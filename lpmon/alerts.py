"""Alert emails: one per model, day and event (DEGRADED, PROMOTION, FALLBACK, and
FAILED or INSUFFICIENT_DATA when the day could not be judged: a missing or
unreadable partition, a missing snapshot, too few examples).

An email is HTML with a plain-text part and the dNE chart inline (PNG). Before
sending, the store is asked whether that (model, day, event) was sent already,
so a retried task or a rerun day never mails twice. Sending is lpmon.notify's:
a failed send is retried with backoff, then recorded as failed with its error
(also when no SMTP connection exists), and never raises: an alert must not
fail the monitoring result it reports.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import make_msgid

from lpmon.dayreport import DayReport, chart, headline, render_html, render_text
from lpmon.notify import NO_CONNECTION, Mailer
from lpmon.store import StateStore

log = logging.getLogger(__name__)

CHANNEL = "email"
EVENTS = ("DEGRADED", "PROMOTION", "FALLBACK", "FAILED", "INSUFFICIENT_DATA")


def events(report: DayReport) -> list[str]:
    """What in this day deserves an email."""
    out = []
    if report.status in ("DEGRADED", "INSUFFICIENT_DATA"):
        out.append(report.status)
    if report.status == "failed":
        out.append("FAILED")
    if report.new_plan_version and report.promoted:
        out.append("PROMOTION")
    if report.action == "FALLBACK":
        out.append("FALLBACK")
    return out


def subject(report: DayReport, event: str) -> str:
    dne = "" if report.dne_pct is None else f" (dNE {report.dne_pct:.4f} % vs gate {report.gate_pct:g} %)"
    return f"[lpmon] {headline(report, event)}{dne}"


def compose(report: DayReport, event: str, recipients: list[str], sender: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject(report, event)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["X-Lpmon-Event"] = f"{report.model_id}/{report.day}/{event}"
    message.set_content(render_text(report, event))
    cid = make_msgid(domain="lpmon")
    message.add_alternative(render_html(report, f"cid:{cid[1:-1]}", event), subtype="html")
    message.get_payload()[1].add_related(chart(report), maintype="image", subtype="png", cid=cid,
                                         filename=f"dne-{report.model_id}-{report.day}.png")
    return message


def alert_day(store: StateStore, report: DayReport, recipients: list[str], mailer: Mailer, *,
              only: list[str] | None = None) -> dict[str, str]:
    """Send the day's alerts that were not sent yet; returns {event: status}.
    Never raises: a send that fails (or cannot be tried) is recorded with its error."""
    sent = {(r["event"], r["status"]) for r in store.rows("alerts", report.model_id)
            if r["logical_date"] == report.day and r["channel"] == CHANNEL}
    outcome = {}
    for event in only if only is not None else events(report):
        if (event, "sent") in sent:
            outcome[event] = "sent"
            continue
        if not recipients:
            store.record_alert(report.model_id, report.day, event, CHANNEL, "skipped",
                               error="no recipients configured", attempts=0)
            outcome[event] = "skipped"
            continue
        try:
            error, tries = mailer.send(compose(report, event, recipients, mailer.from_email))
        except Exception as err:  # noqa: BLE001 - composing failed (a bad address, a chart): record it
            error, tries = f"{type(err).__name__}: {err}", 0
        status = "failed" if error else "sent"
        if error:  # a missing connection is said once per run (the models task): here only at info level
            log.log(logging.INFO if error.startswith(NO_CONNECTION) else logging.WARNING,
                    "lpmon alert %s/%s/%s not sent: %s", report.model_id, report.day, event, error)
        store.record_alert(report.model_id, report.day, event, CHANNEL, status,
                           recipients=", ".join(recipients), error=error, attempts=tries)
        outcome[event] = status
    return outcome
