"""
### lpmon_onboard: a first plan for every new model snapshot

Recurring training writes a new snapshot to the model's snapshot URI and emits
an event on the `lpmon_model_snapshot` asset with `{"model_id": ..., "day":
optional}` as its extra. This DAG then builds the snapshot's plan with the
search strategy (calibrate, per-layer sensitivity, fallback ladder), validates
it on held-out traffic, registers and promotes it. Once per snapshot content;
failures are emailed.
"""

from __future__ import annotations

from airflow.sdk import Asset, dag, task

from lpmon.airflow.defaults import airflow_settings, default_args, start_date

SETTINGS = airflow_settings()
MODEL_SNAPSHOT = Asset(name="lpmon_model_snapshot", uri="lpmon://model-snapshot")


@dag(
    dag_id="lpmon_onboard",
    schedule=[MODEL_SNAPSHOT],
    start_date=start_date(SETTINGS),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(SETTINGS),
    tags=["lpmon"],
    doc_md=__doc__,
)
def lpmon_onboard():
    @task
    def onboard(**context) -> list[dict]:
        from lpmon.airflow import tasks as dagtasks

        return dagtasks.onboard_from_events(context)

    onboard()


lpmon_onboard()
