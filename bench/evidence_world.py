"""Evidence across days on traffic whose true dNE is known (bench_decisions --evidence).

Each model-day holds 10x the initial sample's examples: p_fp32 =
sigmoid(N(-1.5, 1)) (about 22 % positives), labels from p_fp32 (the reference
is the label model), and p_q = sigmoid(logit p_fp32 + N(0, sigma)), sigma set
so that the true dNE (the expected log-loss gap over the reference's, on 4M
examples) is the world's. Every look is compared with lpmon.metrics.compare
and judged with lpmon.policy.assess over the plan's earlier days, exactly as
the pipeline does; the plan never changes (no action is simulated), so a
world's days are one plan's tenure. Three rules, each on its own draws:

  fixed     the initial sample alone, every day (lpmon before adaptive sampling)
  adaptive  the initial sample, more of the day while the verdict is close
            (lpmon.pipeline.adaptive: looks at n * 2^k up to 10n, each with its
            share of the day's false-alarm budget, lpmon.verdict.looks)
  whole     the whole day scored every day (10n, one look)

Worlds: near_gate (true dNE 0.6x the gate, stable: every DEGRADED day is
false) and small_excess (1.5x the gate from day 1: every day not DEGRADED is
a miss). Printed per world, initial size and rule: false DEGRADED days per 100
model-months, detection delay in days (median, and the share detected within
5 days), the share of days with a verdict (HEALTHY, WARN or DEGRADED on the
labels) and the mean examples scored a day; then the targets of issue 30 with
PASS or MISS.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from lpmon.metrics import compare
from lpmon.policy import VERDICTS, Rules, assess
from lpmon.verdict import DayEvidence
from lpmon.verdict.looks import Looks

WORLDS = {"near_gate": 0.6, "small_excess": 1.5}
TRUTH_EXAMPLES = 4_000_000


def _draw(rng, n: int, sigma: float):
    logit = rng.normal(-1.5, 1.0, n)
    p = 1 / (1 + np.exp(-logit))
    q = 1 / (1 + np.exp(-(logit + rng.normal(0.0, sigma, n))))
    return p, q, (rng.random(n) < p).astype(np.uint8)


def true_dne(sigma: float, examples: int = TRUTH_EXAMPLES) -> float:
    """The expected dNE % at sigma: mean KL over mean reference loss (labels follow p_fp32)."""
    p, q, _ = _draw(np.random.default_rng(12345), examples, sigma)
    kl = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    loss = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    return 100 * kl.mean() / loss.mean()


def sigma_for(target_pct: float, examples: int = TRUTH_EXAMPLES) -> float:
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if true_dne(mid, examples) < target_pct else (lo, mid)
    return (lo + hi) / 2


DAY_FACTOR = 10  # a day's traffic, in initial samples
RULES = ("fixed", "adaptive", "whole")


def simulate(sigma: float, n: int, days: int, seed: int, rules: Rules, rule: str) -> dict:
    """One model-run of `days` days under `rule`: the statuses and the examples scored each day."""
    rng = np.random.default_rng([seed, n, RULES.index(rule)])
    history, statuses, scored = [], [], []
    start = dt.date(2026, 1, 1)
    day_rows = DAY_FACTOR * n
    first, cap = {"fixed": (n, n), "adaptive": (n, day_rows), "whole": (day_rows, day_rows)}[rule]
    for i in range(days):
        looks, parts = Looks.of(first, cap, rules.sequential_run_length_days), []
        for k, size in enumerate(looks.sizes):
            parts.append(_draw(rng, size - sum(len(p[2]) for p in parts), sigma))
            c = compare(*(np.concatenate(a) for a in zip(*parts)), level=rules.level)
            today = DayEvidence.from_metrics(str(start + dt.timedelta(days=i)), c.as_dict(), rules.level)
            assessment = assess(today, history, rules, z_needed=looks.z_needed(k))
            if not assessment.close:
                break
        statuses.append(assessment.status.value)
        scored.append(size)
        history.append(today)
    return {"statuses": statuses, "scored": scored}


def run(
    sizes, days: int, reps: dict[int, int], rules: Rules = Rules(), truth_examples: int = TRUTH_EXAMPLES
) -> list[dict]:
    rows = []
    for world, ratio in WORLDS.items():
        sigma = sigma_for(ratio * rules.gate_pct, truth_examples)
        for n in sizes:
            for rule in RULES:
                runs = [simulate(sigma, n, days, seed, rules, rule) for seed in range(reps[n])]
                degraded = [[s == "DEGRADED" for s in r["statuses"]] for r in runs]
                delays = [next((i + 1 for i, d in enumerate(ds) if d), None) for ds in degraded]
                near = world == "near_gate"
                rows.append(
                    {
                        "world": world,
                        "true_dne": true_dne(sigma, truth_examples),
                        "n": n,
                        "rule": rule,
                        "reps": len(runs),
                        "days": days,
                        "false_per_100mm": 3000 * np.mean(degraded) if near else None,
                        "median_delay": None if near else _median(delays),
                        "within_5": None if near else np.mean([d is not None and d <= 5 for d in delays]),
                        "verdict_share": np.mean([[s in VERDICTS for s in r["statuses"]] for r in runs]),
                        "mean_scored": np.mean([r["scored"] for r in runs]),
                    }
                )
    return rows


def _median(delays):
    """Median delay in days; a run never detected counts as never (inf)."""
    values = sorted(d if d is not None else np.inf for d in delays)
    return float(np.median(values))


def print_rows(rows) -> None:
    print(
        f"{'world':<13} {'true dNE %':>10} {'n':>7} {'day':>8} {'rule':<9} {'model-months':>12} "
        f"{'false DEG/100mm':>15} {'delay med':>9} {'<=5 days':>8} {'verdicts':>8} {'scored/day':>10}"
    )
    for r in rows:

        def fmt(v, spec):
            return "-" if v is None else format(v, spec)

        print(
            f"{r['world']:<13} {r['true_dne']:>10.4f} {r['n']:>7} {DAY_FACTOR * r['n']:>8} {r['rule']:<9} "
            f"{r['reps'] * r['days'] / 30:>12.0f} {fmt(r['false_per_100mm'], '.2f'):>15} "
            f"{fmt(r['median_delay'], '.1f'):>9} {fmt(r['within_5'], '.0%'):>8} {r['verdict_share']:>8.0%} "
            f"{r['mean_scored']:>10,.0f}",
            flush=True,
        )


def print_targets(rows) -> None:
    """Issue 30's targets: PASS or MISS, with the figures they rest on."""
    by = {(r["world"], r["n"], r["rule"]): r for r in rows}
    print("targets (issue 30):")
    for (world, n, rule), r in sorted(by.items()):
        if rule != "adaptive":
            continue
        if world == "near_gate":
            ok = r["false_per_100mm"] <= 1 and r["mean_scored"] <= 1.5 * n
            print(
                f"  {'PASS' if ok else 'MISS'} near gate, {n:,} initial: {r['false_per_100mm']:.2f} false DEGRADED "
                f"per 100 model-months (at most 1), {r['mean_scored'] / n:.2f}x sample_size scored a day "
                "(at most 1.5x)"
            )
        elif n == 10_000:
            whole = by[(world, n, "whole")]["median_delay"]
            ok = r["median_delay"] <= whole + 1
            print(
                f"  {'PASS' if ok else 'MISS'} small excess, {n:,} initial / {DAY_FACTOR * n:,} a day: median "
                f"delay {r['median_delay']:.1f} days, scoring the whole day {whole:.1f} (within one day)"
            )
