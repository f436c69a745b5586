"""
### lpmon_monitor: the daily accuracy check of every quantized model

For each model in the lpmon config (one mapped task group per model): sample the
day's labelled traffic, score it with the fp32 model and the plan in force,
compare, decide, then record (healthy), or recalibrate (and, if the candidate
does not hold, fall back to higher precision for the most sensitive layers);
report the day to the store and as an HTML file; email the events; announce a
promoted plan on the `lpmon_plan_promoted` asset.

The day monitored is the run's data interval: the run for D covers [D 00:00,
D+1 00:00) in `[airflow] timezone` and starts once D has ended; a backfill
from D1 to D2 monitors D1..D2; a manual run monitors the `day` param, else the
last complete day. A model's days are judged in order, whatever runs them:
each run first takes its `turn` (a reschedule-mode sensor: no worker held)
once no earlier run of this DAG is queued or running, so a backfill of any
width, catchup and reruns give the rows one serial pass gives (the store
enforces the same order on any run: lpmon.pipeline.order). With `[airflow]
partition_wait_s`, each model then waits (a reschedule-mode sensor) for its
partition's marker file; past the wait the day is INSUFFICIENT_DATA, alerted,
and the run still succeeds. Config: the `lpmon_config` Variable or
`$LPMON_CONFIG`.

A day of more than `sample_split_rows` rows (and its partition complete) is
sampled per file group first: sample_groups plans them, one sample_part task
per group draws its candidates on any worker, and the model's sample task
merges them exactly (the same sample as one task would draw).
"""

from __future__ import annotations

from airflow.sdk import Param, PokeReturnValue, TriggerRule, dag, task, task_group

from lpmon.airflow.defaults import PLAN_PROMOTED, airflow_settings, catchup, default_args, start_date, timetable

SETTINGS = airflow_settings()
EACH_MODEL = "{{ lpmon_model | default('') }}"  # map indexes show model names (see dagtasks.label)
# How often and how long a day waits for the earlier runs: a week lets a backfill of some 500 days
# at 20 minutes a day go through; an earlier run stuck longer fails the later ones, which say so.
TURN_POKE_S, TURN_WAIT_S = 30, 7 * 24 * 3600


@dag(
    dag_id="lpmon_monitor",
    schedule=timetable(SETTINGS.monitor_schedule, SETTINGS),
    start_date=start_date(SETTINGS),
    catchup=catchup(SETTINGS),
    max_active_runs=1,
    default_args=default_args(SETTINGS),
    params={
        "day": Param(
            "",
            type="string",
            pattern=r"^(\d{4}-\d{2}-\d{2})?$",
            description="monitor this day (YYYY-MM-DD) instead of the run's",
        )
    },
    tags=["lpmon"],
    doc_md=__doc__,
)
def lpmon_monitor():
    # One sensor per run, not per model: every waiting poke is a task process, and a wide
    # backfill's runs all wait at once (three per run made the waits cost more than the days).
    @task.sensor(mode="reschedule", poke_interval=TURN_POKE_S, timeout=TURN_WAIT_S)
    def turn(**context) -> bool:
        from lpmon.airflow import order

        return order.turn_ready(context)

    @task
    def models(**context) -> list[str]:
        from lpmon.airflow import tasks as dagtasks

        return dagtasks.models(context)

    @task_group(group_id="monitor")
    def monitor(model_id: str):
        @task.sensor(
            mode="reschedule",
            poke_interval=SETTINGS.partition_poke_s,
            timeout=SETTINGS.partition_wait_s + 2 * SETTINGS.partition_poke_s + 3600,
            map_index_template=EACH_MODEL,
        )
        def partition(model_id: str, **context) -> PokeReturnValue:
            from lpmon.airflow import tasks as dagtasks

            done, value = dagtasks.partition_ready(model_id, context)
            return PokeReturnValue(is_done=done, xcom_value=value)

        @task(trigger_rule=TriggerRule.NONE_FAILED, map_index_template=EACH_MODEL)  # (no parts: skipped)
        def sample(model_id: str, ready: dict, **context) -> dict:
            from lpmon.airflow import tasks as dagtasks

            return dagtasks.sample(model_id, context, ready)

        @task(map_index_template=EACH_MODEL)
        def score(model_id: str, **context) -> dict:
            from lpmon.airflow import tasks as dagtasks

            return dagtasks.score(model_id, context)

        @task(map_index_template=EACH_MODEL)
        def compare(model_id: str, **context) -> dict:
            from lpmon.airflow import tasks as dagtasks

            return dagtasks.compare(model_id, context)

        @task.branch(map_index_template=EACH_MODEL)
        def decide(model_id: str, **context) -> str:
            from lpmon.airflow import tasks as dagtasks

            return f"monitor.{dagtasks.decide(model_id, context)}"

        @task(map_index_template=EACH_MODEL)
        def record(model_id: str, **context) -> dict:
            from lpmon.airflow import tasks as dagtasks

            return dagtasks.record(model_id, context)

        @task.branch(map_index_template=EACH_MODEL)
        def recalibrate(model_id: str, **context) -> list[str]:
            from lpmon.airflow import tasks as dagtasks

            if dagtasks.recalibrate(model_id, context):
                return ["monitor.fallback", "monitor.report"]
            return ["monitor.report"]

        @task(map_index_template=EACH_MODEL)
        def fallback(model_id: str, **context) -> dict:
            from lpmon.airflow import tasks as dagtasks

            return dagtasks.fallback(model_id, context)

        @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, map_index_template=EACH_MODEL)
        def report(model_id: str, **context) -> dict:
            from lpmon.airflow import tasks as dagtasks

            return dagtasks.report(model_id, context)

        @task(map_index_template=EACH_MODEL)
        def alert(model_id: str, **context) -> dict:
            from lpmon.airflow import tasks as dagtasks

            return dagtasks.alert(model_id, context)

        @task(outlets=[PLAN_PROMOTED], map_index_template=EACH_MODEL)
        def publish(result: dict, **context) -> dict:
            from lpmon.airflow import tasks as dagtasks

            return dagtasks.publish(result, context, PLAN_PROMOTED)

        drawn = sample(model_id, partition(model_id))
        parts >> drawn  # the day's file groups (of every model), when split
        decided = drawn >> score(model_id) >> compare(model_id) >> decide(model_id)
        recorded, recalibrated, fell_back, reported = (
            record(model_id),
            recalibrate(model_id),
            fallback(model_id),
            report(model_id),
        )
        decided >> [recorded, recalibrated]
        recalibrated >> [fell_back, reported]
        [recorded, fell_back] >> reported
        reported >> alert(model_id)
        publish(reported)

    @task
    def sample_groups(model_ids: list[str], **context) -> list[dict]:
        from lpmon.airflow import sampling

        return sampling.groups(model_ids, context)

    @task(map_index_template=EACH_MODEL)
    def sample_part(model_id: str, group: int, **context) -> dict:
        from lpmon.airflow import sampling

        return sampling.part(model_id, group, context)

    names = models()
    turn() >> names
    # A day above sample_split_rows: one sample_part per file group (mapping inside the
    # mapped group is not supported), merged by the model's sample task.
    parts = sample_part.expand_kwargs(sample_groups(names))
    monitor.expand(model_id=names)


lpmon_monitor()
