"""The day report file and the lpmon page: colour by status, plan-change markers,
previous/next navigation, the segment table, grouped layer lists, the anchors the
mails link to (the report drawn in headless Chromium: artifacts/mail/)."""

import base64

from lpmon.report.render import render_html
from support.mail import report, screenshot

# The plan in force after a day: StateStore.plan_in_force_after (tests/test_store_queries.py).


def test_day_report_colours_status_marks_plan_changes_and_navigates():
    from lpmon.report.chart import dne_chart_png
    from lpmon.report.day import COLOURS

    day = report()
    png = dne_chart_png(day.history, day.gate_pct, "outliers", colours=COLOURS)
    html = render_html(
        day, "data:image/png;base64," + base64.b64encode(png).decode(), "DEGRADED+PROMOTION", navigation=True
    )
    assert f"background:{COLOURS['DEGRADED']}" in html  # the status badge's colour
    assert 'id="previous-day" href="2026-11-04.html"' in html and 'id="next-day" href="2026-11-06.html"' in html
    assert 'id="segments"' in html and "<td style=" in html and ">FR<" in html and "[0.2000, 1.8000]" in html
    assert render_html(report(segments=[]), "x").count('id="segments"') == 0
    assert 'id="nav"' not in render_html(day, "x")  # not in mail
    # the chart's points are coloured by status and the plan change is marked: a plain chart differs
    assert png != dne_chart_png(
        [{**h, "status": None, "new_plan_version": None, "plan_version": 3} for h in day.history],
        day.gate_pct,
        "outliers",
    )
    screenshot(html, "day-report")


def test_plan_diffs_group_embedding_tables_in_natural_order():
    from lpmon.cli import grouped_diff

    lines = (
        ["top_l.0: precision int8 -> fp16"]
        + [f"emb_l.{i}: precision int8 -> fp16" for i in range(26)]
        + ["bot_l.10: precision int8 -> fp32", "bot_l.2: precision int8 -> fp32"]
    )
    assert grouped_diff(lines) == [
        "bot_l.2: precision int8 -> fp32",
        "bot_l.10: precision int8 -> fp32",
        "top_l.0: precision int8 -> fp16",
        "26 embedding tables (emb_l.0..emb_l.25): precision int8 -> fp16",
    ]


def test_the_page_has_an_anchor_per_day_for_the_mail_links():
    from lpmon.report.page import model_page

    data = {
        "model": "m",
        "gate_pct": 0.05,
        "decisions": [],
        "active_plan": None,
        "alerts": [],
        "pinned": [],
        "history": [
            {
                "day": "2026-11-05",
                "status": "DEGRADED",
                "action": "RECALIBRATE",
                "dne_pct": 0.9,
                "dne_pct_lo": 0.5,
                "dne_pct_hi": 1.3,
                "plan_version": 1,
                "new_plan_version": 2,
                "airflow_run": None,
            }
        ],
    }
    page = model_page(data)
    assert 'id="day-2026-11-05"' in page and "tr.day-row:target" in page
    assert report().page_url.endswith("#day-2026-11-05")


def test_a_rewritten_report_keeps_its_airflow_run_link(tmp_path):
    from types import SimpleNamespace

    from lpmon.report.day import run_link_of
    from lpmon.report.render import write_file

    config = SimpleNamespace(work_dir=tmp_path, file_mode=None)
    url = "https://airflow.example.com/dags/lpmon_monitor/runs/scheduled__2026-11-05?x=1&y=2"
    write_file(config, report(run_url=url))
    assert run_link_of(config, "outliers", "2026-11-05") == url
    assert run_link_of(config, "outliers", "2026-11-04") == ""
