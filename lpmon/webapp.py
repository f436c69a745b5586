"""The lpmon page inside the Airflow UI (a FastAPI app the api-server mounts at
/lpmon, see lpmon.airflow_plugin), and its JSON API.

    /lpmon/                       models, with their last day
    /lpmon/models/<model>         dNE chart with interval and gate, decisions, active plan, alerts
    /lpmon/api/models             the same data as JSON
    /lpmon/api/models/<model>

Airflow does not protect a plugin's app: every route here requires a valid
Airflow token (Authorization: Bearer, or the UI's session cookie), checked by
Airflow's own auth manager. Model ids must be ones the config lists; every
value from data is escaped in the HTML.
"""

from __future__ import annotations

import html
import json
from urllib.parse import quote

from lpmon.config import Config, load
from lpmon.store.reports import run_report

HISTORY_DAYS = 60


def model_data(config: Config, store, model_id: str, run_links=None) -> dict:
    """Everything the page shows for one model, from the state store."""
    settings = config.model(model_id)
    history = run_report(store.db, "dne_history", model_id=model_id)[-HISTORY_DAYS:]
    decisions = store.rows("decisions", model_id)
    active = store.active_plan(model_id)
    layers = []
    if active is not None:
        from lpmon.quant import QuantPlan

        plan = QuantPlan.from_json(active.plan_json)
        last = {}
        for row in store.rows("layer_metrics", model_id):
            last[row["layer"]] = row
        for layer in plan.layers:
            metrics = last.get(layer.name, {})
            saturation = None
            if metrics.get("saturation_below") is not None:
                saturation = metrics["saturation_below"] + (metrics.get("saturation_above") or 0.0)
            layers.append({"layer": layer.name, "kind": layer.kind, "precision": layer.precision,
                           "lo": layer.activation.lo if layer.activation else None,
                           "hi": layer.activation.hi if layer.activation else None,
                           "sqnr_db": metrics.get("sqnr_db"), "saturation": saturation})
    links = run_links([row["logical_date"] for row in history]) if run_links else {}
    return {
        "model": model_id, "gate_pct": settings.gate_pct,
        "history": [{"day": r["logical_date"], "status": r["status"], "action": r["action"],
                     "dne_pct": r["dne_pct"], "dne_pct_lo": r["dne_pct_lo"], "dne_pct_hi": r["dne_pct_hi"],
                     "plan_version": r["plan_version"], "new_plan_version": r["new_plan_version"],
                     "airflow_run": links.get(r["logical_date"])} for r in history],
        "decisions": [{"day": d["logical_date"], "action": d["action"], "reasons": json.loads(d["reasons_json"]),
                       "new_plan_version": d["new_plan_version"]}
                      for d in decisions if d["action"] != "RECORD" or d["new_plan_version"]][-20:],
        "active_plan": {"version": active.version, "since": active.logical_date, "layers": layers}
        if active else None,
        "alerts": [{"day": a["logical_date"], "event": a["event"], "status": a["status"],
                    "recipients": a["recipients"], "error": a["error"]}
                   for a in sorted(store.rows("alerts", model_id), key=lambda a: a["logical_date"])][-10:],
    }


def svg_chart(history: list[dict], gate_pct: float, width: int = 760, height: int = 240) -> str:
    """dNE by day with its interval and the gate, as inline SVG (one point per day,
    each with its numbers as data attributes and a tooltip)."""
    points = [h for h in history if h["dne_pct"] is not None]
    if not points:
        return '<p class="empty">no comparisons yet</p>'
    lows = [h["dne_pct_lo"] if h["dne_pct_lo"] is not None else h["dne_pct"] for h in points]
    highs = [h["dne_pct_hi"] if h["dne_pct_hi"] is not None else h["dne_pct"] for h in points]
    top, bottom = max(max(highs), gate_pct) * 1.1, min(min(lows), 0.0) * 1.1
    pad = 40
    span = (top - bottom) or 1.0

    def x(i):
        return pad + (width - 2 * pad) * (i / max(len(points) - 1, 1))

    def y(v):
        return pad / 2 + (height - pad) * (top - v) / span

    band = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(highs))
    band += " " + " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in reversed(list(enumerate(lows))))
    line = " ".join(f"{x(i):.1f},{y(h['dne_pct']):.1f}" for i, h in enumerate(points))
    dots = "".join(
        f'<circle class="day" cx="{x(i):.1f}" cy="{y(h["dne_pct"]):.1f}" r="3.5" '
        f'data-day="{html.escape(h["day"])}" data-dne="{h["dne_pct"]:.4f}" data-status="{html.escape(h["status"])}">'
        f'<title>{html.escape(h["day"])}: dNE {h["dne_pct"]:.4f} % ({html.escape(h["status"])})</title></circle>'
        for i, h in enumerate(points))
    labels = "".join(f'<text x="{x(i):.1f}" y="{height - 4}" font-size="10" text-anchor="middle">'
                     f'{html.escape(h["day"][5:])}</text>'
                     for i, h in enumerate(points) if i % max(1, len(points) // 8) == 0)
    return (f'<svg id="dne-chart" width="{width}" height="{height}" role="img" '
            f'aria-label="dNE by day with its interval and the {gate_pct:g} % gate">'
            f'<polygon points="{band}" fill="#9ecae1" opacity="0.6"/>'
            f'<line x1="{pad}" x2="{width - pad}" y1="{y(gate_pct):.1f}" y2="{y(gate_pct):.1f}" '
            f'stroke="#cb181d" stroke-dasharray="5,4" data-gate="{gate_pct:g}"/>'
            f'<text x="{width - pad}" y="{y(gate_pct) - 4:.1f}" font-size="10" text-anchor="end" fill="#cb181d">'
            f'gate {gate_pct:g} %</text>'
            f'<line x1="{pad}" x2="{width - pad}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#999" stroke-width="0.5"/>'
            f'<polyline points="{line}" fill="none" stroke="#08519c" stroke-width="1.5"/>{dots}{labels}</svg>')


def _cell(value, fmt="{:.4f}") -> str:
    return "-" if value is None else html.escape(fmt.format(value))


def _run_link(url: str | None) -> str:
    return f'<a href="{html.escape(url)}" target="_top">run</a>' if url else "-"


def model_page(data: dict) -> str:
    e = html.escape
    rows = "".join(
        f'<tr class="day-row" data-day="{e(h["day"])}"><td>{e(h["day"])}</td><td>{_cell(h["dne_pct"])}</td>'
        f'<td>[{_cell(h["dne_pct_lo"])}, {_cell(h["dne_pct_hi"])}]</td><td>{e(h["status"])}</td>'
        f'<td>{e(h["action"] or "-")}</td><td>v{h["plan_version"] or "-"}'
        f'{"&rarr;v" + str(h["new_plan_version"]) if h["new_plan_version"] else ""}</td>'
        f'<td>{_run_link(h["airflow_run"])}</td></tr>'
        for h in reversed(data["history"]))
    decisions = "".join(f'<li><b>{e(d["day"])}</b> {e(d["action"])}'
                        f'{" &rarr; plan v" + str(d["new_plan_version"]) if d["new_plan_version"] else ""}: '
                        f'{e("; ".join(d["reasons"]))}</li>' for d in reversed(data["decisions"])) or "<li>none</li>"
    plan = data["active_plan"]
    layers = "".join(f'<tr class="layer-row"><td>{e(l["layer"])}</td><td>{e(l["precision"])}</td>'
                     f'<td>{_cell(l["lo"], "{:.4g}")} .. {_cell(l["hi"], "{:.4g}")}</td>'
                     f'<td>{_cell(l["sqnr_db"], "{:.1f}")}</td>'
                     f'<td>{_cell(None if l["saturation"] is None else 100 * l["saturation"], "{:.3f}")}</td></tr>'
                     for l in (plan["layers"] if plan else []))
    alerts = "".join(f'<li>{e(a["day"])} {e(a["event"])}: {e(a["status"])}'
                     f'{" (" + e(a["error"]) + ")" if a["error"] else ""}</li>'
                     for a in reversed(data["alerts"])) or "<li>none</li>"
    title = f"lpmon: {data['model']}"
    return _page(title, f"""
<p><a href="../">all models</a> &middot; gate {data['gate_pct']:g} % relative NE</p>
<h2>dNE by day</h2>{svg_chart(data['history'], data['gate_pct'])}
<h2>Days</h2><table id="days"><tr><th>day</th><th>dNE %</th><th>interval</th><th>status</th>
<th>decision</th><th>plan</th><th>Airflow</th></tr>{rows}</table>
<h2>Decisions</h2><ul id="decisions">{decisions}</ul>
<h2>Active plan {f"v{plan['version']} (since {e(plan['since'])})" if plan else "(none)"}</h2>
<table id="plan"><tr><th>layer</th><th>precision</th><th>range</th><th>SQNR dB</th><th>saturated %</th></tr>{layers}</table>
<h2>Last alerts</h2><ul id="alerts">{alerts}</ul>""")


def index_page(models: list[dict]) -> str:
    e = html.escape
    rows = "".join(f'<tr><td><a href="models/{quote(m["model"])}">{e(m["model"])}</a></td>'
                   f'<td>{e(m["day"] or "-")}</td><td>{e(m["status"] or "-")}</td><td>{_cell(m["dne_pct"])}</td></tr>'
                   for m in models)
    return _page("lpmon", f'<table id="models"><tr><th>model</th><th>last day</th><th>status</th>'
                          f'<th>dNE %</th></tr>{rows}</table>')


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            '<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}'
            'td,th{border-bottom:1px solid #ddd;padding:2px 8px;text-align:left}</style></head>'
            f'<body><h1>{html.escape(title)}</h1>{body}</body></html>')


def create_app(config_loader=load, run_links=None):
    """The FastAPI app. Every route depends on Airflow's get_user (401/403 without a valid token)."""
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import HTMLResponse

    from airflow.api_fastapi.core_api.security import get_user

    app = FastAPI(title="lpmon", dependencies=[Depends(get_user)])

    def context(model_id: str | None = None):
        from lpmon.pipeline import open_store

        config = config_loader()
        if model_id is not None and model_id not in config.models:
            raise HTTPException(status_code=404, detail="no such model")
        return config, open_store(config)

    def summaries() -> list[dict]:
        config, store = context()
        out = []
        for model_id in sorted(config.models):
            last = (run_report(store.db, "dne_history", model_id=model_id) or [{}])[-1]
            out.append({"model": model_id, "day": last.get("logical_date"), "status": last.get("status"),
                        "dne_pct": last.get("dne_pct")})
        return out

    @app.get("/api/models")
    def api_models() -> list[dict]:
        return summaries()

    @app.get("/api/models/{model_id}")
    def api_model(model_id: str) -> dict:
        config, store = context(model_id)
        return model_data(config, store, model_id, run_links)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return index_page(summaries())

    @app.get("/models/{model_id}", response_class=HTMLResponse)
    def page(model_id: str) -> str:
        config, store = context(model_id)
        return model_page(model_data(config, store, model_id, run_links))

    return app
