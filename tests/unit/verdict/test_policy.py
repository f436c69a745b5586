"""The policy: single days, pooled windows, the sequential gate, segments, label-free signals."""

import datetime as dt

import numpy as np
import pytest

from lpmon.policy import Action, Rules, Status, assess
from lpmon.verdict import DayEvidence, SequentialGate, cusum, judge_segments, label_free_jumps, pool
from lpmon.verdict.pooling import z_of

RULES = Rules(gate_pct=0.05, min_examples=2000, min_positives=100, max_halfwidth_gates=1.0, window_days=7)  # tighter than the default, to make pooling visible
Z = z_of(0.95)
START = dt.date(2026, 11, 1)


def day(i: int, dne: float, se: float, n: int = 10_000, positives: int = 1_000) -> DayEvidence:
    return DayEvidence(str(START + dt.timedelta(days=i)), n, positives, dne, se, n * 0.45)


@pytest.mark.parametrize("dne, se, status, action", [
    (0.01, 0.01, Status.HEALTHY, Action.RECORD),
    (0.05, 0.02, Status.HEALTHY, Action.RECORD),          # on the gate is within it
    (0.07, 0.02, Status.WARN, Action.RECORD),             # 1 SE above: WARN
    (0.09, 0.015, Status.WARN, Action.RECORD),            # 2.7 SE above: the 95 % interval clears it, not DEGRADED
    (0.12, 0.015, Status.DEGRADED, Action.RECALIBRATE),   # 4.7 SE above
    (-0.2, 0.05, Status.HEALTHY, Action.RECORD),          # better than fp32 by chance
])
def test_a_day_alone(dne, se, status, action):
    a = assess(day(0, dne, se), [], RULES)
    assert (a.status, a.action) == (status, action), a.reasons
    assert a.evidence.days == (day(0, 0, 0).day,)


def test_the_single_look_and_the_cusum_share_the_run_length():
    gate = SequentialGate(1000)
    assert gate.single_look_z == pytest.approx(3.29, abs=0.01)
    assert gate.h == pytest.approx(5.75, abs=0.01)
    assert SequentialGate(100).single_look_z < gate.single_look_z


def test_a_small_day_pools_the_trailing_days_under_its_plan_and_says_so():
    earlier = [day(i, 0.0, 0.03, n=1_500, positives=150) for i in range(3)]
    a = assess(day(3, 0.0, 0.03, n=1_500, positives=150), earlier, RULES)
    assert a.status is Status.HEALTHY
    assert len(a.evidence.days) == 2 and a.evidence.n == 3_000
    assert "2 days (2026-11-03..2026-11-04), 3,000 examples" in a.reasons[0]


def test_pooling_stops_at_the_window_and_says_how_many_examples_are_missing():
    earlier = [day(i, 0.0, 0.3, n=500, positives=50) for i in range(10)]
    a = assess(day(10, 0.0, 0.3, n=500, positives=50), earlier, RULES)
    assert a.status is Status.INSUFFICIENT_DATA and a.action is Action.RECORD
    assert a.evidence.n == 3_500 and len(a.evidence.days) == 7
    assert "7 days (2026-11-05..2026-11-11), 3,500 examples" in a.reasons[0]
    assert "more labelled examples needed" in a.reasons[0]


def test_a_wide_interval_that_decides_needs_no_more_examples():
    a = assess(day(0, 1.0, 0.1), [], RULES)   # +-0.2 % wide, but 9.5 SE above the gate
    assert a.status is Status.DEGRADED


def test_the_window_pools_in_a_stratified_way():
    a, b = day(0, 0.0, 0.02, n=10_000), day(1, 0.1, 0.04, n=30_000)
    pooled = pool([a, b], 0.95)
    assert pooled.dne_pct == pytest.approx(0.075)
    assert pooled.se_pct == pytest.approx(np.sqrt(0.25 ** 2 * 0.02 ** 2 + 0.75 ** 2 * 0.04 ** 2))


def persistent(dne: float, se: float, days: int, seed: int) -> list[DayEvidence]:
    rng = np.random.default_rng(seed)
    return [day(i, dne + se * rng.standard_normal(), se) for i in range(days)]


def first_degraded(days: list[DayEvidence], rules: Rules = RULES) -> int | None:
    for i in range(len(days)):
        if assess(days[i], days[:i], rules).status is Status.DEGRADED:
            return i
    return None


def test_a_persistent_excess_no_day_clears_is_degraded_within_days():
    # 1.5x the gate with one day's SE at the gate: no day alone is near 3.29 SE above it.
    delays = [first_degraded(persistent(0.075, 0.0125, 30, seed)) for seed in range(20)]
    assert all(d is not None for d in delays), delays
    assert np.median(delays) <= 5, delays


def test_a_stationary_dne_below_the_gate_stays_quiet():
    # 0.6x the gate, one SE per day at 0.4 gates: 20 model-months without a DEGRADED day.
    for seed in range(20):
        assert first_degraded(persistent(0.03, 0.02, 30, seed)) is None, seed


def test_the_cusum_counts_blocks_of_enough_examples_and_restarts_with_the_history():
    small = [day(i, 0.2, 0.05, n=700, positives=70) for i in range(6)]
    s = cusum(small, 0.05, 2000, 100, SequentialGate(), 0.95)
    assert s.blocks == 2 and s.days == 6 and s.closed_today   # 3 days of 700 make 2,100 examples
    assert cusum(small[:4], 0.05, 2000, 100, SequentialGate(), 0.95).closed_today is False


def test_the_cusum_false_alarm_run_length_at_the_gate():
    """At a dNE exactly at the gate the CUSUM alone alarms about once in 2 x run_length days."""
    gate, rng = SequentialGate(100), np.random.default_rng(7)
    runs, s = np.zeros(2000), np.zeros(2000)
    alive = np.ones(2000, bool)
    for t in range(1, 5000):
        s = np.maximum(0, s + rng.standard_normal(2000) - gate.k)
        alarm = alive & (s > gate.h)
        runs[alarm], alive[alarm] = t, False
        if not alive.any():
            break
    assert not alive.any()
    assert 0.85 * 200 < runs.mean() < 1.25 * 200, runs.mean()


def test_pooled_intervals_cover_the_truth():
    """The pooled window's 95 % interval, from real compare() on disjoint days, covers the true dNE."""
    from lpmon.metrics import compare

    rng = np.random.default_rng(3)

    def draw(n):
        p = 1 / (1 + np.exp(-rng.normal(-1.5, 1.0, n)))
        q = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + rng.normal(0.05, 0.15, n))))
        return p, q, (rng.random(n) < p).astype(np.uint8)

    p, q, y = draw(2_000_000)
    truth = compare(p, q, y).dne_pct   # 2M examples: its own error is ~1/20 of a 5-day window's
    covered = 0
    for _ in range(300):
        days = [DayEvidence.from_metrics(str(i), compare(*draw(2_000)).as_dict(), 0.95) for i in range(5)]
        e = pool(days, 0.95)
        covered += e.lo <= truth <= e.hi
    assert 0.91 <= covered / 300 <= 0.985, covered


def test_segments_are_judged_with_benjamini_hochberg():
    null = {("country", f"c{i:02d}"): day(0, 0.0, 0.02) for i in range(40)}
    findings, tested = judge_segments(null, 0.05, 2000, 100, warn_q=0.05, degraded_q=5e-4, level=0.95)
    assert (findings, tested) == ([], 40)
    bad = dict(null) | {("country", "zz"): day(0, 0.3, 0.03)}
    findings, tested = judge_segments(bad, 0.05, 2000, 100, warn_q=0.05, degraded_q=5e-4, level=0.95)
    assert [f.name for f in findings] == ["country=zz"] and findings[0].degraded and tested == 41
    small = {("country", "tiny"): day(0, 0.5, 0.1, n=100, positives=10)}
    assert judge_segments(small, 0.05, 2000, 100, warn_q=0.05, degraded_q=5e-4, level=0.95) == ([], 0)


def test_a_degraded_segment_alone_is_degraded_without_an_action():
    finding = judge_segments({("surface", "feed"): day(0, 0.3, 0.03)}, 0.05, 2000, 100, warn_q=0.05,
                             degraded_q=5e-4, level=0.95)
    a = assess(day(0, 0.0, 0.01), [], RULES, segments=finding)
    assert a.status is Status.DEGRADED and a.action is Action.RECORD
    assert any("segment surface=feed" in r for r in a.reasons)


def test_label_free_jumps_warn_only_where_labels_cannot_judge():
    history = [{"KL gap %": 0.01, "mean |p_fp32 - p_q|": 0.001, "saturation": 0.0}] * 5
    today = {"KL gap %": 0.08, "mean |p_fp32 - p_q|": 0.0011, "saturation": 0.0}
    jumps = label_free_jumps(today, history, 0.05)
    assert [j.signal for j in jumps] == ["KL gap %"] and "label-free: KL gap %" in jumps[0].describe()
    assert label_free_jumps(today, history[:2], 0.05) == []          # too little history
    small = day(0, 0.0, 0.5, n=500, positives=50)
    a = assess(small, [], RULES, label_free=jumps)
    assert a.status is Status.WARN and any(r.startswith("label-free:") for r in a.reasons)
    b = assess(day(0, 0.0, 0.01), [], RULES, label_free=jumps)
    assert b.status is Status.HEALTHY and any(r.startswith("label-free:") for r in b.reasons)


def test_nothing_to_compare_is_insufficient():
    a = assess(None, [], RULES, why_none="no traffic")
    assert a.status is Status.INSUFFICIENT_DATA and a.reasons == ("no traffic",)


def test_gate_must_be_positive():
    with pytest.raises(ValueError):
        Rules(gate_pct=0)


def test_after_a_traffic_change_the_window_pools_only_the_days_since():
    before = [day(i, 0.0, 0.03, n=1_500, positives=150) for i in range(5)]
    since = [day(5, 0.5, 0.4, n=1_500, positives=150)]
    today = day(6, 0.5, 0.4, n=1_500, positives=150)
    pooled = assess(today, before + since, RULES)
    assert len(pooled.evidence.days) > 2                     # diluted by the days before the change
    a = assess(today, before + since, RULES, comparable=since)
    assert a.evidence.days == (since[0].day, today.day)
    assert a.status is Status.INSUFFICIENT_DATA and "2 days" in a.reasons[0]
