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
import pandas as pd
import sqlalchemy as sa

from lpmon.calibrate import STORABLE, from_state, observer, to_state
from lpmon import export
from lpmon.config import Config, ModelSettings
from lpmon.daywork import DayWork
from lpmon.metrics import Comparison, compare, compare_by_segment
from lpmon.model import Batch, Model, forward_fp32, forward_quantized
from lpmon.model.spec import SpecError
from lpmon.evidence import HeldOut
from lpmon.lifecycle import (Origin, Outcome, PlanLifecycle, Verdict, cooling_units, group_units,
                             reenable_targets, significantly_better, validate)
from lpmon.policy import Action, Rules, Status, assess
from lpmon.verdict import DayEvidence, judge_segments, label_free_jumps
from lpmon.quant import Provenance, QuantPlan
from lpmon.search import (Ranges, SearchResult, Step, assemble, fallback_search, merge_stored, observe,
                          unit_precisions, units)
from lpmon.store import Database, StateStore, StoreError
from lpmon.traffic import EmptyDay, MissingDay, TrafficError, TrafficSchema, TrafficStore
from lpmon.traffic import sample as draw_sample

SQNR_EXAMPLES = 4096  # one forward chunk: enough for a per-layer SQNR, small in memory
ONBOARDING_WAITS = "onboarding: waiting for evidence"  # how a day without a plan yet begins its message
PLAN_LOCK = "plan"   # the model-wide lock onboarding holds (Database.day_lock with this in place of a day)


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


def _halves(batch: Batch, labels: np.ndarray):
    """Calibration and evaluation halves: alternate rows of the hash-ordered sample."""
    rows = np.arange(len(labels))
    return batch.take(rows[0::2]), batch.take(rows[1::2]), labels[1::2]


def plan_lifecycle(config: Config, store: StateStore, model_id: str) -> PlanLifecycle:
    """The model's lifecycle; a promotion first checks that serving's file can be written."""
    return PlanLifecycle(store, model_id, before_promote=lambda: export.check(config, model_id))


def _begin(config: Config, model_id: str, day) -> tuple[str, ModelSettings, StateStore]:
    """The ISO day, the model's settings, and the store with the model registered."""
    day = str(dt.date.fromisoformat(str(day)))
    settings = config.model(model_id)
    store = open_store(config)
    store.register_model(model_id, {"traffic": settings.traffic, "snapshot": settings.snapshot})
    return day, settings, store


def load_model(settings: ModelSettings) -> Model:
    """The model's snapshot, scored by the configured back end (numpy, or torch)."""
    model = Model.load(settings.snapshot)
    if model.backend != settings.backend:
        import dataclasses

        model = dataclasses.replace(model, backend=settings.backend)
    return model


def _draw(settings: ModelSettings, model: Model | None, day: str, size: int | None = None):
    if settings.scorer == "logged":  # no model: serving logged both predictions beside the label
        schema = TrafficSchema.logged(settings.p_ref_column, settings.p_q_column, settings.max_ids_per_row,
                                      settings.ts_tolerance_hours * 3600, settings.segments)
    else:
        schema = TrafficSchema.for_model(model.spec, settings.max_ids_per_row, settings.ts_tolerance_hours * 3600,
                                         settings.segments)
    return draw_sample(TrafficStore(settings.traffic), day, size or settings.sample_size, settings.sample_seed,
                       schema)


def further_draws(settings: ModelSettings, model: Model, day: str, first: int):
    """More held-out examples for validation, lazily, in growing pieces: the
    continuation of the day's sample (the next requests in hash order, never in
    the sample), then earlier days' samples outside the calibration window
    (whose statistics the candidate's ranges never saw). Yields (batch, labels, source)."""
    cap = settings.validation_max_examples
    try:
        extended = _draw(settings, model, day, settings.sample_size + cap)
    except (MissingDay, EmptyDay):
        extended = None
    if extended is not None and len(extended) > settings.sample_size:
        rest, labels = extended.batch, extended.labels
        start, size = settings.sample_size, max(first, 1)
        while start < len(labels):
            stop = min(start + size, len(labels))
            yield rest.slice(start, stop), labels[start:stop], f"more of {day}"
            start, size = stop, size * 2
        del extended, rest, labels
    earliest = settings.calibration_days
    for back in range(earliest, earliest + settings.validation_days):
        earlier = str(dt.date.fromisoformat(day) - dt.timedelta(days=back))
        try:
            s = _draw(settings, model, earlier, cap)
        except (MissingDay, EmptyDay, TrafficError):
            continue
        yield s.batch, s.labels, f"of {earlier}"


def _evidence(settings: ModelSettings, model: Model, day: str, evaluation: Batch, labels: np.ndarray) -> HeldOut:
    return HeldOut(model, evaluation, labels, level=settings.level, cap=settings.validation_max_examples,
                   more=further_draws(settings, model, day, len(labels)))


def _search(store: StateStore, model_id: str, day: str, purpose: str, model: Model, ranges: Ranges,
            start: dict[str, str], evidence: HeldOut, settings: ModelSettings, *, fixed: dict,
            active: QuantPlan | None = None, active_over_gate: bool = False, creep: bool = False) -> tuple[SearchResult, Verdict | None]:
    """The fallback search over this model's units (lpmon.search) with the lifecycle's
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


def _top(model: Model, fixed: dict) -> dict[str, str]:
    """Whole-model fp32, but for the fixed (pinned) layers."""
    return {name: "fp32" for name in units(model) if name not in fixed} | {n: layer.precision
                                                                         for n, layer in fixed.items()}


def onboard(config: Config, store: StateStore, model_id: str, model: Model, day: str,
            batch: Batch, labels: np.ndarray, *, snapshot_id: str = "", replaces: int | None = None) -> Outcome:
    """Build, validate and promote a first plan for the model's snapshot: the
    configured precisions (int8 FC layers, `embedding_precision` tables), raised
    where needed, promoted only once the lifecycle's validation passes. Until then
    no quantized plan is made: serving stays fp32, the reference. `replaces`: the
    version a new snapshot's plan replaces (None for a model without a plan)."""
    settings = config.model(model_id)
    n, positives = len(labels), int(labels.sum())
    short = ([f"{n:,} labelled examples, fewer than the {settings.min_examples:,} required"]
             if n < settings.min_examples else []) + \
            ([f"{positives:,} positives, fewer than the {settings.min_positives:,} required"]
             if positives < settings.min_positives else [])
    if short:
        return Outcome(False, None, f"{ONBOARDING_WAITS} ({n:,} examples so far): "
                                    + "; ".join(short) + "; serving stays fp32")
    lifecycle = plan_lifecycle(config, store, model_id)
    calibration, evaluation, eval_labels = _halves(batch, labels)
    pins = lifecycle.pins()
    start = {name: ("int8" if unit.kind == "linear" else settings.embedding_precision)
             for name, unit in units(model).items()} | {n: layer.precision for n, layer in pins.items()}
    ranges = Ranges.calibrate(model, calibration, settings.calibration_method)
    evidence = _evidence(settings, model, day, evaluation, eval_labels)
    purpose = f"onboarding {snapshot_id}".strip()
    result, verdict = _search(store, model_id, day, purpose, model, ranges, start, evidence, settings, fixed=pins)
    quantized = [name for name, p in result.precisions.items() if p != "fp32"]
    if not result.passed or verdict is None or not quantized:
        why = result.reason if not result.passed else "only whole-model fp32 passed"
        return Outcome(False, None, f"{ONBOARDING_WAITS} ({evidence.n:,} examples so far): {why}; "
                                    "serving stays fp32")
    moved = {n: (start[n], p) for n, p in result.precisions.items() if p != start[n]}
    plan = assemble(model, ranges, result.precisions, model_id=model_id, pinned=pins,
                    provenance=Provenance(settings.calibration_method, f"{day}: {len(calibration)} examples", day,
                                          f"{purpose}; raised: {'; '.join(group_units(moved)) or 'none'}"))
    return lifecycle.propose(plan, day, Origin.ONBOARD, verdict, expected_active=replaces)


def _onboard_once(config: Config, store: StateStore, model_id: str, day: str, model: Model,
                  batch: Batch, labels: np.ndarray, **kwargs) -> Outcome | None:
    """Onboard under the model's plan lock unless a plan is in force by then (another
    run of another day may have onboarded meanwhile); None when one is."""
    with store.db.day_lock(model_id, PLAN_LOCK):
        if store.active_plan(model_id) is not None:
            return None
        return onboard(config, store, model_id, model, day, batch, labels, **kwargs)


def onboard_day(config: Config, model_id: str, day) -> Outcome:
    """Onboard a model from one day's sample (if it has no active plan)."""
    with day_lock(config, model_id, day):
        day, settings, store = _begin(config, model_id, day)
        model = load_model(settings)
        active = store.active_plan(model_id)
        outcome = None
        if active is None:
            sample = _draw(settings, model, day)
            outcome = _onboard_once(config, store, model_id, day, model, sample.batch, sample.labels)
        active = store.active_plan(model_id)
        export.publish(config, store, model_id)
        if outcome is None:
            return Outcome(False, active.version, f"already onboarded: plan v{active.version} is in force",
                           active_version=active.version)
        return outcome


def onboard_snapshot(config: Config, model_id: str, day) -> int | None:
    """A new snapshot landed at the model's snapshot URI (recurring training):
    register it and build, validate and promote a plan for it from the day's
    sample. Once per snapshot (by content hash); returns the active version."""
    with day_lock(config, model_id, day):
        day, settings, store = _begin(config, model_id, day)
        snapshot_id = snapshot_digest(settings.snapshot)
        done = [r for r in store.rows("plans", model_id) if r["reason"] == Origin.ONBOARD.value
                and f"onboarding {snapshot_id}" in QuantPlan.from_json(r["plan_json"]).provenance.notes]
        if not done:
            store.register_snapshot(model_id, snapshot_id, settings.snapshot)
            model = load_model(settings)
            sample = _draw(settings, model, day)
            with store.db.day_lock(model_id, PLAN_LOCK):
                active = store.active_plan(model_id)
                onboard(config, store, model_id, model, day, sample.batch, sample.labels, snapshot_id=snapshot_id,
                        replaces=active.version if active else None)
        export.publish(config, store, model_id)
        active = store.active_plan(model_id)
        return active.version if active else None


def snapshot_digest(uri: str) -> str:
    """A short content hash of a snapshot (spec and weights)."""
    import hashlib

    digest = hashlib.sha256()
    names = ("spec.json", "weights.npz") if (Path(uri) / "spec.json").exists() else ("model.pt", "inputs.json")
    for name in names:
        with open(Path(uri) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def proactive_recalibration(config: Config, model_id: str, day) -> dict:
    """Recalibrate on the day's traffic even when healthy; promote only if the
    candidate passes the lifecycle's validation and is significantly better than
    the plan in force on the same held-out examples. Once per (model, day)."""
    with day_lock(config, model_id, day):
        return _proactive_recalibration(config, model_id, day)


def _proactive_recalibration(config: Config, model_id: str, day) -> dict:
    day, settings, store = _begin(config, model_id, day)
    out = {"model": model_id, "day": day, "promoted": False, "new_plan_version": None}
    lifecycle = plan_lifecycle(config, store, model_id)
    earlier = [r for r in store.plans_of_day(model_id, day) if r.reason == Origin.PROACTIVE.value]
    if earlier:
        export.publish(config, store, model_id)  # a retry after a failed export writes the file
        return dict(out, promoted=earlier[0].status != "candidate", new_plan_version=earlier[0].version,
                    reason="done already")
    active_record = store.active_plan(model_id)
    if active_record is None:
        return dict(out, reason="no active plan: onboard the model first")
    active = QuantPlan.from_json(active_record.plan_json)
    pins = lifecycle.pins()
    cooling = cooling_units(lifecycle.promotions(), day, settings.cooldown_days)
    int8 = {layer.name for layer in active.layers if layer.kind == "linear" and layer.precision == "int8"}
    if int8 & cooling:
        return dict(out, old_plan_version=active_record.version,
                    reason=f"cooling down: {', '.join(sorted(int8 & cooling))} changed in the last "
                           f"{settings.cooldown_days} days")
    model = load_model(settings)
    sample = _draw(settings, model, day)
    calibration, evaluation, labels = _halves(sample.batch, sample.labels)
    observers = observe(model, calibration, settings.calibration_method)
    if settings.calibration_method in STORABLE:
        observers = merge_stored(observers, settings.calibration_method,
                                 store.calibration_states(model_id, day, settings.calibration_days - 1))
    fixed = {layer.name: layer for layer in active.layers if layer.name not in int8} | pins
    candidate = assemble(model, Ranges.from_observers(observers), unit_precisions(active), model_id=model_id,
                         pinned=fixed, provenance=Provenance(settings.calibration_method,
                                                             f"{day}: {len(calibration)} examples", day,
                                                             "proactive recalibration"))
    evidence = _evidence(settings, model, day, evaluation, labels)
    verdict = validate(candidate, evidence, settings.gate_pct)
    if verdict.passed:
        better, versus = significantly_better(candidate, active, evidence)
        if not better:
            verdict = Verdict(False, f"{verdict.reason}, but not significantly better than plan "
                                     f"v{active_record.version} ({versus.dne_pct:.4f} % [{versus.dne_pct_lo:.4f}, "
                                     f"{versus.dne_pct_hi:.4f}] relative to it)", verdict.n)
    outcome = lifecycle.propose(candidate, day, Origin.PROACTIVE, verdict, expected_active=active_record.version)
    if outcome.promoted:
        export.publish(config, store, model_id)
    return dict(out, promoted=outcome.promoted, new_plan_version=outcome.version if outcome.promoted else None,
                old_plan_version=active_record.version, reason=outcome.reason)


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
    """A step's view of one model's day: settings, store, the model (loaded once)
    and the held-out evidence (grown at most once a day). Steps in one process
    share it through work.context (see _day)."""

    def __init__(self, config: Config, work: DayWork):
        self.config, self.work = config, work
        self.day, self.settings, self.store = _begin(config, work.model_id, work.day)
        self.lifecycle = plan_lifecycle(config, self.store, work.model_id)
        self._model = None
        self._evidence = None

    @property
    def model(self) -> Model:
        if self._model is None:
            self._model = load_model(self.settings)
        return self._model

    def plan(self, version: int) -> QuantPlan:
        return self.lifecycle.plan(version)

    def halves(self):
        self.work.require_sample()
        return _halves(self.work.batch, self.work.labels)

    def evidence(self) -> HeldOut:
        if self._evidence is None:
            _, evaluation, labels = self.halves()
            self._evidence = _evidence(self.settings, self.model, self.day, evaluation, labels)
        return self._evidence


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
    d.store.mark_started(work.model_id, d.day)  # later days of the model wait for this one (see score_step)
    try:
        model = d.model if d.settings.scorer != "logged" else None
    except (SpecError, OSError) as err:
        return _fail(work, Status.FAILED, f"model snapshot: {err}")
    try:
        sample = _draw(d.settings, model, d.day)
    except (MissingDay, EmptyDay) as err:
        return _fail(work, Status.INSUFFICIENT_DATA, str(err))
    except TrafficError as err:
        return _fail(work, Status.FAILED, str(err))
    work.failure, work.message = None, ""
    work.batch, work.labels = sample.batch, sample.labels
    if sample.predictions:  # logged: the day is scored already
        work.p_ref, work.p_q = (sample.predictions[c] for c in (d.settings.p_ref_column, d.settings.p_q_column))
    work.sample_size, work.positives = len(sample), int(sample.labels.sum())
    work.segment_values, work.segment_codes = {}, {}
    for column, values in sample.extras.items():
        codes, uniques = pd.factorize(values, sort=True)
        work.segment_values[column] = [str(v) for v in uniques]
        work.segment_codes[column] = codes.astype(np.int32)
    _timed(work, "sample", started)
    return work


def _fail(work: DayWork, status: Status, message: str) -> DayWork:
    work.failure, work.message, work.status = status.value, message, status.value
    work.action, work.reasons = Action.RECORD.value, [message]
    return work


def score_step(config: Config, work: DayWork) -> DayWork:
    """Score fp32 and the plan in force; per-layer SQNR and saturation; observe
    the FC layers' inputs on the calibration half (stored for later recalibrations).

    The plan in force is fixed here, once per day: a rerun uses the one its first
    run recorded. A first run waits until no earlier day of the model is still
    running (so overlapping backfills judge each day under the plan a single
    backfill would), and a model without a plan is onboarded, once, under the
    model's plan lock."""
    if work.failure:
        return work
    started = time.perf_counter()
    d = _day(config, work)
    if d.settings.scorer == "logged":  # serving's own two predictions, read with the sample
        if work.p_ref is None or work.p_q is None:
            work.require_sample()
        _timed(work, "score", started)
        return work
    work.require_sample()
    model, store = d.model, d.store
    previous = store.run(work.model_id, d.day)
    if previous and previous["plan_version"]:
        work.plan_version = previous["plan_version"]
        if any(e["origin"] == Origin.ONBOARD.value and e["logical_date"] == d.day and e["version"] == work.plan_version
               for e in store.plan_events(work.model_id)):  # this day onboarded the model
            work.action, work.new_plan_version, work.promoted = Action.ONBOARD.value, work.plan_version, True
    elif previous and _waited_for_onboarding(previous, store.plan_events(work.model_id)):
        # No plan was in force that day (serving was fp32): the plan a later day
        # onboarded does not judge it after the fact.
        return _fail(work, Status.INSUFFICIENT_DATA, previous["message"])
    else:
        _wait_for_earlier_days(d)
        if store.active_plan(work.model_id) is None:
            outcome = _onboard_once(config, store, work.model_id, d.day, model, work.batch, work.labels)
            if outcome is not None and not outcome.promoted:
                return _fail(work, Status.INSUFFICIENT_DATA, outcome.reason)
            if outcome is not None:
                work.action, work.new_plan_version, work.promoted = Action.ONBOARD.value, outcome.version, True
        work.plan_version = store.active_plan(work.model_id).version
        # The plan in force is fixed before anything can be promoted today.
        store.record_run(work.model_id, d.day, Status.RUNNING.value, plan_version=work.plan_version,
                         sample_size=work.sample_size, positives=work.positives)
    plan = d.plan(work.plan_version)
    method = d.settings.calibration_method
    # The calibration half's FC inputs are observed in the scoring pass itself
    # (rows 0, 2, 4, ... are the calibration half), not in a second forward pass.
    fed = {name: observer(method) for name, _, _ in model.spec.linear_layers()} if method in STORABLE else None
    fp32 = forward_fp32(model, work.batch, observe=(lambda name, x: fed[name].observe(x)) if fed else None,
                        observe_every=2)
    quant = forward_quantized(model, work.batch, plan)   # saturation counted over every example
    work.p_ref, work.p_q = fp32.probabilities, quant.probabilities
    probe = work.batch.slice(0, min(work.sample_size, SQNR_EXAMPLES))
    work.layers = _layer_metrics(plan, forward_fp32(model, probe, taps=True).taps,
                                 forward_quantized(model, probe, plan, taps=True).taps, quant.saturation)
    if fed is not None:
        work.calibration = {name: to_state(obs) for name, obs in fed.items()}
    _timed(work, "score", started)
    return work


def _waited_for_onboarding(previous: dict, events: list[dict]) -> bool:
    """Whether a day's first run found the model without a plan and waited for
    onboarding's evidence, the model's first plan being promoted on a later day."""
    return (previous["plan_version"] is None and previous["status"] == Status.INSUFFICIENT_DATA.value
            and (previous["message"] or "").startswith(ONBOARDING_WAITS)
            and bool(events) and events[0]["logical_date"] > previous["logical_date"])


def _wait_for_earlier_days(d: Day, poll_s: float = 0.2, timeout_s: float = 3600.0) -> None:
    """Wait while a run of an earlier day of this model is in progress (its row says
    RUNNING and its day lock is held), so that its promotions come first."""
    deadline = time.monotonic() + timeout_s
    for earlier in d.store.days_running(d.work.model_id, before=d.day):
        while d.store.db.day_locked(d.work.model_id, earlier):
            if time.monotonic() > deadline:
                raise StoreError(f"{d.work.model_id} {d.day}: the run of {earlier} has held its lock for over "
                                 f"{timeout_s:.0f} s")
            time.sleep(poll_s)


def compare_step(config: Config, work: DayWork) -> DayWork:
    if work.failure:
        return work
    level = config.model(work.model_id).level
    try:
        work.comparison = compare(work.p_ref, work.p_q, work.labels, level=level).as_dict()
    except ValueError:  # one class only: the policy turns this into INSUFFICIENT_DATA
        work.comparison = None
    work.segment_results = {}
    for column, codes in work.segment_codes.items():
        values = work.segment_values[column]
        for code, comparison in compare_by_segment(work.p_ref, work.p_q, work.labels, codes, level=level).items():
            work.segment_results[f"{column}={values[code]}"] = comparison.as_dict()
    return work


def decide_step(config: Config, work: DayWork) -> str:
    """The day's status and what comes next: "record" or "recalibrate"."""
    if work.failure:
        work.next_steps = ["record"]
        return "record"
    settings = config.model(work.model_id)
    assessment = _assess(config, settings, work)
    onboarded = work.action == Action.ONBOARD.value
    work.status, work.reasons = assessment.status.value, list(assessment.reasons)
    if onboarded:
        work.reasons.insert(0, f"onboarded: plan v{work.new_plan_version} promoted")
    else:
        work.action = assessment.action.value
    branch = "recalibrate" if assessment.action is Action.RECALIBRATE and not onboarded else "record"
    if settings.scorer == "logged" and branch == "recalibrate":
        work.action, branch = Action.RECORD.value, "record"
        if work.comparison is not None:
            work.reasons.append(logged_degraded_reason(settings, Comparison(**work.comparison), _worst_segments(work)))
    work.next_steps = [branch]
    return branch


def _assess(config: Config, settings: ModelSettings, work: DayWork):
    """The policy's verdict on the day, with the plan's earlier days (pooling, the
    CUSUM, label-free baselines) and the day's segments."""
    rules = Rules.of(settings)
    history = _day(config, work).store.plan_days(work.model_id, work.day, work.plan_version)
    earlier = [DayEvidence.from_metrics(r["logical_date"], r, settings.level) for r in history if r["n"] is not None]
    today = (DayEvidence.from_metrics(work.day, work.comparison, settings.level)
             if work.comparison is not None else None)
    if today is None and work.sample_size:
        today = DayEvidence(work.day, work.sample_size, work.positives, None, None, 0.0)
    segments = judge_segments(
        {tuple(name.split("=", 1)): DayEvidence.from_metrics(work.day, c, settings.level)
         for name, c in work.segment_results.items()},
        settings.gate_pct, settings.min_examples, settings.min_positives, warn_q=1 - settings.level,
        degraded_q=1 / (2 * settings.sequential_run_length_days), level=settings.level)
    signals = [_label_free_signals(r, {}, r["saturation"]) for r in history]
    jumps = label_free_jumps(_label_free_signals(work.comparison or {}, work.layers), signals, settings.gate_pct)
    comparable = None
    if jumps:  # the traffic changed: the window pools only the days since (those with a jump too)
        since = len(history)
        while since > 0 and label_free_jumps(signals[since - 1], signals[:since - 1], settings.gate_pct):
            since -= 1
        days = {r["logical_date"] for r in history[since:]}
        comparable = [e for e in earlier if e.day in days]
    return assess(today, earlier, rules, segments=segments, label_free=jumps, comparable=comparable)


def _label_free_signals(metrics: dict, layers: dict, saturation: float | None = None) -> dict:
    """The label-free signals of a day (from its comparison and its FC layers' saturation)."""
    def finite(v):
        return None if v is None or v != v else float(v)

    if layers:
        saturation = max(v["saturation_below"] + v["saturation_above"] for v in layers.values())
    return {"KL gap %": finite(metrics.get("kl_gap_pct")), "mean |p_fp32 - p_q|": finite(metrics.get("mean_abs_diff")),
            "saturation": finite(saturation)}


def _worst_segments(work: DayWork, count: int = 3) -> str:
    """The day's segments (config `segments`) with the largest dNE; "" without segments."""
    judged = sorted(((k, Comparison(**c)) for k, c in work.segment_results.items() if not c["undefined_reason"]),
                    key=lambda kc: -kc[1].dne_pct)
    lines = [f"{k} dNE {c.dne_pct:.4f} % [{c.dne_pct_lo:.4f}, {c.dne_pct_hi:.4f}] on {c.n:,} examples"
             for k, c in judged[:count]]
    return f"worst segments (of {len(work.segment_results)}): " + "; ".join(lines) if lines else ""


def logged_degraded_reason(settings: ModelSettings, c: Comparison, segments: str = "") -> str:
    """Why a DEGRADED day of a logged-predictions model changes nothing, and its evidence."""
    return (f"recalibration and fallback are not available: the model's predictions are logged by serving "
            f"(scorer = \"logged\", columns {settings.p_ref_column} and {settings.p_q_column}), lpmon has no "
            f"model to re-quantize; fix the served model. Evidence: dNE {c.dne_pct:.4f} % "
            f"[{c.dne_pct_lo:.4f}, {c.dne_pct_hi:.4f}] ({c.level:.0%} interval) against the {settings.gate_pct:g} % "
            f"gate on {c.n:,} examples ({c.positives:,} positives); "
            + (f"{segments}; " if segments else "no segments configured (segments = [...]); ")
            + f"label-free signals: mean |p_ref - p_q| {c.mean_abs_diff:.3g}, max {c.max_abs_diff:.3g}, "
            f"KL gap {c.kl_gap_pct:.4f} %, calibration (mean prediction / positive rate) "
            f"{c.calibration_ref:.4f} reference, {c.calibration_q:.4f} served")


def record_step(config: Config, work: DayWork) -> DayWork:
    """The path without recalibration; on a HEALTHY day, units serving above their
    baseline may go back to it after enough healthy days in a row."""
    if (work.failure or work.status != Status.HEALTHY.value or work.action == Action.ONBOARD.value
            or config.model(work.model_id).scorer == "logged"):
        return work
    d = _day(config, work)
    streak = 1 + _healthy_streak(d.store, work.model_id, d.day, work.plan_version)
    _maybe_reenable(d, streak)
    return work


def recalibrate_step(config: Config, work: DayWork) -> bool:
    """New ranges, validated on held-out examples; True when the fallback search must run."""
    d = _day(config, work)
    plan = d.plan(work.plan_version)
    calibration, _, _ = d.halves()
    pins = d.lifecycle.pins()
    candidate = assemble(d.model, _ranges(d, calibration), unit_precisions(plan), model_id=work.model_id,
                         pinned=pins, provenance=_provenance(d, len(calibration)))
    verdict = validate(candidate, d.evidence(), d.settings.gate_pct, active=plan, active_over_gate=True)
    work.action = Action.RECALIBRATE.value
    outcome = d.lifecycle.propose(candidate, d.day, Origin.RECALIBRATE, verdict, expected_active=work.plan_version)
    work.reasons.append(f"recalibration: {outcome.reason}")
    if outcome.promoted:
        work.new_plan_version, work.promoted = outcome.version, True
        return False
    if outcome.lost_race:
        _rejudge(d, outcome.active_version)
        return False
    work.next_steps.append("fallback")
    return True


def fallback_step(config: Config, work: DayWork) -> DayWork:
    """Raise the most sensitive units until a plan passes validation; whole-model
    fp32 when nothing cheaper does. Promote it."""
    d = _day(config, work)
    calibration, _, _ = d.halves()
    ranges = _ranges(d, calibration)
    plan = d.plan(work.plan_version)
    pins = d.lifecycle.pins()
    start = unit_precisions(plan)
    evidence = d.evidence()
    result, verdict = _search(d.store, work.model_id, d.day, "fallback", d.model, ranges, start, evidence,
                              d.settings, fixed=pins, active=plan, active_over_gate=True, creep=True)
    precisions = result.precisions
    if not result.passed:
        precisions = _top(d.model, pins)
        verdict = validate(assemble(d.model, ranges, precisions, model_id=work.model_id, pinned=pins), evidence,
                           d.settings.gate_pct, active=plan, active_over_gate=True)
        work.reasons.append(f"fallback: no cheaper plan was shown within the gate ({result.reason}); "
                            "whole-model fp32" + (f" but for the pinned {', '.join(sorted(pins))}" if pins else ""))
    moved = {n: (start[n], p) for n, p in precisions.items() if p != start[n]}
    candidate = assemble(d.model, ranges, precisions, model_id=work.model_id, pinned=pins,
                         provenance=_provenance(d, len(calibration), "raised: " + "; ".join(group_units(moved))))
    work.action = Action.FALLBACK.value
    outcome = d.lifecycle.propose(candidate, d.day, Origin.FALLBACK, verdict, expected_active=work.plan_version)
    work.reasons.append(f"fallback raised {'; '.join(group_units(moved)) or 'nothing'}: {outcome.reason}")
    if outcome.promoted:
        work.new_plan_version, work.promoted = outcome.version, True
    elif outcome.lost_race:
        _rejudge(d, outcome.active_version)
    return work


def _rejudge(d: Day, version: int) -> None:
    """Another run promoted plan `version` while this day was being judged: judge the
    day against it instead (the winner's plan is the one in force)."""
    work = d.work
    work.plan_version = version
    quant = forward_quantized(d.model, work.batch, d.plan(version))
    work.p_q = quant.probabilities
    compare_step(d.config, work)
    reasons = list(work.reasons)
    decide_step(d.config, work)
    work.action = Action.RECORD.value
    work.reasons = reasons + [f"plan v{version} came into force meanwhile; judged against it: "] + work.reasons


def report_step(config: Config, work: DayWork) -> RunResult:
    """Write the day's rows in one transaction and export the active plan."""
    d = _day(config, work)
    store, model_id = d.store, work.model_id
    total = sum(v for k, v in work.timings.items() if k != "total_s")
    work.timings["total_s"] = round(total, 3)
    with store.db.transaction() as c:
        if work.failure:
            store.record_run(model_id, d.day, work.failure, message=work.message, sample_size=work.sample_size or None,
                             positives=work.positives if work.sample_size else None, connection=c)
        else:
            store.record_run(model_id, d.day, work.status, message="; ".join(work.reasons),
                             plan_version=work.plan_version, sample_size=work.sample_size,
                             positives=work.positives, timings=work.timings, connection=c)
            if work.comparison is not None:
                store.record_metrics(model_id, d.day, Comparison(**work.comparison), connection=c)
            for segment, comparison in sorted(work.segment_results.items()):
                store.record_metrics(model_id, d.day, Comparison(**comparison), segment=segment, connection=c)
            store.record_layer_metrics(model_id, d.day, work.layers, connection=c)
            store.record_calibration_states(model_id, d.day, work.calibration, connection=c)
        store.record_decision(model_id, d.day, work.action, work.reasons,
                              work.new_plan_version if work.promoted else None, connection=c)
    export.publish(config, store, model_id)  # a failure is recorded, then raised (the rows are in)
    dne = work.comparison["dne_pct"] if work.comparison else None
    return RunResult(model_id, d.day, work.status, work.action, "; ".join(work.reasons), work.plan_version,
                     work.new_plan_version if work.promoted else None, dne, promoted=work.promoted)


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
    started("act")
    if branch == "recalibrate":
        if recalibrate_step(config, work):
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


def _provenance(d: Day, examples: int, note: str = "") -> Provenance:
    days = d.settings.calibration_days
    source = f"{d.day}: {examples} examples" + (f" + stored statistics of up to {days - 1} earlier days"
                                                if days > 1 else "")
    return Provenance(d.settings.calibration_method, source, d.day, note)


def _healthy_streak(store, model_id, day, version) -> int:
    """HEALTHY days in a row just before `day` under plan `version`: the streak
    starts when the plan came into force. Reruns see the same history."""
    streak = 0
    for run in reversed([r for r in store.rows("runs", model_id) if r["logical_date"] < day]):
        if run["status"] != Status.HEALTHY.value or run["plan_version"] != version:
            break
        streak += 1
    return streak


def _maybe_reenable(d: Day, streak: int) -> None:
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
    candidate = assemble(d.model, _ranges(d, calibration), dict(unit_precisions(plan), **targets),
                         model_id=work.model_id, pinned=fixed,
                         provenance=_provenance(d, len(calibration), f"back to baseline: {lines}"))
    verdict = validate(candidate, d.evidence(), settings.gate_pct)
    if not verdict.passed:
        work.reasons.append(f"after {streak} healthy days, {lines} not re-enabled: {verdict.reason}")
        return
    outcome = d.lifecycle.propose(candidate, d.day, Origin.REENABLE, verdict, expected_active=work.plan_version)
    work.reasons.append(f"after {streak} healthy days, {lines}: {outcome.reason}")
    if outcome.promoted:
        work.action, work.new_plan_version, work.promoted = Action.REENABLE.value, outcome.version, True


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
