"""The fallback search's greedy logic (lpmon.pipeline.search), on made-up scores:
no model, no data. Also the saved-progress format lpmon.pipeline.fallback resumes from."""

import json
from types import SimpleNamespace

import pytest

from lpmon.pipeline.fallback import resumed, saved_state
from lpmon.pipeline.assembly import Unit
from lpmon.pipeline.search import Move, fallback_search

GATE = 0.05

# A unit's error at a precision, times its sensitivity, is its share of the score.
ERROR = {"int2": 16.0, "int4": 4.0, "int8": 1.0, "bf16": 0.02, "fp16": 0.01, "fp32": 0.0}


def sensitivities(by_unit):
    """A fake evaluation: the score is every unit's sensitivity times its precision's error."""
    calls = []

    def score(precisions):
        calls.append(dict(precisions))
        return sum(by_unit.get(unit, 0.0) * ERROR[p] for unit, p in precisions.items())
    score.calls = calls
    return score


def passes_under(limit, score, degraded_over=1.0):
    """accept: passes at a score within `limit`; `degraded` (the interval above the gate) over `degraded_over`."""
    calls = []

    def accept(precisions):
        calls.append(dict(precisions))
        s = score(precisions)
        return SimpleNamespace(passed=s <= limit, degraded=s > degraded_over, reason=f"score {s:.3f}")
    accept.calls = calls
    return accept


def linear(*names, rows=10, cols=10):
    return {name: Unit(name, "linear", rows, cols) for name in names}


def int8(units, **overrides):
    return {unit: "int8" for unit in units} | overrides


FOUR = linear("a", "b", "c", "d")   # same size: a move costs the same bytes whichever unit it raises
SENSITIVE = {"a": 0.4, "b": 0.2, "c": 0.01, "d": 0.002}


def test_the_most_sensitive_units_are_raised_first_and_the_search_stops_when_the_plan_passes():
    score = sensitivities(SENSITIVE)
    accept = passes_under(GATE, score)
    result = fallback_search(int8(FOUR), units=FOUR, score=score, accept=accept, target=GATE)
    assert result.passed and result.reason == "score 0.018"
    assert [m.unit for m in result.moves] == ["a", "b"] and result.rounds == 1
    assert result.moves[0] == Move("a", "int8", "fp16", result.moves[0].why) and "removes 0.3960" in result.moves[0].why
    assert result.precisions == {"a": "fp16", "b": "fp16", "c": "int8", "d": "int8"}
    assert len(accept.calls) == 1                      # validated once: the first plan within the target passed


def test_a_plan_already_within_the_target_is_validated_as_it_is():
    score = sensitivities({"a": 0.01})
    rounds = []
    result = fallback_search(int8(FOUR), units=FOUR, score=score, accept=passes_under(GATE, score), target=GATE,
                             on_step=rounds.append)
    assert result.passed and result.moves == [] and result.rounds == 0 and rounds == []
    assert all(call == int8(FOUR) for call in score.calls)   # no move was even tried


def test_gain_is_weighed_per_byte_so_a_cheap_unit_goes_before_a_costly_one():
    units = linear("small", rows=10, cols=10) | linear("big", rows=1000, cols=1000)
    score = sensitivities({"small": 0.3, "big": 0.5})
    result = fallback_search(int8(units), units=units, score=score, accept=passes_under(GATE, score), target=GATE)
    assert [m.unit for m in result.moves] == ["small", "big"] and result.passed


def test_a_move_that_removes_next_to_nothing_is_not_made_however_cheap():
    units = linear("culprit", rows=100, cols=100) | linear("tiny", rows=1, cols=1)
    score = sensitivities({"culprit": 0.5, "tiny": 0.02})   # tiny's gain: 4 % of the culprit's
    result = fallback_search(int8(units), units=units, score=score, accept=passes_under(GATE, score), target=GATE)
    assert result.moved == ["culprit"] and result.passed


def test_frozen_units_never_move_even_when_they_are_at_fault():
    score = sensitivities(SENSITIVE)
    result = fallback_search(int8(FOUR), units=FOUR, score=score, accept=passes_under(GATE, score), target=GATE,
                             frozen={"a"})
    assert "a" not in result.moved and result.precisions["a"] == "int8"
    assert not result.passed and result.reason == "score 0.400"
    assert all(result.precisions[u] == "fp32" for u in "bcd")  # all else went as far as it could


def test_when_nothing_passes_the_result_is_the_last_plan_with_its_verdict():
    score = sensitivities(SENSITIVE)
    accept = lambda p: SimpleNamespace(passed=False, degraded=True, reason="never")  # noqa: E731
    rounds = []
    result = fallback_search(int8(FOUR), units=FOUR, score=score, accept=accept, target=GATE,
                             on_step=lambda r: rounds.append(r.rounds))
    assert not result.passed and result.reason == "never"
    assert set(result.precisions.values()) == {"fp32"}           # it climbed to the top before giving up
    assert rounds == list(range(1, result.rounds + 1))
    assert [m.after for m in result.moves if m.unit == "a"] == ["fp16", "fp32"]


def test_max_rounds_validates_what_it_has_and_stops():
    units = {"t": Unit("t", "embedding", 10, 16)}
    score = sensitivities({"t": 1.0})
    result = fallback_search({"t": "int2"}, units=units, score=score, accept=passes_under(GATE, score),
                             target=GATE, max_rounds=1)
    assert result.rounds == 1 and result.precisions == {"t": "int4"} and not result.passed
    assert result.reason == "score 4.000"


def test_a_table_climbs_its_ladder_one_rung_a_move():
    units = {"t": Unit("t", "embedding", 10, 16)}
    score = sensitivities({"t": 0.04})   # int2 0.64, int4 0.16, int8 0.04: passes at int8
    result = fallback_search({"t": "int2"}, units=units, score=score, accept=passes_under(GATE, score), target=GATE)
    assert result.passed and [(m.before, m.after) for m in result.moves] == [("int2", "int4"), ("int4", "int8")]


def test_a_too_wide_verdict_ends_the_search_unless_it_creeps():
    # Validation passes only well under the estimate's target, and never calls the plan degraded.
    score = sensitivities({"a": 0.04, "b": 0.02})   # 0.06: over the gate; raising `a` gives 0.0204
    args = dict(units=linear("a", "b"), score=score, target=GATE)
    strict = passes_under(0.005, score, degraded_over=float("inf"))
    stopped = fallback_search(int8(linear("a", "b")), accept=strict, **args)
    assert not stopped.passed and stopped.moved == ["a"]
    crept = fallback_search(int8(linear("a", "b")), accept=strict, creep=True, **args)
    assert crept.passed and crept.moved == ["a", "b"] and crept.rounds == 2


def test_a_degraded_verdict_makes_the_search_aim_lower():
    score = sensitivities({"a": 0.04, "b": 0.02})
    strict = passes_under(0.005, score, degraded_over=0.01)   # the raised-`a` plan (0.0204) is degraded
    result = fallback_search(int8(linear("a", "b")), units=linear("a", "b"), score=score, accept=strict,
                             target=GATE)
    assert result.passed and result.moved == ["a", "b"]


def test_no_helpful_move_takes_the_whole_model_to_fp32():
    def score(precisions):  # nothing alone helps; only all-fp32 does
        return 0.0 if all(p == "fp32" for p in precisions.values()) else 0.3

    result = fallback_search(int8(FOUR), units=FOUR, score=score, accept=passes_under(GATE, score), target=GATE)
    assert result.passed and set(result.precisions.values()) == {"fp32"} and result.rounds == 1
    assert "whole-model fp32" in result.moves[0].why


def test_the_search_cannot_start_from_a_plan_of_other_units():
    score = sensitivities({})
    with pytest.raises(ValueError, match="the start plan covers"):
        fallback_search({"a": "int8"}, units=FOUR, score=score, accept=passes_under(GATE, score), target=GATE)


# --- progress, saved and resumed -----------------------------------------------------------

def climbing():
    units = {f"t{i}": Unit(f"t{i}", "embedding", 10, 16) for i in range(3)}
    score = sensitivities({"t0": 0.3, "t1": 0.1, "t2": 0.01})
    return {u: "int2" for u in units}, dict(units=units, score=score, accept=passes_under(GATE, score), target=GATE)


def test_on_step_is_called_after_every_round_with_the_progress_so_far():
    start, args = climbing()
    seen = []
    result = fallback_search(start, on_step=lambda r: seen.append((r.rounds, dict(r.precisions), len(r.moves))),
                             **args)
    assert result.rounds >= 2 and [s[0] for s in seen] == list(range(1, result.rounds + 1))
    assert seen[-1][1] == result.precisions and seen[-1][2] == len(result.moves)
    assert [s[2] for s in seen] == sorted(s[2] for s in seen) and seen[0][2] >= 1


def test_an_interrupted_search_resumes_where_it_stopped():
    start, args = climbing()
    whole = fallback_search(start, **args)
    saved = []

    def crash(progress):
        saved.append((dict(progress.precisions), list(progress.moves)))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fallback_search(start, on_step=crash, **args)
    resumed_search = fallback_search(start, resume=saved[-1], **args)
    assert resumed_search.precisions == whole.precisions and resumed_search.moves == whole.moves
    assert resumed_search.rounds == whole.rounds - 1
    with pytest.raises(ValueError, match="cannot resume"):
        fallback_search(start, resume=({"x": "int8"}, []), **args)


def test_saved_progress_round_trips_through_the_stored_format():
    start, args = climbing()
    rows = []

    def save(progress):  # what resumable_search writes: step, best_plan_json, state_json
        rows.append({"step": len(progress.moves), "best": json.loads(json.dumps(progress.precisions)),
                     "state": json.loads(saved_state("fallback", start, progress.moves))})
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fallback_search(start, on_step=save, **args)
    assert set(rows[0]["state"]) == {"purpose", "start", "steps"}   # the stored key is still "steps"
    precisions, moves = resumed(rows[0], "fallback", start)
    assert len(moves) == rows[0]["step"] and all(isinstance(m, Move) for m in moves)
    assert fallback_search(start, resume=(precisions, moves), **args).precisions == fallback_search(start, **args).precisions
    assert resumed(rows[0], "onboard", start) is None                              # another search's progress
    assert resumed(rows[0], "fallback", dict(start, t0="int8")) is None            # another start
    assert resumed(None, "fallback", start) is None


def test_progress_saved_by_an_earlier_lpmon_is_still_resumed():
    start = {"bot_l.0": "int8", "emb_l.0": "int8"}
    state = ('{"purpose": "fallback", "start": {"bot_l.0": "int8", "emb_l.0": "int8"}, "steps": '
             '[{"after": "fp16", "before": "int8", "unit": "bot_l.0", "why": "alone removes 0.2 of 0.3"}]}')
    saved = {"step": 1, "best": {"bot_l.0": "fp16", "emb_l.0": "int8"}, "state": json.loads(state)}
    assert resumed(saved, "fallback", start) == (saved["best"], [Move("bot_l.0", "int8", "fp16",
                                                                      "alone removes 0.2 of 0.3")])
    odd = dict(saved, state=dict(saved["state"], steps=[{"unit": "bot_l.0", "from": "int8"}]))
    assert resumed(odd, "fallback", start) is None    # a format it cannot read: start afresh


def test_a_far_off_plan_climbs_every_table_until_it_passes_and_leaves_the_fc_layers():
    units = linear("bot", rows=64, cols=13) | linear("top", rows=1, cols=64) | {
        f"emb_l.{t}": Unit(f"emb_l.{t}", "embedding", 1000, 16) for t in range(4)}
    faults = {(f"emb_l.{t}", "int2"): 0.4 for t in range(4)} | {(f"emb_l.{t}", "int4"): 0.05 for t in range(4)}

    def score(precisions):
        return sum(faults.get((unit, p), 0.0) for unit, p in precisions.items())

    start = {u: ("int2" if u.startswith("emb") else "int8") for u in units}
    result = fallback_search(start, units=units, score=score, accept=passes_under(GATE, score), target=GATE)
    assert result.passed and all(result.precisions[f"emb_l.{t}"] == "int8" for t in range(4))
    assert result.precisions["bot"] == "int8" and result.precisions["top"] == "int8"
