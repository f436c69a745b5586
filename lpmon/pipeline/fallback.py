"""The fallback search (lpmon.pipeline.search) as the pipeline runs it: with the
lifecycle's validation, its progress saved after every round, an interrupted one resumed.
"""

from __future__ import annotations

import json


from lpmon.config import ModelSettings
from lpmon.model import Model
from lpmon.pipeline.evidence import HeldOut
from lpmon.pipeline.lifecycle import (Verdict, validate)
from lpmon.pipeline.assembly import Ranges, assemble, units
from lpmon.pipeline.search import SearchResult, Step, fallback_search
from lpmon.quant import QuantPlan
from lpmon.store import StateStore



def resumable_search(store: StateStore, model_id: str, day: str, purpose: str, model: Model, ranges: Ranges,
            start: dict[str, str], evidence: HeldOut, settings: ModelSettings, *, fixed: dict,
            active: QuantPlan | None = None, active_over_gate: bool = False, creep: bool = False) -> tuple[SearchResult, Verdict | None]:
    """The fallback search over this model's units (lpmon.pipeline.search) with the lifecycle's
    validation; saves its progress after every round and resumes an interrupted one."""
    all_units = units(model)
    verdicts: dict[tuple, Verdict] = {}
    scores: dict[tuple, float] = {}

    def plan_of(precisions):
        return assemble(model, ranges, precisions, model_id=model_id, pinned=fixed)

    def score(precisions):
        key = tuple(sorted(precisions.items()))
        if key not in scores:
            scores[key] = evidence.kl_gap(plan_of(precisions))
        return scores[key]

    def accept(precisions):
        key = tuple(sorted(precisions.items()))
        if key not in verdicts:
            verdicts[key] = validate(plan_of(precisions), evidence, settings.gate_pct, active=active,
                                     active_over_gate=active_over_gate)
        return verdicts[key]

    saved, resume = store.fallback_progress(model_id, day), None
    if saved and saved["state"].get("purpose") == purpose and saved["state"].get("start") == start:
        try:
            resume = (saved["best"], [Step(**step) for step in saved["state"]["steps"]])
        except TypeError:
            resume = None  # saved by an older lpmon: start afresh

    def save(progress):
        store.record_fallback_progress(model_id, day, len(progress.steps),
                                       json.dumps(progress.precisions, sort_keys=True),
                                       json.dumps({"purpose": purpose, "start": start,
                                                   "steps": [s.__dict__ for s in progress.steps]},
                                                  sort_keys=True))

    result = fallback_search(start, units=all_units, score=score, accept=accept, target=settings.gate_pct,
                             frozen=set(fixed), creep=creep, on_step=save, resume=resume)
    return result, verdicts.get(tuple(sorted(result.precisions.items())))


def whole_model_fp32(model: Model, fixed: dict) -> dict[str, str]:
    """Whole-model fp32, but for the fixed (pinned) layers."""
    return {name: "fp32" for name in units(model) if name not in fixed} | {n: layer.precision
                                                                         for n, layer in fixed.items()}
