"""The lpmon page inside the Airflow UI (a FastAPI app the api-server mounts at
/lpmon, see lpmon.airflow.plugin), and its JSON API.

    /lpmon/                       models, with their last day
    /lpmon/models/<model>         dNE chart with interval and gate, decisions, active plan, alerts
    /lpmon/api/models             the same data as JSON
    /lpmon/api/models/<model>
    /lpmon/openapi.json           the API's schema (no /docs page: it would load its assets from a CDN)

Airflow does not protect a plugin's app: every route here requires a valid
Airflow token (Authorization: Bearer, or the UI's session cookie), checked by
Airflow's own auth manager. Model ids must be ones the config lists; the HTML
(lpmon.report.page) escapes every value from data.
"""

from __future__ import annotations

import json

from lpmon.config import Config, confined, load
from lpmon.report.notify import NO_CONNECTION
from lpmon.store.reports import run_report
from lpmon.report.page import index_page, model_page

HISTORY_DAYS = 60


def serving_problem(store, model_id: str) -> str:
    from lpmon.pipeline.export import serving_problem as problem

    return problem(store, model_id)


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
    last_day = history[-1]["logical_date"] if history else None
    last_decision = next((d for d in reversed(decisions) if d["logical_date"] == last_day), None)
    alerts = sorted(store.rows("alerts", model_id), key=lambda a: a["logical_date"])
    last_error = alerts[-1]["error"] if alerts else ""
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
                   for a in alerts][-10:],
        "mail_problem": last_error if (last_error or "").startswith(NO_CONNECTION) else "",
        "serving_problem": serving_problem(store, model_id),
        "pinned": sorted(store.pins(model_id)),
        "last_day": {"day": last_day, "status": history[-1]["status"],
                     "reasons": json.loads(last_decision["reasons_json"]) if last_decision else [],
                     "segments": [{"segment": r["segment"], "n": r["n"], "dne_pct": r["dne_pct"],
                                   "dne_pct_lo": r["dne_pct_lo"], "dne_pct_hi": r["dne_pct_hi"]}
                                  for r in store.segment_metrics(model_id, last_day)]}
        if last_day else None,
    }


def create_app(config_loader=load, run_links=None):
    """The FastAPI app. Every route depends on Airflow's get_user (401/403 without a valid token)."""
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import HTMLResponse

    from airflow.api_fastapi.core_api.security import get_user

    app = FastAPI(title="lpmon", dependencies=[Depends(get_user)], docs_url=None, redoc_url=None)

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

    @app.get("/models/{model_id}/reports/{day}.html", response_class=HTMLResponse)
    def day_report(model_id: str, day: str) -> str:
        """The day's report file (the link in alert mails; its previous/next links are relative)."""
        import datetime as dt

        config, store = context(model_id)
        store.db.engine.dispose()
        try:
            day = dt.date.fromisoformat(day).isoformat()
            return confined(config.work_dir, "reports", model_id, f"{day}.html").read_text(encoding="utf-8")
        except (ValueError, OSError):
            raise HTTPException(status_code=404, detail=f"no report of {model_id} for {day}") from None

    return app
