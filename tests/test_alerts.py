"""Alert composition and the run key of DAG tasks, without Airflow running."""

import datetime as dt
from types import SimpleNamespace

from lpmon.alerts import compose, events, subject
from lpmon.dayreport import DayReport, render_html, render_text


def report(**changes):
    values = dict(model_id="ctr", day="2026-11-05", status="DEGRADED", action="FALLBACK",
                  reasons=["dNE <b>0.9</b> & <script>alert(1)</script>"], gate_pct=0.05, dne_pct=0.9,
                  dne_pct_lo=0.5, dne_pct_hi=1.3, plan_version=3, new_plan_version=4, promoted=True,
                  moved=["top_l.0: int8 -> fp16"],
                  worst_sqnr=[{"layer": "bot_l.<0>", "precision": "int8", "sqnr_db": 12.5}],
                  worst_saturation=[{"layer": "bot_l.<0>", "precision": "int8", "saturation": 0.0123}],
                  history=[{"logical_date": "2026-11-04", "dne_pct": 0.01, "dne_pct_lo": -0.1, "dne_pct_hi": 0.1},
                           {"logical_date": "2026-11-05", "dne_pct": 0.9, "dne_pct_lo": 0.5, "dne_pct_hi": 1.3}],
                  run_url='http://airflow/dags/lpmon_monitor/runs/x"><script>')
    values.update(changes)
    return DayReport(**values)


def test_events_follow_the_day():
    assert events(report()) == ["DEGRADED", "PROMOTION", "FALLBACK"]
    assert events(report(status="HEALTHY", action="RECORD", new_plan_version=None)) == []
    assert events(report(promoted=False, action="RECALIBRATE")) == ["DEGRADED"]
    assert events(report(status="failed", action="RECORD", new_plan_version=None)) == ["FAILED"]
    assert events(report(status="INSUFFICIENT_DATA", action="RECORD", new_plan_version=None)) == [
        "INSUFFICIENT_DATA"]


def test_data_is_escaped_in_html_and_plain_in_text():
    html = render_html(report(), "cid:chart")
    assert "<script>" not in html and "&lt;script&gt;" in html and "bot_l.&lt;0&gt;" in html
    assert 'runs/x&quot;&gt;&lt;script&gt;' in html
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
    from lpmon.dagtasks import day_of

    at = dt.datetime(2026, 11, 5, tzinfo=dt.timezone.utc)
    assert day_of({"logical_date": at}) == "2026-11-05"
    # Airflow 3 manual runs may have no logical date: the last complete day before the run.
    manual = {"logical_date": None, "data_interval_start": None, "data_interval_end": None,
              "dag_run": SimpleNamespace(run_after=at + dt.timedelta(hours=7))}
    assert day_of(manual) == "2026-11-04"
    assert day_of(dict(manual, params={"day": "2026-10-30"})) == "2026-10-30"


def test_tasks_without_a_config_say_where_to_set_it(monkeypatch):
    import pytest

    from lpmon.config import ConfigError
    from lpmon.dagtasks import config

    monkeypatch.delenv("LPMON_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="Airflow Variable lpmon_config or LPMON_CONFIG"):
        config()


def test_a_mail_server_that_is_down_is_retried_recorded_and_never_raises(tmp_path, monkeypatch, smtp_server):
    """Nothing listens on the port: three tries with backoff, recorded as failed with
    the error; a later send (the server is back) is not blocked by it."""
    import lpmon.alerts
    from conftest import free_port
    from lpmon.alerts import SmtpSettings, alert_day
    from lpmon.store import Database, StateStore

    db = Database(f"sqlite:///{tmp_path / 's.db'}", create=True)
    db.migrate()
    store = StateStore(db)
    sleeps = []
    monkeypatch.setattr(lpmon.alerts.time, "sleep", sleeps.append)
    outcome = alert_day(store, report(), ["a@example.com"], SmtpSettings("127.0.0.1", free_port(), timeout=2))
    assert outcome == {"DEGRADED": "failed", "PROMOTION": "failed", "FALLBACK": "failed"}
    rows = store.rows("alerts", "ctr")
    assert all(r["attempts"] == 3 and "ConnectionRefusedError" in r["error"] for r in rows), rows
    assert sleeps == [1.0, 2.0] * 3  # exponential backoff between the tries of each event
    # The server is back: the rerun of the alert task sends what failed, once.
    outcome = alert_day(store, report(), ["a@example.com"], SmtpSettings("127.0.0.1", smtp_server.port))
    assert outcome == {"DEGRADED": "sent", "PROMOTION": "sent", "FALLBACK": "sent"}
    assert len(smtp_server.messages) == 3 and all(r["status"] == "sent" for r in store.rows("alerts", "ctr"))
