"""The plan lifecycle's rules, on comparisons and plans passed in (no model, no world),
and its promotions against a real store on SQLite and PostgreSQL."""

import dataclasses

import numpy as np
import pytest

from lpmon.pipeline.lifecycle import (Origin, PlanLifecycle, Verdict, changed_units, cooling_units, group_units, judge,
                             layer_from_json, layer_to_json, reenable_targets, same_quantization, validate)
from lpmon.metrics import compare
from lpmon.quant import ActivationRange, LayerPlan, QuantPlan
from lpmon.store import Database, StateStore, init_store

GATE = 0.05
_BASE = compare(np.full(10, 0.3), np.full(10, 0.3), np.array([0, 1] * 5, np.uint8))


def comparison(point, lo, hi, n=10_000):
    return dataclasses.replace(_BASE, dne_pct=point, dne_pct_lo=lo, dne_pct_hi=hi, n=n)


def plan(version=1, bot="int8", lo=-1.0, table="int8"):
    activation = ActivationRange(lo, 1.0, 2 / 255, 128) if bot == "int8" else None
    return QuantPlan("m", version, (LayerPlan("bot_l.0", "linear", bot, activation=activation),
                                    LayerPlan("emb_l.0", "embedding", table)))


# --- rule 1: promotion needs confidence ----------------------------------------------------

def test_a_candidate_passes_only_with_its_whole_interval_under_the_gate():
    assert judge(comparison(0.01, -0.02, 0.05), GATE).passed  # on the gate is within it
    wide = judge(comparison(0.01, -0.08, 0.10), GATE)
    assert not wide.passed and not wide.degraded and "not shown within the 0.05 % gate" in wide.reason
    bad = judge(comparison(0.2, 0.1, 0.3), GATE)
    assert not bad.passed and bad.degraded and "above the 0.05 % gate" in bad.reason


def test_being_significantly_better_counts_only_against_a_plan_over_the_gate():
    candidate = comparison(0.03, -0.05, 0.11)
    better = comparison(-0.4, -0.6, -0.2)
    assert not judge(candidate, GATE).passed                              # nothing to compare with
    verdict = judge(candidate, GATE, versus_active=better)
    assert verdict.passed and "significantly better than the plan in force" in verdict.reason
    assert not judge(candidate, GATE, versus_active=comparison(-0.1, -0.3, 0.1)).passed  # not significant
    assert not judge(comparison(0.08, -0.01, 0.17), GATE, versus_active=better).passed  # estimate over the gate


class FakeEvidence:
    """Comparisons that tighten as evidence is drawn, up to `draws` extensions."""

    def __init__(self, intervals, versus=None):
        self.intervals, self.versus, self.drawn = list(intervals), versus, 0

    @property
    def n(self):
        return 5_000 * (1 + self.drawn)

    def compare(self, _plan):
        return comparison(*self.intervals[self.drawn], n=self.n)

    def paired(self, _candidate, _active):
        return self.versus

    def extend(self):
        if self.drawn + 1 >= len(self.intervals):
            return False
        self.drawn += 1
        return True


def test_validation_draws_more_evidence_only_while_it_is_inconclusive():
    evidence = FakeEvidence([(0.01, -0.09, 0.11), (0.01, -0.04, 0.06), (0.01, -0.02, 0.04)])
    verdict = validate(plan(), evidence, GATE)
    assert verdict.passed and evidence.drawn == 2 and verdict.n == 15_000
    clear = FakeEvidence([(0.3, 0.2, 0.4), (0.01, -0.02, 0.04)])
    assert validate(plan(), clear, GATE).degraded and clear.drawn == 0   # clearly bad: no more is drawn


def test_a_candidate_that_cannot_be_shown_is_not_promoted_and_says_why():
    evidence = FakeEvidence([(0.01, -0.09, 0.11), (0.01, -0.07, 0.09)])
    verdict = validate(plan(), evidence, GATE)
    assert not verdict.passed and "all the evidence available: 10,000 examples" in verdict.reason


def test_the_paired_comparison_is_used_only_when_the_plan_in_force_is_over_the_gate():
    evidence = FakeEvidence([(0.02, -0.05, 0.09)], versus=comparison(-0.5, -0.7, -0.3))
    assert not validate(plan(2), evidence, GATE, active=plan(1), active_over_gate=False).passed
    assert validate(plan(2), evidence, GATE, active=plan(1), active_over_gate=True).passed


# --- rule 3: no churn, no flapping ------------------------------------------------------

def test_identical_plans_and_changed_units():
    assert same_quantization(plan(1), plan(7))
    assert not same_quantization(plan(1), plan(1, lo=-2.0))
    assert changed_units(plan(1), plan(2, bot="fp16")) == ["bot_l.0"]
    assert changed_units(None, plan(1)) == ["bot_l.0", "emb_l.0"]


def test_cooldown_covers_the_units_a_recent_promotion_changed():
    promotions = [("2026-11-01", ["emb_l.0"]), ("2026-11-10", ["bot_l.0"])]
    assert cooling_units(promotions, "2026-11-12", 7) == {"bot_l.0"}
    assert cooling_units(promotions, "2026-11-16", 7) == {"bot_l.0"}
    assert cooling_units(promotions, "2026-11-17", 7) == set()
    assert cooling_units(promotions, "2026-11-10", 7) == set()  # a rerun of the promotion day: not its own


def test_reenabling_returns_units_to_their_baseline_only():
    active = {"bot_l.0": "fp16", "top_l.0": "fp32", "emb_l.0": "fp16", "emb_l.1": "int8"}
    baseline = {"bot_l.0": "int8", "top_l.0": "fp16", "emb_l.0": "int4", "emb_l.1": "int8"}
    assert reenable_targets(active, baseline, pinned=set(), cooling=set()) == {
        "bot_l.0": "int8", "top_l.0": "fp16", "emb_l.0": "int4"}
    assert reenable_targets(active, baseline, pinned={"bot_l.0"}, cooling={"emb_l.0"}) == {"top_l.0": "fp16"}


def test_many_table_moves_are_grouped_and_numbered_naturally():
    moves = {f"emb_l.{i}": ("int8", "fp16") for i in range(26)} | {"bot_l.0": ("int8", "fp16"),
                                                                   "emb_l.30": ("int4", "int8")}
    assert group_units(moves) == ["bot_l.0 int8 -> fp16", "26 embedding tables int8 -> fp16",
                                  "emb_l.30 int4 -> int8"]


def test_a_pinned_layer_round_trips_with_the_plan_checks():
    layer = plan().layer("bot_l.0")
    assert layer_from_json("bot_l.0", layer_to_json(layer)) == layer
    with pytest.raises(ValueError, match="activation"):
        layer_from_json("bot_l.0", '{"kind": "linear", "precision": "int8", "scheme": "per_channel_symmetric"}')


# --- promotions against a real store ----------------------------------------------------

@pytest.fixture
def lifecycle(database_url):
    init_store(database_url)
    db = Database(database_url)
    store = StateStore(db)
    store.register_model("m")
    yield PlanLifecycle(store, "m")
    db.engine.dispose()


PASS = Verdict(True, "passed", 10_000)


def test_promotion_is_one_version_and_a_rerun_reports_the_same(lifecycle):
    first = lifecycle.propose(plan(), "2026-11-01", Origin.ONBOARD, PASS, expected_active=None)
    assert first.promoted and first.version == 1
    again = lifecycle.propose(plan(), "2026-11-01", Origin.ONBOARD, PASS, expected_active=None)
    assert again.promoted and again.version == 1 and again.reason == first.reason
    assert [p["version"] for p in lifecycle.store.rows("plans", "m")] == [1]
    assert lifecycle.baseline() == {"bot_l.0": "int8", "emb_l.0": "int8"}


def test_identical_candidates_are_not_stored_and_failed_ones_are_not_promoted(lifecycle):
    lifecycle.propose(plan(), "2026-11-01", Origin.ONBOARD, PASS, expected_active=None)
    same = lifecycle.propose(plan(9), "2026-11-02", Origin.FALLBACK, PASS, expected_active=1)
    assert not same.promoted and "identical to plan v1" in same.reason
    failed = lifecycle.propose(plan(2, bot="fp16"), "2026-11-02", Origin.FALLBACK,
                               Verdict(False, "not shown within the gate"), expected_active=1)
    assert not failed.promoted and failed.reason == "not shown within the gate"
    assert [p["version"] for p in lifecycle.store.rows("plans", "m")] == [1]


def test_the_loser_of_a_race_is_told_which_plan_won(lifecycle):
    lifecycle.propose(plan(), "2026-11-01", Origin.ONBOARD, PASS, expected_active=None)
    won = lifecycle.propose(plan(bot="fp16"), "2026-11-02", Origin.FALLBACK, PASS, expected_active=1)
    lost = lifecycle.propose(plan(lo=-3.0), "2026-11-03", Origin.RECALIBRATE, PASS, expected_active=1)
    assert won.promoted and won.version == 2
    assert lost.lost_race and lost.active_version == 2 and not lost.promoted
    assert lifecycle.store.active_plan("m").version == 2


def test_a_forced_promotion_is_recorded_as_such_and_stored_plans_are_numbered_truly(lifecycle):
    imported = lifecycle.store_candidate(plan(42, table="int4"), "2026-11-01", Origin.USER)
    assert imported == 1 and lifecycle.plan(1).version == 1                  # the file's 42 is not kept
    assert lifecycle.store_candidate(plan(43, table="int4"), "2026-11-02", Origin.USER) == 1  # the same plan
    forced = lifecycle.propose(lifecycle.plan(1), "2026-11-02", Origin.USER, None, expected_active=None,
                               forced=True, stored=1)
    assert forced.promoted and forced.version == 1 and lifecycle.store.active_plan("m").version == 1
    event = lifecycle.store.plan_events("m")[-1]
    assert event["forced"] == 1 and "forced by the user" in event["reason"] and event["origin"] == "USER"


def test_pins_keep_layers_as_pinned(lifecycle):
    lifecycle.propose(plan(bot="fp16"), "2026-11-01", Origin.ONBOARD, PASS, expected_active=None)
    assert lifecycle.pin(1, ["bot_l.0"]) == ["bot_l.0"]
    assert lifecycle.pins() == {"bot_l.0": plan(bot="fp16").layer("bot_l.0")}
    with pytest.raises(ValueError, match="no layer top_l.9"):
        lifecycle.pin(1, ["top_l.9"])
    assert lifecycle.store.unpin_layers("m") == 1 and lifecycle.pins() == {}


def test_better_than_the_plan_in_force_draws_evidence_until_it_is_settled():
    from lpmon.pipeline.lifecycle import significantly_better

    class Paired(FakeEvidence):
        def paired(self, _candidate, _active):
            return comparison(*self.intervals[self.drawn], n=self.n)

    unsettled = Paired([(-0.1, -0.3, 0.1), (-0.1, -0.2, -0.01)])
    better, versus = significantly_better(plan(2), plan(1), unsettled)
    assert better and unsettled.drawn == 1 and versus.dne_pct_hi == -0.01
    worse = Paired([(0.2, 0.1, 0.3), (-0.1, -0.2, -0.01)])
    assert significantly_better(plan(2), plan(1), worse) == (False, comparison(0.2, 0.1, 0.3, n=5_000))
