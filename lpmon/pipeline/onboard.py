"""Onboarding: a first plan for a model (or for a new snapshot of it), built from the
configured precisions, raised where needed, promoted once validation passes.
"""

from __future__ import annotations

import numpy as np

from lpmon.config import Config
from lpmon.model import Batch, Model
from lpmon.model.snapshot import snapshot_digest
from lpmon.pipeline import export
from lpmon.pipeline.assembly import Ranges, assemble, units
from lpmon.pipeline.context import PLAN_LOCK, begin, day_lock, draw, halves, held_out, load_model, plan_lifecycle
from lpmon.pipeline.fallback import resumable_search
from lpmon.pipeline.lifecycle import Origin, Outcome, group_units
from lpmon.quant import Provenance
from lpmon.store import StateStore

ONBOARDING_WAITS = "onboarding: waiting for evidence"  # how a day without a plan yet begins its message


def onboard(
    config: Config,
    store: StateStore,
    model_id: str,
    model: Model,
    day: str,
    batch: Batch,
    labels: np.ndarray,
    *,
    snapshot_id: str = "",
    replaces: int | None = None,
) -> Outcome:
    """Build, validate and promote a first plan for the model's snapshot: the
    configured precisions (int8 FC layers, `embedding_precision` tables), raised
    where needed, promoted only once the lifecycle's validation passes. Until then
    no quantized plan is made: serving stays fp32, the reference. `replaces`: the
    version a new snapshot's plan replaces (None for a model without a plan)."""
    settings = config.model(model_id)
    n, positives = len(labels), int(labels.sum())
    short = (
        [f"{n:,} labelled examples, fewer than the {settings.min_examples:,} required"]
        if n < settings.min_examples
        else []
    ) + (
        [f"{positives:,} positives, fewer than the {settings.min_positives:,} required"]
        if positives < settings.min_positives
        else []
    )
    if short:
        return Outcome(
            False, None, f"{ONBOARDING_WAITS} ({n:,} examples so far): " + "; ".join(short) + "; serving stays fp32"
        )
    lifecycle = plan_lifecycle(config, store, model_id)
    calibration, evaluation, eval_labels = halves(batch, labels)
    pins = lifecycle.pins()
    start = {
        name: ("int8" if unit.kind == "linear" else settings.embedding_precision) for name, unit in units(model).items()
    } | {n: layer.precision for n, layer in pins.items()}
    ranges = Ranges.calibrate(model, calibration, settings.calibration_method)
    evidence = held_out(settings, model, day, evaluation, eval_labels)
    purpose = f"onboarding {snapshot_id}".strip()
    result, verdict = resumable_search(
        store, model_id, day, purpose, model, ranges, start, evidence, settings, fixed=pins
    )
    quantized = [name for name, p in result.precisions.items() if p != "fp32"]
    if not result.passed or verdict is None or not quantized:
        why = result.reason if not result.passed else "only whole-model fp32 passed"
        return Outcome(False, None, f"{ONBOARDING_WAITS} ({evidence.n:,} examples so far): {why}; serving stays fp32")
    moved = {n: (start[n], p) for n, p in result.precisions.items() if p != start[n]}
    plan = assemble(
        model,
        ranges,
        result.precisions,
        model_id=model_id,
        pinned=pins,
        embedding_layout=settings.embedding_layout,
        provenance=Provenance(
            settings.calibration_method,
            f"{day}: {len(calibration)} examples",
            day,
            f"{purpose}; raised: {'; '.join(group_units(moved)) or 'none'}",
        ),
    )
    return lifecycle.propose(plan, day, Origin.ONBOARD, verdict, expected_active=replaces)


def onboard_once(
    config: Config, store: StateStore, model_id: str, day: str, model: Model, batch: Batch, labels: np.ndarray, **kwargs
) -> Outcome | None:
    """Onboard under the model's plan lock unless a plan is in force by then (another
    run of another day may have onboarded meanwhile); None when one is."""
    with store.db.day_lock(model_id, PLAN_LOCK):
        if store.active_plan(model_id) is not None:
            return None
        return onboard(config, store, model_id, model, day, batch, labels, **kwargs)


def onboard_day(config: Config, model_id: str, day) -> Outcome:
    """Onboard a model from one day's sample (if it has no active plan)."""
    with day_lock(config, model_id, day):
        day, settings, store = begin(config, model_id, day)
        model = load_model(settings)
        active = store.active_plan(model_id)
        outcome = None
        if active is None:
            sample = draw(settings, model, day)
            outcome = onboard_once(config, store, model_id, day, model, sample.batch, sample.labels)
        active = store.active_plan(model_id)
        export.publish(config, store, model_id)
        if outcome is None:
            assert active is not None  # only a model with a plan in force skips onboarding
            return Outcome(
                False,
                active.version,
                f"already onboarded: plan v{active.version} is in force",
                active_version=active.version,
            )
        return outcome


def onboard_snapshot(config: Config, model_id: str, day) -> int | None:
    """A new snapshot landed at the model's snapshot URI (recurring training):
    register it and build, validate and promote a plan for it from the day's
    sample. Once per snapshot (by content hash); returns the active version."""
    with day_lock(config, model_id, day):
        day, settings, store = begin(config, model_id, day)
        snapshot_id = snapshot_digest(settings.snapshot)
        if not store.onboarded_snapshot(model_id, snapshot_id):
            store.register_snapshot(model_id, snapshot_id, settings.snapshot)
            model = load_model(settings)
            sample = draw(settings, model, day)
            with store.db.day_lock(model_id, PLAN_LOCK):
                active = store.active_plan(model_id)
                onboard(
                    config,
                    store,
                    model_id,
                    model,
                    day,
                    sample.batch,
                    sample.labels,
                    snapshot_id=snapshot_id,
                    replaces=active.version if active else None,
                )
        export.publish(config, store, model_id)
        active = store.active_plan(model_id)
        return active.version if active else None
