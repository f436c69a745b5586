"""The main job on the embedded default (the first README command).

Writes a synthetic world with two models (`gradual_drift`: traffic drifts
until the calibrated ranges go stale; `outliers`: outlier days that only a
precision fallback survives), then runs the real `lpmon_monitor` DAG through
Airflow, one `dag.test()` per day, on SQLite (Airflow's metadata and lpmon's
store), local Parquet and an in-process mail catcher. Prints a line per model
and day while it runs, then the outcome table (lpmon.demo.summary, also saved
as demo-summary.md) and where the HTML reports and the alert emails are; checks
or rewrites the README's copy of that table when asked.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lpmon.demo import summary

SCENARIOS = ("gradual_drift", "outliers")
START = dt.date(2026, 11, 1)


def write_demo_world(root: Path, days: int, examples_per_day: int, sample_size: int) -> Path:
    from lpmon.demo.world import WorldConfig, write_world

    for scenario in SCENARIOS:
        write_world(root, WorldConfig(scenario, days=days, seed=1, examples_per_day=examples_per_day))
    path = root / "lpmon.toml"
    models = path.read_text().split("\n", 1)[1]
    path.write_text(
        "# Written by `lpmon demo`: the embedded default (SQLite, local Parquet, dag.test()).\n"
        f'store = "sqlite:///{root / "state.db"}"\n\n'
        f"[defaults]\nsample_size = {sample_size}\nmin_examples = 1000\n"
        'recipients = ["oncall@example.com"]\n\n'
        # No Airflow web server runs in the demo: base_url "" keeps its mails from linking to one.
        f'[airflow]\nstart_date = "{START}"\ntask_retries = 0\nbase_url = ""\n' + models
    )
    return path


class MailCatcher:
    """An in-process SMTP server that keeps every message as an .eml file."""

    def __init__(self, folder: Path):
        self.folder, self.count = folder, 0
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        (self.folder / f"{self.count:03d}.eml").write_bytes(envelope.content)
        return "250 OK"


def main(
    root: Path,
    days: int,
    examples_per_day: int,
    sample_size: int,
    check_readme: Path | None = None,
    update_readme: Path | None = None,
) -> int:
    """Run the demo; 1 if a day failed or the README's table (check_readme) is not this run's."""
    from lpmon.airflow import local

    for readme in (check_readme, update_readme):
        problem = readme and summary.readable_readme(readme)
        if problem:
            print(f"lpmon demo: {problem}", file=sys.stderr)
            return 1
    started = time.perf_counter()
    root = root.resolve()
    for leftover in ("airflow", "work", "plans", "mail", "state.db", "traffic", "models", "lpmon.toml"):
        path = root / leftover
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    print(f"lpmon demo: writing a {days}-day synthetic world ({', '.join(SCENARIOS)}) under {root}")
    config_path = write_demo_world(root, days, examples_per_day, sample_size)
    home = root / "airflow"
    home.mkdir()
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(local.dags_folder()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "LPMON_CONFIG": str(config_path),
            "PYTHONWARNINGS": "ignore",
        }
    )
    log = home / "dag-runs.log"
    print("lpmon demo: creating Airflow's metadata database (airflow db migrate)")
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=True,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
    )
    from aiosmtpd.controller import Controller

    catcher = MailCatcher(root / "mail")
    port = _free_port()
    controller = Controller(catcher, hostname="127.0.0.1", port=port)
    controller.start()
    os.environ["AIRFLOW_CONN_SMTP_DEFAULT"] = (
        f"smtp://127.0.0.1:{port}/?disable_ssl=true&disable_tls=true&from_email=lpmon%40example.com&retry_limit=0"
    )
    try:
        failed, table = _run_days(config_path, days, examples_per_day, sample_size, log)
    finally:
        controller.stop()
    (root / "demo-summary.md").write_text(table)
    print(f"\n{table}")
    print(f"\nHTML reports: {root / 'work' / 'reports'}/<model>/<day>.html")
    print(f"alert emails: {catcher.count} in {root / 'mail'} (.eml)")
    print(f"active plans for serving: {root / 'plans'}/<model>/active.json")
    print(f"Airflow task logs: {log} (dag.test runs: Airflow's run statistics there are the demo's, not a schedule's)")
    print(f"outcome table: {root / 'demo-summary.md'}")
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 1 if failed or not _readme_agrees(table, check_readme, update_readme) else 0


def _readme_agrees(table: str, check_readme: Path | None, update_readme: Path | None) -> bool:
    """Check (a diff on stderr when it differs) or rewrite the README's demo table."""
    if update_readme:
        summary.update_readme(update_readme, table)
        print(f"{update_readme}: demo table rewritten from this run")
    if not check_readme:
        return True
    diff = summary.check_readme(check_readme, table)
    if diff:
        print(f"lpmon demo: {check_readme}'s demo table is not this run's:\n{diff}", file=sys.stderr)
        return False
    print(f"{check_readme}: demo table matches this run")
    return True


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_days(config_path: Path, days: int, examples_per_day: int, sample_size: int, log: Path) -> tuple[int, str]:
    """Run each day through the DAG; (days failed, the outcome table)."""
    from lpmon.airflow.local import load_dag, test_day
    from lpmon.config import load
    from lpmon.pipeline import open_store
    from lpmon.store import init_store

    monitor = load_dag("lpmon_monitor", Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]), log)
    config = load(config_path)
    init_store(config.store)  # what `lpmon init` does: only it creates a store
    store = open_store(config)
    print(
        f"lpmon demo: running lpmon_monitor through Airflow (dag.test), {days} days, "
        f"gate {config.model(SCENARIOS[0]).gate_pct} % relative NE\n"
    )
    print(f"{'day':<11} {'model':<14} {'dNE %':>8} {'interval':>20}  {'status':<18} {'decision':<11} {'plan':<8} run")
    failed = 0
    for offset in range(days):
        day = START + dt.timedelta(days=offset)
        t = time.perf_counter()
        state = test_day(monitor, day, log)
        failed += state != "success"
        for model_id in SCENARIOS:
            print(_row(store, model_id, str(day), state, time.perf_counter() - t))
    most = min(10 * sample_size, examples_per_day)  # max_sample_size's default, or the whole day
    sizes = (
        f"{days} days, {examples_per_day:,} examples a day, a first sample of {sample_size:,}, "
        f"up to {most:,} on a close day"
    )
    every_day = [START + dt.timedelta(days=offset) for offset in range(days)]
    return failed, summary.outcome_table(store, SCENARIOS, every_day, sizes)


def _row(store, model_id: str, day: str, dag_state: str, seconds: float) -> str:
    """The line printed as a day finishes (the outcome table follows at the end)."""
    run = store.day_summary(model_id, day)
    if run is None:
        return f"{day:<11} {model_id:<14} {'-':>8} {'':>20}  {'(no run)':<18} {'-':<11} {'-':<8} {dag_state}"
    dne = "-" if run.dne_pct is None else f"{run.dne_pct:.4f}"
    interval = "" if run.dne_pct is None else f"[{run.dne_pct_lo:.3f}, {run.dne_pct_hi:.3f}]"
    return (
        f"{day:<11} {model_id:<14} {dne:>8} {interval:>20}  {run.status:<18} "
        f"{run.action or '-':<11} {summary.plan_cell(run):<8} {dag_state} ({seconds:.0f} s)"
    )
