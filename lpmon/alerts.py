"""Alert emails: one per model, day and event (DEGRADED, PROMOTION, FALLBACK, and
FAILED or INSUFFICIENT_DATA when the day could not be judged: a missing or
unreadable partition, a missing snapshot, too few examples).

An email is HTML with a plain-text part and the dNE chart inline (PNG). Before
sending, the store is asked whether that (model, day, event) was sent already,
so a retried task or a rerun day never mails twice; a failed send is retried
with backoff, then recorded as failed with its error, and never raises: an
alert must not fail the monitoring result it reports.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid

from lpmon.dayreport import DayReport, chart, headline, render_html, render_text
from lpmon.store import StateStore

CHANNEL = "email"
EVENTS = ("DEGRADED", "PROMOTION", "FALLBACK", "FAILED", "INSUFFICIENT_DATA")


@dataclass(frozen=True)
class SmtpSettings:
    """Where mail goes. In Airflow these come from the smtp_default connection."""

    host: str
    port: int = 25
    from_email: str = "lpmon@localhost"
    user: str = ""
    password: str = ""
    use_ssl: bool = False
    starttls: bool = False
    timeout: float = 30.0

    def __repr__(self) -> str:  # never print the password
        return f"SmtpSettings(host={self.host!r}, port={self.port}, from_email={self.from_email!r})"


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


def send(message: EmailMessage, smtp: SmtpSettings) -> None:
    cls = smtplib.SMTP_SSL if smtp.use_ssl else smtplib.SMTP
    kwargs = {"context": ssl.create_default_context()} if smtp.use_ssl else {}
    with cls(smtp.host, smtp.port, timeout=smtp.timeout, **kwargs) as client:
        if smtp.starttls and not smtp.use_ssl:
            client.starttls(context=ssl.create_default_context())
        if smtp.user:
            client.login(smtp.user, smtp.password)
        client.send_message(message)


def alert_day(store: StateStore, report: DayReport, recipients: list[str], smtp: SmtpSettings, *,
              attempts: int = 3, backoff_s: float = 1.0, only: list[str] | None = None) -> dict[str, str]:
    """Send the day's alerts that were not sent yet; returns {event: status}."""
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
        error, tries = "", 0
        for tries in range(1, attempts + 1):
            try:
                send(compose(report, event, recipients, smtp.from_email), smtp)
                error = ""
                break
            except (OSError, smtplib.SMTPException) as err:
                error = f"{type(err).__name__}: {err}"
                if tries < attempts:
                    time.sleep(backoff_s * 2 ** (tries - 1))
        status = "failed" if error else "sent"
        store.record_alert(report.model_id, report.day, event, CHANNEL, status,
                           recipients=", ".join(recipients), error=error, attempts=tries)
        outcome[event] = status
    return outcome
