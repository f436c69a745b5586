"""The bodies of lpmon_monitor's split-sampling tasks (sample_groups, sample_part):
the run key from the context, then lpmon.pipeline.split_day."""

from __future__ import annotations

from lpmon.airflow import tasks as dagtasks
from lpmon.pipeline import split_day


def groups(model_ids: list[str], context) -> list[dict]:
    """sample_part's arguments ({model_id, group}) for every model whose day is split."""
    cfg = dagtasks.config()
    day = dagtasks.day_of(context, cfg.airflow.timezone)
    return [{"model_id": m, "group": g} for m in model_ids for g in range(split_day.plan(cfg, m, day))]


def part(model_id: str, group: int, context) -> dict:
    dagtasks.label(f"{model_id} #{group}")
    cfg = dagtasks.config()
    return split_day.draw_group(cfg, model_id, dagtasks.day_of(context, cfg.airflow.timezone), group)
