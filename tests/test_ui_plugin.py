"""The lpmon page in the Airflow UI, served by a real api-server through the
plugin entry point, checked in headless Chromium (Playwright, Debian's
chromium) and refused to anonymous callers."""

import datetime as dt
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from airflow_stack import Stack
from conftest import free_port
from lpmon.config import load
from lpmon.pipeline import open_store, run_day
from world_helpers import dag_world

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MODEL, DAYS = "gradual_drift", 3


def status_of(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture
def api_server(tmp_path):
    config_path = dag_world(tmp_path / "world", [MODEL], days=DAYS)
    config = load(config_path, environ={})
    for i in range(DAYS):
        run_day(config, MODEL, dt.date(2026, 11, 1) + dt.timedelta(days=i))
    stack = Stack(tmp_path / "airflow", f"sqlite:///{tmp_path / 'airflow.db'}", free_port(),
                  {"LPMON_CONFIG": str(config_path), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags")})
    try:
        stack.start(("api-server", "-H", "127.0.0.1", "-p", str(stack.port), "-w", "1"))
        yield stack, config
    finally:
        stack.stop()


@pytest.mark.slow
def test_the_page_needs_a_user_and_shows_the_stores_numbers(api_server, tmp_path):
    stack, config = api_server
    base = stack.base
    for path in ("/lpmon/", f"/lpmon/models/{MODEL}", "/lpmon/api/models", f"/lpmon/api/models/{MODEL}"):
        assert status_of(base + path) == 401, path                # anonymous: nothing served
    assert status_of(base + "/lpmon/api/models", token="not-a-token") == 403
    token = stack.token()
    assert status_of(base + "/lpmon/api/models/no_such_model", token) == 404
    assert status_of(base + "/lpmon/api/models/..%2F..%2Fetc", token) == 404
    with urllib.request.urlopen(urllib.request.Request(base + f"/lpmon/api/models/{MODEL}",
                                                       headers={"Authorization": f"Bearer {token}"})) as r:
        api = json.loads(r.read())
    store = open_store(config)
    metrics = store.rows("run_metrics", MODEL)
    assert [h["dne_pct"] for h in api["history"]] == [m["dne_pct"] for m in metrics]
    assert api["active_plan"]["version"] == store.active_plan(MODEL).version

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)  # a new empty profile each time
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1400})
            # Log in through Airflow's own login page (simple auth manager).
            page.goto(base + "/auth/login/")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", stack.admin_password)
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "/auth/login" not in url, timeout=30_000)
            page.goto(base + f"/lpmon/models/{MODEL}")
            page.wait_for_selector("#dne-chart")
            dots = page.eval_on_selector_all("#dne-chart circle.day", "els => els.map(e => e.dataset.dne)")
            assert dots == [f"{m['dne_pct']:.4f}" for m in metrics]
            gate = page.get_attribute("#dne-chart line[data-gate]", "data-gate")
            assert float(gate) == config.model(MODEL).gate_pct
            days = page.inner_text("#days")
            assert all(f"{m['dne_pct']:.4f}" in days for m in metrics)
            plan = page.inner_text("#plan")
            assert all(name in plan for name in ("bot_l.0", "top_l.0", "emb_l.0")) and "int8" in plan
            artifacts = REPO / "artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "lpmon-ui-model-page.png"), full_page=True)
            # The nav entry: the plugin's page is listed by the UI's plugins API.
            plugins = page.evaluate("""async () => (await (await fetch('/api/v2/plugins')).json())""")
            assert any(p["name"] == "lpmon" for p in plugins["plugins"])
        finally:
            browser.close()


def test_page_escapes_what_comes_from_data():
    from lpmon.webapp import index_page, model_page

    hostile = "<script>alert(1)</script>"
    data = {"model": "m", "gate_pct": 0.05,
            "history": [{"day": "2026-11-01", "status": hostile, "action": "RECORD", "dne_pct": 0.1,
                         "dne_pct_lo": 0.0, "dne_pct_hi": 0.2, "plan_version": 1, "new_plan_version": None,
                         "airflow_run": '/dags/x/runs/a"><script>'}],
            "decisions": [{"day": "2026-11-01", "action": "FALLBACK", "reasons": [hostile], "new_plan_version": 2}],
            "active_plan": {"version": 2, "since": "2026-11-01", "layers": [
                {"layer": hostile, "kind": "linear", "precision": "fp16", "lo": None, "hi": None,
                 "sqnr_db": None, "saturation": None}]},
            "alerts": [{"day": "2026-11-01", "event": "FALLBACK", "status": "failed", "recipients": "",
                        "error": hostile}]}
    page = model_page(data)
    assert "<script>" not in page and page.count("&lt;script&gt;") >= 5
    assert "<script>" not in index_page([{"model": hostile, "day": None, "status": None, "dne_pct": None}])
