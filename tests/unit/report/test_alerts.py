"""Alert composition and the run key of DAG tasks, without Airflow running."""

import datetime as dt
from types import SimpleNamespace

from lpmon.report.alerts import compose, events, subject
from lpmon.report.day import DayReport
from lpmon.report.render import render_html, render_text


def report(**changes):
    values = dict(
        model_id="ctr",
        day="2026-11-05",
        status="DEGRADED",
        action="FALLBACK",
        reasons=["dNE <b>0.9</b> & <script>alert(1)</script>"],
        gate_pct=0.05,
        dne_pct=0.9,
        dne_pct_lo=0.5,
        dne_pct_hi=1.3,
        plan_version=3,
        new_plan_version=4,
        promoted=True,
        moved=["top_l.0: int8 -> fp16"],
        worst_sqnr=[{"layer": "bot_l.<0>", "precision": "int8", "sqnr_db": 12.5}],
        worst_saturation=[{"layer": "bot_l.<0>", "precision": "int8", "saturation": 0.0123}],
        history=[
            {"logical_date": "2026-11-04", "dne_pct": 0.01, "dne_pct_lo": -0.1, "dne_pct_hi": 0.1},
            {"logical_date": "2026-11-05", "dne_pct": 0.9, "dne_pct_lo": 0.5, "dne_pct_hi": 1.3},
        ],
        run_url='http://airflow/dags/lpmon_monitor/runs/x"><script>',
    )
    values.update(changes)
    return DayReport(**values)


def test_events_follow_the_day():
    assert events(report()) == ["DEGRADED", "PROMOTION", "FALLBACK"]
    assert events(report(status="HEALTHY", action="RECORD", new_plan_version=None)) == []
    assert events(report(promoted=False, action="RECALIBRATE")) == ["DEGRADED"]
    assert events(report(status="failed", action="RECORD", new_plan_version=None)) == ["FAILED"]
    assert events(report(status="INSUFFICIENT_DATA", action="RECORD", new_plan_version=None)) == ["INSUFFICIENT_DATA"]


def test_data_is_escaped_in_html_and_plain_in_text():
    html = render_html(report(), "cid:chart")
    assert "<script>" not in html and "&lt;script&gt;" in html and "bot_l.&lt;0&gt;" in html
    assert "runs/x&quot;&gt;&lt;script&gt;" in html
    text = render_text(report())
    assert "dNE <b>0.9</b>" in text and "0.9000 % [0.5000, 1.3000] against the 0.05 % gate" in text
    assert "1.230 %" in text and "12.5 dB" in text


def test_composed_email_has_text_html_and_an_inline_chart():
    message = compose(report(), "FALLBACK", ["a@example.com", "b@example.com"], "lpmon@example.com")
    assert message["Subject"] == subject(report(), "FALLBACK")
    assert message["To"] == "a@example.com, b@example.com"
    assert message.get_body(("plain",)) is not None and message.get_body(("html",)) is not None
    (png,) = [p for p in message.walk() if p.get_content_type() == "image/png"]
    assert png.get_content()[:4] == b"\x89PNG"
    assert f"cid:{png['Content-ID'][1:-1]}" in message.get_body(("html",)).get_content()


def test_the_monitored_day_comes_from_the_data_interval():
    from lpmon.airflow.tasks import day_of, last_day_of

    at = dt.datetime(2026, 11, 5, tzinfo=dt.timezone.utc)
    run = {"logical_date": at, "data_interval_start": at, "data_interval_end": at + dt.timedelta(days=1)}
    assert day_of(run) == "2026-11-05"
    # In a zone east of UTC, the interval of the Paris day 11-05 starts at 23:00 UTC on 11-04.
    paris = at - dt.timedelta(hours=1)
    assert day_of({"data_interval_start": paris}, "Europe/Paris") == "2026-11-05"
    # Airflow 3 manual runs may have no logical date: the last complete day before the run.
    manual = {
        "logical_date": None,
        "data_interval_start": None,
        "data_interval_end": None,
        "dag_run": SimpleNamespace(run_after=at + dt.timedelta(hours=7)),
    }
    assert day_of(manual) == "2026-11-04" and last_day_of(manual) == "2026-11-04"
    assert day_of(dict(manual, params={"day": "2026-10-30"})) == "2026-10-30"
    # A weekly interval calibrates on its last day.
    week = {"data_interval_start": at - dt.timedelta(days=7), "data_interval_end": at}
    assert last_day_of(week) == "2026-11-04"


def test_a_day_param_that_is_no_date_is_one_clear_error():
    import pytest

    from lpmon.airflow.tasks import day_of
    from lpmon.config import ConfigError

    with pytest.raises(ConfigError, match=r"param day: expected a date YYYY-MM-DD, got '2026-13-01'"):
        day_of({"params": {"day": "2026-13-01"}})


def test_tasks_without_a_config_say_where_to_set_it(monkeypatch):
    import pytest

    from lpmon.airflow.tasks import config
    from lpmon.config import ConfigError

    monkeypatch.delenv("LPMON_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="Airflow Variable lpmon_config or LPMON_CONFIG"):
        config()


def _store(tmp_path):
    from lpmon.store import Database, StateStore

    db = Database(f"sqlite:///{tmp_path / 's.db'}", create=True)
    db.migrate()
    return StateStore(db)


def test_a_mail_server_that_is_down_is_retried_recorded_and_never_raises(tmp_path, monkeypatch, smtp_server):
    """Nothing listens on the port: three tries with backoff, recorded as failed with
    the error; a later send (the server is back) is not blocked by it."""
    import lpmon.report.notify
    from conftest import free_port
    from lpmon.report.alerts import alert_day
    from lpmon.report.notify import Mailer, SmtpSettings

    store = _store(tmp_path)
    sleeps = []
    monkeypatch.setattr(lpmon.report.notify.time, "sleep", sleeps.append)
    outcome = alert_day(store, report(), ["a@example.com"], Mailer(SmtpSettings("127.0.0.1", free_port(), timeout=2)))
    assert outcome == {"DEGRADED": "failed", "PROMOTION": "failed", "FALLBACK": "failed"}
    rows = store.rows("alerts", "ctr")
    assert all(r["attempts"] == 3 and "ConnectionRefusedError" in r["error"] for r in rows), rows
    assert sleeps == [1.0, 2.0]  # exponential backoff between the tries of the day's one mail
    # The server is back: the rerun of the alert task sends what failed, once.
    outcome = alert_day(store, report(), ["a@example.com"], Mailer(SmtpSettings("127.0.0.1", smtp_server.port)))
    assert outcome == {"DEGRADED": "sent", "PROMOTION": "sent", "FALLBACK": "sent"}
    # One mail for the day's three events.
    assert len(smtp_server.messages) == 1 and all(r["status"] == "sent" for r in store.rows("alerts", "ctr"))
    assert smtp_server.messages[0]["X-Lpmon-Event"] == "ctr/2026-11-05/DEGRADED+PROMOTION+FALLBACK"


def test_whatever_is_wrong_with_smtp_comes_back_as_an_error(tmp_path, monkeypatch):
    """A wrong host, a server that accepts and never answers (timeout), a TLS
    handshake against plain SMTP: each an error string, never an exception."""
    import socket

    import lpmon.report.notify
    from lpmon.report.alerts import compose
    from lpmon.report.notify import Mailer, SmtpSettings

    monkeypatch.setattr(lpmon.report.notify.time, "sleep", lambda s: None)
    message = compose(report(), "DEGRADED", ["a@example.com"], "lpmon@example.com")
    error, tries = Mailer(SmtpSettings("no-such-host.invalid", 25, timeout=2)).send(message)
    assert tries == 3 and "gaierror" in error
    with socket.socket() as silent:  # listens, never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        error, tries = Mailer(SmtpSettings("127.0.0.1", port, timeout=0.5), attempts=1).send(message)
        assert tries == 1 and ("timed out" in error or "Timeout" in error), error
        error, _ = Mailer(SmtpSettings("127.0.0.1", port, timeout=0.5, use_ssl=True), attempts=1).send(message)
        assert error


def test_without_an_airflow_connection_alerts_are_recorded_with_the_fix(tmp_path, monkeypatch, airflow_db):
    from lpmon.airflow.smtp import from_airflow
    from lpmon.report.alerts import alert_day
    from lpmon.report.notify import NO_CONNECTION

    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    mailer = from_airflow("smtp_default")
    assert mailer.problem.startswith(f"{NO_CONNECTION} 'smtp_default' (not defined)")
    assert "airflow connections add smtp_default" in mailer.problem
    store = _store(tmp_path)
    assert alert_day(store, report(), ["a@example.com"], mailer) == {
        "DEGRADED": "failed",
        "PROMOTION": "failed",
        "FALLBACK": "failed",
    }
    assert all(r["error"] == mailer.problem and r["attempts"] == 0 for r in store.rows("alerts", "ctr"))
    # A malformed connection is no better, and no worse.
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_BROKEN", "smtp://127.0.0.1:notaport/")
    assert from_airflow("smtp_broken").problem.startswith(f"{NO_CONNECTION} 'smtp_broken' (")


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


def test_the_failure_callback_never_raises(tmp_path, monkeypatch, airflow_db):
    """No SMTP connection, or a context it cannot make sense of: logged, not raised."""
    from lpmon.airflow import tasks as dagtasks
    from support.logs import LogLines
    from support.world import dag_world

    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    monkeypatch.setenv("LPMON_CONFIG", str(dag_world(tmp_path, ["stable"], days=1)))
    at = dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)
    ti = SimpleNamespace(dag_id="lpmon_monitor", task_id="models", map_index=-1)
    context = {
        "ti": ti,
        "data_interval_start": at,
        "exception": RuntimeError("boom"),
        "dag_run": SimpleNamespace(dag_id="lpmon_monitor", run_id="r1", run_after=at),
    }
    with LogLines() as log:
        dagtasks.notify_failure(context)
        dagtasks.notify_failure({})  # nothing usable at all
    logged = log.text
    assert "the failure email for lpmon_monitor.models was not sent: no SMTP connection 'smtp_default'" in logged
    assert "the failure email could not be prepared" in logged
