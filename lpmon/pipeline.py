"""The daily job, as plain functions of (model, logical date). The DAGs only call these.

run_day: sample -> score (fp32 and the plan in force) -> compare -> decide ->
record; a DEGRADED day recalibrates on the calibration half of the sample and
validates on the evaluation half; a candidate that does not beat the gate and
the active plan hands over to the fallback search. A model without an active
plan is onboarded from the day's sample first.

Idempotent: the plan in force for a day is the one its first run used (kept
on the run's row), candidate plans are stored once per (model, day, plan),
and promotion is a compare-and-swap that treats "already active" as done. A
rerun of a day, or a backfill, leaves the same rows.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lpmon.config import Config, ModelSettings
from lpmon.metrics import compare
from lpmon.model import Batch, Model, forward_fp32, forward_quantized
from lpmon.model.spec import SpecError
from lpmon.policy import (Action, DataRequirement, Gate, Status, accept_candidate, assess,
                          layers_to_retry)
from lpmon.quant import Provenance, QuantPlan
from lpmon.search import EMBEDDINGS, Ranges, assemble, evaluate, fallback_search
from lpmon.store import Database, StateStore
from lpmon.traffic import EmptyDay, MissingDay, TrafficError, TrafficSchema, TrafficStore
from lpmon.traffic import sample as draw_sample


SQNR_EXAMPLES = 4096  # one forward chunk: enough for a per-layer SQNR, small in memory


@dataclass(frozen=True)
class RunResult:
    model_id: str
    logical_date: str
    status: str
    action: str
    message: str
    plan_version: int | None
    new_plan_version: int | None = None
    dne_pct: float | None = None


def open_store(config: Config) -> StateStore:
    db = Database(config.store)
    db.migrate()
    return StateStore(db)


def _unit_precisions(plan: QuantPlan) -> dict[str, str]:
    units = {layer.name: layer.precision for layer in plan.layers if layer.kind == "linear"}
    embedding = {layer.precision for layer in plan.layers if layer.kind == "embedding"}
    units[EMBEDDINGS] = embedding.pop() if len(embedding) == 1 else "fp32"
    return units


def _halves(batch: Batch, labels: np.ndarray):
    """Calibration and evaluation halves: alternate rows of the hash-ordered sample."""
    rows = np.arange(len(labels))
    return batch.take(rows[0::2]), batch.take(rows[1::2]), labels[1::2]


def _export(config: Config, model_id: str, plan: QuantPlan) -> Path:
    """The active plan as JSON for serving, at a stable path, replaced atomically."""
    folder = config.plans_dir / model_id
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".json") as tmp:
        tmp.write(plan.to_json())
    os.replace(tmp.name, folder / "active.json")
    return folder / "active.json"


def _search(model, settings, calibration, evaluation, labels, start, store, model_id, day):
    ranges = Ranges.calibrate(model, calibration, settings.calibration_method)

    def save(progress):  # the best plan so far, step by step
        store.record_fallback_progress(model_id, day, len(progress.steps),
                                       json.dumps(progress.precisions, sort_keys=True),
                                       json.dumps([s.__dict__ for s in progress.steps]))

    result = fallback_search(model, ranges, evaluation, labels, gate_pct=settings.gate_pct, start=start,
                             ladder=settings.fallback_ladder, costs=settings.precision_cost, on_step=save)
    return ranges, result


def onboard(config: Config, store: StateStore, model_id: str, model: Model, day: str,
            batch: Batch, labels: np.ndarray) -> int:
    """Build, validate and promote the first plan (int8, falling back where needed)."""
    settings = config.model(model_id)
    calibration, evaluation, eval_labels = _halves(batch, labels)
    start = {name: "int8" for name, _, _ in model.spec.linear_layers()}
    start[EMBEDDINGS] = settings.embedding_precision
    ranges, result = _search(model, settings, calibration, evaluation, eval_labels, start, store, model_id, day)
    plan = assemble(model, ranges, result.precisions, model_id=model_id, version=1,
                    provenance=Provenance(settings.calibration_method, f"{day}: {len(labels)} examples", day,
                                          f"onboarding; moved: {', '.join(result.moved) or 'none'}"))
    version = store.add_plan(model_id, plan.to_json(), day, reason="onboarding")
    store.promote(model_id, version, expected_active=None)
    return version


def _begin(config: Config, model_id: str, day) -> tuple[str, ModelSettings, StateStore]:
    """The ISO day, the model's settings, and the store with the model registered."""
    day = str(dt.date.fromisoformat(str(day)))
    settings = config.model(model_id)
    store = open_store(config)
    store.register_model(model_id, {"traffic": settings.traffic, "snapshot": settings.snapshot})
    return day, settings, store


def _draw(settings: ModelSettings, model: Model, day: str):
    return draw_sample(TrafficStore(settings.traffic), day, settings.sample_size, settings.sample_seed,
                       TrafficSchema.for_model(model.spec))


def onboard_day(config: Config, model_id: str, day) -> int:
    """Onboard a model from one day's sample (if it has no active plan); returns the active version."""
    day, settings, store = _begin(config, model_id, day)
    active = store.active_plan(model_id)
    if active is not None:
        return active.version
    model = Model.load(settings.snapshot)
    sample = _draw(settings, model, day)
    onboard(config, store, model_id, model, day, sample.batch, sample.labels)
    active = store.active_plan(model_id)
    _export(config, model_id, QuantPlan.from_json(active.plan_json))
    return active.version


def plan_diff(old: QuantPlan, new: QuantPlan) -> list[str]:
    """Layer by layer, what changed between two plans (precision, range, scale)."""
    lines = []
    names = sorted({layer.name for layer in old.layers} | {layer.name for layer in new.layers})
    for name in names:
        a = next((layer for layer in old.layers if layer.name == name), None)
        b = next((layer for layer in new.layers if layer.name == name), None)
        if a is None or b is None:
            lines.append(f"{name}: {'added' if a is None else 'removed'}")
            continue
        if a.precision != b.precision:
            lines.append(f"{name}: precision {a.precision} -> {b.precision}")
        if a.activation and b.activation and a.activation != b.activation:
            lines.append(f"{name}: range [{a.activation.lo:.6g}, {a.activation.hi:.6g}] -> "
                         f"[{b.activation.lo:.6g}, {b.activation.hi:.6g}], scale {a.activation.scale:.6g} -> "
                         f"{b.activation.scale:.6g}")
    return lines


def run_day(config: Config, model_id: str, day) -> RunResult:
    """One model, one logical date: the whole daily job (see the module docstring)."""
    day, settings, store = _begin(config, model_id, day)
    timings, started = {}, time.perf_counter()
    try:
        model = Model.load(settings.snapshot)
    except (SpecError, OSError) as err:
        return _record_failure(store, model_id, day, "failed", f"model snapshot: {err}")
    try:
        sample = _draw(settings, model, day)
    except (MissingDay, EmptyDay) as err:
        return _record_failure(store, model_id, day, Status.INSUFFICIENT_DATA.value, str(err))
    except TrafficError as err:
        return _record_failure(store, model_id, day, "failed", str(err))
    timings["sample_s"] = round(time.perf_counter() - started, 3)

    previous = [r for r in store.rows("runs", model_id) if r["logical_date"] == day and r["plan_version"]]
    active = store.active_plan(model_id)
    if active is None:
        onboard(config, store, model_id, model, day, sample.batch, sample.labels)
        active = store.active_plan(model_id)
    version = previous[0]["plan_version"] if previous else active.version
    plan_row = next(r for r in store.rows("plans", model_id) if r["version"] == version)
    plan = QuantPlan.from_json(plan_row["plan_json"])

    t = time.perf_counter()
    fp32 = forward_fp32(model, sample.batch)
    quant = forward_quantized(model, sample.batch, plan)   # saturation counted over every example
    timings["score_s"] = round(time.perf_counter() - t, 3)
    comparison = _compare_or_none(fp32.probabilities, quant.probabilities, sample.labels,
                                  settings.level)
    assessment = assess(comparison, Gate(settings.gate_pct),
                        DataRequirement(settings.min_examples, settings.min_positives),
                        n=len(sample), positives=int(sample.labels.sum()))
    action, reasons, new_version = assessment.action.value, list(assessment.reasons), None
    if assessment.action is Action.RECALIBRATE:
        action, new_version, extra = _recalibrate(config, store, model_id, model, day, sample, plan, version)
        reasons += extra
    elif assessment.status is Status.HEALTHY:
        streak = 1 + _healthy_streak(store, model_id, day, version)
        action, new_version, extra = _maybe_reenable(config, store, model_id, model, day, sample, plan,
                                                     version, streak, action)
        reasons += extra
    # Per-layer SQNR on the first examples only: taps hold every layer's activations.
    probe = sample.batch.slice(0, min(len(sample), SQNR_EXAMPLES))
    layers = _layer_metrics(plan, forward_fp32(model, probe, taps=True).taps,
                            forward_quantized(model, probe, plan, taps=True).taps, quant.saturation)
    timings["total_s"] = round(time.perf_counter() - started, 3)
    with store.db.transaction() as c:
        store.record_run(model_id, day, assessment.status.value, message="; ".join(reasons),
                         plan_version=version, sample_size=len(sample), positives=int(sample.labels.sum()),
                         timings=timings, connection=c)
        if comparison is not None:
            store.record_metrics(model_id, day, comparison, connection=c)
        store.record_layer_metrics(model_id, day, layers, connection=c)
        store.record_decision(model_id, day, action, reasons, new_version, connection=c)
    active = store.active_plan(model_id)
    _export(config, model_id, QuantPlan.from_json(active.plan_json))
    return RunResult(model_id, day, assessment.status.value, action, "; ".join(reasons), version,
                     new_version, comparison.dne_pct if comparison is not None else None)


def _compare_or_none(p_ref, p_q, labels, level):
    try:
        return compare(p_ref, p_q, labels, level=level)
    except ValueError:  # one class only: the policy turns this into INSUFFICIENT_DATA
        return None


def _recalibrate(config, store, model_id, model, day, sample, plan, version):
    """New ranges on the calibration half, validated on the evaluation half; else fallback."""
    settings = config.model(model_id)
    calibration, evaluation, labels = _halves(sample.batch, sample.labels)
    ranges = Ranges.calibrate(model, calibration, settings.calibration_method)
    precisions = _unit_precisions(plan)
    provenance = Provenance(settings.calibration_method, f"{day}: {len(calibration)} examples", day)
    candidate = assemble(model, ranges, precisions, model_id=model_id, version=version + 1,
                         provenance=provenance)
    reference = forward_fp32(model, evaluation).probabilities
    ok, why = accept_candidate(evaluate(model, candidate, evaluation, labels, reference),
                               evaluate(model, plan, evaluation, labels, reference), Gate(settings.gate_pct))
    reasons, action = [why], Action.RECALIBRATE.value
    if not ok:
        _, result = _search(model, settings, calibration, evaluation, labels, precisions, store, model_id, day)
        candidate = assemble(model, ranges, result.precisions, model_id=model_id, version=version + 1,
                             provenance=provenance)
        action = Action.FALLBACK.value
        reasons.append(f"fallback moved {', '.join(f'{s.unit} {s.before}->{s.after}' for s in result.steps) or 'nothing'}; "
                       f"validated dNE {result.comparison.dne_pct:.4f} %")
    new_version = store.add_plan(model_id, candidate.to_json(), day, reason=action)
    if not store.promote(model_id, new_version, expected_active=version):
        current = store.active_plan(model_id)
        if current is None or current.version != new_version:
            reasons.append(f"plan v{new_version} not promoted: the active plan changed meanwhile")
    return action, new_version, reasons


def _healthy_streak(store, model_id, day, version) -> int:
    """HEALTHY days in a row just before `day` under plan `version`: the streak
    starts when the plan (and so its fallbacks) came into force. Reruns see the
    same history."""
    streak = 0
    for run in reversed([r for r in store.rows("runs", model_id) if r["logical_date"] < day]):
        if run["status"] != Status.HEALTHY.value or run["plan_version"] != version:
            break
        streak += 1
    return streak


def _maybe_reenable(config, store, model_id, model, day, sample, plan, version, streak, action):
    """After enough healthy days in a row, try the fallen-back units at int8 again;
    promote only if the candidate holds the gate on the evaluation half."""
    settings = config.model(model_id)
    precisions = _unit_precisions(plan)
    fallen = {unit: day for unit, p in precisions.items()
              if unit != EMBEDDINGS and p in ("fp16", "bf16", "fp32")}
    retry = layers_to_retry(fallen, streak, settings.healthy_days_to_reenable)
    if not retry:
        return action, None, []
    calibration, evaluation, labels = _halves(sample.batch, sample.labels)
    ranges = Ranges.calibrate(model, calibration, settings.calibration_method)
    trial = dict(precisions, **dict.fromkeys(retry, "int8"))
    candidate = assemble(model, ranges, trial, model_id=model_id, version=version + 1,
                         provenance=Provenance(settings.calibration_method, f"{day}: {len(calibration)} examples",
                                               day, f"int8 again for {', '.join(retry)}"))
    c = evaluate(model, candidate, evaluation, labels)
    if c.dne_pct > settings.gate_pct:
        return action, None, [f"after {streak} healthy days, int8 for {', '.join(retry)} would give "
                              f"dNE {c.dne_pct:.4f} %, above the gate: kept as is"]
    new_version = store.add_plan(model_id, candidate.to_json(), day, reason="REENABLE")
    store.promote(model_id, new_version, expected_active=version)
    return "REENABLE", new_version, [f"after {streak} healthy days, int8 again for {', '.join(retry)} "
                                     f"(validated dNE {c.dne_pct:.4f} %)"]


def _layer_metrics(plan, fp32_taps, quant_taps, saturation):
    out = {}
    for layer in plan.layers:
        if layer.kind != "linear":
            continue
        ref, q = fp32_taps[layer.name].output, quant_taps[layer.name].output
        noise = float(np.sum((ref.astype(np.float64) - q) ** 2))
        signal = float(np.sum(ref.astype(np.float64) ** 2))
        s = saturation.get(layer.name)
        out[layer.name] = {"precision": layer.precision,
                           "sqnr_db": 10 * np.log10(signal / noise) if noise > 0 and signal > 0 else None,
                           "saturation_below": s.below / s.total if s else 0.0,
                           "saturation_above": s.above / s.total if s else 0.0}
    return out


def _record_failure(store, model_id, day, status, message) -> RunResult:
    with store.db.transaction() as c:
        store.record_run(model_id, day, status, message=message, connection=c)
        store.record_decision(model_id, day, Action.RECORD.value, [message], connection=c)
    return RunResult(model_id, day, status, Action.RECORD.value, message, None)
