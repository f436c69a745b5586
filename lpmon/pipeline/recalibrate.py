"""Recalibration: ranges from the day's calibration half merged with stored
statistics, and the proactive recalibration of a healthy model.
"""

from __future__ import annotations

from lpmon.calibrate import STORABLE, from_state, observer
from lpmon.config import Config
from lpmon.model import Batch
from lpmon.pipeline import export
from lpmon.pipeline.assembly import Ranges, assemble, merge_stored, observe, unit_precisions
from lpmon.pipeline.context import Day, begin, day_lock, draw, halves, held_out, load_model, plan_lifecycle
from lpmon.pipeline.lifecycle import Origin, Verdict, cooling_units, significantly_better, validate
from lpmon.quant import Provenance, QuantPlan


def proactive_recalibration(config: Config, model_id: str, day) -> dict:
    """Recalibrate on the day's traffic even when healthy; promote only if the
    candidate passes the lifecycle's validation and is significantly better than
    the plan in force on the same held-out examples. Once per (model, day)."""
    with day_lock(config, model_id, day):
        return _proactive_recalibration(config, model_id, day)


def _proactive_recalibration(config: Config, model_id: str, day) -> dict:
    day, settings, store = begin(config, model_id, day)
    out = {"model": model_id, "day": day, "promoted": False, "new_plan_version": None}
    lifecycle = plan_lifecycle(config, store, model_id)
    earlier = store.plans_of_day(model_id, day, origin=Origin.PROACTIVE.value)
    if earlier:
        export.publish(config, store, model_id)  # a retry after a failed export writes the file
        return dict(
            out, promoted=earlier[0].status != "candidate", new_plan_version=earlier[0].version, reason="done already"
        )
    active_record = store.active_plan(model_id)
    if active_record is None:
        return dict(out, reason="no active plan: onboard the model first")
    active = QuantPlan.from_json(active_record.plan_json)
    pins = lifecycle.pins()
    cooling = cooling_units(lifecycle.promotions(), day, settings.cooldown_days)
    int8 = {layer.name for layer in active.layers if layer.kind == "linear" and layer.precision == "int8"}
    if int8 & cooling:
        return dict(
            out,
            old_plan_version=active_record.version,
            reason=f"cooling down: {', '.join(sorted(int8 & cooling))} changed in the last "
            f"{settings.cooldown_days} days",
        )
    model = load_model(settings)
    sample = draw(settings, model, day)
    calibration, evaluation, labels = halves(sample.batch, sample.labels)
    observers = observe(model, calibration, settings.calibration_method)
    if settings.calibration_method in STORABLE:
        observers = merge_stored(
            observers,
            settings.calibration_method,
            store.calibration_states(model_id, day, settings.calibration_days - 1),
        )
    fixed = {layer.name: layer for layer in active.layers if layer.name not in int8} | pins
    candidate = assemble(
        model,
        Ranges.from_observers(observers),
        unit_precisions(active),
        model_id=model_id,
        pinned=fixed,
        embedding_layout=settings.embedding_layout,
        provenance=Provenance(
            settings.calibration_method, f"{day}: {len(calibration)} examples", day, "proactive recalibration"
        ),
    )
    evidence = held_out(settings, model, day, evaluation, labels)
    verdict = validate(candidate, evidence, settings.gate_pct)
    if verdict.passed:
        better, versus = significantly_better(candidate, active, evidence)
        if not better:
            verdict = Verdict(
                False,
                f"{verdict.reason}, but not significantly better than plan "
                f"v{active_record.version} ({versus.dne_pct:.4f} % [{versus.dne_pct_lo:.4f}, "
                f"{versus.dne_pct_hi:.4f}] relative to it)",
                verdict.n,
            )
    outcome = lifecycle.propose(candidate, day, Origin.PROACTIVE, verdict, expected_active=active_record.version)
    if outcome.promoted:
        export.publish(config, store, model_id)
    return dict(
        out,
        promoted=outcome.promoted,
        new_plan_version=outcome.version if outcome.promoted else None,
        old_plan_version=active_record.version,
        reason=outcome.reason,
    )


def ranges_of(d: Day, calibration: Batch) -> Ranges:
    """Ranges from today's calibration half, merged with the stored statistics
    of the previous calibration_days - 1 days (no re-scoring of old traffic)."""
    method, work = d.settings.calibration_method, d.work
    if not work.calibration:  # a method without storable state (mse)
        return Ranges.calibrate(d.model, calibration, method)
    today = {name: from_state(state, lambda: observer(method)) for name, state in work.calibration.items()}
    earlier = d.store.calibration_states(work.model_id, d.day, d.settings.calibration_days - 1)
    return Ranges.from_observers(merge_stored(today, method, earlier))


def provenance_of(d: Day, examples: int, note: str = "") -> Provenance:
    days = d.settings.calibration_days
    source = f"{d.day}: {examples} examples" + (
        f" + stored statistics of up to {days - 1} earlier days" if days > 1 else ""
    )
    return Provenance(d.settings.calibration_method, source, d.day, note)
