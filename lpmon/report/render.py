"""A day report drawn: the plain-text and HTML bodies (mail and file), the dNE
chart, and the report's file under the work directory."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from lpmon.atomic import write_atomically
from lpmon.config import Config, confined
from lpmon.report.day import COLOURS, DayReport, _link_lines, _v, events, headline, labelled_reasons, summary


def render_text(report: DayReport, event: str = "") -> str:
    lines = [
        summary(report, event),
        "",
        headline(report, event),
        "",
        f"status:   {report.status}",
        f"dNE:      {report.dne_text}"
        + (f" (the day's sample under {_v(report.plan_version)})" if report.dne_pct is not None else ""),
        f"decision: {report.action or '-'}",
    ]
    if report.spent_text:
        lines.insert(-1, f"scored:   {report.spent_text}")
    lines += [f"  - {reason}" for reason in labelled_reasons(report)]
    plan = _v(report.plan_version)
    if report.new_plan_version == report.plan_version:  # onboarded today, the day scored under it
        plan += " (promoted today)"
    elif report.new_plan_version:
        plan += f" -> v{report.new_plan_version} ({'promoted' if report.promoted else 'not promoted'})"
    lines.append(f"plan:     {plan}")
    if report.moved:
        lines.append("precision changes:")
        lines += [f"  - {m}" for m in report.moved]
    if report.segments:
        lines.append("segments (dNE %):")
        lines += [
            f"  - {s['segment']}: {s['dne_pct']:.4f} [{s['dne_pct_lo']:.4f}, {s['dne_pct_hi']:.4f}]"
            for s in report.segments
            if s["dne_pct"] is not None
        ]
    if report.worst_sqnr:
        lines.append(f"worst layers by SQNR (under {_v(report.plan_version)}, the day's plan):")
        lines += [f"  - {r['layer']} ({r['precision']}): {r['sqnr_db']:.1f} dB" for r in report.worst_sqnr]
    if report.worst_saturation:
        lines.append(f"worst layers by saturation (under {_v(report.plan_version)}):")
        lines += [
            f"  - {r['layer']} ({r['precision']}): {100 * r['saturation']:.3f} %" for r in report.worst_saturation
        ]
    lines.append("")
    lines += [f"{name}: {url}" for name, url in _link_lines(report)]
    return "\n".join(lines) + "\n"


# Inline styles only: mail clients drop <style> blocks and external sheets.
TH = "text-align:left;color:#555;font-weight:600;padding:3px 12px 3px 0;border-bottom:1px solid #e2e8f0"
TD = "padding:3px 12px 3px 0;border-bottom:1px solid #e2e8f0"
H3 = "font-size:15px;margin:18px 0 6px"


def _badge(status: str) -> str:
    colour = COLOURS.get(status, "#868e96")
    return (
        f'<span class="status" style="background:{colour};color:#fff;border-radius:10px;padding:1px 9px;'
        f'font-size:12px;font-weight:600">{html.escape(status)}</span>'
    )


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f'<th style="{TH}">{h}</th>' for h in header)
    body = "".join("<tr>" + "".join(f'<td style="{TD}">{c}</td>' for c in row) + "</tr>" for row in rows)
    return f'<table cellspacing="0" style="border-collapse:collapse"><tr>{head}</tr>{body}</table>'


def render_html(report: DayReport, chart_src: str, event: str = "", navigation: bool = False) -> str:
    """chart_src: "cid:..." in an email, a data: URI in a file; navigation: links to
    the neighbouring days' report files (in a file, not in mail)."""
    e = html.escape
    colour = COLOURS.get(report.status, "#868e96")
    plan = e(_v(report.plan_version))
    if report.new_plan_version == report.plan_version:
        plan += " (promoted today)"
    elif report.new_plan_version:
        plan += f" &rarr; v{report.new_plan_version} ({'promoted' if report.promoted else 'not promoted'})"
    rows = [
        ["<b>status</b>", _badge(report.status)],
        ["<b>dNE</b>", e(report.dne_text)],
        *([["<b>scored</b>", e(report.spent_text)]] if report.spent_text else []),
        ["<b>decision</b>", e(report.action or "-")],
        ["<b>plan</b>", plan],
    ]
    parts = [
        f'<p id="summary" style="font-size:15px;font-weight:600;border-left:5px solid {colour};'
        f'padding:6px 10px;background:#f7fafc;margin:0 0 12px">{e(summary(report, event))}</p>',
        f'<h2 style="font-size:18px;margin:0 0 8px">{e(headline(report, event))}</h2>',
        _table(["", ""], rows).replace(f'<tr><th style="{TH}"></th><th style="{TH}"></th></tr>', ""),
    ]
    if navigation and (report.previous_day or report.next_day):
        nav = []
        if report.previous_day:
            nav.append(f'<a id="previous-day" href="{e(report.previous_day)}.html">&larr; {e(report.previous_day)}</a>')
        if report.next_day:
            nav.append(f'<a id="next-day" href="{e(report.next_day)}.html">{e(report.next_day)} &rarr;</a>')
        parts.insert(0, f'<p id="nav" style="margin:0 0 10px">{" &middot; ".join(nav)}</p>')
    if report.reasons:
        parts.append(
            f'<h3 style="{H3}">Why</h3><ul>' + "".join(f"<li>{e(r)}</li>" for r in labelled_reasons(report)) + "</ul>"
        )
    if report.moved:
        parts.append(
            f'<h3 style="{H3}">Precision changes</h3><ul>' + "".join(f"<li>{e(m)}</li>" for m in report.moved) + "</ul>"
        )
    if report.segments:
        parts.append(
            f'<h3 style="{H3}">Segments</h3><div id="segments">'
            + _table(
                ["segment", "examples", "dNE %", "interval"],
                [
                    [
                        e(s["segment"]),
                        f"{s['n']:,}" if s.get("n") is not None else "-",
                        "-" if s["dne_pct"] is None else f"{s['dne_pct']:.4f}",
                        "-" if s["dne_pct_lo"] is None else f"[{s['dne_pct_lo']:.4f}, {s['dne_pct_hi']:.4f}]",
                    ]
                    for s in report.segments
                ],
            )
            + "</div>"
        )
    if report.worst_sqnr:
        parts.append(
            f'<h3 style="{H3}">Worst layers by SQNR (under {e(_v(report.plan_version))}, the day\'s plan)</h3>'
            + _table(
                ["layer", "precision", "SQNR (dB)"],
                [[e(r["layer"]), e(r["precision"]), f"{r['sqnr_db']:.1f}"] for r in report.worst_sqnr],
            )
        )
    if report.worst_saturation:
        parts.append(
            f'<h3 style="{H3}">Worst layers by saturation (under {e(_v(report.plan_version))})</h3>'
            + _table(
                ["layer", "precision", "saturated (%)"],
                [[e(r["layer"]), e(r["precision"]), f"{100 * r['saturation']:.3f}"] for r in report.worst_saturation],
            )
        )
    parts.append(
        f'<h3 style="{H3}">dNE, last {len(report.history)} days</h3>'
        f'<img src="{e(chart_src)}" alt="dNE of {e(report.model_id)} over the last days, '
        f'with the gate" width="700" style="max-width:100%;height:auto">'
    )
    links = _link_lines(report)
    if links:
        parts.append(
            '<p id="links">'
            + " &middot; ".join(
                f'<a style="color:#3c6ea5" href="{e(url)}">{e(name)}</a>' if "://" in url else f"{e(name)}: {e(url)}"
                for name, url in links
            )
            + "</p>"
        )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>'
        + e(headline(report, event))
        + "</title></head><body style=\"font-family:-apple-system,'Segoe UI',Roboto,Arial,sans-serif;"
        'font-size:14px;color:#1a202c;margin:16px">' + "\n".join(parts) + "</body></html>\n"
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
