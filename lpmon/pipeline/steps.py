"""The steps of a model's day, each a function of (config, DayWork), as the DAG's
tasks run them one by one and run_day chains them in memory: sample, score,
compare, decide, then record or recalibrate [then fallback], then report. The
flow and its idempotence are described in lpmon.pipeline."""

from __future__ import annotations

import time

from lpmon.calibrate import STORABLE, observer, to_state
from lpmon.config import Config
from lpmon.metrics import Comparison, compare, compare_by_segment, layer_metrics
from lpmon.model import forward_fp32, forward_quantized
from lpmon.model.spec import SpecError
from lpmon.pipeline import adaptive, export, order
from lpmon.pipeline.assembly import assemble, unit_precisions
from lpmon.pipeline.assess import assess_day, day_looks, logged_degraded_reason, worst_segments
from lpmon.pipeline.context import Day, day_of, draw, take_sample
from lpmon.pipeline.daywork import DayWork, RunResult
from lpmon.pipeline.fallback import resumable_search, whole_model_fp32
from lpmon.pipeline.lifecycle import Origin, group_units, validate
from lpmon.pipeline.onboard import ONBOARDING_WAITS, onboard_once
from lpmon.pipeline.recalibrate import provenance_of, ranges_of
from lpmon.pipeline.reenable import healthy_streak, maybe_reenable
from lpmon.policy import Action, Status
from lpmon.traffic import EmptyDay, MissingDay, TrafficError

SQNR_EXAMPLES = 4096  # one forward chunk: enough for a per-layer SQNR, small in memory


def _timed(work: DayWork, name: str, started: float) -> None:
    work.timings[f"{name}_s"] = round(time.perf_counter() - started, 3)


def sample_step(config: Config, work: DayWork, parts=None) -> DayWork:
    """Draw the day's sample (merged from its file groups' candidates, when parts
    are given); a missing, empty or unreadable day ends the day here."""
    started = time.perf_counter()
    d = day_of(config, work)
    d.store.mark_started(work.model_id, d.day)  # later days of the model wait for this one (see score_step)
    try:
        model = d.model if d.settings.scorer != "logged" else None
    except (SpecError, OSError) as err:
        return _fail(work, Status.FAILED, f"model snapshot: {err}")
    try:
        sample = draw(d.settings, model, d.day, parts=parts)
    except (MissingDay, EmptyDay) as err:
        return _fail(work, Status.INSUFFICIENT_DATA, str(err))
    except TrafficError as err:
        return _fail(work, Status.FAILED, str(err))
    work.failure, work.message = None, ""
    take_sample(work, sample, d.settings)
    work.looks, work.stop_reason = 0, None
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
    run recorded. A first run takes its turn (lpmon.pipeline.order: earlier days
    first, later days judged already are rewound and judged again after it), and
    a model without a plan is onboarded, once, under the model's plan lock.

    A bad embedding row (NaN or inf in the snapshot) is found where the day's
    examples touch it: the day fails naming the table and the row."""
    if work.failure:
        return work
    try:
        return _score(config, work)
    except SpecError as err:
        return _fail(work, Status.FAILED, f"model snapshot: {err}")


def _score(config: Config, work: DayWork) -> DayWork:
    started = time.perf_counter()
    d = day_of(config, work)
    if d.settings.scorer == "logged":  # serving's own two predictions, read with the sample
        if work.p_ref is None or work.p_q is None:
            work.require_sample()
        _look_again(config, work, None)
        _timed(work, "score", started)
        return work
    batch, labels = work.require_sample()
    model, store = d.model, d.store
    previous = store.run(work.model_id, d.day)
    if previous and previous["plan_version"]:
        if previous["status"] in (Status.RUNNING.value, Status.FAILED.value):  # stopped before the verdict
            with order.turn(d):  # later days judged meanwhile go back, to be judged after it
                pass
        work.plan_version = previous["plan_version"]
        if any(
            e["origin"] == Origin.ONBOARD.value and e["logical_date"] == d.day and e["version"] == work.plan_version
            for e in store.plan_events(work.model_id)
        ):  # this day onboarded the model
            work.action, work.new_plan_version, work.promoted = Action.ONBOARD.value, work.plan_version, True
    elif previous and _waited_for_onboarding(previous, store.plan_events(work.model_id)):
        # No plan was in force that day (serving was fp32): the plan a later day
        # onboarded does not judge it after the fact.
        return _fail(work, Status.INSUFFICIENT_DATA, previous["message"])
    else:
        with order.turn(d):  # earlier days first; later days judged already are rewound
            if store.active_plan(work.model_id) is None:
                outcome = onboard_once(config, store, work.model_id, d.day, model, batch, labels)
                if outcome is not None and not outcome.promoted:
                    return _fail(work, Status.INSUFFICIENT_DATA, outcome.reason)
                if outcome is not None:
                    work.action, work.new_plan_version, work.promoted = Action.ONBOARD.value, outcome.version, True
            active = store.active_plan(work.model_id)
            assert active is not None  # onboarded above, or by another run meanwhile
            work.plan_version = active.version
            # The plan in force is fixed before anything can be promoted today.
            store.record_run(
                work.model_id,
                d.day,
                Status.RUNNING.value,
                plan_version=work.plan_version,
                sample_size=work.sample_size,
                positives=work.positives,
            )
    plan = d.plan(work.plan_version)
    method = d.settings.calibration_method
    # The calibration half's FC inputs are observed in the scoring pass itself
    # (rows 0, 2, 4, ... are the calibration half), not in a second forward pass.
    fed = {name: observer(method) for name, _, _ in model.spec.linear_layers()} if method in STORABLE else None
    fp32 = forward_fp32(model, batch, observe=(lambda name, x: fed[name].observe(x)) if fed else None, observe_every=2)
    quant = forward_quantized(model, batch, plan)  # saturation counted over every example
    work.p_ref, work.p_q = fp32.probabilities, quant.probabilities
    probe = batch.slice(0, min(work.sample_size, SQNR_EXAMPLES))
    work.layers = layer_metrics(
        plan,
        forward_fp32(model, probe, taps=True).taps,
        forward_quantized(model, probe, plan, taps=True).taps,
        quant.saturation,
    )
    _look_again(config, work, fed)
    if fed is not None:
        work.calibration = {name: to_state(obs) for name, obs in fed.items()}
    _timed(work, "score", started)
    return work


def _look_again(config: Config, work: DayWork, fed: dict | None) -> None:
    """Look at the day as scored so far and, while its verdict is close, score more
    of its traffic at the next look of its schedule (lpmon.pipeline.adaptive)."""
    d = day_of(config, work)
    looks = day_looks(d.settings, work)
    while True:
        compare_step(config, work)
        close = assess_day(d.store, d.settings, work).close
        work.looks = looks.look_of(work.sample_size) + 1
        work.stop_reason = adaptive.stop_reason(looks, work, close)
        if work.stop_reason:
            return
        adaptive.extend(d, work, looks.sizes[work.looks], fed)


def _waited_for_onboarding(previous: dict, events: list[dict]) -> bool:
    """Whether a day's first run found the model without a plan and waited for
    onboarding's evidence, the model's first plan being promoted on a later day."""
    return (
        previous["plan_version"] is None
        and previous["status"] == Status.INSUFFICIENT_DATA.value
        and (previous["message"] or "").startswith(ONBOARDING_WAITS)
        and bool(events)
        and events[0]["logical_date"] > previous["logical_date"]
    )


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
    assessment = assess_day(day_of(config, work).store, settings, work)
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
            work.reasons.append(logged_degraded_reason(settings, Comparison(**work.comparison), worst_segments(work)))
    work.next_steps = [branch]
    return branch


def record_step(config: Config, work: DayWork) -> DayWork:
    """The path without recalibration; on a HEALTHY day, units serving above their
    baseline may go back to it after enough healthy days in a row."""
    if (
        work.failure
        or work.status != Status.HEALTHY.value
        or work.action == Action.ONBOARD.value
        or config.model(work.model_id).scorer == "logged"
    ):
        return work
    d = day_of(config, work)
    streak = 1 + healthy_streak(d.store, work.model_id, d.day, work.plan_version)
    maybe_reenable(d, streak)
    return work


def recalibrate_step(config: Config, work: DayWork) -> bool:
    """New ranges, validated on held-out examples; True when the fallback search must run."""
    d = day_of(config, work)
    plan = d.plan(work.plan_version)
    calibration, _, _ = d.halves()
    pins = d.lifecycle.pins()
    candidate = assemble(
        d.model,
        ranges_of(d, calibration),
        unit_precisions(plan),
        model_id=work.model_id,
        pinned=pins,
        embedding_layout=d.settings.embedding_layout,
        provenance=provenance_of(d, len(calibration)),
    )
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
    d = day_of(config, work)
    calibration, _, _ = d.halves()
    ranges = ranges_of(d, calibration)
    plan = d.plan(work.plan_version)
    pins = d.lifecycle.pins()
    start = unit_precisions(plan)
    evidence = d.evidence()
    result, verdict = resumable_search(
        d.store,
        work.model_id,
        d.day,
        "fallback",
        d.model,
        ranges,
        start,
        evidence,
        d.settings,
        fixed=pins,
        active=plan,
        active_over_gate=True,
        creep=True,
    )

    def plan_of(precisions, **provenance):
        return assemble(
            d.model,
            ranges,
            precisions,
            model_id=work.model_id,
            pinned=pins,
            embedding_layout=d.settings.embedding_layout,
            **provenance,
        )

    precisions = result.precisions
    if not result.passed:
        precisions = whole_model_fp32(d.model, pins)
        verdict = validate(
            plan_of(precisions),
            evidence,
            d.settings.gate_pct,
            active=plan,
            active_over_gate=True,
        )
        work.reasons.append(
            f"fallback: no cheaper plan was shown within the gate ({result.reason}); "
            "whole-model fp32" + (f" but for the pinned {', '.join(sorted(pins))}" if pins else "")
        )
    moved = {n: (start[n], p) for n, p in precisions.items() if p != start[n]}
    candidate = plan_of(
        precisions, provenance=provenance_of(d, len(calibration), "raised: " + "; ".join(group_units(moved)))
    )
    work.action = Action.FALLBACK.value
    outcome = d.lifecycle.propose(candidate, d.day, Origin.FALLBACK, verdict, expected_active=work.plan_version)
    work.reasons.append(f"fallback raised {'; '.join(group_units(moved)) or 'nothing'}: {outcome.reason}")
    if outcome.promoted:
        work.new_plan_version, work.promoted = outcome.version, True
    elif outcome.lost_race:
        _rejudge(d, outcome.active_version)
    return work


def _rejudge(d: Day, version: int | None) -> None:
    """Another run promoted plan `version` while this day was being judged: judge the
    day against it instead (the winner's plan is the one in force)."""
    work = d.work
    work.plan_version = version
    quant = forward_quantized(d.model, work.require_sample()[0], d.plan(version))
    work.p_q = quant.probabilities
    compare_step(d.config, work)
    reasons = list(work.reasons)
    decide_step(d.config, work)
    work.action = Action.RECORD.value
    work.reasons = reasons + [f"plan v{version} came into force meanwhile; judged against it: "] + work.reasons


def report_step(config: Config, work: DayWork) -> RunResult:
    """Write the day's rows in one transaction and export the active plan."""
    d = day_of(config, work)
    store, model_id = d.store, work.model_id
    assert work.status is not None and work.action is not None, "decide (or a failure) sets both"
    total = sum(v for k, v in work.timings.items() if k != "total_s")
    work.timings["total_s"] = round(total, 3)
    order.check_not_put_back(store, model_id, d.day)
    with store.db.transaction() as c:
        if work.failure:
            store.record_run(
                model_id,
                d.day,
                work.failure,
                message=work.message,
                sample_size=work.sample_size or None,
                positives=work.positives if work.sample_size else None,
                connection=c,
            )
        else:
            store.record_run(
                model_id,
                d.day,
                work.status,
                message="; ".join(work.reasons),
                plan_version=work.plan_version,
                sample_size=work.sample_size,
                positives=work.positives,
                timings=work.timings,
                spent=(work.sample_size, work.looks, work.stop_reason) if work.stop_reason else None,
                connection=c,
            )
            if work.comparison is not None:
                store.record_metrics(model_id, d.day, Comparison(**work.comparison), connection=c)
            for segment, comparison in sorted(work.segment_results.items()):
                store.record_metrics(model_id, d.day, Comparison(**comparison), segment=segment, connection=c)
            store.record_layer_metrics(model_id, d.day, work.layers, connection=c)
            store.record_calibration_states(model_id, d.day, work.calibration, connection=c)
        store.record_decision(
            model_id, d.day, work.action, work.reasons, work.new_plan_version if work.promoted else None, connection=c
        )
    export.publish(config, store, model_id)  # a failure is recorded, then raised (the rows are in)
    dne = work.comparison["dne_pct"] if work.comparison else None
    return RunResult(
        model_id,
        d.day,
        work.status,
        work.action,
        "; ".join(work.reasons),
        work.plan_version,
        work.new_plan_version if work.promoted else None,
        dne,
        promoted=work.promoted,
        examples_scored=work.sample_size if work.stop_reason else 0,
        looks=work.looks,
        stop_reason=work.stop_reason,
    )
