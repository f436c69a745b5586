"""Looks within a day (lpmon.verdict.looks): the schedule, the spending of the day's
false-alarm budget over it, and, in simulation, that repeated looks keep the
interval's coverage and the false-alarm rate within the bounds of one look."""

import datetime as dt

import numpy as np
import pytest

from lpmon.metrics import compare
from lpmon.pipeline.adaptive import stop_reason
from lpmon.pipeline.daywork import DayWork
from lpmon.policy import Rules, Status, assess
from lpmon.verdict import DayEvidence, SequentialGate, pool
from lpmon.verdict.looks import Looks

START = dt.date(2026, 11, 1)


def test_the_schedule_doubles_up_to_the_cap():
    assert Looks.of(10_000, 100_000, 1000).sizes == (10_000, 20_000, 40_000, 80_000, 100_000)
    assert Looks.of(10_000, 10_000, 1000).sizes == (10_000,)  # max_sample_size = sample_size: one look
    assert Looks.of(10_000, 4_000, 1000).sizes == (4_000,)  # a day smaller than the sample: one look
    looks = Looks.of(10_000, 100_000, 1000)
    assert [looks.look_of(n) for n in (10_000, 39_999, 40_000, 100_000)] == [0, 1, 2, 4]


def test_the_looks_spend_the_days_budget_and_one_look_is_the_single_look():
    looks = Looks.of(10_000, 100_000, 1000)
    assert sum(looks.alpha_at(k) for k in range(len(looks.sizes))) == pytest.approx(1 / 2000)
    single = SequentialGate(1000).single_look_z
    assert Looks.of(10_000, 10_000, 1000).z_needed(0) == pytest.approx(single)
    # O'Brien-Fleming-type: early looks need a large excess, the last about one look's z.
    needed = [looks.z_needed(k) for k in range(len(looks.sizes))]
    assert needed == sorted(needed, reverse=True) and needed[0] > 10
    assert single < needed[-1] < single + 0.1


@pytest.mark.parametrize(
    "close, looks, scored, rows, reason",
    [
        (False, 1, 10_000, 50_000, "decided"),
        (True, 1, 10_000, 50_000, None),  # look again
        (True, 4, 50_000, 50_000, "traffic_exhausted"),
        (True, 5, 100_000, 500_000, "cap"),
        (True, 1, 3_000, 3_000, "traffic_exhausted"),  # a day smaller than the sample
    ],
)
def test_why_a_day_stops(close, looks, scored, rows, reason):
    schedule = Looks.of(10_000, min(100_000, rows), 1000)
    work = DayWork("m", "2026-11-01", sample_size=scored, day_rows=rows, looks=looks)
    assert stop_reason(schedule, work, close) == reason


def test_repeated_looks_keep_the_days_false_alarm_rate():
    """At a true dNE exactly at the gate the looks' z-statistics are a Brownian motion
    observed at the schedule's information fractions: crossing any look's boundary is
    no likelier than the day's budget (the union bound), and not far below it."""
    looks = Looks.of(1_000, 10_000, 20)  # alpha = 1/40, large enough to measure
    rng = np.random.default_rng(11)
    sims = 400_000
    sizes = np.array(looks.sizes, float)
    increments = rng.standard_normal((sims, len(sizes))) * np.sqrt(np.diff(sizes, prepend=0.0))
    z = np.cumsum(increments, axis=1) / np.sqrt(sizes)
    crossed = (z > np.array([looks.z_needed(k) for k in range(len(sizes))])).any(axis=1).mean()
    assert 0.5 * looks.alpha < crossed <= looks.alpha + 3 * np.sqrt(looks.alpha / sims), crossed


def _draw(rng, n):
    p = 1 / (1 + np.exp(-rng.normal(-1.5, 1.0, n)))
    q = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + rng.normal(0.0, 0.12, n))))
    return p, q, (rng.random(n) < p).astype(np.uint8)


def _adaptive_day(rng, history, i, rules, first, cap):
    """One day judged as the pipeline judges it: look, and score more while close."""
    looks, parts = Looks.of(first, cap, rules.sequential_run_length_days), []
    for k, size in enumerate(looks.sizes):
        parts.append(_draw(rng, size - sum(len(p[2]) for p in parts)))
        p, q, y = (np.concatenate(a) for a in zip(*parts))
        today = DayEvidence.from_metrics(str(START + dt.timedelta(days=i)), compare(p, q, y).as_dict(), 0.95)
        a = assess(today, history, rules, z_needed=looks.z_needed(k))
        if not a.close:
            break
    return today, a


def test_the_interval_at_the_stopping_look_covers_the_truth():
    """Days near the gate stop at different looks (the rule looks at the estimate):
    the interval they stop with still covers the true dNE within the single day's bounds."""
    rng = np.random.default_rng(5)
    p, q, y = _draw(rng, 2_000_000)
    truth = compare(p, q, y).dne_pct
    rules = Rules(gate_pct=truth, min_examples=500, min_positives=50, window_days=1)  # the gate at the truth
    covered = looks_taken = 0
    for i in range(300):
        today, _ = _adaptive_day(rng, [], i, rules, 1_000, 8_000)
        looks_taken += today.n > 1_000
        e = today.se_pct * 1.959964
        covered += today.dne_pct - e <= truth <= today.dne_pct + e
    assert looks_taken > 60  # many days did look again
    assert 0.91 <= covered / 300 <= 0.985, covered


def test_the_pooled_window_of_adaptive_days_covers_the_truth():
    """Five days, each stopped at its own look, pooled as the policy pools them: the
    window's interval covers the true dNE within the bounds of fixed-size days."""
    rng = np.random.default_rng(6)
    p, q, y = _draw(rng, 2_000_000)
    truth = compare(p, q, y).dne_pct
    rules = Rules(gate_pct=truth, min_examples=500, min_positives=50)
    covered, sizes = 0, set()
    for _ in range(150):
        days = []
        for i in range(5):
            today, _ = _adaptive_day(rng, days, i, rules, 1_000, 8_000)
            days.append(today)
            sizes.add(today.n)
        e = pool(days, 0.95)
        covered += e.lo <= truth <= e.hi
    assert len(sizes) > 2  # the days stopped at different looks
    assert 0.91 <= covered / 150 <= 0.985, covered


def test_adaptive_days_keep_the_sequential_run_length_at_the_gate():
    """The whole rule (looks within days, the CUSUM and the window across them) at a true
    dNE at the gate: a false DEGRADED no sooner than the budget's run length, on average."""
    rng = np.random.default_rng(9)
    p, q, y = _draw(rng, 2_000_000)
    run_length = 20
    rules = Rules(
        gate_pct=compare(p, q, y).dne_pct, min_examples=500, min_positives=50, sequential_run_length_days=run_length
    )
    runs = []
    for _ in range(40):
        history = []
        for i in range(4 * run_length):
            today, a = _adaptive_day(rng, history, i, rules, 1_000, 4_000)
            if a.status is Status.DEGRADED:
                break
            history.append(today)
        runs.append(i + 1)
    assert np.mean(runs) >= 0.8 * run_length, runs


def test_a_sudden_excess_after_good_days_is_scored_further_and_degraded_at_the_cap():
    """A day 6 standard errors over the gate after a good week: the window dilutes it,
    and the first look needs ~11 standard errors, so it must be close (its own interval
    is wholly above the gate) and be DEGRADED once scored to its cap, as one look at
    that size would call it (found by review: it stopped at the first look, WARN)."""
    rules = Rules(gate_pct=0.05, min_examples=1000, min_positives=50)
    se = 0.01  # at sample_size; 1/sqrt(10) of it at the cap
    earlier = [DayEvidence(str(START + dt.timedelta(days=i)), 200_000, 6000, 0.0, se, 1000.0) for i in range(6)]
    looks = Looks.of(200_000, 2_000_000, rules.sequential_run_length_days)
    day = str(START + dt.timedelta(days=6))
    first = assess(
        DayEvidence(day, 200_000, 6000, 0.05 + 6 * se, se, 1000.0), earlier, rules, z_needed=looks.z_needed(0)
    )
    assert first.status is Status.WARN and first.close
    last = len(looks.sizes) - 1
    at_cap = DayEvidence(day, 2_000_000, 60_000, 0.05 + 6 * se, se / np.sqrt(10), 1000.0)
    assert assess(at_cap, earlier, rules, z_needed=looks.z_needed(last)).status is Status.DEGRADED
    # An excess the day's own interval does not show (and the window does not) stops at one look.
    mild = assess(
        DayEvidence(day, 200_000, 6000, 0.05 + 1.5 * se, se, 1000.0), earlier, rules, z_needed=looks.z_needed(0)
    )
    assert mild.status is Status.WARN and not mild.close
