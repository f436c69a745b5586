"""lpmon_monitor on a real Airflow deployment: scheduler + api-server +
dag-processor on PostgreSQL, backfilled with `airflow backfill create`; once
with LocalExecutor, once with CeleryExecutor workers on Redis. The store's
rows must equal running the same days one by one, and a second backfill that
reprocesses the days must change nothing. The backfill is the README's command
as printed (all the days' runs start at once: the days still go in order). On the same stacks: the run the
scheduler makes after midnight monitors the day that ended; the README's
commands for an existing Airflow work; the lpmon page opened from Airflow's
nav entry shows the store's numbers and its links work inside Airflow's
iframe; a stack without any SMTP connection finishes green with the failure
recorded."""

import datetime as dt
import json
import re
import shlex
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import _postgres_database, free_port
from lpmon.config import load
from lpmon.pipeline import open_store
from lpmon.report.notify import NO_CONNECTION
from support import REPO
from support.airflow_stack import Stack
from support.world import dag_world, snapshot_rows

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

START, DAYS = dt.date(2026, 11, 1), 5
MODEL = "gradual_drift"


def twin_rows(tmp_path: Path) -> dict:
    """The same days through one serial `lpmon backfill`, on a store of their own."""
    from lpmon import cli

    path = dag_world(tmp_path / "twin", [MODEL], days=DAYS)
    end = str(START + dt.timedelta(days=DAYS - 1))
    command = ["backfill", "--config", str(path), "--model", MODEL, "--start", str(START), "--end", end]
    assert cli.main(command + ["--no-alerts", "-q"]) == 0
    return snapshot_rows(open_store(load(path, environ={})), MODEL)


@pytest.fixture
def deployment(tmp_path, smtp_server):
    """World + lpmon store + Airflow metadata on PostgreSQL; yields a factory of stacks."""
    lpmon_db, drop_lpmon = _postgres_database()
    metadata_db, drop_metadata = _postgres_database()
    shared = tmp_path / "shared"  # what workers share besides PostgreSQL and Redis
    # Without catchup, unpausing the DAG for the backfill schedules only its latest day
    # (a day without traffic here, left out of the comparison below).
    config_path = dag_world(shared, [MODEL], days=DAYS, store=lpmon_db)
    config_path.write_text(config_path.read_text().replace("[airflow]\n", "[airflow]\nmonitor_catchup = false\n"))
    stacks = []

    def make(executor: str, extra_env: dict | None = None) -> Stack:
        stack = Stack(
            tmp_path / f"airflow-{executor}",
            metadata_db,
            free_port(),
            {"AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "LPMON_CONFIG": str(config_path), **(extra_env or {})},
            executor,
        )
        stack.env.pop("AIRFLOW_CONN_SMTP_DEFAULT", None)  # each test says how (or whether) mail goes out
        stacks.append(stack)
        return stack

    try:
        yield make, config_path
    finally:
        for stack in stacks:
            stack.stop()
        import gc

        gc.collect()
        drop_lpmon()
        drop_metadata()


def backfill_twice_and_compare(stack: Stack, config_path: Path, tmp_path: Path):
    end = str(START + dt.timedelta(days=DAYS - 1))
    first = stack.backfill("lpmon_monitor", str(START), end)  # the README's command: all five days at once
    runs = stack.runs("lpmon_monitor")
    assert len(runs) == DAYS and all(r["state"] == "success" for r in runs), [
        (r["logical_date"], r["state"]) for r in runs
    ]
    store = open_store(load(config_path, environ={}))
    rows = backfilled_rows(store, end)
    assert [r["logical_date"] for r in rows["runs"]] == [str(START + dt.timedelta(days=i)) for i in range(DAYS)]
    twin = twin_rows(tmp_path)
    assert rows["plans"] == twin["plans"] and rows == twin
    second = stack.backfill("lpmon_monitor", str(START), end, reprocess="completed")
    assert second["id"] != first["id"]
    assert all(r["state"] == "success" for r in stack.runs("lpmon_monitor"))
    assert backfilled_rows(store, end) == rows
    store.db.engine.dispose()


def split_every_day(config_path: Path) -> None:
    """Each day in two files, and sample_split_rows below a day's size: every day's
    sample is drawn in two sample_part tasks, then merged."""
    import pyarrow.parquet as pq

    from lpmon.traffic import TrafficStore

    config = load(config_path, environ={})
    traffic = TrafficStore(config.model(MODEL).traffic)
    for i in range(DAYS):
        table = pq.read_table(traffic.files(START + dt.timedelta(days=i)))
        traffic.write_day(START + dt.timedelta(days=i), table, rows_per_file=-(-table.num_rows // 2))
    config_path.write_text(config_path.read_text().replace("[defaults]\n", "[defaults]\nsample_split_rows = 30000\n"))


def backfilled_rows(store, end: str) -> dict:
    return {
        table: [r for r in rows if r.get("logical_date", "") <= end]
        for table, rows in snapshot_rows(store, MODEL).items()
    }


def readme_commands() -> list[str]:
    """The `airflow ...` lines of the README's "On your existing Airflow" block."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## On your existing Airflow") :]
    block = section[section.index("```bash") + 7 : section.index("```", section.index("```bash") + 7)]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("airflow ")]


def run_readme_commands(stack: Stack, config_path: Path, smtp_uri: str) -> dict[str, str]:
    """Run the README's commands with this test's config and mail server (the backfill:
    Stack.backfill, which runs the same command and then waits for it)."""
    out = {}
    for line in readme_commands():
        args = shlex.split(line.replace("/etc/lpmon/lpmon.toml", str(config_path)))[1:]
        if args[:2] == ["connections", "add"]:
            args[args.index("--conn-uri") + 1] = smtp_uri
        if args[:2] == ["backfill", "create"]:  # run as printed by backfill_twice_and_compare (Stack.backfill)
            assert args == stack.backfill_command("lpmon_monitor", "2026-11-01", "2026-11-05")
            continue
        if args[:2] == ["dags", "show"] or args[:2] == ["dags", "unpause"]:
            stack.wait(lambda: stack.get(f"/api/v2/dags/{args[2]}"), 120, f"{args[2]} parsed")
        out[" ".join(args[:2])] = stack.airflow(*args).stdout
    assert set(out) == {"variables set", "connections add", "dags show", "dags unpause"}, out
    return out


def scheduled_run_monitors_the_day_that_ended(stack: Stack, config_path: Path) -> dict:
    """Unpausing (without catchup) makes the scheduler run the last complete day: its
    data interval is yesterday, it ran after today's midnight, and the store has that
    day (no traffic there: INSUFFICIENT_DATA, naming the day), not today."""
    (run,) = stack.wait(
        lambda: [r for r in stack.runs("lpmon_monitor", "scheduled") if r["state"] in ("success", "failed")],
        300,
        "the scheduled run",
    )
    assert run["state"] == "success", run
    start, end = (dt.datetime.fromisoformat(run[k]) for k in ("data_interval_start", "data_interval_end"))
    after = dt.datetime.fromisoformat(run["run_after"])
    yesterday = end.date() - dt.timedelta(days=1)
    assert start == dt.datetime.combine(yesterday, dt.time(), dt.timezone.utc) and end - start == dt.timedelta(days=1)
    assert dt.datetime.fromisoformat(run["logical_date"]) == start and after >= end
    assert after <= dt.datetime.now(dt.timezone.utc) < end + dt.timedelta(days=1)  # created after the midnight
    store = open_store(load(config_path, environ={}))
    rows = {r["logical_date"]: r for r in store.rows("runs", MODEL)}
    assert rows[str(yesterday)]["status"] == "INSUFFICIENT_DATA" and str(yesterday) in rows[str(yesterday)]["message"]
    assert str(end.date()) not in rows
    store.db.engine.dispose()
    return run


def status_of(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def fetch(url: str, token: str) -> str:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def the_page_through_airflows_nav(stack: Stack, config_path: Path) -> None:
    """The plugin's routes refuse anonymous callers; in Chromium, the page opened from
    the UI's nav entry shows the store's numbers, and a run link clicked inside the
    sandboxed iframe opens that run in the UI."""
    base, token = stack.base, stack.token()
    for path in (
        "/lpmon/",
        f"/lpmon/models/{MODEL}",
        "/lpmon/api/models",
        f"/lpmon/api/models/{MODEL}",
        "/lpmon/openapi.json",
    ):
        assert status_of(base + path) == 401, path
    assert "/api/models" in json.loads(fetch(base + "/lpmon/openapi.json", token))["paths"]  # its own routes
    assert status_of(base + "/lpmon/api/models", token="not-a-token") == 403
    assert status_of(base + "/lpmon/api/models/no_such_model", token) == 404
    assert status_of(base + "/lpmon/api/models/..%2F..%2Fetc", token) == 404
    assert status_of(base + "/lpmon/docs", token) == 404  # no page that needs a CDN
    config = load(config_path, environ={})
    store = open_store(config)
    metrics = store.rows("run_metrics", MODEL)
    runs = {r["logical_date"]: r for r in store.rows("runs", MODEL)}
    store.db.engine.dispose()

    from playwright.sync_api import sync_playwright

    artifacts = REPO / "artifacts"
    artifacts.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)  # a new empty profile each time
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1400})
            blocked = []
            page.on("console", lambda m: blocked.append(m.text) if "Unsafe attempt" in m.text else None)
            mailed = f"{base}/lpmon/models/{MODEL}"  # a link from an alert mail, opened while logged out
            page.goto(mailed)
            page.wait_for_url(lambda url: "/auth/login" in url, timeout=30_000)  # Airflow's login, not a 401
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", stack.admin_password)
            page.click("button[type=submit]")
            page.wait_for_url(mailed, timeout=30_000)  # and back to the page the link named
            page.goto(base + "/")
            page.click("a[href='/plugin/lpmon']")  # Airflow's own nav entry
            frame = page.frame_locator("iframe[title=lpmon]")
            frame.locator(f"#models a:text-is('{MODEL}')").click()
            frame.locator("#dne-chart").wait_for()
            chart = frame.locator("#dne-chart")
            dots = chart.locator("circle.day").evaluate_all(
                "els => els.map(e => [e.dataset.day, e.dataset.dne, e.dataset.status, e.getAttribute('fill')])"
            )
            scored = [m for m in metrics if m["dne_pct"] is not None]
            assert [(d, v) for d, v, _, _ in dots] == [(m["logical_date"], f"{m['dne_pct']:.4f}") for m in scored]
            assert [s for _, _, s, _ in dots] == [runs[m["logical_date"]]["status"] for m in scored]
            assert len({f for *_, f in dots}) == len({s for _, _, s, _ in dots})  # one colour per status
            assert float(chart.locator("line[data-gate]").get_attribute("data-gate")) == config.model(MODEL).gate_pct
            assert chart.locator("text.y-tick").count() >= 3  # a y axis with values
            days = frame.locator("#days").inner_text()
            assert all(f"{m['dne_pct']:.4f}" in days for m in scored)
            plan = frame.locator("#plan").inner_text()
            assert all(name in plan for name in ("bot_l.0", "top_l.0", "emb_l.0")) and "int8" in plan
            chart.locator("circle.day").first.hover()
            assert scored[0]["logical_date"] in frame.locator("#tip").inner_text()
            # Airflow's dark mode (a class on the UI's <html>) switches the page to its dark colours.
            (inner,) = [f for f in page.frames if f.url.startswith(f"{base}/lpmon/models/")]  # the iframe's page
            light = inner.evaluate("getComputedStyle(document.body).backgroundColor")
            page.evaluate("document.documentElement.classList.add('dark')")
            inner.wait_for_function("light => getComputedStyle(document.body).backgroundColor !== light", arg=light)
            page.evaluate("document.documentElement.classList.remove('dark')")
            inner.wait_for_function("light => getComputedStyle(document.body).backgroundColor === light", arg=light)
            page.screenshot(path=str(artifacts / "lpmon-ui-model-page.png"), full_page=True)
            # A run link inside the sandboxed iframe: the UI shows that run.
            link = frame.locator("#days a[data-airflow]").first
            href = link.get_attribute("href")
            assert re.fullmatch(r"/dags/lpmon_monitor/runs/[^/]+", href), href
            link.click()
            page.wait_for_url(lambda url: url.endswith(href), timeout=30_000)
            page.get_by_text("lpmon_monitor").first.wait_for(timeout=30_000)
            assert blocked == [], blocked
            page.screenshot(path=str(artifacts / "lpmon-ui-run-from-page.png"))
        finally:
            browser.close()


@pytest.mark.slow
def test_backfill_with_the_local_executor_on_postgresql(deployment, tmp_path, smtp_server):
    make, config_path = deployment
    stack = make("LocalExecutor")
    stack.start(
        ("api-server", "-H", "127.0.0.1", "-p", str(stack.port), "-w", "1"),
        ("scheduler", "--skip-serve-logs"),
        ("dag-processor",),
    )
    # The README's commands for an existing Airflow: the Variable, smtp_default, dags show, unpause.
    shown = run_readme_commands(
        stack,
        config_path,
        f"smtp://127.0.0.1:{smtp_server.port}/?disable_ssl=true&disable_tls=true&from_email=lpmon%40example.com",
    )
    assert "digraph" in shown["dags show"] and "monitor.partition" in shown["dags show"]
    backfill_twice_and_compare(stack, config_path, tmp_path)
    run = scheduled_run_monitors_the_day_that_ended(stack, config_path)
    day = run["logical_date"][:10]
    assert f"{MODEL}/{day}/INSUFFICIENT_DATA" in [m["X-Lpmon-Event"] for m in smtp_server.messages]
    the_page_through_airflows_nav(stack, config_path)
    # Recurring training lands a new snapshot and says so with an asset event: lpmon_onboard
    # builds, validates and promotes its plan.
    from lpmon.model import Model
    from lpmon.model.snapshot import snapshot_digest

    config = load(config_path, environ={})
    model = Model.load(config.model(MODEL).snapshot)
    first = next(iter(model.weights))  # (a loaded model's tensors are read-only maps)
    model.weights[first] = model.weights[first] * 1.01
    model.save(config.model(MODEL).snapshot)
    stack.wait(lambda: stack.get("/api/v2/dags/lpmon_onboard"), 60, "lpmon_onboard parsed")
    stack.airflow("dags", "unpause", "lpmon_onboard")
    (asset,) = stack.get("/api/v2/assets?name_pattern=lpmon_model_snapshot")["assets"]
    stack.post("/api/v2/assets/events", {"asset_id": asset["id"], "extra": {"model_id": MODEL, "day": "2026-11-05"}})
    (run,) = stack.wait(
        lambda: [r for r in stack.runs("lpmon_onboard", None) if r["state"] in ("success", "failed")],
        300,
        "lpmon_onboard run",
    )
    assert run["state"] == "success"
    active = open_store(config).active_plan(MODEL)
    from lpmon.quant import QuantPlan

    notes = QuantPlan.from_json(active.plan_json).provenance.notes
    assert active.reason == "ONBOARD" and f"onboarding {snapshot_digest(config.model(MODEL).snapshot)}" in notes


@pytest.mark.slow
def test_backfill_on_celery_workers_with_redis_and_no_smtp_connection(deployment, tmp_path):
    make, config_path = deployment
    stack = make("CeleryExecutor", {"AIRFLOW__CELERY__BROKER_URL": "redis://127.0.0.1:6379/7"})
    stack.env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    split_every_day(config_path)  # the workers share each day's sampling; the rows stay the twin's
    stack.start(
        ("api-server", "-H", "127.0.0.1", "-p", str(stack.port), "-w", "1"),
        ("scheduler", "--skip-serve-logs"),
        ("dag-processor",),
        ("celery", "worker", "--skip-serve-logs", "--concurrency", "2"),
    )
    backfill_twice_and_compare(stack, config_path, tmp_path)
    # The tasks ran on the Celery worker, not in the scheduler; each day's two file groups too.
    worker_log = (stack.home / "celery-worker.log").read_text()
    assert "lpmon_monitor" in worker_log
    for run in stack.runs("lpmon_monitor"):
        tis = stack.get(f"/api/v2/dags/lpmon_monitor/dagRuns/{quote(run['dag_run_id'])}/taskInstances?limit=100")
        parts = [t for t in tis["task_instances"] if t["task_id"] == "sample_part"]
        assert sorted((t["map_index"], t["state"]) for t in parts) == [(0, "success"), (1, "success")], parts
    # No SMTP connection anywhere: the day that needed an alert is green, its alert recorded
    # as not sent with the fix, and the page says so.
    run = scheduled_run_monitors_the_day_that_ended(stack, config_path)
    day = run["logical_date"][:10]
    store = open_store(load(config_path, environ={}))
    (alert,) = [a for a in store.rows("alerts", MODEL) if a["logical_date"] == day]
    store.db.engine.dispose()
    assert alert["status"] == "failed" and alert["error"].startswith(f"{NO_CONNECTION} 'smtp_default'")
    request = urllib.request.Request(
        f"{stack.base}/lpmon/api/models/{MODEL}", headers={"Authorization": f"Bearer {stack.token()}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["mail_problem"] == alert["error"]
