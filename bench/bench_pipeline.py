"""Benchmark one daily run of the pipeline: time per step and peak memory, by sample size.

    python bench/bench_pipeline.py [--sizes 100000 1000000] [--rows 100000] [--backend torch]

The default Criteo-like model (13 dense, 26 tables, dim 64, bottom 512-256-64,
top 512-256-1) on synthetic traffic from lpmon.demo.world. For each size, a child
process runs a first day and then one daily run (second day) under an all-int8
plan deployed as a user would (forced: onboarding's validation is not measured
here) on a sample of that many examples, and reports the daily run's steps
(sample; score both, which also observes the calibration half for the stored
statistics; compare/decide/record) and its process's peak RSS (the model's
fp32 tables alone are 0.67 GB at 100,000 rows). In the same run, another
child times one fp32 forward pass of the same sample (the anchor), the
calibration half's observers fed by a second forward pass (what the daily run
did before) and the same observers fed from the scoring pass itself
(forward_fp32(..., observe=..., observe_every=2)), and checks that both give
the same observer states. Targets (issue 18): the daily run within 2.2x one
fp32 forward of its sample, peak under 1.5 GB, flat from 1M to 10M examples.
--backend torch: the same day is run again (a rerun: same sample, same plan)
with the model on the torch back end (PyTorch/FBGEMM, lpmon.torch_backend), and
its daily run time and peak are printed beside the NumPy executor's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from timing import machine_banner  # noqa: E402

TARGET_RATIO, TARGET_GB = 2.2, 1.5

WORLD = r"""
import sys
from pathlib import Path
from lpmon.demo.world import WorldConfig, write_world

root, n, rows = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
write_world(root, WorldConfig("stable", days=2, seed=3, examples_per_day=n, table_rows=rows, dim=64,
                              bottom_mlp=(512, 256, 64), top_mlp=(512, 256, 1)))
text = (root / "lpmon.toml").read_text()
(root / "lpmon.toml").write_text(f"[defaults]\nsample_size = {n}\nmin_examples = 1000\n\n" + text.split("\n", 1)[1])
from lpmon.config import load
from lpmon.store import init_store
config = load(root / "lpmon.toml")
init_store(config.store)
# The plan in force: all int8 on day 0's first examples, deployed as a user would
# (forced: this benchmark measures daily runs, not onboarding's validation).
from lpmon.pipeline.lifecycle import Origin, PlanLifecycle
from lpmon.model import Model
from lpmon.pipeline.context import begin as _begin, draw as _draw
from lpmon.pipeline.assembly import Ranges, assemble, units
_, settings, store = _begin(config, "stable", "2026-11-01")  # registers the model
model = Model.load(settings.snapshot)
sample = _draw(settings, model, "2026-11-01", min(n, 20_000))
plan = assemble(model, Ranges.calibrate(model, sample.batch), {u: "int8" for u in units(model)}, model_id="stable")
lifecycle = PlanLifecycle(store, "stable")
version = lifecycle.store_candidate(plan, "2026-11-01", Origin.USER)
lifecycle.propose(plan, "2026-11-01", Origin.USER, None, expected_active=None, forced=True, stored=version)
"""

# One process per step, so that the peak memory measured is the daily run's own.
RUN = r"""
import datetime as dt, json, resource, sys, time
from pathlib import Path
from lpmon.config import load
from lpmon.pipeline import open_store, run_day

cfg = load(Path(sys.argv[1]) / "lpmon.toml", environ={})
day = dt.date.fromisoformat(sys.argv[2])
if len(sys.argv) > 3:  # the back end to run the model on
    import dataclasses
    cfg.models["stable"] = dataclasses.replace(cfg.models["stable"], backend=sys.argv[3])
t = time.perf_counter(); result = run_day(cfg, "stable", day); seconds = time.perf_counter() - t
run = [r for r in open_store(cfg).rows("runs", "stable") if r["logical_date"] == str(day)][0]
print(json.dumps({"seconds": seconds, "steps": json.loads(run["timings_json"]), "status": result.status,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


# The anchor and the two ways of observing the calibration half, on the day's own sample.
FORWARD = r"""
import datetime as dt, json, sys, time
from pathlib import Path
import numpy as np
from lpmon.calibrate import observer, to_state
from lpmon.config import load
from lpmon.model import Model, forward_fp32
from lpmon.pipeline.assembly import observe
from lpmon.traffic import TrafficSchema, TrafficStore
from lpmon.traffic import sample as draw_sample

cfg = load(Path(sys.argv[1]) / "lpmon.toml", environ={})
settings = cfg.model("stable")
model = Model.load(settings.snapshot)
sample = draw_sample(TrafficStore(settings.traffic), sys.argv[2], settings.sample_size, settings.sample_seed,
                     TrafficSchema.for_model(model.spec))
batch, method = sample.batch, settings.calibration_method
t = time.perf_counter(); forward_fp32(model, batch); forward_s = time.perf_counter() - t
t = time.perf_counter()
forward_fp32(model, batch)
second = observe(model, batch.take(np.arange(len(batch))[0::2]), method)
second_pass_s = time.perf_counter() - t
fed = {name: observer(method) for name, _, _ in model.spec.linear_layers()}
t = time.perf_counter()
forward_fp32(model, batch, observe=lambda name, x: fed[name].observe(x), observe_every=2)
from_taps_s = time.perf_counter() - t
same = {n: to_state(o) for n, o in fed.items()} == {n: to_state(o) for n, o in second.items()}
print(json.dumps({"forward_s": forward_s, "second_pass_s": second_pass_s, "from_taps_s": from_taps_s,
                  "same_states": same}))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of each embedding table")
    parser.add_argument("--backend", choices=("numpy", "torch"), default="numpy",
                        help="torch: also rerun the day on the torch back end, times side by side")
    args = parser.parse_args(argv)
    print("lpmon pipeline benchmark: Criteo-like model, one daily run under an all-int8 plan")
    print(machine_banner())
    print(f"targets: daily run <= {TARGET_RATIO}x one fp32 forward of its sample (same run), "
          f"peak <= {TARGET_GB} GB, flat as the sample grows")
    print(f"{'examples':>10} {'daily run s':>12} {'sample s':>9} {'score s':>8} {'peak GB':>8} "
          f"{'fp32 fwd s':>11} {'ratio':>6} {'first day s':>12}")
    saving = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-c", WORLD, tmp, str(n), str(args.rows)], check=True)
            first = _child(RUN, tmp, "2026-11-01")
            r = _child(RUN, tmp, "2026-11-02")
            f = _child(FORWARD, tmp, "2026-11-02")
            t = _child(RUN, tmp, "2026-11-02", "torch") if args.backend == "torch" else None
        ratio = r["seconds"] / f["forward_s"]
        met = ratio <= TARGET_RATIO and r["peak_rss_gb"] <= TARGET_GB
        print(f"{n:>10,} {r['seconds']:>12.1f} {r['steps']['sample_s']:>9.1f} {r['steps']['score_s']:>8.1f} "
              f"{r['peak_rss_gb']:>8.2f} {f['forward_s']:>11.1f} {ratio:>6.2f} {first['seconds']:>12.1f}  "
              f"{'met' if met else 'MISSED'}")
        saving.append((n, f))
        if t is not None:
            print(f"{'':>10} torch back end: daily run {t['seconds']:.1f} s (sample {t['steps']['sample_s']:.1f}, "
                  f"score {t['steps']['score_s']:.1f}), peak {t['peak_rss_gb']:.2f} GB, {t['status']}; NumPy "
                  f"executor {r['seconds']:.1f} s, {r['status']}: torch / NumPy {t['seconds'] / r['seconds']:.2f}")
    print("\nobserving the calibration half: a second forward pass vs the scoring pass's own taps")
    for n, f in saving:
        print(f"{n:>10,}  fp32 forward + second pass {f['second_pass_s']:.1f} s, forward with observe= "
              f"{f['from_taps_s']:.1f} s: saves {f['second_pass_s'] - f['from_taps_s']:.1f} s; "
              f"observer states {'identical' if f['same_states'] else 'DIFFER'}")


def _child(script, root, day, *extra):
    done = subprocess.run([sys.executable, "-c", script, root, day, *extra], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"benchmark child failed on {day}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
