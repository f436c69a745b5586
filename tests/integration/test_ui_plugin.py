"""The lpmon page's HTML without a browser: escaping, the chart's axes, colours and
plan markers, and the notice when mail cannot be sent. The page in a real
api-server, opened from Airflow's nav entry in headless Chromium, is checked on
the real stack (tests/integration/test_airflow_stack.py), which has the run links to click."""

import re

from lpmon.report.page import STATUS_COLOURS, index_page, model_page, nice_ticks, svg_chart


def day(d, dne, status="HEALTHY", plan=1, new=None):
    return {
        "day": d,
        "status": status,
        "action": "RECORD",
        "dne_pct": dne,
        "dne_pct_lo": dne - 0.01,
        "dne_pct_hi": dne + 0.01,
        "plan_version": plan,
        "new_plan_version": new,
        "airflow_run": None,
    }


def test_page_escapes_what_comes_from_data():
    hostile = "<script>alert(1)</script>"
    data = {
        "model": "m",
        "gate_pct": 0.05,
        "history": [
            {
                "day": "2026-11-01",
                "status": hostile,
                "action": "RECORD",
                "dne_pct": 0.1,
                "dne_pct_lo": 0.0,
                "dne_pct_hi": 0.2,
                "plan_version": 1,
                "new_plan_version": None,
                "airflow_run": '/dags/x/runs/a"><script>',
            }
        ],
        "decisions": [{"day": "2026-11-01", "action": "FALLBACK", "reasons": [hostile], "new_plan_version": 2}],
        "active_plan": {
            "version": 2,
            "since": "2026-11-01",
            "layers": [
                {
                    "layer": hostile,
                    "kind": "linear",
                    "precision": "fp16",
                    "lo": None,
                    "hi": None,
                    "sqnr_db": None,
                    "saturation": None,
                }
            ],
        },
        "alerts": [{"day": "2026-11-01", "event": "FALLBACK", "status": "failed", "recipients": "", "error": hostile}],
        "mail_problem": hostile,
    }
    page = model_page(data)
    body = page.split("<script>\n(function")[0]  # the page's own script is the one <script> allowed
    assert "<script>" not in body and body.count("&lt;script&gt;") >= 6
    assert page.count("<script>") == 1
    assert (
        "<script>"
        not in index_page([{"model": hostile, "day": None, "status": None, "dne_pct": None}]).split(
            "<script>\n(function"
        )[0]
    )


def test_axis_values_are_round_and_cover_the_data():
    assert nice_ticks(-0.012, 0.05) == [-0.02, 0.0, 0.02, 0.04, 0.06]
    ticks = nice_ticks(0.0, 1.37)
    assert ticks[0] <= 0.0 and ticks[-1] >= 1.37 and len(ticks) <= 8


def test_the_chart_has_axes_the_gate_status_colours_plan_markers_and_hover_numbers():
    history = [
        day("2026-11-01", 0.01, plan=None, new=1),
        day("2026-11-02", 0.02),
        day("2026-11-03", 0.09, "DEGRADED", new=2),
        day("2026-11-04", 0.03, "WARN", plan=2),
        {**day("2026-11-05", 0.0, "INSUFFICIENT_DATA", plan=2), "dne_pct": None},
    ]
    svg = svg_chart(history, 0.05)
    ticks = [float(v) for v in re.findall(r'class="tick y-tick"[^>]*data-value="([^"]+)"', svg)]
    assert ticks[0] <= 0.0 and ticks[-1] >= 0.1 and len(ticks) >= 3
    assert 'data-gate="0.05"' in svg
    dots = re.findall(r'<circle class="day"[^>]*fill="([^"]+)" data-day="([^"]+)" data-dne="([^"]+)"', svg)
    assert [(d, v) for _, d, v in dots] == [
        ("2026-11-01", "0.0100"),
        ("2026-11-02", "0.0200"),
        ("2026-11-03", "0.0900"),
        ("2026-11-04", "0.0300"),
    ]
    assert [f for f, _, _ in dots] == [STATUS_COLOURS[s] for s in ("HEALTHY", "HEALTHY", "DEGRADED", "WARN")]
    markers = re.findall(r'class="plan-change"[^>]*data-day="([^"]+)" data-version="(\d+)"', svg)
    assert markers == [("2026-11-01", "1"), ("2026-11-03", "2")]
    assert 'data-tip="2026-11-03: dNE 0.0900 % [0.0800, 0.1000], DEGRADED, plan v1 -&gt; v2"' in svg
    assert svg_chart([], 0.05) == '<p class="empty">no comparisons yet</p>'


def test_links_into_airflow_are_marked_for_the_router_and_nothing_is_fetched():
    data = {
        "model": "m",
        "gate_pct": 0.05,
        "history": [dict(day("2026-11-01", 0.01), airflow_run="/dags/lpmon_monitor/runs/r1")],
        "decisions": [],
        "active_plan": None,
        "alerts": [],
        "mail_problem": "no SMTP connection 'smtp_default'",
    }
    page = model_page(data)
    assert '<a class="airflow" href="/dags/lpmon_monitor/runs/r1" target="_top" data-airflow="1">run</a>' in page
    assert 'id="mail-notice"' in page and "no SMTP connection" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # every asset inline: works offline
