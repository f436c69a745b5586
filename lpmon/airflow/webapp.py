"""The lpmon page inside the Airflow UI (a FastAPI app the api-server mounts at
/lpmon, see lpmon.airflow.plugin), and its JSON API.

    /lpmon/                       models, with their last day
    /lpmon/models/<model>         dNE chart with interval and gate, decisions, active plan, alerts
    /lpmon/api/models             the same data as JSON
    /lpmon/api/models/<model>
    /lpmon/openapi.json           the API's schema (no /docs page: it would load its assets from a CDN)

Airflow does not protect a plugin's app: every route here, the schema included,
requires a valid Airflow token (Authorization: Bearer, or the UI's session
cookie) of a user Airflow's auth manager lets read the lpmon_monitor DAG
(lpmon.airflow.webauth); a browser not logged in is sent to Airflow's login
and back. Model ids must be ones the config lists; the HTML
(lpmon.report.page) escapes every value from data.
"""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager, contextmanager

from lpmon.config import Config, confined, load
from lpmon.pipeline.capacity import plan_capacity
from lpmon.report.notify import NO_CONNECTION
from lpmon.report.page import index_page, model_page
from lpmon.store.reports import run_report

HISTORY_DAYS = 60


def serving_problem(store, model_id: str) -> str:
    from lpmon.pipeline.export import serving_problem as problem

    return problem(store, model_id)


def model_data(config: Config, store, model_id: str, run_links=None) -> dict:
    """Everything the page shows for one model, from the state store."""
    settings = config.model(model_id)
    history = run_report(store.db, "dne_history", model_id=model_id)[-HISTORY_DAYS:]
    active = store.active_plan(model_id)
    layers = []
    if active is not None:
        from lpmon.quant import QuantPlan

        plan = QuantPlan.from_json(active.plan_json)
        last = store.latest_layer_metrics(model_id)
        for layer in plan.layers:
            metrics = last.get(layer.name, {})
            saturation = None
            if metrics.get("saturation_below") is not None:
                saturation = metrics["saturation_below"] + (metrics.get("saturation_above") or 0.0)
            layers.append(
                {
                    "layer": layer.name,
                    "kind": layer.kind,
                    "precision": layer.precision,
                    "lo": layer.activation.lo if layer.activation else None,
                    "hi": layer.activation.hi if layer.activation else None,
                    "sqnr_db": metrics.get("sqnr_db"),
                    "saturation": saturation,
                }
            )
    links = run_links([row["logical_date"] for row in history]) if run_links else {}
    last_day = history[-1]["logical_date"] if history else None
    last_summary = store.day_summary(model_id, last_day) if last_day else None
    alerts = store.alerts(model_id)
    last_error = alerts[-1]["error"] if alerts else ""
    return {
        "model": model_id,
        "gate_pct": settings.gate_pct,
        "history": [
            {
                "day": r["logical_date"],
                "status": r["status"],
                "action": r["action"],
                "dne_pct": r["dne_pct"],
                "dne_pct_lo": r["dne_pct_lo"],
                "dne_pct_hi": r["dne_pct_hi"],
                "plan_version": r["plan_version"],
                "new_plan_version": r["new_plan_version"],
                "examples_scored": r["examples_scored"],
                "looks": r["looks"],
                "stop_reason": r["stop_reason"],
                "airflow_run": links.get(r["logical_date"]),
            }
            for r in history
        ],
        "decisions": [
            {
                "day": d["logical_date"],
                "action": d["action"],
                "reasons": d["reasons"],
                "new_plan_version": d["new_plan_version"],
            }
            for d in store.decisions(model_id, acted_only=True, last=20)
        ],
        "active_plan": {"version": active.version, "since": active.logical_date, "layers": layers} if active else None,
        **plan_capacity(config, store, model_id),
        "alerts": [
            {
                "day": a["logical_date"],
                "event": a["event"],
                "status": a["status"],
                "recipients": a["recipients"],
                "error": a["error"],
            }
            for a in alerts
            if a["status"] != "superseded"  # a rerun's mail replaced it
        ][-10:],
        "mail_problem": last_error if (last_error or "").startswith(NO_CONNECTION) else "",
        "serving_problem": serving_problem(store, model_id),
        "pinned": sorted(store.pins(model_id)),
        "last_day": {
            "day": last_day,
            "status": history[-1]["status"],
            "reasons": last_summary.reasons if last_summary else [],
            "segments": [
                {
                    "segment": r["segment"],
                    "n": r["n"],
                    "dne_pct": r["dne_pct"],
                    "dne_pct_lo": r["dne_pct_lo"],
                    "dne_pct_hi": r["dne_pct_hi"],
                }
                for r in store.segment_metrics(model_id, last_day)
            ],
        }
        if last_day
        else None,
    }


class _Stores:
    """The app's one state store: opened (and checked) at the first request that needs
    it, reopened when the configured store changes or after a request failed on it
    (a store replaced or upgraded underneath), disposed at shutdown (the app's
    lifespan; mounted in Airflow's api-server, which runs no lifespan of a plugin's
    app, the one pool lives as long as the process). An engine per request would
    leave a pool of connections behind each one."""

    def __init__(self):
        self._lock = threading.Lock()
        self._store = None
        self.opened = 0  # how many times a store was opened (for tests)

    @contextmanager
    def use(self, config: Config):
        from lpmon.pipeline import open_store

        with self._lock:
            if self._store is not None and self._store.db.url != config.store:
                self.close()
            if self._store is None:
                self._store = open_store(config)
                self.opened += 1
            store = self._store
        try:
            yield store
        except Exception:
            with self._lock:
                if self._store is store:
                    self.close()
            raise

    def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.db.engine.dispose()

    @property
    def open(self) -> bool:
        return self._store is not None


def create_app(config_loader=load, run_links=None):
    """The FastAPI app. Every route, its schema included, depends on lpmon.airflow.webauth.reader():
    Airflow's user (401/403 without a valid token) who may read the lpmon_monitor DAG (else 403)."""
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import HTMLResponse

    from lpmon.airflow.webauth import login_redirect, reader

    stores = _Stores()

    @asynccontextmanager
    async def lifespan(_app):
        try:
            yield
        finally:
            with stores._lock:
                stores.close()

    app = FastAPI(
        title="lpmon",
        dependencies=[Depends(reader())],
        docs_url=None,  # a docs page would load its assets from a CDN
        redoc_url=None,
        openapi_url=None,  # FastAPI's own schema route takes no dependencies: ours below does
        lifespan=lifespan,
    )
    app.add_exception_handler(HTTPException, login_redirect)
    app.state.stores = stores

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict:
        return app.openapi()

    def settings(model_id: str | None = None) -> Config:
        config = config_loader()
        if model_id is not None and model_id not in config.models:
            raise HTTPException(status_code=404, detail="no such model")
        return config

    def summaries() -> list[dict]:
        config = settings()
        out = []
        with stores.use(config) as store:
            for model_id in sorted(config.models):
                last, active = store.latest_day(model_id), store.active_plan(model_id)
                out.append(
                    {
                        "model": model_id,
                        "day": last.day if last else None,
                        "status": last.status if last else None,
                        "dne_pct": last.dne_pct if last else None,
                        "plan_version": active.version if active else None,
                        "capacity": plan_capacity(config, store, model_id)["capacity"],  # of the plan in force
                    }
                )
        return out

    def data(model_id: str) -> dict:
        config = settings(model_id)
        with stores.use(config) as store:
            return model_data(config, store, model_id, run_links)

    @app.get("/api/models")
    def api_models() -> list[dict]:
        return summaries()

    @app.get("/api/models/{model_id}")
    def api_model(model_id: str) -> dict:
        return data(model_id)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return index_page(summaries())

    @app.get("/models/{model_id}", response_class=HTMLResponse)
    def page(model_id: str) -> str:
        return model_page(data(model_id))

    @app.get("/models/{model_id}/reports/{day}.html", response_class=HTMLResponse)
    def day_report(model_id: str, day: str) -> str:
        """The day's report file (the link in alert mails; its previous/next links are relative)."""
        import datetime as dt

        config = settings(model_id)
        try:
            day = dt.date.fromisoformat(day).isoformat()
            return confined(config.work_dir, "reports", model_id, f"{day}.html").read_text(encoding="utf-8")
        except (ValueError, OSError):
            raise HTTPException(status_code=404, detail=f"no report of {model_id} for {day}") from None

    return app
