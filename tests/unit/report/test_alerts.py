"""Alert composition and the run key of DAG tasks, without Airflow running."""

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
    assert "runs/x&#34;&gt;&lt;script&gt;" in html  # MarkupSafe writes a quote as &#34;
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


def test_a_rerun_that_delivers_replaces_the_failed_alert_of_its_day(tmp_path, monkeypatch, smtp_server):
    """The first run failed (FAILED, mail server down); the rerun judged the day and
    mailed it: the FAILED alert is superseded, not left "failed" for the page."""
    import lpmon.report.notify
    from conftest import free_port
    from lpmon.report.alerts import alert_day
    from lpmon.report.notify import Mailer, SmtpSettings

    monkeypatch.setattr(lpmon.report.notify.time, "sleep", lambda s: None)
    store = _store(tmp_path)
    failed = report(status="failed", action="RECORD", new_plan_version=None, message="partition unreadable")
    down = Mailer(SmtpSettings("127.0.0.1", free_port(), timeout=2), attempts=1)
    assert alert_day(store, failed, ["a@example.com"], down) == {"FAILED": "failed"}
    assert alert_day(store, report(), ["a@example.com"], Mailer(SmtpSettings("127.0.0.1", smtp_server.port))) == {
        "DEGRADED": "sent",
        "PROMOTION": "sent",
        "FALLBACK": "sent",
    }
    rows = {r["event"]: r for r in store.rows("alerts", "ctr")}
    assert (
        rows["FAILED"]["status"] == "superseded" and "run again: DEGRADED+PROMOTION+FALLBACK" in rows["FAILED"]["error"]
    )
    assert len(smtp_server.messages) == 1
