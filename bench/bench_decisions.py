"""Decision quality on synthetic worlds whose truth is known.

    python bench/bench_decisions.py [--sizes 10000 200000] [--days 30] [--scenarios ...]

A world's labels are drawn from its fp32 model, so a plan's true dNE is its
KL gap from fp32 (the expected log-loss gap when the reference is the label
model), measured here on 50,000 fresh examples of each day. Each scenario runs
`run_day` day by day (SQLite, local Parquet) at a sample size per day, with
each day's traffic 5x the sample (the validation draws its continuation), and
prints:

  degraded    days judged DEGRADED
  over        days whose plan in force was truly over the gate
  promotions  plans put in force after the first one
  right/wrong units raised by promotions: right when raising that unit alone
              removes at least a tenth of the previous plan's true gap
  final dNE   the true dNE of the last day's plan in force
  plan        that plan's version
  of fp32     bytes it serves as a share of the fp32 model's (lpmon.pipeline.capacity)
  of int8     the same against all-int8 (row-wise tables with their scale and bias)
  bytes served  its bytes

Scenarios: outliers (heavy tail from day 1), far_off (a user forces a plan
with int2 tables on day 1), stable, gradual_drift. Targets (issue 14):
outliers at 10k settles in at most 2 promotions with no table raised; far_off
is under the gate within 2 days and stays; stable has 0 promotions; gradual
drift recalibrates once per crossing of the gate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lpmon.config import load  # noqa: E402
from lpmon.demo.world import World, WorldConfig, write_world  # noqa: E402
from lpmon.metrics import compare  # noqa: E402
from lpmon.model import forward_fp32, forward_quantized  # noqa: E402
from lpmon.pipeline import open_store, run_day  # noqa: E402
from lpmon.pipeline.assembly import unit_precisions, units  # noqa: E402
from lpmon.pipeline.capacity import megabytes, of_precisions  # noqa: E402
from lpmon.pipeline.lifecycle import PlanLifecycle  # noqa: E402
from lpmon.quant import LayerPlan, QuantPlan  # noqa: E402
from lpmon.report.templating import version  # noqa: E402
from lpmon.store import init_store  # noqa: E402

GATE = 0.05
TRUTH_EXAMPLES = 50_000
START = dt.date(2026, 11, 1)


def true_gap(world: World, day: int, plan: QuantPlan, cache: dict) -> float:
    """The plan's true dNE % on the day: KL gap on fresh examples (labels follow fp32)."""
    if day not in cache:
        rng = np.random.default_rng([world.config.seed, day, 99])
        batch = world.batch(day, TRUTH_EXAMPLES, rng)
        ref = forward_fp32(world.model, batch).probabilities
        cache[day] = (batch, ref, (rng.random(len(ref)) < ref).astype(np.uint8))
    batch, ref, labels = cache[day]
    return compare(ref, forward_quantized(world.model, batch, plan).probabilities, labels).kl_gap_pct


def raised_units(before: QuantPlan, after: QuantPlan) -> list[str]:
    from lpmon.quant.precision import Precision

    old = {layer.name: layer.precision for layer in before.layers}
    return [layer.name for layer in after.layers if Precision(layer.precision).bits > Precision(old[layer.name]).bits]


def judge_units(world, day, before: QuantPlan, after: QuantPlan, cache) -> tuple[int, int]:
    """(right, wrong) among the units `after` raised over `before`."""
    base = true_gap(world, day, before, cache)
    right = wrong = 0
    for name in raised_units(before, after):
        alone = tuple(after.layer(name) if layer.name == name else layer for layer in before.layers)
        gain = base - true_gap(world, day, QuantPlan(before.model_id, before.version, alone), cache)
        right, wrong = (right + 1, wrong) if gain >= 0.1 * base else (right, wrong + 1)
    return right, wrong


def run_scenario(name: str, sample: int, days: int, root: Path) -> dict:
    scenario = {"far_off": "stable"}.get(name, name)
    config = WorldConfig(scenario, days=days, seed=1, examples_per_day=5 * sample, model_id=name)
    world = World(config)
    write_world(root, config)
    text = (root / "lpmon.toml").read_text().split("\n", 1)[1]
    (root / "lpmon.toml").write_text(
        f'store = "sqlite:///{root / "state.db"}"\n[defaults]\nsample_size = {sample}\nmin_examples = 1000\n' + text
    )
    cfg = load(root / "lpmon.toml", environ={})
    init_store(cfg.store)
    store = open_store(cfg)
    if name == "far_off":  # a user deploys a plan with int2 tables and forces it into serving
        from lpmon.pipeline.user_plans import promote_plan

        first_day = 0
        while store.active_plan(name) is None:  # onboarding makes the model's first plan (small samples wait)
            if first_day == days:
                raise SystemExit(
                    f"far_off: no plan onboarded in {days} days of {sample:,} examples; "
                    "give larger --sizes or more --days"
                )
            run_day(cfg, name, START + dt.timedelta(days=first_day))
            first_day += 1
        plan = QuantPlan.from_json(store.active_plan(name).plan_json)
        onboarded = START + dt.timedelta(days=first_day - 1)
        bad = tuple(
            LayerPlan(layer.name, "embedding", "int2") if layer.kind == "embedding" else layer for layer in plan.layers
        )
        version = PlanLifecycle(store, name).store_candidate(QuantPlan(name, 1, bad), str(onboarded), _user())
        promote_plan(cfg, name, version, day=str(onboarded), force=True)
    else:
        first_day = 0
    cache, results, started = {}, [], time.perf_counter()
    for i in range(first_day, days):
        results.append(run_day(cfg, name, START + dt.timedelta(days=i)))
    elapsed = time.perf_counter() - started
    lifecycle = PlanLifecycle(store, name)
    over = degraded = 0
    for i, r in zip(range(first_day, days), results):
        degraded += r.status == "DEGRADED"
        if r.plan_version:
            over += true_gap(world, i, lifecycle.plan(r.plan_version), cache) > GATE
    events = store.plan_events(name)
    promotions = [e for e in events if e["origin"] not in ("ONBOARD",) and not e["forced"]]
    right = wrong = 0
    for e in promotions:
        previous = max((p["version"] for p in events if p["version"] < e["version"]), default=None)
        if previous is None:
            continue
        i = (dt.date.fromisoformat(e["logical_date"]) - START).days
        r, w = judge_units(world, i, lifecycle.plan(previous), lifecycle.plan(e["version"]), cache)
        right, wrong = right + r, wrong + w
    final = lifecycle.active()
    final_gap = true_gap(world, days - 1, final, cache) if final else float("nan")
    served = of_precisions(units(world.model), unit_precisions(final) if final else {})
    restored = next(
        (
            i
            for i, r in zip(range(first_day, days), results)
            if r.plan_version and true_gap(world, i, lifecycle.plan(r.plan_version), cache) <= GATE
        ),
        None,
    )
    store.db.engine.dispose()
    return dict(
        scenario=name,
        sample=sample,
        days=days - first_day,
        degraded=degraded,
        over=over,
        promotions=len(promotions),
        right=right,
        wrong=wrong,
        final=final_gap,
        version=final.version if final else None,
        capacity=served,
        first_under=restored,
        verdicts=sum(r.status in ("HEALTHY", "WARN", "DEGRADED") for r in results),
        seconds=elapsed,
    )


def _user():
    from lpmon.pipeline.lifecycle import Origin

    return Origin.USER


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--scenarios", nargs="+", default=["outliers", "far_off", "stable", "gradual_drift"])
    parser.add_argument(
        "--evidence",
        action="store_true",
        help="evidence across days instead (bench/evidence_world.py): near-gate and small-excess "
        "worlds at initial sample --sizes (default 2000 10000 200000) with days of 10x that, the fixed "
        "sample, adaptive sampling and the whole day, --reps model-runs of --days each",
    )
    parser.add_argument("--reps", type=int, nargs="+", help="repetitions per size (default 100 100 10)")
    parser.add_argument(
        "--truth-examples",
        type=int,
        default=4_000_000,
        help="examples that set each world's true dNE (fewer: a rougher world, for smoke tests)",
    )
    args = parser.parse_args(argv)
    if args.evidence:
        from evidence_world import print_rows, print_targets, run

        sizes = args.sizes if "--sizes" in (argv or sys.argv) else [2_000, 10_000, 200_000]
        reps = args.reps or [100 if n <= 20_000 else 10 for n in sizes]
        if len(reps) == 1:
            reps = reps * len(sizes)
        print(f"evidence across days, gate {GATE} %, defaults of lpmon.policy.Rules, {args.days} days a run")
        rows = run(sizes, args.days, dict(zip(sizes, reps)), truth_examples=args.truth_examples)
        print_rows(rows)
        print_targets(rows)
        return 0
    print(f"decision quality, gate {GATE} %, truth on {TRUTH_EXAMPLES:,} fresh examples a day")
    header = (
        f"{'scenario':<14} {'sample':>7} {'days':>4} {'verdicts':>8} {'degraded':>8} {'over':>4} "
        f"{'promotions':>10} {'right':>5} {'wrong':>5} {'final dNE %':>11} {'plan':>4} {'of fp32':>7} "
        f"{'of int8':>7} {'bytes served':>13} {'time':>6}"
    )
    print(header)
    for size in args.sizes:
        for name in args.scenarios:
            with tempfile.TemporaryDirectory(prefix="lpmon-bench-") as tmp:
                r = run_scenario(name, size, args.days, Path(tmp))
            c = r["capacity"]
            print(
                f"{r['scenario']:<14} {r['sample']:>7} {r['days']:>4} {r['verdicts']:>8} {r['degraded']:>8} "
                f"{r['over']:>4} {r['promotions']:>10} {r['right']:>5} {r['wrong']:>5} {r['final']:>11.4f} "
                f"{version(r['version']) if r['version'] else 'fp32':>4} {c.fp32_share_pct:>6.0f}% "
                f"{c.int8_share_pct:>6.0f}% {megabytes(c.bytes_served):>13} {r['seconds']:>5.0f}s",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
