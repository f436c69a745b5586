"""Alert mail settings from an Airflow SMTP connection (lpmon.airflow.smtp)."""


def test_the_connection_settings_come_from_the_smtp_provider(monkeypatch, airflow_db):
    from lpmon.airflow.smtp import from_airflow

    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_X",
        "smtp://u:" + "pw@mail.example.com:2525/?disable_ssl=true&from_email=lpmon%40example.com&timeout=7",
    )
    mailer = from_airflow("smtp_x")
    assert mailer.problem == "" and "pw" not in repr(mailer.smtp)
    smtp = mailer.smtp
    assert (smtp.host, smtp.port, smtp.from_email, smtp.user, smtp.password, smtp.use_ssl, smtp.timeout) == (
        "mail.example.com",
        2525,
        "lpmon@example.com",
        "u",
        "pw",
        False,
        7.0,
    )
