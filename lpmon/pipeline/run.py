"""One model's day in one process: every step in order, holding the day's lock."""

from __future__ import annotations

import datetime as dt

from lpmon.config import Config
from lpmon.pipeline import order
from lpmon.pipeline.context import day_lock
from lpmon.pipeline.daywork import DayWork, RunResult
from lpmon.pipeline.interrupted import mark_failed
from lpmon.pipeline.steps import (
    compare_step,
    decide_step,
    fallback_step,
    recalibrate_step,
    record_step,
    report_step,
    sample_step,
    score_step,
)

STEPS = ("sample", "score", "compare", "decide", "act", "report")


def run_day(config: Config, model_id: str, day, on_step=None) -> RunResult:
    """One model, one logical date: every step in order, in memory, holding the
    day's lock. on_step(name) is called as each of STEPS starts (progress bars)."""
    with day_lock(config, model_id, day):
        try:
            return _run_day(config, model_id, day, on_step)
        except Exception as err:
            mark_failed(config, model_id, day, err)  # no first run left RUNNING by an error (a full disk)
            raise


def _run_day(config: Config, model_id: str, day, on_step) -> RunResult:
    started = on_step or (lambda name: None)
    work = DayWork(model_id, str(dt.date.fromisoformat(str(day))))
    for name, step in zip(STEPS, (sample_step, score_step, compare_step)):
        started(name)
        step(config, work)
    started("decide")
    branch = decide_step(config, work)
    started("act")
    if branch == "recalibrate":
        if recalibrate_step(config, work):
            fallback_step(config, work)
    else:
        record_step(config, work)
    started("report")
    return report_day(config, work)


def report_day(config: Config, work: DayWork) -> RunResult:
    """The report step, then the later days this day's turn put back (lpmon.pipeline.order),
    judged again in order, each in this process."""
    result = report_step(config, work)
    order.judge_rewound(config, work.context.store, work.model_id, result.logical_date, run_day)
    return result
