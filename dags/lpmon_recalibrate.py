"""
### lpmon_recalibrate: proactive recalibration, weekly by default

For each model in the lpmon config: calibrate fresh activation ranges on the
last complete day's traffic (merged with the stored statistics of the previous
`calibration_days` days), validate the candidate on held-out examples, and
promote it only if it holds the gate and beats the active plan; a promotion is
emailed. Schedule: `[airflow] recalibrate_schedule` in the lpmon config.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from lpmon.config import airflow_settings  # stdlib only: reads the [airflow] table
from lpmon.dagdefaults import default_args

SETTINGS = airflow_settings()


@dag(
    dag_id="lpmon_recalibrate",
    schedule=SETTINGS.recalibrate_schedule,
    start_date=pendulum.parse(SETTINGS.start_date, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(SETTINGS),
    params={"day": Param("", type="string", description="calibrate on this day (YYYY-MM-DD)")},
    tags=["lpmon"],
    doc_md=__doc__,
)
def lpmon_recalibrate():
    @task
    def models() -> list[str]:
        from lpmon import dagtasks

        return dagtasks.models()

    @task(map_index_template="{{ model_id }}")
    def recalibrate(model_id: str, **context) -> dict:
        from lpmon import dagtasks

        return dagtasks.proactive_recalibration(model_id, context)

    recalibrate.expand(model_id=models())


lpmon_recalibrate()
