"""The HTML of the lpmon page (lpmon.airflow.webapp serves it): the dNE chart as inline
SVG, the tables, and the page shell that makes it look and behave like a part of
the Airflow UI when Airflow shows it in its iframe.

Inside Airflow's iframe (sandboxed: scripts and same origin, no top-level
navigation) the page's small inline script takes the UI's font, colours and
dark mode from the parent page, and opens links to Airflow runs through the
UI's own router (a history entry in the parent plus a popstate), since the
sandbox refuses a link that targets the top window. Opened on its own, links
are plain links. Every asset is inline: nothing is fetched from elsewhere.
Every value that comes from data is escaped.
"""

from __future__ import annotations

import html
import math
from urllib.parse import quote

from lpmon.policy import Status

STATUS_COLOURS = {
    Status.HEALTHY.value: "#2f9e44",
    Status.WARN.value: "#e8a317",
    Status.DEGRADED.value: "#e03131",
    Status.INSUFFICIENT_DATA.value: "#868e96",
    Status.FAILED.value: "#5f3dc4",
}


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round axis values (1, 2, 2.5 or 5 times a power of ten) covering [low, high]."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks, value = [], first
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def svg_chart(history: list[dict], gate_pct: float, width: int = 820, height: int = 280) -> str:
    """dNE by day: the interval band, the gate, a y axis with values, one point per
    day coloured by its status (its numbers as data attributes, a tooltip on
    hover) and a marker at each day whose plan changed."""
    points = [h for h in history if h["dne_pct"] is not None]
    if not points:
        return '<p class="empty">no comparisons yet</p>'
    lows = [h["dne_pct_lo"] if h["dne_pct_lo"] is not None else h["dne_pct"] for h in points]
    highs = [h["dne_pct_hi"] if h["dne_pct_hi"] is not None else h["dne_pct"] for h in points]
    ticks = nice_ticks(min(min(lows), 0.0), max(max(highs), gate_pct))
    bottom, top = ticks[0], ticks[-1]
    left, right, upper, lower = 56, 16, 14, 30
    span = (top - bottom) or 1.0

    def x(i):
        return left + (width - left - right) * (i / max(len(points) - 1, 1))

    def y(v):
        return upper + (height - upper - lower) * (top - v) / span

    parts = [
        f'<svg id="dne-chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="dNE by day with its interval and the {gate_pct:g} % gate">'
    ]
    for t in ticks:  # y axis: grid lines with their values
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>'
            f'<text class="tick y-tick" x="{left - 6}" y="{y(t) + 3.5:.1f}" text-anchor="end" '
            f'data-value="{t:g}">{_fmt(t)}</text>'
        )
    parts.append(
        f'<text class="tick" x="12" y="{upper + (height - upper - lower) / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {upper + (height - upper - lower) / 2:.1f})">dNE %</text>'
    )
    band = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(highs))
    band += " " + " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in reversed(list(enumerate(lows))))
    parts.append(f'<polygon class="band" points="{band}"/>')
    parts.append(
        f'<line class="gate" x1="{left}" x2="{width - right}" y1="{y(gate_pct):.1f}" '
        f'y2="{y(gate_pct):.1f}" data-gate="{gate_pct:g}"/>'
        f'<text class="gate-label" x="{width - right}" y="{y(gate_pct) - 4:.1f}" text-anchor="end">'
        f"gate {gate_pct:g} %</text>"
    )
    previous = None
    for i, h in enumerate(points):  # a marker where the plan in force changed
        version = h["new_plan_version"] or h["plan_version"]
        if h["new_plan_version"] or (previous is not None and version != previous):
            parts.append(
                f'<line class="plan-change" x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{upper}" '
                f'y2="{height - lower}" data-day="{html.escape(h["day"])}" data-version="{version}"/>'
                f'<text class="plan-label" x="{x(i) + 3:.1f}" y="{upper + 9}">plan v{version}</text>'
            )
        previous = version
    line = " ".join(f"{x(i):.1f},{y(h['dne_pct']):.1f}" for i, h in enumerate(points))
    parts.append(f'<polyline class="dne" points="{line}"/>')
    for i, h in enumerate(points):
        status = html.escape(h["status"] or "")
        tip = (
            f"{h['day']}: dNE {h['dne_pct']:.4f} % [{lows[i]:.4f}, {highs[i]:.4f}], {h['status']}, "
            f"plan v{h['plan_version'] or '-'}" + (f" -> v{h['new_plan_version']}" if h["new_plan_version"] else "")
        )
        parts.append(
            f'<circle class="day" cx="{x(i):.1f}" cy="{y(h["dne_pct"]):.1f}" r="4" '
            f'fill="{STATUS_COLOURS.get(h["status"], "#868e96")}" data-day="{html.escape(h["day"])}" '
            f'data-dne="{h["dne_pct"]:.4f}" data-lo="{lows[i]:.4f}" data-hi="{highs[i]:.4f}" '
            f'data-status="{status}" data-tip="{html.escape(tip)}"><title>{html.escape(tip)}</title></circle>'
        )
    step = max(1, len(points) // 8)
    for i, h in enumerate(points):
        if i % step == 0:
            parts.append(
                f'<text class="tick" x="{x(i):.1f}" y="{height - 10}" text-anchor="middle">'
                f"{html.escape(h['day'][5:])}</text>"
            )
    parts.append("</svg>")
    legend = "".join(
        f'<span><i style="background:{colour}"></i>{name}</span>' for name, colour in STATUS_COLOURS.items()
    )
    return "".join(parts) + f'<div class="legend">{legend}<span><i class="plan-key"></i>plan change</span></div>'


def _cell(value, fmt="{:.4f}") -> str:
    return "-" if value is None else html.escape(fmt.format(value))


def _scored(day: dict) -> str:
    """Examples the day scored, its looks and why it stopped: "40,000 (3 looks, decided)"."""
    if not day.get("examples_scored"):
        return "-"
    looks = f"{day['looks']} look{'s' if day['looks'] != 1 else ''}"
    return f"{day['examples_scored']:,} ({looks}, {html.escape(day['stop_reason'] or '')})"


def _airflow_link(url: str | None, text: str) -> str:
    """A link into the Airflow UI: the page's script opens it in the UI itself."""
    return f'<a class="airflow" href="{html.escape(url)}" target="_top" data-airflow="1">{text}</a>' if url else "-"


def _badge(status: str | None) -> str:
    if not status:
        return "-"
    colour = STATUS_COLOURS.get(status, "#868e96")
    return f'<span class="badge" style="border-color:{colour};color:{colour}">{html.escape(status)}</span>'


def model_page(data: dict) -> str:
    e = html.escape
    rows = "".join(
        f'<tr class="day-row" id="day-{e(h["day"])}" data-day="{e(h["day"])}"><td>{e(h["day"])}</td>'
        f'<td class="num">{_cell(h["dne_pct"])}</td>'
        f'<td class="num">[{_cell(h["dne_pct_lo"])}, {_cell(h["dne_pct_hi"])}]</td><td>{_badge(h["status"])}</td>'
        f"<td>{e(h['action'] or '-')}</td><td>v{h['plan_version'] or '-'}"
        f"{'&rarr;v' + str(h['new_plan_version']) if h['new_plan_version'] else ''}</td>"
        f'<td class="num">{_scored(h)}</td>'
        f"<td>{_airflow_link(h['airflow_run'], 'run')}</td></tr>"
        for h in reversed(data["history"])
    )
    decisions = (
        "".join(
            f"<li><b>{e(d['day'])}</b> {e(d['action'])}"
            f"{' &rarr; plan v' + str(d['new_plan_version']) if d['new_plan_version'] else ''}: "
            f"{e('; '.join(d['reasons']))}</li>"
            for d in reversed(data["decisions"])
        )
        or "<li>none</li>"
    )
    plan = data["active_plan"]
    layers = "".join(
        f'<tr class="layer-row"><td>{e(layer["layer"])}</td><td>{e(layer["precision"])}</td>'
        f'<td class="num">{_cell(layer["lo"], "{:.4g}")} .. {_cell(layer["hi"], "{:.4g}")}</td>'
        f'<td class="num">{_cell(layer["sqnr_db"], "{:.1f}")}</td>'
        f'<td class="num">{_cell(None if layer["saturation"] is None else 100 * layer["saturation"], "{:.3f}")}'
        f"</td></tr>"
        for layer in (plan["layers"] if plan else [])
    )
    alerts = (
        "".join(
            f"<li>{e(a['day'])} {e(a['event'])}: {e(a['status'])}"
            f"{' (' + e(a['error']) + ')' if a['error'] else ''}</li>"
            for a in reversed(data["alerts"])
        )
        or "<li>none</li>"
    )
    notice = (
        f'<p class="notice" id="mail-notice">Alert emails are not being sent: {e(data["mail_problem"])}</p>'
        if data.get("mail_problem")
        else ""
    )
    if data.get("serving_problem"):
        notice += f'<p class="notice" id="serving-notice">Serving: {e(data["serving_problem"])}</p>'
    pinned = (
        f" &middot; pinned by the user (lpmon never changes them): {e(', '.join(data['pinned']))}"
        if data.get("pinned")
        else ""
    )
    last = data.get("last_day")
    last_section = ""
    if last:
        reasons = (
            "".join(
                f'<li class="{"label-free" if r.startswith("label-free:") else "reason"}">{e(r)}</li>'
                for r in last["reasons"]
            )
            or "<li>none</li>"
        )
        segments = "".join(
            f'<tr class="segment-row"><td>{e(s["segment"])}</td><td class="num">{s["n"]:,}</td>'
            f'<td class="num">{_cell(s["dne_pct"])}</td><td class="num">[{_cell(s["dne_pct_lo"])}, '
            f"{_cell(s['dne_pct_hi'])}]</td></tr>"
            for s in last["segments"]
        )
        last_section = (
            f"<section><h2>Last day: {e(last['day'])} {_badge(last['status'])}</h2>"
            f'<ul id="last-reasons">{reasons}</ul>'
            + (
                f'<table id="segments"><thead><tr><th>segment</th><th>examples</th><th>dNE %</th>'
                f"<th>interval</th></tr></thead><tbody>{segments}</tbody></table>"
                if segments
                else ""
            )
            + "</section>"
        )
    title = f"lpmon: {data['model']}"
    return page(
        title,
        f"""{notice}
<p><a href="../">all models</a> &middot; gate {data["gate_pct"]:g} % relative NE &middot;
{_airflow_link("/dags/lpmon_monitor", "lpmon_monitor in Airflow")}</p>
{last_section}
<section><h2>dNE by day</h2>{svg_chart(data["history"], data["gate_pct"])}</section>
<section><h2>Days</h2><table id="days"><thead><tr><th>day</th><th>dNE %</th><th>interval</th><th>status</th>
<th>decision</th><th>plan</th><th>scored</th><th>Airflow</th></tr></thead><tbody>{rows}</tbody></table></section>
<section><h2>Decisions</h2><ul id="decisions">{decisions}</ul></section>
<section><h2>Active plan {f"v{plan['version']} (since {e(plan['since'])})" if plan else "(none: serving fp32)"}</h2>
<p id="pins">{pinned[len(" &middot; ") :] if pinned else ""}</p>
<table id="plan"><thead><tr><th>layer</th><th>precision</th><th>range</th><th>SQNR dB</th><th>saturated %</th></tr>
</thead><tbody>{layers}</tbody></table></section>
<section><h2>Last alerts</h2><ul id="alerts">{alerts}</ul></section>""",
    )


def index_page(models: list[dict]) -> str:
    e = html.escape
    rows = "".join(
        f'<tr><td><a href="models/{quote(m["model"])}">{e(m["model"])}</a></td>'
        f"<td>{e(m['day'] or '-')}</td><td>{_badge(m['status'])}</td>"
        f'<td class="num">{_cell(m["dne_pct"])}</td></tr>'
        for m in models
    )
    return page(
        "lpmon",
        f'<table id="models"><thead><tr><th>model</th><th>last day</th><th>status</th>'
        f"<th>dNE %</th></tr></thead><tbody>{rows}</tbody></table>",
    )


# Airflow 3's look (its Chakra theme: system font stack, its grey and brand blue), with a dark variant
# that the script switches on when the Airflow UI around the page is dark.
STYLE = """
:root{--bg:#fff;--fg:#1a202c;--muted:#718096;--line:#e2e8f0;--brand:#3c6ea5;--band:rgba(60,110,165,.18);
--panel:#f7fafc;font-family:Inter,ui-sans-serif,system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,
sans-serif;font-size:14px}
:root.dark{--bg:#111827;--fg:#e5e7eb;--muted:#9ca3af;--line:#374151;--brand:#7ea6d8;--band:rgba(126,166,216,.22);
--panel:#1f2937}
body{background:var(--bg);color:var(--fg);margin:0;padding:16px 24px;font-family:inherit;line-height:1.45}
h1{font-size:20px;font-weight:600;margin:0 0 12px}h2{font-size:15px;font-weight:600;margin:20px 0 8px}
a{color:var(--brand);text-decoration:none}a:hover{text-decoration:underline}
section{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:4px 16px 12px;margin:12px 0}
table{border-collapse:collapse;width:100%}th{color:var(--muted);font-weight:500;text-align:left}
td,th{border-bottom:1px solid var(--line);padding:4px 10px}tr.day-row:target{background:var(--band)}
td.num{font-variant-numeric:tabular-nums}
.badge{border:1px solid;border-radius:10px;padding:0 8px;font-size:12px;font-weight:500}
.notice{border:1px solid #e8a317;background:rgba(232,163,23,.12);border-radius:6px;padding:8px 12px}
#dne-chart{max-width:980px;display:block}#dne-chart .grid{stroke:var(--line)}
#dne-chart .tick{fill:var(--muted);font-size:11px}#dne-chart .band{fill:var(--band)}
#dne-chart .gate{stroke:#e03131;stroke-dasharray:5 4}#dne-chart .gate-label{fill:#e03131;font-size:11px}
#dne-chart .dne{fill:none;stroke:var(--brand);stroke-width:1.5}#dne-chart circle.day{stroke:var(--bg);cursor:pointer}
#dne-chart .plan-change{stroke:#7048e8;stroke-dasharray:2 3}#dne-chart .plan-label{fill:#7048e8;font-size:10px}
.legend{color:var(--muted);font-size:12px;display:flex;gap:14px;margin-top:4px}
.legend i{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:4px}
.legend i.plan-key{border-radius:0;width:2px;height:11px;background:#7048e8}
#tip{position:fixed;display:none;pointer-events:none;background:var(--fg);color:var(--bg);padding:4px 8px;
border-radius:4px;font-size:12px;white-space:nowrap}
"""

SCRIPT = """
(function(){
  var inside = window.top !== window, top = null;
  try { if (inside) { top = window.top; void top.document.body; } } catch (e) { top = null; }
  function theme(){
    if (!top) { return; }
    var root = top.document.documentElement, body = top.getComputedStyle(top.document.body);
    document.documentElement.classList.toggle('dark', root.classList.contains('dark'));
    if (body.fontFamily) { document.documentElement.style.fontFamily = body.fontFamily; }
  }
  if (top) {
    theme();
    new top.MutationObserver(theme).observe(top.document.documentElement,
                                            {attributes: true, attributeFilter: ['class', 'style']});
  }
  // Links into Airflow: the sandbox refuses top-level navigation from this frame, so ask the UI's router.
  document.addEventListener('click', function(event){
    var link = event.target.closest && event.target.closest('a[data-airflow]');
    if (!link || !top || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) { return; }
    event.preventDefault();
    var state = top.history.state || {}, idx = typeof state.idx === 'number' ? state.idx + 1 : 0;
    top.history.pushState({usr: null, key: Math.random().toString(36).slice(2, 10), idx: idx}, '',
                          link.getAttribute('href'));
    top.dispatchEvent(new top.PopStateEvent('popstate', {state: top.history.state}));
  });
  // The chart's hover: the day's numbers next to the pointer.
  var tip = document.getElementById('tip');
  document.addEventListener('mouseover', function(event){
    var dot = event.target.closest && event.target.closest('circle.day');
    if (!dot) { tip.style.display = 'none'; return; }
    tip.textContent = dot.getAttribute('data-tip');
    tip.style.display = 'block';
  });
  document.addEventListener('mousemove', function(event){
    tip.style.left = (event.clientX + 12) + 'px'; tip.style.top = (event.clientY + 12) + 'px';
  });
})();
"""


def page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
        f'<body><h1>{html.escape(title)}</h1>{body}<div id="tip" role="tooltip"></div>'
        f"<script>{SCRIPT}</script></body></html>"
    )
