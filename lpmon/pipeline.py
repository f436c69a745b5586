"""The daily job, as plain functions of (model, logical date). The DAGs only call these.

One day is a chain of steps over a DayWork (lpmon.daywork):

    sample -> score -> compare -> decide -> record | recalibrate [-> fallback] -> report

`sample` draws the day's sample; `score` runs fp32 and the plan in force over
it (onboarding the model first if it has no active plan), measures per-layer
SQNR and saturation, and observes every FC layer's input for calibration;
`compare` and `decide` apply lpmon.metrics and lpmon.policy; `record` handles
the healthy path (and the retry of fallen-back layers after a healthy streak);
`recalibrate` builds a candidate from the calibration half of the sample
(merged with the last `calibration_days` days' stored statistics) and
validates it on the evaluation half; `fallback` moves layers up the precision
ladder when the candidate does not hold; `report` writes the day's rows in one
transaction and exports the active plan. `run_day` chains them in memory.

Idempotent: the plan in force for a day is the one its first run used (kept
on the run's row, written before anything is promoted), candidate plans are
stored once per (model, day, plan), promotion is a compare-and-swap that
treats "already active" as done, and an interrupted fallback search resumes
from its saved progress. A rerun of a day, or a backfill, leaves the same rows.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from lpmon import export
from lpmon.calibrate import STORABLE, from_state, observer, to_state
from lpmon.config import Config, ModelSettings
from lpmon.daywork import DayWork
from lpmon.metrics import Comparison, compare
from lpmon.model import Batch, Model, forward_fp32, forward_quantized
from lpmon.model.spec import SpecError
from lpmon.policy import (Action, DataRequirement, Gate, Status, accept_candidate, assess,
                          layers_to_retry)
from lpmon.quant import Provenance, QuantPlan
from lpmon.search import EMBEDDINGS, Ranges, Step, assemble, evaluate, fallback_search, merge_stored, observe
from lpmon.store import Database, StateStore, StoreError
from lpmon.traffic import EmptyDay, MissingDay, TrafficError, TrafficSchema, TrafficStore
from lpmon.traffic import sample as draw_sample

SQNR_EXAMPLES = 4096  # one forward chunk: enough for a per-layer SQNR, small in memory
RUNNING = "RUNNING"


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
    promoted: bool = False   # new_plan_version reached serving today


def open_store(config: Config) -> StateStore:
    """The state store, checked (never created or migrated: only `lpmon init` does
    that). A store that is missing, damaged, read-only, without lpmon's schema or
    unreachable is a one-line StoreError naming it (without its password),
    which fails the task so that Airflow retries it."""
    db = Database(config.store)
    try:
        db.verify()
    except sa.exc.OperationalError as err:
        db.engine.dispose()
        raise StoreError(f"{db.safe_url}: the state store is unreachable ({err.orig})") from None
    except StoreError:
        db.engine.dispose()
        raise
    return StateStore(db)


@contextmanager
def day_lock(config: Config, model_id: str, day):
    """Hold the (model, day) lock for a run or one of its steps (see Database.day_lock)."""
    store = open_store(config)
    try:
        with store.db.day_lock(model_id, str(dt.date.fromisoformat(str(day)))):
            yield
    finally:
        store.db.engine.dispose()  # the lock's own connection: closed, not left to the collector


def _unit_precisions(plan: QuantPlan) -> dict[str, str]:
    units = {layer.name: layer.precision for layer in plan.layers if layer.kind == "linear"}
    embedding = {layer.precision for layer in plan.layers if layer.kind == "embedding"}
    units[EMBEDDINGS] = embedding.pop() if len(embedding) == 1 else "fp32"
    return units


def _halves(batch: Batch, labels: np.ndarray):
    """Calibration and evaluation halves: alternate rows of the hash-ordered sample."""
    rows = np.arange(len(labels))
    return batch.take(rows[0::2]), batch.take(rows[1::2]), labels[1::2]


def _search(model, settings, ranges, evaluation, labels, start, store, model_id, day, purpose):
    """The fallback search, saving its best plan after every move and resuming
    from the saved one if an earlier attempt of the same search was interrupted."""
    saved = store.fallback_progress(model_id, day)
    resume = None
    if saved and saved["state"].get("purpose") == purpose and saved["state"].get("start") == start:
        resume = (saved["best"], [Step(**step) for step in saved["state"]["steps"]])

    def save(progress):
        store.record_fallback_progress(model_id, day, len(progress.steps),
                                       json.dumps(progress.precisions, sort_keys=True),
                                       json.dumps({"purpose": purpose, "start": start,
                                                   "steps": [s.__dict__ for s in progress.steps]},
                                                  sort_keys=True))

    return fallback_search(model, ranges, evaluation, labels, gate_pct=settings.gate_pct, start=start,
                           ladder=settings.fallback_ladder, costs=settings.precision_cost, on_step=save,
                           resume=resume)


def onboard(config: Config, store: StateStore, model_id: str, model: Model, day: str,
            batch: Batch, labels: np.ndarray, *, snapshot_id: str = "") -> int:
    """Build, validate and promote a first plan for the model's snapshot (int8,
    falling back where needed); it replaces the active plan, if there is one."""
    settings = config.model(model_id)
    calibration, evaluation, eval_labels = _halves(batch, labels)
    start = {name: "int8" for name, _, _ in model.spec.linear_layers()}
    start[EMBEDDINGS] = settings.embedding_precision
    ranges = Ranges.calibrate(model, calibration, settings.calibration_method)
    purpose = f"onboarding {snapshot_id}".strip()
    result = _search(model, settings, ranges, evaluation, eval_labels, start, store, model_id, day, purpose)
    active = store.active_plan(model_id)
    plan = assemble(model, ranges, result.precisions, model_id=model_id, version=active.version + 1 if active else 1,
                    provenance=Provenance(settings.calibration_method, f"{day}: {len(labels)} examples", day,
                                          f"{purpose}; moved: {', '.join(result.moved) or 'none'}"))
    version = store.add_plan(model_id, plan.to_json(), day, reason=purpose)
    export.check(config, model_id)  # serving's file must be writable before the plan becomes active
    store.promote(model_id, version, expected_active=active.version if active else None)
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
                       TrafficSchema.for_model(model.spec, settings.max_ids_per_row,
                                               settings.ts_tolerance_hours * 3600))


def onboard_day(config: Config, model_id: str, day) -> int:
    """Onboard a model from one day's sample (if it has no active plan); returns the active version."""
    with day_lock(config, model_id, day):
        return _onboard_day(config, model_id, day)


def _onboard_day(config: Config, model_id: str, day) -> int:
    day, settings, store = _begin(config, model_id, day)
    active = store.active_plan(model_id)
    if active is not None:
        return active.version
    model = Model.load(settings.snapshot)
    sample = _draw(settings, model, day)
    onboard(config, store, model_id, model, day, sample.batch, sample.labels)
    export.publish(config, store, model_id)
    return store.active_plan(model_id).version


def onboard_snapshot(config: Config, model_id: str, day) -> int:
    """A new snapshot landed at the model's snapshot URI (recurring training):
    register it and build, validate and promote a plan for it from the day's
    sample. Once per snapshot (by content hash); returns the active version."""
    day, settings, store = _begin(config, model_id, day)
    snapshot_id = snapshot_digest(settings.snapshot)
    reason = f"onboarding {snapshot_id}"
    done = [r for r in store.rows("plans", model_id) if r["reason"] == reason]
    if not done:
        store.register_snapshot(model_id, snapshot_id, settings.snapshot)
        model = Model.load(settings.snapshot)
        sample = _draw(settings, model, day)
        onboard(config, store, model_id, model, day, sample.batch, sample.labels, snapshot_id=snapshot_id)
    export.publish(config, store, model_id)
    return store.active_plan(model_id).version


def snapshot_digest(uri: str) -> str:
    """A short content hash of a snapshot (spec and weights)."""
    import hashlib

    digest = hashlib.sha256()
    for name in ("spec.json", "weights.npz"):
        with open(Path(uri) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def proactive_recalibration(config: Config, model_id: str, day) -> dict:
    """Recalibrate on the day's traffic even when healthy; promote only if the
    candidate holds the gate and beats the active plan on the evaluation half.
    Once per (model, day): a rerun reports what the first run did."""
    with day_lock(config, model_id, day):
        return _proactive_recalibration(config, model_id, day)


def _proactive_recalibration(config: Config, model_id: str, day) -> dict:
    day, settings, store = _begin(config, model_id, day)
    out = {"model": model_id, "day": day, "promoted": False, "new_plan_version": None}
    earlier = [r for r in store.rows("plans", model_id) if r["logical_date"] == day and r["reason"] == "PROACTIVE"]
    if earlier:
        return dict(out, promoted=earlier[0]["status"] != "candidate", new_plan_version=earlier[0]["version"],
                    reason="done already")
    active = store.active_plan(model_id)
    if active is None:
        return dict(out, reason="no active plan: onboard the model first")
    model = Model.load(settings.snapshot)
    sample = _draw(settings, model, day)
    calibration, evaluation, labels = _halves(sample.batch, sample.labels)
    observers = observe(model, calibration, settings.calibration_method)
    if settings.calibration_method in STORABLE:
        observers = merge_stored(observers, settings.calibration_method,
                                 store.calibration_states(model_id, day, settings.calibration_days - 1))
    plan = QuantPlan.from_json(active.plan_json)
    candidate = assemble(model, Ranges.from_observers(observers), _unit_precisions(plan), model_id=model_id,
                         version=active.version + 1,
                         provenance=Provenance(settings.calibration_method, f"{day}: {len(calibration)} examples",
                                               day, "proactive recalibration"))
    ok, why = _validate(model, candidate, plan, evaluation, labels, settings.gate_pct)
    version = store.add_plan(model_id, candidate.to_json(), day, reason="PROACTIVE")
    if ok:
        export.check(config, model_id)  # before the promotion commits
    promoted = ok and store.promote(model_id, version, expected_active=active.version)
    if promoted:
        export.publish(config, store, model_id)
    return dict(out, promoted=promoted, new_plan_version=version, old_plan_version=active.version, reason=why)


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


# --- the steps ---------------------------------------------------------------------------

class Day:
    """A step's view of one model's day: settings, store, and the model (loaded
    once). Steps in one process share it through work.context (see _day)."""

    def __init__(self, config: Config, work: DayWork):
        self.config, self.work = config, work
        self.day, self.settings, self.store = _begin(config, work.model_id, work.day)
        self._model = None

    @property
    def model(self) -> Model:
        if self._model is None:
            self._model = Model.load(self.settings.snapshot)
        return self._model

    def plan(self, version: int) -> QuantPlan:
        row = next(r for r in self.store.rows("plans", self.work.model_id) if r["version"] == version)
        return QuantPlan.from_json(row["plan_json"])

    def halves(self):
        self.work.require_sample()
        return _halves(self.work.batch, self.work.labels)


def _day(config: Config, work: DayWork) -> Day:
    if work.context is None or work.context.config is not config:
        work.context = Day(config, work)
    return work.context


def _timed(work: DayWork, name: str, started: float) -> None:
    work.timings[f"{name}_s"] = round(time.perf_counter() - started, 3)


def sample_step(config: Config, work: DayWork) -> DayWork:
    """Draw the day's sample; a missing, empty or unreadable day ends the day here."""
    started = time.perf_counter()
    d = _day(config, work)
    try:
        model = d.model
    except (SpecError, OSError) as err:
        return _fail(work, "failed", f"model snapshot: {err}")
    try:
        sample = _draw(d.settings, model, d.day)
    except (MissingDay, EmptyDay) as err:
        return _fail(work, Status.INSUFFICIENT_DATA.value, str(err))
    except TrafficError as err:
        return _fail(work, "failed", str(err))
    work.failure, work.message = None, ""
    work.batch, work.labels = sample.batch, sample.labels
    work.sample_size, work.positives = len(sample), int(sample.labels.sum())
    _timed(work, "sample", started)
    return work


def _fail(work: DayWork, status: str, message: str) -> DayWork:
    work.failure, work.message, work.status = status, message, status
    work.action, work.reasons = Action.RECORD.value, [message]
    return work


def score_step(config: Config, work: DayWork) -> DayWork:
    """Score fp32 and the plan in force; per-layer SQNR and saturation; observe
    the FC layers' inputs on the calibration half (stored for later recalibrations)."""
    if work.failure:
        return work
    started = time.perf_counter()
    d = _day(config, work)
    work.require_sample()
    model, store = d.model, d.store
    previous = [r for r in store.rows("runs", work.model_id) if r["logical_date"] == d.day and r["plan_version"]]
    if previous:
        work.plan_version = previous[0]["plan_version"]
    else:
        if store.active_plan(work.model_id) is None:
            onboard(config, store, work.model_id, model, d.day, work.batch, work.labels)
        work.plan_version = store.active_plan(work.model_id).version
        # The plan in force is fixed before anything can be promoted today.
        store.record_run(work.model_id, d.day, RUNNING, plan_version=work.plan_version,
                         sample_size=work.sample_size, positives=work.positives)
    plan = d.plan(work.plan_version)
    fp32 = forward_fp32(model, work.batch)
    quant = forward_quantized(model, work.batch, plan)   # saturation counted over every example
    work.p_ref, work.p_q = fp32.probabilities, quant.probabilities
    probe = work.batch.slice(0, min(work.sample_size, SQNR_EXAMPLES))
    work.layers = _layer_metrics(plan, forward_fp32(model, probe, taps=True).taps,
                                 forward_quantized(model, probe, plan, taps=True).taps, quant.saturation)
    _timed(work, "score", started)
    started = time.perf_counter()
    if d.settings.calibration_method in STORABLE:
        calibration, _, _ = d.halves()
        observers = observe(model, calibration, d.settings.calibration_method)
        work.calibration = {name: to_state(obs) for name, obs in observers.items()}
    _timed(work, "observe", started)
    return work


def compare_step(config: Config, work: DayWork) -> DayWork:
    if work.failure:
        return work
    level = config.model(work.model_id).level
    try:
        work.comparison = compare(work.p_ref, work.p_q, work.labels, level=level).as_dict()
    except ValueError:  # one class only: the policy turns this into INSUFFICIENT_DATA
        work.comparison = None
    return work


def decide_step(config: Config, work: DayWork) -> str:
    """The day's status and what comes next: "record" or "recalibrate"."""
    if work.failure:
        work.next_steps = ["record"]
        return "record"
    settings = config.model(work.model_id)
    comparison = Comparison(**work.comparison) if work.comparison else None
    assessment = assess(comparison, Gate(settings.gate_pct),
                        DataRequirement(settings.min_examples, settings.min_positives),
                        n=work.sample_size, positives=work.positives)
    work.status, work.action, work.reasons = (assessment.status.value, assessment.action.value,
                                              list(assessment.reasons))
    branch = "recalibrate" if assessment.action is Action.RECALIBRATE else "record"
    work.next_steps = [branch]
    return branch


def record_step(config: Config, work: DayWork) -> DayWork:
    """The path without recalibration; on a HEALTHY day, fallen-back layers may
    try int8 again after enough healthy days in a row."""
    if work.failure or work.status != Status.HEALTHY.value:
        return work
    d = _day(config, work)
    streak = 1 + _healthy_streak(d.store, work.model_id, d.day, work.plan_version)
    _maybe_reenable(d, streak)
    return work


def recalibrate_step(config: Config, work: DayWork) -> bool:
    """New ranges, validated on the evaluation half; True when the fallback search must run."""
    d = _day(config, work)
    settings, plan = d.settings, d.plan(work.plan_version)
    calibration, evaluation, labels = d.halves()
    ranges = _ranges(d, calibration)
    precisions = _unit_precisions(plan)
    candidate = assemble(d.model, ranges, precisions, model_id=work.model_id, version=work.plan_version + 1,
                         provenance=_provenance(d, len(calibration)))
    ok, why = _validate(d.model, candidate, plan, evaluation, labels, settings.gate_pct)
    work.action = Action.RECALIBRATE.value
    work.reasons.append(why)
    if ok:
        _promote(d, candidate, Action.RECALIBRATE.value)
    else:
        work.next_steps.append("fallback")
    return not ok


def fallback_step(config: Config, work: DayWork) -> DayWork:
    """Move the most sensitive layers up the ladder until the gate holds; promote."""
    d = _day(config, work)
    calibration, evaluation, labels = d.halves()
    ranges = _ranges(d, calibration)
    precisions = _unit_precisions(d.plan(work.plan_version))
    result = _search(d.model, d.settings, ranges, evaluation, labels, precisions, d.store, work.model_id,
                     d.day, "fallback")
    candidate = assemble(d.model, ranges, result.precisions, model_id=work.model_id,
                         version=work.plan_version + 1, provenance=_provenance(d, len(calibration)))
    work.action = Action.FALLBACK.value
    work.reasons.append(f"fallback moved {', '.join(f'{s.unit} {s.before}->{s.after}' for s in result.steps) or 'nothing'}; "
                        f"validated dNE {result.comparison.dne_pct:.4f} %")
    _promote(d, candidate, Action.FALLBACK.value)
    return work


def report_step(config: Config, work: DayWork) -> RunResult:
    """Write the day's rows in one transaction and export the active plan."""
    d = _day(config, work)
    store, model_id = d.store, work.model_id
    total = sum(v for k, v in work.timings.items() if k != "total_s")
    work.timings["total_s"] = round(total, 3)
    with store.db.transaction() as c:
        if work.failure:
            store.record_run(model_id, d.day, work.failure, message=work.message, connection=c)
        else:
            store.record_run(model_id, d.day, work.status, message="; ".join(work.reasons),
                             plan_version=work.plan_version, sample_size=work.sample_size,
                             positives=work.positives, timings=work.timings, connection=c)
            if work.comparison is not None:
                store.record_metrics(model_id, d.day, Comparison(**work.comparison), connection=c)
            store.record_layer_metrics(model_id, d.day, work.layers, connection=c)
            store.record_calibration_states(model_id, d.day, work.calibration, connection=c)
        store.record_decision(model_id, d.day, work.action, work.reasons, work.new_plan_version, connection=c)
    export.publish(config, store, model_id)  # a failure is recorded, then raised (the rows are in)
    dne = work.comparison["dne_pct"] if work.comparison else None
    return RunResult(model_id, d.day, work.status, work.action, "; ".join(work.reasons), work.plan_version,
                     work.new_plan_version, dne, promoted=bool(work.promoted and work.new_plan_version))


STEPS = ("sample", "score", "compare", "decide", "act", "report")


def run_day(config: Config, model_id: str, day, on_step=None) -> RunResult:
    """One model, one logical date: every step in order, in memory, holding the
    day's lock. on_step(name) is called as each of STEPS starts (progress bars)."""
    with day_lock(config, model_id, day):
        return _run_day(config, model_id, day, on_step)


def _run_day(config: Config, model_id: str, day, on_step) -> RunResult:
    started = on_step or (lambda name: None)
    work = DayWork(model_id, str(dt.date.fromisoformat(str(day))))
    for name, step in zip(STEPS, (sample_step, score_step, compare_step)):
        started(name)
        step(config, work)
    started("decide")
    branch = decide_step(config, work)
    started(branch)
    if branch == "recalibrate":
        if recalibrate_step(config, work):
            started("fallback")
            fallback_step(config, work)
    else:
        record_step(config, work)
    started("report")
    return report_step(config, work)


# --- helpers of the steps ----------------------------------------------------------------

def _ranges(d: Day, calibration: Batch) -> Ranges:
    """Ranges from today's calibration half, merged with the stored statistics
    of the previous calibration_days - 1 days (no re-scoring of old traffic)."""
    method, work = d.settings.calibration_method, d.work
    if not work.calibration:  # a method without storable state (mse)
        return Ranges.calibrate(d.model, calibration, method)
    today = {name: from_state(state, lambda: observer(method)) for name, state in work.calibration.items()}
    earlier = d.store.calibration_states(work.model_id, d.day, d.settings.calibration_days - 1)
    return Ranges.from_observers(merge_stored(today, method, earlier))


def _validate(model, candidate: QuantPlan, active: QuantPlan, evaluation, labels, gate_pct: float):
    """(accepted, why): the candidate against the active plan on the same held-out examples."""
    reference = forward_fp32(model, evaluation).probabilities
    return accept_candidate(evaluate(model, candidate, evaluation, labels, reference),
                            evaluate(model, active, evaluation, labels, reference), Gate(gate_pct))


def _provenance(d: Day, examples: int, note: str = "") -> Provenance:
    days = d.settings.calibration_days
    source = f"{d.day}: {examples} examples" + (f" + stored statistics of up to {days - 1} earlier days"
                                                if days > 1 else "")
    return Provenance(d.settings.calibration_method, source, d.day, note)


def _promote(d: Day, candidate: QuantPlan, reason: str) -> None:
    work = d.work
    before = _unit_precisions(d.plan(work.plan_version))
    after = _unit_precisions(candidate)
    work.moved = [f"{unit} {before[unit]}->{after[unit]}" for unit in sorted(after) if before.get(unit) != after[unit]]
    work.new_plan_version = d.store.add_plan(work.model_id, candidate.to_json(), d.day, reason=reason)
    export.check(d.config, work.model_id)  # before the promotion commits
    work.promoted = d.store.promote(work.model_id, work.new_plan_version, expected_active=work.plan_version)
    if not work.promoted:
        current = d.store.active_plan(work.model_id)
        work.promoted = current is not None and current.version == work.new_plan_version
    if not work.promoted:
        work.reasons.append(f"plan v{work.new_plan_version} not promoted: the active plan changed meanwhile")


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


def _maybe_reenable(d: Day, streak: int) -> None:
    """After enough healthy days in a row, try the fallen-back units at int8 again;
    promote only if the candidate holds the gate on the evaluation half."""
    work, settings = d.work, d.settings
    precisions = _unit_precisions(d.plan(work.plan_version))
    fallen = {unit: d.day for unit, p in precisions.items()
              if unit != EMBEDDINGS and p in ("fp16", "bf16", "fp32")}
    retry = layers_to_retry(fallen, streak, settings.healthy_days_to_reenable)
    if not retry:
        return
    calibration, evaluation, labels = d.halves()
    trial = dict(precisions, **dict.fromkeys(retry, "int8"))
    candidate = assemble(d.model, _ranges(d, calibration), trial, model_id=work.model_id,
                         version=work.plan_version + 1,
                         provenance=_provenance(d, len(calibration), f"int8 again for {', '.join(retry)}"))
    c = evaluate(d.model, candidate, evaluation, labels)
    if c.dne_pct > settings.gate_pct:
        work.reasons.append(f"after {streak} healthy days, int8 for {', '.join(retry)} would give "
                            f"dNE {c.dne_pct:.4f} %, above the gate: kept as is")
        return
    work.action = "REENABLE"
    work.reasons.append(f"after {streak} healthy days, int8 again for {', '.join(retry)} "
                        f"(validated dNE {c.dne_pct:.4f} %)")
    _promote(d, candidate, "REENABLE")


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
