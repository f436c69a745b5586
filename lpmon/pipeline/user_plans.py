"""Plans a user deploys: import one, promote it (through the lifecycle's
validation unless forced, which is recorded as such), and pin layers so that
lpmon never changes them. The CLI's `lpmon plans import|promote|pin|unpin`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from pathlib import Path

from lpmon.config import Config
from lpmon.model.spec import ModelSpec
from lpmon.pipeline import export
from lpmon.pipeline.context import PLAN_LOCK, begin, day_lock, draw, halves, held_out, load_model, plan_lifecycle
from lpmon.pipeline.lifecycle import Origin, Outcome, validate
from lpmon.policy import Status
from lpmon.quant import PlanError, QuantPlan

MAX_PLAN_BYTES = 64 << 20


def read_plan(path: Path, model_id: str, spec: ModelSpec) -> QuantPlan:
    """A plan file, checked like any plan and against the model's layers."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: not a plan file")
    if path.stat().st_size > MAX_PLAN_BYTES:
        raise ValueError(f"{path}: over {MAX_PLAN_BYTES >> 20} MiB: not a plan")
    try:
        plan = QuantPlan.from_json(path.read_text())
    except (PlanError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: {err}") from None
    except RecursionError:  # json.loads of thousands of nested brackets
        raise ValueError(f"{path}: not a plan: its JSON is nested too deeply") from None
    if plan.model_id != model_id:
        raise ValueError(
            f"{path}: the plan is for model {plan.model_id!r}, not {model_id}: import it under its own model"
        )
    expected = {name: "linear" for name, _, _ in spec.linear_layers()} | {
        f"emb_l.{t}": "embedding" for t in range(len(spec.tables))
    }
    given = {layer.name: layer.kind for layer in plan.layers}
    missing, unknown = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    if missing or unknown:
        raise ValueError(
            f"{path}: the plan does not fit {model_id}'s layers"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(unknown)}" if unknown else "")
        )
    wrong = sorted(name for name, kind in given.items() if expected[name] != kind)
    if wrong:
        raise ValueError(f"{path}: layers {', '.join(wrong)} have the wrong kind for {model_id}")
    return replace(plan, model_id=model_id, version=1)


@dataclass(frozen=True)
class Imported:
    """Where an imported plan went: a new candidate, or the stored plan it is identical to."""

    version: int
    status: str  # the stored plan's status: candidate, active or retired
    stored: bool  # False: identical to a plan stored before, nothing new stored


def import_plan(config: Config, model_id: str, path: Path) -> Imported:
    """Store a user's plan as a new candidate (not active), unless it is identical to a stored one."""
    day, settings, store = begin(config, model_id, dt.date.today())
    plan = read_plan(path, model_id, ModelSpec.load(Path(settings.snapshot) / "spec.json"))
    before = {record.version for record in store.plans(model_id)}
    version = plan_lifecycle(config, store, model_id).store_candidate(plan, day, Origin.USER)
    record = store.plan_record(model_id, version)
    assert record is not None  # stored just now, or found identical to a stored plan
    return Imported(version, record.status, version not in before)


def promote_plan(config: Config, model_id: str, version: int, *, day=None, force: bool = False) -> Outcome:
    """Put plan `version` in force. Unless forced, it must pass the lifecycle's
    validation on the held-out examples of `day` (default: the last day run)."""
    _, settings, store = begin(config, model_id, dt.date.today())
    lifecycle = plan_lifecycle(config, store, model_id)
    candidate = lifecycle.plan(version)
    if day is None and not force:
        last = store.latest_day(model_id)
        if last is None:
            raise ValueError(f"{model_id} has no runs yet: say which day's traffic validates the plan (--date)")
        day = last.day
    day = str(dt.date.fromisoformat(str(day or dt.date.today())))
    with day_lock(config, model_id, day), store.db.day_lock(model_id, PLAN_LOCK):
        record = store.active_plan(model_id)
        if record is not None and record.version == version:
            return Outcome(
                False, version, f"plan v{version} is already in force: nothing to change", active_version=version
            )
        active = lifecycle.active()
        verdict = None
        if not force:
            model = load_model(settings)
            sample = draw(settings, model, day)
            _, evaluation, labels = halves(sample.batch, sample.labels)
            run = store.run(model_id, day)
            over = run is not None and run["status"] == Status.DEGRADED.value
            verdict = validate(
                candidate,
                held_out(settings, model, day, evaluation, labels),
                settings.gate_pct,
                active=active,
                active_over_gate=over,
            )
        record = store.active_plan(model_id)
        outcome = lifecycle.propose(
            candidate,
            day,
            Origin.USER,
            verdict,
            forced=force,
            stored=version,
            expected_active=record.version if record else None,
        )
        if outcome.promoted:
            export.publish(config, store, model_id)
        return outcome
