"""A day report drawn: the plain-text and HTML bodies (mail and file, from the
templates day.txt and day.html), the dNE chart, and the report's file under the
work directory."""

from __future__ import annotations

import base64
from pathlib import Path

from lpmon.atomic import write_atomically
from lpmon.config import Config, confined
from lpmon.report.day import COLOURS, DayReport, _link_lines, events, headline, labelled_reasons, summary
from lpmon.report.templating import count, fixed, render, version


def _context(report: DayReport, event: str) -> dict:
    """What both bodies show, worked out once."""
    plan = version(report.plan_version)
    if report.new_plan_version == report.plan_version:  # onboarded today, the day scored under it
        plan += " (promoted today)"
    elif report.new_plan_version:
        plan += f" -> v{report.new_plan_version} ({'promoted' if report.promoted else 'not promoted'})"
    segments = report.segments
    return {
        "report": report,
        "summary": summary(report, event),
        "headline": headline(report, event),
        "reasons": labelled_reasons(report),
        "plan": plan,
        "links": _link_lines(report),
        "segments": [s for s in segments if s["dne_pct"] is not None],
        "segment_rows": [
            [
                s["segment"],
                count(s.get("n")),
                fixed(s["dne_pct"]),
                "-" if s["dne_pct_lo"] is None else f"[{fixed(s['dne_pct_lo'])}, {fixed(s['dne_pct_hi'])}]",
            ]
            for s in segments
        ],
        "sqnr_rows": [[r["layer"], r["precision"], fixed(r["sqnr_db"], 1)] for r in report.worst_sqnr],
        "saturation_rows": [
            [r["layer"], r["precision"], fixed(100 * r["saturation"], 3)] for r in report.worst_saturation
        ],
    }


def render_text(report: DayReport, event: str = "") -> str:
    return render("day.txt", **_context(report, event))


def render_html(report: DayReport, chart_src: str, event: str = "", navigation: bool = False) -> str:
    """chart_src: "cid:..." in an email, a data: URI in a file; navigation: links to
    the neighbouring days' report files (in a file, not in mail)."""
    return render(
        "day.html",
        **_context(report, event),
        chart_src=chart_src,
        navigation=navigation,
        colour=COLOURS.get(report.status, "#868e96"),
    )


def chart(report: DayReport) -> bytes:
    from lpmon.report.chart import dne_chart_png

    return dne_chart_png(report.history, report.gate_pct, f"{report.model_id}: dNE by day", colours=COLOURS)


def write_file(config: Config, report: DayReport) -> Path:
    """The report as one self-contained HTML file (chart inlined), written atomically:
    <work_dir>/reports/<model>/<day>.html."""
    png = base64.b64encode(chart(report)).decode("ascii")
    path = confined(config.work_dir, "reports", report.model_id, f"{report.day}.html")
    path.parent.mkdir(parents=True, exist_ok=True)
    # The umask's mode (or file_mode), like the plans: people other than the worker read reports.
    return write_atomically(
        path,
        render_html(report, f"data:image/png;base64,{png}", "+".join(events(report)), navigation=True).encode("utf-8"),
        config.file_mode,
    )
