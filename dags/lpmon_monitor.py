"""
### lpmon_monitor: the daily accuracy check of every quantized model

For each model in the lpmon config (one mapped task group per model): sample the
day's labelled traffic, score it with the fp32 model and the plan in force,
compare, decide, then record (healthy), or recalibrate (and, if the candidate
does not hold, fall back to higher precision for the most sensitive layers);
report the day to the store and as an HTML file; email the events.

The day monitored is the run's logical date (manual runs without one: the last
complete day, or the `day` param). Runs never overlap (max_active_runs=1), so a
model's days are processed in order; catchup and backfills give the same rows
as the daily runs did. Config: the `lpmon_config` Variable or `$LPMON_CONFIG`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, TriggerRule, dag, task, task_group

from lpmon.config import airflow_settings  # stdlib only: reads the [airflow] table
from lpmon.dagdefaults import default_args

SETTINGS = airflow_settings()


@dag(
    dag_id="lpmon_monitor",
    schedule=SETTINGS.monitor_schedule,
    start_date=pendulum.parse(SETTINGS.start_date, tz="UTC"),
    catchup=SETTINGS.monitor_catchup,
    max_active_runs=1,
    default_args=default_args(SETTINGS),
    params={"day": Param("", type="string", description="monitor this day (YYYY-MM-DD) instead of the run's")},
    tags=["lpmon"],
    doc_md=__doc__,
)
def lpmon_monitor():
    @task
    def models() -> list[str]:
        from lpmon import dagtasks

        return dagtasks.models()

    @task_group(group_id="monitor")
    def monitor(model_id: str):
        @task
        def sample(model_id: str, **context) -> dict:
            from lpmon import dagtasks

            return dagtasks.sample(model_id, context)

        @task
        def score(model_id: str, **context) -> dict:
            from lpmon import dagtasks

            return dagtasks.score(model_id, context)

        @task
        def compare(model_id: str, **context) -> dict:
            from lpmon import dagtasks

            return dagtasks.compare(model_id, context)

        @task.branch
        def decide(model_id: str, **context) -> str:
            from lpmon import dagtasks

            return f"monitor.{dagtasks.decide(model_id, context)}"

        @task
        def record(model_id: str, **context) -> dict:
            from lpmon import dagtasks

            return dagtasks.record(model_id, context)

        @task.branch
        def recalibrate(model_id: str, **context) -> list[str]:
            from lpmon import dagtasks

            if dagtasks.recalibrate(model_id, context):
                return ["monitor.fallback", "monitor.report"]
            return ["monitor.report"]

        @task
        def fallback(model_id: str, **context) -> dict:
            from lpmon import dagtasks

            return dagtasks.fallback(model_id, context)

        @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
        def report(model_id: str, **context) -> dict:
            from lpmon import dagtasks

            return dagtasks.report(model_id, context)

        @task
        def alert(model_id: str, **context) -> dict:
            from lpmon import dagtasks

            return dagtasks.alert(model_id, context)

        decided = sample(model_id) >> score(model_id) >> compare(model_id) >> decide(model_id)
        recorded, recalibrated, fell_back, reported = (record(model_id), recalibrate(model_id),
                                                       fallback(model_id), report(model_id))
        decided >> [recorded, recalibrated]
        recalibrated >> [fell_back, reported]
        [recorded, fell_back] >> reported
        reported >> alert(model_id)

    monitor.expand(model_id=models())


lpmon_monitor()
