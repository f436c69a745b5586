"""The `lpmon` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lpmon", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="score drifting synthetic traffic with an fp32 and a uint8 model and compare"
    )
    demo.add_argument("--days", type=int, default=14)
    demo.add_argument("--examples-per-day", type=int, default=200_000)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--out", type=Path, default=Path("demo-output/metrics.json"),
                      help="where to write the metrics as JSON")
    world = commands.add_parser("world", help="write a synthetic world: traffic, model snapshot, lpmon.toml")
    world.add_argument("--root", type=Path, required=True)
    world.add_argument("--scenario", default="stable", help="stable, gradual_drift, sudden_shift, outliers")
    world.add_argument("--days", type=int, default=14)
    world.add_argument("--start", default="2026-11-01", help="first day, YYYY-MM-DD")
    world.add_argument("--seed", type=int, default=0)
    world.add_argument("--model-id", default=None, help="default: the scenario name")
    world.add_argument("--examples-per-day", type=int, default=200_000)

    criteo = commands.add_parser("import-criteo", help="import a Criteo TSV file as one day of traffic")
    criteo.add_argument("tsv", type=Path)
    criteo.add_argument("--store", required=True, help="traffic store path or URI")
    criteo.add_argument("--day", required=True, help="YYYY-MM-DD")
    criteo.add_argument("--table-rows", type=int, default=100_000,
                        help="rows of each embedding table: ids are hashed into them")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from lpmon import demo

        if args.days < 1 or args.examples_per_day < 100:
            print("lpmon demo: --days must be >= 1 and --examples-per-day >= 100", file=sys.stderr)
            return 2
        return demo.main(args.days, args.examples_per_day, args.seed, args.out)
    try:
        if args.command == "world":
            return _world(args)
        if args.command == "import-criteo":
            return _import_criteo(args)
    except ValueError as err:  # bad input: say what and where, no traceback
        print(f"lpmon {args.command}: {err}", file=sys.stderr)
        return 1
    return 2


def _world(args) -> int:
    import datetime as dt

    from lpmon.world import WorldConfig, write_world

    config = WorldConfig(scenario=args.scenario, days=args.days,
                         start=dt.date.fromisoformat(args.start), seed=args.seed,
                         model_id=args.model_id, examples_per_day=args.examples_per_day)
    paths = write_world(args.root, config, progress=sys.stderr)
    print(f"traffic:  {paths.traffic}\nsnapshot: {paths.snapshot}\nconfig:   {paths.config}")
    return 0


def _import_criteo(args) -> int:
    from lpmon.traffic import TrafficStore
    from lpmon.traffic.criteo import import_criteo

    rows = import_criteo(args.tsv, TrafficStore(args.store), args.day, table_rows=args.table_rows)
    print(f"imported {rows:,} rows into {TrafficStore(args.store).partition(args.day)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
