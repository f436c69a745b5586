"""
### lpmon_recalibrate: proactive recalibration, weekly by default

For each model in the lpmon config: calibrate fresh activation ranges on the
last complete day's traffic (merged with the stored statistics of the previous
`calibration_days` days), validate the candidate on held-out examples, and
promote it only if it holds the gate and beats the active plan; a promotion is
emailed and announced on the `lpmon_plan_promoted` asset. Schedule:
`[airflow] recalibrate_schedule` in the lpmon config, as data intervals: the
run for a week starts once the week has ended and calibrates on its last day
(or on the `day` param).
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from lpmon.airflow.defaults import PLAN_PROMOTED, airflow_settings, default_args, start_date, timetable

SETTINGS = airflow_settings()
EACH_MODEL = "{{ lpmon_model | default('') }}"  # map indexes show model names (see dagtasks.label)


@dag(
    dag_id="lpmon_recalibrate",
    schedule=timetable(SETTINGS.recalibrate_schedule, SETTINGS),
    start_date=start_date(SETTINGS),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(SETTINGS),
    params={
        "day": Param(
            "", type="string", pattern=r"^(\d{4}-\d{2}-\d{2})?$", description="calibrate on this day (YYYY-MM-DD)"
        )
    },
    tags=["lpmon"],
    doc_md=__doc__,
)
def lpmon_recalibrate():
    @task
    def models(**context) -> list[str]:
        from lpmon.airflow import tasks as dagtasks

        return dagtasks.models(context, dagtasks.last_day_of(context, SETTINGS.timezone))

    @task(map_index_template=EACH_MODEL)
    def recalibrate(model_id: str, **context) -> dict:
        from lpmon.airflow import tasks as dagtasks

        return dagtasks.proactive_recalibration(model_id, context)

    @task(outlets=[PLAN_PROMOTED], map_index_template=EACH_MODEL)
    def publish(result: dict, **context) -> dict:
        from lpmon.airflow import tasks as dagtasks

        return dagtasks.publish(result, context, PLAN_PROMOTED)

    publish.expand(result=recalibrate.expand(model_id=models()))


lpmon_recalibrate()
