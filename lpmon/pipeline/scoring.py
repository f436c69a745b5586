"""A day's sample scored outside the daily run, as the daily run draws and scores it:
`lpmon score` (fp32 and a plan's predictions, written by lpmon.serving.scores) and the
examples `lpmon plans export --format torchscript` checks its module on."""

from __future__ import annotations

from lpmon.config import Config
from lpmon.model import Model, forward_fp32, forward_quantized
from lpmon.pipeline.context import draw, load_model, open_store
from lpmon.quant import QuantPlan
from lpmon.serving.scores import Scores
from lpmon.traffic import TrafficError, TrafficStore, as_day

PROBE_EXAMPLES = 4096  # what `plans export` checks a TorchScript module on


def plan_in_force(store, model_id: str, day: str) -> int | None:
    """The plan that judged the day (its run's row), else the active plan."""
    run = store.run(model_id, day)
    if run and run["plan_version"]:
        return int(run["plan_version"])
    active = store.active_plan(model_id)
    return active.version if active else None


def scored_by_run(store, model_id: str, day: str) -> int | None:
    """The examples the day's run scored (None: no run recorded them; sample_size then)."""
    run = store.run(model_id, day)
    return run["examples_scored"] if run and run.get("examples_scored") else None


def load_plan(store, model_id: str, version: int) -> QuantPlan:
    record = store.plan_record(model_id, version)
    if record is None:
        raise ValueError(
            f"{model_id}: no plan v{version} (versions: "
            f"{', '.join(f'v{p.version}' for p in store.plans(model_id)) or 'none'})"
        )
    return QuantPlan.from_json(record.plan_json)


def score_day(
    config: Config, model_id: str, day: str, *, plan_version: int | None = None, fp32: bool = False
) -> Scores:
    """The day's sample (as the daily run drew it: every example its looks scored, else
    sample_size) scored by fp32 and by plan `plan_version` (default: the plan in force
    that day; fp32=True: no plan)."""
    day = str(as_day(day))
    settings = config.model(model_id)
    store = open_store(config)
    try:
        size = scored_by_run(store, model_id, day)
    finally:
        store.db.engine.dispose()
    if settings.scorer == "logged":  # nothing to score: serving's two logged predictions, as compared
        if plan_version or fp32:
            raise ValueError(f"{model_id}: a logged-predictions model has no plans: drop --plan / --fp32")
        s = draw(settings, None, day, size)
        return Scores(
            model_id,
            day,
            None,
            s.request_ids,
            s.labels,
            s.predictions[settings.p_ref_column],
            s.predictions[settings.p_q_column],
            logged=True,
        )
    store = open_store(config)
    try:
        if fp32:
            plan = None
        else:
            version = plan_version or plan_in_force(store, model_id, day)
            if version is None:
                raise ValueError(f"{model_id}: no plan in force (serving is fp32): pass --fp32 or --plan V")
            plan = load_plan(store, model_id, version)
    finally:
        store.db.engine.dispose()
    model = load_model(settings)
    sample = draw(settings, model, day, size)
    p_fp32 = forward_fp32(model, sample.batch).probabilities  # the configured back end's
    p_q = p_fp32 if plan is None else forward_quantized(model, sample.batch, plan).probabilities
    return Scores(model_id, day, None if plan is None else plan.version, sample.request_ids, sample.labels, p_fp32, p_q)


def probe_sample(config: Config, model_id: str, model: Model, size: int = PROBE_EXAMPLES):
    """(batch, day) of the latest day's traffic to check an export on; (None, why) without traffic."""
    settings = config.model(model_id)
    try:
        days = TrafficStore(settings.traffic).days()
        if not days:
            return None, "no traffic partitions"
        sample = draw(settings, model, str(days[-1]), size)
    except (OSError, TrafficError) as err:
        return None, str(err)
    return sample.batch, str(days[-1])
