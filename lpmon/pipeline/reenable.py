"""Going back to the baseline: after enough healthy days in a row, units serving above
the precisions onboarding or the user chose are tried back at them.
"""

from __future__ import annotations

from lpmon.pipeline.assembly import assemble, unit_precisions
from lpmon.pipeline.context import Day
from lpmon.pipeline.lifecycle import Origin, cooling_units, group_units, reenable_targets, validate
from lpmon.pipeline.recalibrate import provenance_of, ranges_of
from lpmon.policy import Action, Status


def healthy_streak(store, model_id, day, version) -> int:
    """HEALTHY days in a row just before `day` under plan `version`: the streak
    starts when the plan came into force. Reruns see the same history."""
    streak = 0
    for run in reversed(store.runs_before(model_id, day)):
        if run["status"] != Status.HEALTHY.value or run["plan_version"] != version:
            break
        streak += 1
    return streak


def maybe_reenable(d: Day, streak: int) -> None:
    """After enough healthy days in a row, units serving above their baseline (the
    precisions onboarding or the user chose) go back to it, if the candidate passes
    the lifecycle's validation. Pinned and cooling-down units are left alone."""
    work, settings = d.work, d.settings
    baseline = d.lifecycle.baseline()
    if baseline is None or streak < settings.healthy_days_to_reenable:
        return
    plan = d.plan(work.plan_version)
    pins = d.lifecycle.pins()
    cooling = cooling_units(d.lifecycle.promotions(), d.day, settings.cooldown_days)
    targets = reenable_targets(unit_precisions(plan), baseline, pinned=set(pins), cooling=cooling)
    if not targets:
        return
    calibration, _, _ = d.halves()
    fixed = {layer.name: layer for layer in plan.layers if layer.name not in targets} | pins
    moves = {unit: (plan.layer(unit).precision, target) for unit, target in targets.items()}
    lines = "; ".join(group_units(moves))
    candidate = assemble(
        d.model,
        ranges_of(d, calibration),
        dict(unit_precisions(plan), **targets),
        model_id=work.model_id,
        pinned=fixed,
        embedding_layout=settings.embedding_layout,
        provenance=provenance_of(d, len(calibration), f"back to baseline: {lines}"),
    )
    verdict = validate(candidate, d.evidence(), settings.gate_pct)
    if not verdict.passed:
        work.reasons.append(f"after {streak} healthy days, {lines} not re-enabled: {verdict.reason}")
        return
    outcome = d.lifecycle.propose(candidate, d.day, Origin.REENABLE, verdict, expected_active=work.plan_version)
    work.reasons.append(f"after {streak} healthy days, {lines}: {outcome.reason}")
    if outcome.promoted:
        work.action, work.new_plan_version, work.promoted = Action.REENABLE.value, outcome.version, True
