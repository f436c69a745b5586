"""The fallback search (lpmon.pipeline.search) as the pipeline runs it: with the
lifecycle's validation, its progress saved after every round, an interrupted one resumed.

Saved progress (the store's fallback_progress row): `step` is the number of moves
made so far, `best_plan_json` the precisions reached, and `state_json`
{"purpose", "start", "steps": [move, ...]}, each move a Move's fields (the key
"steps" is the stored format's name for the moves, kept so that any lpmon can
resume any other's search).
"""

from __future__ import annotations

import dataclasses
import json

from lpmon.config import ModelSettings
from lpmon.model import Model
from lpmon.pipeline.assembly import Ranges, assemble, units
from lpmon.pipeline.evidence import HeldOut
from lpmon.pipeline.lifecycle import Verdict, validate
from lpmon.pipeline.search import Move, SearchResult, fallback_search
from lpmon.quant import QuantPlan
from lpmon.store import StateStore

SAVED_MOVES = "steps"  # state_json's key for the moves (see above)


def resumable_search(
    store: StateStore,
    model_id: str,
    day: str,
    purpose: str,
    model: Model,
    ranges: Ranges,
    start: dict[str, str],
    evidence: HeldOut,
    settings: ModelSettings,
    *,
    fixed: dict,
    active: QuantPlan | None = None,
    active_over_gate: bool = False,
    creep: bool = False,
) -> tuple[SearchResult, Verdict | None]:
    """The fallback search over this model's units (lpmon.pipeline.search) with the lifecycle's
    validation; saves its progress after every round and resumes an interrupted one."""
    verdicts: dict[tuple, Verdict] = {}
    scores: dict[tuple, float] = {}

    def plan_of(precisions):
        return assemble(
            model, ranges, precisions, model_id=model_id, pinned=fixed, embedding_layout=settings.embedding_layout
        )

    def score(precisions):
        key = tuple(sorted(precisions.items()))
        if key not in scores:
            scores[key] = evidence.kl_gap(plan_of(precisions))
        return scores[key]

    def accept(precisions):
        key = tuple(sorted(precisions.items()))
        if key not in verdicts:
            verdicts[key] = validate(
                plan_of(precisions), evidence, settings.gate_pct, active=active, active_over_gate=active_over_gate
            )
        return verdicts[key]

    def save(progress: SearchResult):
        store.record_fallback_progress(
            model_id,
            day,
            len(progress.moves),
            json.dumps(progress.precisions, sort_keys=True),
            saved_state(purpose, start, progress.moves),
        )

    result = fallback_search(
        start,
        units=units(model, settings.embedding_layout),
        score=score,
        accept=accept,
        target=settings.gate_pct,
        frozen=set(fixed),
        creep=creep,
        on_step=save,
        resume=resumed(store.fallback_progress(model_id, day), purpose, start),
    )
    return result, verdicts.get(tuple(sorted(result.precisions.items())))


def saved_state(purpose: str, start: dict[str, str], moves: list[Move]) -> str:
    """The state_json a search's progress is saved with."""
    return json.dumps(
        {"purpose": purpose, "start": start, SAVED_MOVES: [dataclasses.asdict(move) for move in moves]}, sort_keys=True
    )


def resumed(saved: dict | None, purpose: str, start: dict[str, str]) -> tuple[dict[str, str], list[Move]] | None:
    """(precisions, moves) to resume from, if `saved` (StateStore.fallback_progress) is
    the progress of this very search (same purpose, same start); otherwise None."""
    if not saved or saved["state"].get("purpose") != purpose or saved["state"].get("start") != start:
        return None
    try:
        return saved["best"], [Move(**move) for move in saved["state"][SAVED_MOVES]]
    except (KeyError, TypeError):
        return None  # saved by an older lpmon: start afresh


def whole_model_fp32(model: Model, fixed: dict) -> dict[str, str]:
    """Whole-model fp32, but for the fixed (pinned) layers."""
    return {name: "fp32" for name in units(model) if name not in fixed} | {
        n: layer.precision for n, layer in fixed.items()
    }
