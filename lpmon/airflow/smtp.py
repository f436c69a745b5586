"""The mail settings of an Airflow SMTP connection, as a lpmon.report.notify.Mailer."""

from __future__ import annotations

from lpmon.report.notify import NO_CONNECTION, Mailer, SmtpSettings


def from_airflow(conn_id: str) -> Mailer:
    """A Mailer for the Airflow connection conn_id (host, port, sender, credentials,
    SSL/STARTTLS and timeout as the SMTP provider reads them); without a usable
    connection, a Mailer whose sends all fail with `problem`, naming the fix."""
    try:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        hook = SmtpHook(smtp_conn_id=conn_id)
        hook.smtp_connection = hook.get_connection(conn_id)  # what get_conn() sets, without connecting
        settings = SmtpSettings(host=hook.host or "localhost", port=int(hook.port or 25),
                                from_email=hook.from_email or "lpmon@localhost", user=hook.smtp_user or "",
                                password=hook.smtp_password or "", use_ssl=bool(hook.use_ssl),
                                starttls=bool(hook.smtp_starttls), timeout=float(hook.timeout))
    except Exception as err:  # noqa: BLE001 - AirflowNotFoundException, a malformed URI, a bad port ...
        reason = "not defined" if type(err).__name__ == "AirflowNotFoundException" else f"{type(err).__name__}: {err}"
        return Mailer(None, f"{NO_CONNECTION} {conn_id!r} ({reason}): create it with "
                            f"`airflow connections add {conn_id} --conn-uri smtp://HOST:PORT/...`")
    return Mailer(settings)
