"""Synthetic worlds configured for the pipeline and DAG tests, and the store rows they compare."""

import datetime as dt
from pathlib import Path

from lpmon.config import load
from lpmon.demo.world import WorldConfig, write_world
from lpmon.store import init_store


def dag_world(root: Path, scenarios, days: int, store: str | None = None, extra: str = "", init: bool = True) -> Path:
    """A synthetic world and its lpmon.toml, sized for DAG tests (small samples, no retries);
    its store created as `lpmon init` does (init=False: left alone, e.g. unreachable)."""
    for scenario in scenarios:
        write_world(root, WorldConfig(scenario, days=days, seed=1, examples_per_day=50_000))
    path = root / "lpmon.toml"
    store = store or f"sqlite:///{root / 'state.db'}"
    header = (
        f'store = "{store}"\n\n'
        # the worlds drift within days: a 20-day false-alarm budget (see FAST_ALARMS)
        "[defaults]\nsample_size = 10000\nmin_examples = 1000\nsequential_run_length_days = 20\n"
        'recipients = ["oncall@example.com", "ml-infra@example.com"]\n'
        f"{extra}\n"
        '[airflow]\nstart_date = "2026-11-01"\ntask_retries = 0\nbase_url = "http://airflow.test"\n'
    )
    path.write_text(header + path.read_text().split("\n", 1)[1])
    if init:
        init_store(store)
    return path


def snapshot_rows(store, model_id):
    skip = ("finished_at", "started_at", "created_at", "timings_json", "updated_at", "sent_at")
    return {
        table: [{k: v for k, v in r.items() if k not in skip} for r in store.rows(table, model_id)]
        for table in ("runs", "run_metrics", "layer_metrics", "decisions", "plans", "calibration_histograms")
    }


START = dt.date(2026, 11, 1)


# The test worlds drift within days: a false-alarm budget of 20 days puts the single
# look at 1.96 standard errors (the single-day 95 % test lpmon used before), so their
# drift is DEGRADED within a test's dozen days. The default budget (1000 days) is
# exercised in test_policy.py and test_evidence_days.py.
FAST_ALARMS = "sequential_run_length_days = 20"


def world(
    tmp_path,
    database_url,
    scenario="gradual_drift",
    days=12,
    per_day=60_000,
    sample=40_000,
    init=True,
    extra=FAST_ALARMS,
):
    write_world(tmp_path, WorldConfig(scenario, days=days, seed=1, examples_per_day=per_day))
    text = (tmp_path / "lpmon.toml").read_text()
    text = f'store = "{database_url}"\n\n[defaults]\nsample_size = {sample}\n{extra}\n\n' + text.split("\n", 1)[1]
    (tmp_path / "lpmon.toml").write_text(text)
    if init:
        init_store(database_url)  # as `lpmon init` does
    return load(tmp_path / "lpmon.toml", environ={})


def day(i):
    return START + dt.timedelta(days=i)
