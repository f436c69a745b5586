"""Synthetic worlds configured for the DAG tests, and the store rows they compare."""

from pathlib import Path

from lpmon.store import init_store
from lpmon.demo.world import WorldConfig, write_world


def dag_world(root: Path, scenarios, days: int, store: str | None = None, extra: str = "",
              init: bool = True) -> Path:
    """A synthetic world and its lpmon.toml, sized for DAG tests (small samples, no retries);
    its store created as `lpmon init` does (init=False: left alone, e.g. unreachable)."""
    for scenario in scenarios:
        write_world(root, WorldConfig(scenario, days=days, seed=1, examples_per_day=50_000))
    path = root / "lpmon.toml"
    store = store or f"sqlite:///{root / 'state.db'}"
    header = (f'store = "{store}"\n\n'
              # the worlds drift within days: a 20-day false-alarm budget (see test_pipeline.FAST_ALARMS)
              "[defaults]\nsample_size = 10000\nmin_examples = 1000\nsequential_run_length_days = 20\n"
              'recipients = ["oncall@example.com", "ml-infra@example.com"]\n'
              f"{extra}\n"
              '[airflow]\nstart_date = "2026-11-01"\ntask_retries = 0\nbase_url = "http://airflow.test"\n')
    path.write_text(header + path.read_text().split("\n", 1)[1])
    if init:
        init_store(store)
    return path


def snapshot_rows(store, model_id):
    skip = ("finished_at", "started_at", "created_at", "timings_json", "updated_at", "sent_at")
    return {table: [{k: v for k, v in r.items() if k not in skip} for r in store.rows(table, model_id)]
            for table in ("runs", "run_metrics", "layer_metrics", "decisions", "plans", "calibration_histograms")}
