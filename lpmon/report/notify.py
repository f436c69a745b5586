"""The one place that sends lpmon's mail: the event emails (lpmon.report.alerts) and the
task-failure emails (lpmon.airflow.failures.notify_failure) both go through a Mailer.

A Mailer never raises. Whatever is wrong (no SMTP connection in Airflow, a
wrong host, a refusal, a timeout, a malformed address) comes back as an error
string, which the caller records and logs: an email must never fail the
monitoring result it reports, nor turn a failure callback into a second failure.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage

log = logging.getLogger(__name__)

NO_CONNECTION = "no SMTP connection"  # how an error about a missing connection starts (the page looks for it)


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


@dataclass(frozen=True)
class Mailer:
    """Sends with retries and backoff; `problem` says why it cannot send at all."""

    smtp: SmtpSettings | None
    problem: str = ""
    attempts: int = 3
    backoff_s: float = 1.0

    @property
    def from_email(self) -> str:
        return self.smtp.from_email if self.smtp else "lpmon@localhost"

    def send(self, message: EmailMessage) -> tuple[str, int]:
        """(error, tries): error is "" once a try succeeded; tries is 0 when nothing could be tried."""
        if self.smtp is None:
            return self.problem, 0
        error = ""
        for tries in range(1, self.attempts + 1):
            try:
                _deliver(message, self.smtp)
                return "", tries
            except Exception as err:  # noqa: BLE001 - any failure to send is reported, never raised
                error = f"{type(err).__name__}: {err}"
                if tries < self.attempts:
                    time.sleep(self.backoff_s * 2 ** (tries - 1))
        return error, self.attempts


def _deliver(message: EmailMessage, smtp: SmtpSettings) -> None:
    cls = smtplib.SMTP_SSL if smtp.use_ssl else smtplib.SMTP
    kwargs = {"context": ssl.create_default_context()} if smtp.use_ssl else {}
    with cls(smtp.host, smtp.port, timeout=smtp.timeout, **kwargs) as client:
        if smtp.starttls and not smtp.use_ssl:
            client.starttls(context=ssl.create_default_context())
        if smtp.user:
            client.login(smtp.user, smtp.password)
        client.send_message(message)
