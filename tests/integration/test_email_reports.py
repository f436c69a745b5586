"""The alert mail an on-call engineer reads: parsed with
`email` from a real SMTP server, and rendered in headless Chromium (screenshots
kept in artifacts/, git-ignored)."""

import base64

import pytest

from lpmon.report.alerts import alert_day, events, thread_id
from lpmon.report.day import summary
from lpmon.report.notify import Mailer, SmtpSettings
from support.mail import report, screenshot


def _store(tmp_path):
    from lpmon.store import Database, StateStore

    db = Database(f"sqlite:///{tmp_path / 's.db'}", create=True)
    db.migrate()
    return StateStore(db)


def test_one_mail_per_day_with_threading_headers_and_what_is_needed(tmp_path, smtp_server):
    store = _store(tmp_path)
    day = report()
    assert events(day) == ["DEGRADED", "PROMOTION", "FALLBACK"]
    outcome = alert_day(store, day, ["oncall@example.com"], Mailer(SmtpSettings("127.0.0.1", smtp_server.port)))
    assert outcome == {"DEGRADED": "sent", "PROMOTION": "sent", "FALLBACK": "sent"}
    (mail,) = smtp_server.messages
    raw = mail.as_bytes()
    subject_line = next(line for line in raw.split(b"\r\n") if line.startswith(b"Subject:"))
    assert b"dNE 0.9000 % vs gate 0.05 %" in subject_line  # one line, not folded
    assert mail["Subject"].startswith("[lpmon] outliers 2026-11-05: NE degraded") and "\n" not in mail["Subject"]
    assert mail["Date"] and mail["Message-ID"].startswith("<") and "outliers.2026-11-05" in mail["Message-ID"]
    assert mail["List-Id"] == "lpmon alerts for outliers <outliers.lpmon>"
    assert mail["References"] == mail["In-Reply-To"] == thread_id("outliers")
    text = mail.get_body(("plain",)).get_content()
    first = text.splitlines()[0]
    assert first == (
        "dNE 0.9000 % over the 0.05 % gate under v3; v4 now serving: bot_l.0 int8 -> fp16; "
        "26 embedding tables int8 -> fp16; serving reloads plans/outliers/active.json; no action needed"
    )
    assert "the day's sample under v3: dNE 0.9000 %" in text  # which dNE is which
    assert "candidate v4 on held-out traffic: dNE 0.0100 %" in text
    assert "worst layers by SQNR (under v3, the day's plan)" in text
    assert "lpmon page: https://airflow.example.com/lpmon/models/outliers#day-2026-11-05" in text
    assert "runbook: https://wiki.example.com/lpmon" in text and "day report file: /srv/lpmon/work" in text
    assert "day report: http://airflow.test/lpmon/models/outliers/reports/2026-11-05.html" in text
    assert "localhost" not in text and "manual__" not in text
    html = mail.get_body(("html",)).get_content()
    assert "<style" not in html and 'style="' in html and 'href="https://wiki.example.com/lpmon"' in html
    (png,) = [p for p in mail.walk() if p.get_content_type() == "image/png"]
    rendered = html.replace(
        f"cid:{png['Content-ID'][1:-1]}", "data:image/png;base64," + base64.b64encode(png.get_content()).decode()
    )
    screenshot(rendered, "degraded-fallback")
    # a rerun sends nothing; the next mail of the model threads with this one
    assert (
        alert_day(store, day, ["oncall@example.com"], Mailer(SmtpSettings("127.0.0.1", smtp_server.port))) == outcome
        and len(smtp_server.messages) == 1
    )


def test_resolved_mail_when_a_degraded_model_is_back_under_the_gate(tmp_path, smtp_server):
    store = _store(tmp_path)
    back = report(
        day="2026-11-06",
        status="HEALTHY",
        action="RECORD",
        dne_pct=0.01,
        dne_pct_lo=-0.02,
        dne_pct_hi=0.04,
        plan_version=4,
        new_plan_version=None,
        promoted=False,
        moved=[],
        reasons=["dNE 0.0100 % [-0.0200, 0.0400]: within the 0.05 % gate"],
        resolved_from="2026-11-05",
    )
    assert (
        events(back) == ["RESOLVED"]
        and events(report(status="HEALTHY", action="RECORD", new_plan_version=None, promoted=False)) == []
    )
    alert_day(store, back, ["oncall@example.com"], Mailer(SmtpSettings("127.0.0.1", smtp_server.port)))
    (mail,) = smtp_server.messages
    assert mail["Subject"].startswith("[lpmon] outliers 2026-11-06: resolved")
    assert mail.get_body(("plain",)).get_content().splitlines()[0] == (
        "back under the 0.05 % gate: dNE 0.0100 % under v4 (DEGRADED on 2026-11-05); no action needed"
    )
    assert mail["References"] == thread_id("outliers")


def test_first_lines_say_when_action_is_needed():
    stuck = report(action="FALLBACK", new_plan_version=None, promoted=False, active_version=3, moved=[])
    assert events(stuck) == ["DEGRADED", "FALLBACK"]
    assert (
        "ACTION NEEDED" in summary(stuck, "DEGRADED+FALLBACK")
        and "serving keeps v3" in summary(stuck, "DEGRADED+FALLBACK")
        and "runbook" in summary(stuck, "DEGRADED")
    )
    broken = report(serving_problem="permission denied on plans/outliers")
    assert "ACTION NEEDED: serving's file still holds the old plan" in summary(broken, "PROMOTION")
    missing = report(
        status="INSUFFICIENT_DATA",
        action="RECORD",
        new_plan_version=None,
        promoted=False,
        message="no traffic for 2026-11-05",
        dne_pct=None,
    )
    assert summary(missing, "INSUFFICIENT_DATA").startswith("not enough traffic to judge the day (no traffic")
    waiting = report(
        status="INSUFFICIENT_DATA",
        action="ONBOARD",
        new_plan_version=None,
        promoted=False,
        active_version=None,
        dne_pct=None,
        message="onboarding: waiting for evidence (9 examples so far)",
    )
    assert summary(waiting, "ONBOARDING") == (
        "onboarding: waiting for evidence (9 examples so far): no action needed; lpmon tries again with the next "
        "days' traffic (one mail now, the next when a plan passes), and serving stays on fp32 (no plan) until then"
    )


def test_runbook_url_is_a_checked_model_setting(tmp_path):
    from lpmon.config import ConfigError, load

    path = tmp_path / "lpmon.toml"
    path.write_text('[models.m]\ntraffic = "t"\nsnapshot = "s"\nrunbook_url = "https://wiki/x"\n')
    assert load(path, environ={}).model("m").runbook_url == "https://wiki/x"
    path.write_text('[models.m]\ntraffic = "t"\nsnapshot = "s"\nrunbook_url = "javascript:alert(1)"\n')
    with pytest.raises(ConfigError, match="runbook_url: must be an http"):
        load(path, environ={})
