"""Evidence across days on traffic whose true dNE is known (bench_decisions --evidence).

Each model-day draws n examples: p_fp32 = sigmoid(N(-1.5, 1)) (about 22 %
positives), labels from p_fp32 (the reference is the label model), and
p_q = sigmoid(logit p_fp32 + N(0, sigma)), sigma set so that the true dNE (the
expected log-loss gap over the reference's, on 4M examples) is the world's.
Every day is compared with lpmon.metrics.compare and judged with
lpmon.policy.assess over the plan's earlier days, exactly as the pipeline
does; the plan never changes (no action is simulated), so a world's days are
one plan's tenure.

Worlds: near_gate (true dNE 0.6x the gate, stable: every DEGRADED day is
false) and small_excess (1.5x the gate from day 1: every day not DEGRADED is
a miss). Printed per world and daily size: false DEGRADED days per 30 days,
detection delay in days (median, and the share detected within 5 days), the
share of days with a verdict (HEALTHY, WARN or DEGRADED on the labels), and
the same for the single-day 95 % test lpmon used before (DEGRADED when one
day's interval clears the gate, at least 10,000 examples).
"""

from __future__ import annotations

import numpy as np

from lpmon.metrics import compare
from lpmon.policy import VERDICTS, Rules, assess
from lpmon.verdict import DayEvidence

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


def simulate(sigma: float, n: int, days: int, seed: int, rules: Rules) -> dict:
    rng = np.random.default_rng([seed, n])
    history, statuses, old = [], [], []
    for i in range(days):
        c = compare(*_draw(rng, n, sigma), level=rules.level)
        today = DayEvidence.from_metrics(
            f"2026-01-{1 + i:02d}" if i < 31 else f"2026-02-{i - 30:02d}", c.as_dict(), rules.level
        )
        statuses.append(assess(today, history, rules).status.value)
        old.append(n >= 10_000 and c.dne_pct_lo > rules.gate_pct)
        history.append(today)
    return {"statuses": statuses, "old": old}


def run(
    sizes, days: int, reps: dict[int, int], rules: Rules = Rules(), truth_examples: int = TRUTH_EXAMPLES
) -> list[dict]:
    rows = []
    for world, ratio in WORLDS.items():
        sigma = sigma_for(ratio * rules.gate_pct, truth_examples)
        for n in sizes:
            runs = [simulate(sigma, n, days, seed, rules) for seed in range(reps[n])]
            degraded = [[s == "DEGRADED" for s in r["statuses"]] for r in runs]
            verdicts = np.mean([[s in VERDICTS for s in r["statuses"]] for r in runs])
            delays = [next((i + 1 for i, d in enumerate(ds) if d), None) for ds in degraded]
            old_delays = [next((i + 1 for i, d in enumerate(r["old"]) if d), None) for r in runs]
            rows.append(
                {
                    "world": world,
                    "true_dne": true_dne(sigma, truth_examples),
                    "n": n,
                    "reps": len(runs),
                    "days": days,
                    "false_per_30": 30 * np.mean(degraded) if world == "near_gate" else None,
                    "old_false_per_30": 30 * np.mean([r["old"] for r in runs]) if world == "near_gate" else None,
                    "median_delay": _median(delays) if world == "small_excess" else None,
                    "within_5": np.mean([d is not None and d <= 5 for d in delays])
                    if world == "small_excess"
                    else None,
                    "old_median_delay": _median(old_delays) if world == "small_excess" else None,
                    "verdict_share": verdicts,
                }
            )
    return rows


def _median(delays):
    """Median delay in days; a run never detected counts as never (inf)."""
    values = sorted(d if d is not None else np.inf for d in delays)
    return float(np.median(values))


def print_rows(rows) -> None:
    print(
        f"{'world':<13} {'true dNE %':>10} {'n/day':>7} {'model-months':>12} {'false DEG/30d':>13} "
        f"{'(1-day test)':>12} {'delay med':>9} {'<=5 days':>8} {'(1-day test)':>12} {'verdicts':>8}"
    )
    for r in rows:

        def fmt(v, spec):
            return "-" if v is None else format(v, spec)

        print(
            f"{r['world']:<13} {r['true_dne']:>10.4f} {r['n']:>7} {r['reps'] * r['days'] / 30:>12.0f} "
            f"{fmt(r['false_per_30'], '.4f'):>13} {fmt(r['old_false_per_30'], '.4f'):>12} "
            f"{fmt(r['median_delay'], '.1f'):>9} {fmt(r['within_5'], '.0%'):>8} "
            f"{fmt(r['old_median_delay'], '.1f'):>12} {r['verdict_share']:>8.0%}",
            flush=True,
        )
