"""The HTML of the lpmon page (lpmon.airflow.webapp serves it), from the templates
index.html and model.html (lpmon/report/templates, autoescaped): the dNE chart as
inline SVG, the tables, and the page shell (page.html) that makes it look and
behave like a part of the Airflow UI when Airflow shows it in its iframe.

Inside Airflow's iframe (sandboxed: scripts and same origin, no top-level
navigation) the page's small inline script takes the UI's font, colours and
dark mode from the parent page, and opens links to Airflow runs through the
UI's own router (a history entry in the parent plus a popstate), since the
sandbox refuses a link that targets the top window. Opened on its own, links
are plain links. Every asset is inline: nothing is fetched from elsewhere.
Every value that comes from data is escaped.
"""

from __future__ import annotations

import math

from markupsafe import Markup

from lpmon.policy import Status
from lpmon.report.templating import render, version

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


def svg_chart(history: list[dict], gate_pct: float, width: int = 820, height: int = 280) -> Markup:
    """dNE by day (template chart.html): the interval band, the gate, a y axis with
    values, one point per day coloured by its status (its numbers as data
    attributes, a tooltip on hover) and a marker at each day whose plan changed."""
    points = [h for h in history if h["dne_pct"] is not None]
    if not points:
        return Markup('<p class="empty">no comparisons yet</p>')
    lows = [h["dne_pct_lo"] if h["dne_pct_lo"] is not None else h["dne_pct"] for h in points]
    highs = [h["dne_pct_hi"] if h["dne_pct_hi"] is not None else h["dne_pct"] for h in points]
    ticks = nice_ticks(min(min(lows), 0.0), max(max(highs), gate_pct))
    bottom, top = ticks[0], ticks[-1]
    left, right, upper, lower = 56, 16, 14, 30
    span = (top - bottom) or 1.0

    def x(i):
        return round(left + (width - left - right) * (i / max(len(points) - 1, 1)), 1)

    def y(v):
        return round(upper + (height - upper - lower) * (top - v) / span, 1)

    changes, previous = [], None
    for i, h in enumerate(points):  # a marker where the plan in force changed
        version = h["new_plan_version"] or h["plan_version"]
        if h["new_plan_version"] or (previous is not None and version != previous):
            changes.append({"x": x(i), "day": h["day"], "version": version})
        previous = version
    step = max(1, len(points) // 8)
    return Markup(
        render(
            "chart.html",
            width=width,
            height=height,
            left=left,
            right=right,
            upper=upper,
            lower=lower,
            gate=gate_pct,
            gate_y=y(gate_pct),
            ticks=[{"value": t, "y": y(t)} for t in ticks],
            band=" ".join(f"{x(i)},{y(v)}" for i, v in enumerate(highs))
            + " "
            + " ".join(f"{x(i)},{y(v)}" for i, v in reversed(list(enumerate(lows)))),
            line=" ".join(f"{x(i)},{y(h['dne_pct'])}" for i, h in enumerate(points)),
            changes=changes,
            days=[
                {
                    "x": x(i),
                    "y": y(h["dne_pct"]),
                    "day": h["day"],
                    "status": h["status"] or "",
                    "colour": STATUS_COLOURS.get(h["status"], "#868e96"),
                    "dne": h["dne_pct"],
                    "lo": lows[i],
                    "hi": highs[i],
                    "tip": f"{h['day']}: dNE {h['dne_pct']:.4f} % [{lows[i]:.4f}, {highs[i]:.4f}], {h['status']}, "
                    f"plan {plan_of_day(h)}",
                    "label": h["day"][5:] if i % step == 0 else "",
                }
                for i, h in enumerate(points)
            ],
            colours=STATUS_COLOURS,
        )
    )


def _badge(status: str | None) -> Markup:
    if not status:
        return Markup("")
    colour = STATUS_COLOURS.get(status, "#868e96")
    return Markup('<span class="badge" style="border-color:{0};color:{0}">{1}</span>').format(colour, status)


def _airflow_link(url: str | None, text: str) -> Markup:
    """A link into the Airflow UI: the page's script opens it in the UI itself."""
    if not url:
        return Markup("")
    return Markup('<a class="airflow" href="{}" target="_top" data-airflow="1">{}</a>').format(url, text)


def _interval(lo, hi) -> str:
    return "" if lo is None or hi is None else f"[{lo:.4f}, {hi:.4f}]"


def plan_of_day(h: dict) -> str:
    """The plan a day was scored under: "fp32 (no plan)" before onboarding, "v1 (onboarded)"
    on the day a first plan passed, "v2 -> v3" on a day that promoted."""
    if h["new_plan_version"] and h["new_plan_version"] == h["plan_version"]:
        return f"v{h['plan_version']} (onboarded)"
    if h["new_plan_version"]:
        return f"{version(h['plan_version'])} -> v{h['new_plan_version']}"
    return version(h["plan_version"])


def plan_rows(layers: list[dict]) -> list[dict]:
    """The active plan's layers as the page lists them: FC layers one a row, in natural
    order (bot_l.2 before bot_l.10); embedding tables at the same precision in one
    row ("26 embedding tables"), with their lowest SQNR and highest clipping."""
    rows, tables = [], {}
    for layer in sorted(layers, key=lambda layer: _natural(layer["layer"])):
        if layer["kind"] == "embedding":
            tables.setdefault(layer["precision"], []).append(layer)
            continue
        rows.append(
            {
                "name": layer["layer"],
                "precision": layer["precision"],
                "range": "" if layer["lo"] is None else f"{layer['lo']:.4g} .. {layer['hi']:.4g}",
                "sqnr_db": layer["sqnr_db"],
                "saturation_pct": None if layer["saturation"] is None else 100 * layer["saturation"],
            }
        )
    for precision, group in tables.items():
        sqnr = [t["sqnr_db"] for t in group if t["sqnr_db"] is not None]
        clipped = [t["saturation"] for t in group if t["saturation"] is not None]
        rows.append(
            {
                "name": group[0]["layer"]
                if len(group) == 1
                else f"{len(group)} embedding tables ({group[0]['layer']}..{group[-1]['layer']})",
                "precision": precision,
                "range": "",
                "sqnr_db": min(sqnr) if sqnr else None,
                "saturation_pct": 100 * max(clipped) if clipped else None,
            }
        )
    return rows


def _natural(name: str):
    head, _, tail = name.rpartition(".")
    return (head, int(tail)) if tail.isdigit() else (name, 0)


def _render(template: str, title: str, **values) -> str:
    return render(
        template,
        title=title,
        style=STYLE,
        script=SCRIPT,
        badge=_badge,
        airflow_link=_airflow_link,
        interval=_interval,
        plan_of_day=plan_of_day,
        **values,
    )


def model_page(data: dict) -> str:
    active = data["active_plan"]
    return _render(
        "model.html",
        f"lpmon: {data['model']}",
        data=data,
        chart=svg_chart(data["history"], data["gate_pct"]),
        plan_rows=plan_rows(active["layers"] if active else []),
    )


def index_page(models: list[dict]) -> str:
    return _render("index.html", "lpmon", models=models)


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
