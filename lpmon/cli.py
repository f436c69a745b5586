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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from lpmon import demo

        if args.days < 1 or args.examples_per_day < 100:
            print("lpmon demo: --days must be >= 1 and --examples-per-day >= 100", file=sys.stderr)
            return 2
        return demo.main(args.days, args.examples_per_day, args.seed, args.out)
    return 2


if __name__ == "__main__":
    sys.exit(main())
