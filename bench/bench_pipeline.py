"""Benchmark one daily run of the pipeline: time per step and peak memory, by sample size.

    python bench/bench_pipeline.py [--sizes 100000 1000000] [--rows 100000]

The default Criteo-like model (13 dense, 26 tables, dim 64, bottom 512-256-64,
top 512-256-1) on synthetic traffic from lpmon.world. For each size, a child
process runs onboarding (first day) and then one daily run (second day) on a
sample of that many examples, and reports the daily run's steps (sample,
score both, observe the calibration half for the stored statistics,
compare/decide/record) and its process's peak RSS (the model's
fp32 tables alone are 0.67 GB at 100,000 rows). Target on this
2-core machine: at 1M examples under 60 s and under 2 GB, with memory flat
as the sample grows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET_SECONDS, TARGET_GB = 60.0, 2.0

WORLD = r"""
import sys
from pathlib import Path
from lpmon.world import WorldConfig, write_world

root, n, rows = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
write_world(root, WorldConfig("stable", days=2, seed=3, examples_per_day=n, table_rows=rows, dim=64,
                              bottom_mlp=(512, 256, 64), top_mlp=(512, 256, 1)))
text = (root / "lpmon.toml").read_text()
(root / "lpmon.toml").write_text(f"[defaults]\nsample_size = {n}\n\n" + text.split("\n", 1)[1])
from lpmon.config import load
from lpmon.store import init_store
init_store(load(root / "lpmon.toml").store)
"""

# One process per step, so that the peak memory measured is the daily run's own.
RUN = r"""
import datetime as dt, json, resource, sys, time
from pathlib import Path
from lpmon.config import load
from lpmon.pipeline import open_store, run_day

cfg = load(Path(sys.argv[1]) / "lpmon.toml", environ={})
day = dt.date.fromisoformat(sys.argv[2])
t = time.perf_counter(); result = run_day(cfg, "stable", day); seconds = time.perf_counter() - t
run = [r for r in open_store(cfg).rows("runs", "stable") if r["logical_date"] == str(day)][0]
print(json.dumps({"seconds": seconds, "steps": json.loads(run["timings_json"]), "status": result.status,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of each embedding table")
    args = parser.parse_args(argv)
    print("lpmon pipeline benchmark: Criteo-like model, one daily run after onboarding")
    print(f"{'examples':>10} {'daily run s':>12} {'sample s':>9} {'score s':>8} {'observe s':>10} {'peak GB':>8} "
          f"{'onboarding s':>13}  target (1M: < {TARGET_SECONDS:.0f} s, < {TARGET_GB} GB)")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-c", WORLD, tmp, str(n), str(args.rows)], check=True)
            onboard = _child(tmp, "2026-11-01")
            r = _child(tmp, "2026-11-02")
        met = r["seconds"] < TARGET_SECONDS and r["peak_rss_gb"] < TARGET_GB
        print(f"{n:>10,} {r['seconds']:>12.1f} {r['steps']['sample_s']:>9.1f} {r['steps']['score_s']:>8.1f} "
              f"{r['steps'].get('observe_s', 0.0):>10.1f} "
              f"{r['peak_rss_gb']:>8.2f} {onboard['seconds']:>13.1f}  "
              + (("met" if met else "MISSED") if n == 1_000_000 else ""))


def _child(root, day):
    done = subprocess.run([sys.executable, "-c", RUN, root, day], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
