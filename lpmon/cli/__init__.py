"""The `lpmon` command line.

Global options (--config, --json, -q, -v) go before or after the command.
Exit codes: 0 ok, 1 error, 2 usage (a bad argument, named), 3 a DEGRADED day
with --fail-on-degraded. A closed pipe (`lpmon status --json | head`) ends the
command quietly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from lpmon import __version__
from lpmon.cli import plans, runs, setup
from lpmon.cli.output import EXIT_DEGRADED, EXIT_ERROR, EXIT_OK, EXIT_USAGE, emit, note
from lpmon.cli.plans import grouped_diff
from lpmon.cli.runs import exit_code as _exit  # noqa: F401 - its old name (tests use it)

__all__ = [
    "EXIT_DEGRADED",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "emit",
    "grouped_diff",
    "main",
    "note",
    "plan_version",
]


def global_options(parser: argparse.ArgumentParser, top: bool = False) -> argparse.ArgumentParser:
    """--config, --json, -q, -v: on the top parser with their defaults, on every
    command without (SUPPRESS), so that either place sets them."""
    default = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    parser.add_argument(
        "--config",
        type=Path,
        default=default(None),
        help="the lpmon config file (default: $LPMON_CONFIG, else lpmon.toml)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine-readable output on stdout (schemas: README, 'The command line')",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default(False),
        help="no progress or notes on stderr (results and errors still print)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=default(0), help="log more (-vv: debug)")
    return parser


def iso_day(text: str) -> str:
    """A day as YYYY-MM-DD; argparse names the argument in the error."""
    import datetime as dt

    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r} ({err})") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lpmon", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"lpmon {__version__}")
    global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_parser = commands.add_parser
    commands.add_parser = lambda *a, **k: global_options(_add_parser(*a, **k))  # every command takes them
    demo = commands.add_parser(
        "demo", help="the main job: a synthetic world monitored day by day through Airflow (dag.test, SQLite)"
    )
    demo.add_argument("--root", type=Path, default=Path("demo-output"), help="where the world and state go")
    demo.add_argument("--days", type=int, default=14)
    demo.add_argument(
        "--examples-per-day",
        type=int,
        default=50_000,
        help="traffic per day; validation draws beyond the sample from it",
    )
    demo.add_argument("--sample-size", type=int, default=10_000)
    demo.add_argument(
        "--check-readme",
        type=Path,
        metavar="README",
        help="exit 1, with a diff, when README's demo table (between its demo-table markers) is not this run's",
    )
    demo.add_argument("--update-readme", type=Path, metavar="README", help="rewrite README's demo table from this run")
    world = commands.add_parser("world", help="write a synthetic world: traffic, model snapshot, lpmon.toml")
    world.add_argument("--root", type=Path, required=True)
    world.add_argument("--scenario", default="stable", help="stable, gradual_drift, sudden_shift, outliers")
    world.add_argument("--days", type=int, default=14)
    world.add_argument("--start", default="2026-11-01", type=iso_day, help="first day, YYYY-MM-DD")
    world.add_argument("--seed", type=int, default=0)
    world.add_argument("--model-id", default=None, help="default: the scenario name")
    world.add_argument("--examples-per-day", type=int, default=200_000)
    world.add_argument("--tables", type=positive, default=26, help="embedding tables (sparse features)")
    world.add_argument("--table-rows", type=positive, default=2_000, help="rows of each table")
    world.add_argument("--dim", type=positive, default=16, help="embedding dimension (the bottom MLP's output)")

    def with_config(sub):  # the global options, --config among them, are on every command already
        return sub

    with_config(commands.add_parser("init", help="create or upgrade the state store"))
    run = with_config(commands.add_parser("run", help="run the daily job for one model and date"))
    run.add_argument("--model", required=True)
    run.add_argument("--date", required=True, type=iso_day, help="YYYY-MM-DD")
    backfill = with_config(commands.add_parser("backfill", help="run the daily job over a date range"))
    backfill.add_argument("--model", required=True)
    backfill.add_argument("--start", required=True, type=iso_day, help="first day, YYYY-MM-DD")
    backfill.add_argument("--end", required=True, type=iso_day, help="last day, YYYY-MM-DD (included)")
    for sub in (run, backfill):
        sub.add_argument("--no-alerts", action="store_true", help="write the day reports, send no email")
        sub.add_argument(
            "--fail-on-degraded",
            action="store_true",
            help="exit 3 when a day is DEGRADED (for cron or CI), even if a fix was promoted",
        )
    onboard = with_config(commands.add_parser("onboard", help="build, validate and promote a model's first plan"))
    onboard.add_argument("--model", required=True)
    onboard.add_argument("--date", required=True, type=iso_day, help="the day whose traffic to calibrate on")
    plans = commands.add_parser("plans", help="list, show, export, diff, import, promote or pin a model's plans")
    actions = plans.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_action = actions.add_parser
    actions.add_parser = lambda *a, **k: global_options(_add_action(*a, **k))

    def plan_action(name, help_text):
        sub = with_config(actions.add_parser(name, help=help_text))
        sub.add_argument("--model", required=True)
        return sub

    plan_action("list", "every version with its status and origin")
    for name in ("show", "export"):
        sub = plan_action(name, f"{name} one version (default: the active one)")
        sub.add_argument("version", nargs="?", type=plan_version)
        if name == "export":
            sub.add_argument("--out", type=Path, help="write here instead of standard output")
            from lpmon.cli.serving import export_arguments

            export_arguments(sub)
    diff = plan_action("diff", "what changed between two versions, layer by layer")
    diff.add_argument("versions", nargs=2, type=plan_version, metavar="VERSION")
    imported = plan_action("import", "store a plan file as a new version (not active)")
    imported.add_argument("file", type=Path)
    promote = plan_action("promote", "put a version in force, if it passes validation on a day's traffic")
    promote.add_argument("version", type=plan_version)
    promote.add_argument(
        "--date", type=iso_day, help="the day whose held-out traffic validates it (default: the last day run)"
    )
    promote.add_argument("--force", action="store_true", help="skip validation (recorded as forced)")
    pin = plan_action("pin", "never let lpmon change these layers (all layers when none are named)")
    pin.add_argument("version", type=plan_version)
    pin.add_argument("--layers", nargs="+", metavar="LAYER")
    unpin = plan_action("unpin", "let lpmon change pinned layers again (all of them when none are named)")
    unpin.add_argument("--layers", nargs="+", metavar="LAYER")
    report = with_config(commands.add_parser("report", help="daily dNE history of a model"))
    report.add_argument("--model", required=True)
    with_config(commands.add_parser("status", help="the last run and active plan of every model"))
    from lpmon.cli.serving import score_parser

    score_parser(commands, with_config)

    criteo = commands.add_parser("import-criteo", help="import a Criteo TSV file as one day of traffic")
    criteo.add_argument("tsv", help="the TSV file; .gz is gunzipped; - reads standard input")
    criteo.add_argument("--store", required=True, help="traffic store path or URI")
    criteo.add_argument("--day", required=True, type=iso_day, help="YYYY-MM-DD")
    ids = criteo.add_mutually_exclusive_group()
    ids.add_argument(
        "--table-rows",
        type=positive,
        nargs="+",
        default=[100_000],
        metavar="ROWS",
        help="rows of the embedding tables, one for all or one per table (26): ids are hashed into them",
    )
    ids.add_argument(
        "--dlrm-vocabulary",
        metavar="PREFIX",
        help="DLRM's dictionaries (PREFIX_fea_dict_<j>.npz, PREFIX_fea_count.npz): DLRM's own ids and table sizes",
    )
    criteo.add_argument(
        "--max-ind-range", type=int, default=-1, help="with --dlrm-vocabulary: DLRM's --max-ind-range (default: none)"
    )
    unknown = criteo.add_mutually_exclusive_group()
    unknown.add_argument(
        "--unknown-row",
        type=int,
        default=0,
        metavar="ROW",
        help="with --dlrm-vocabulary: the id of values outside the vocabulary (counted; default 0)",
    )
    unknown.add_argument(
        "--refuse-unknown", action="store_true", help="with --dlrm-vocabulary: refuse a value outside the vocabulary"
    )
    dlrm = commands.add_parser("import-dlrm", help="a facebookresearch/dlrm PyTorch checkpoint as a model snapshot")
    dlrm.add_argument("checkpoint", type=Path)
    dlrm.add_argument("--out", type=Path, required=True, help="the snapshot folder to write (spec.json, weights)")
    names = dlrm.add_mutually_exclusive_group()
    names.add_argument(
        "--sparse-names",
        nargs="+",
        metavar="COLUMN",
        help="the traffic's column of each table emb_l.0, emb_l.1, ... (default sparse_0, ...)",
    )
    names.add_argument(
        "--from-traffic", metavar="DIR", help="take the names from this traffic store's columns (and check them)"
    )
    dlrm.add_argument("--day", type=iso_day, help="with --from-traffic: the partition to read (default: the last)")
    torchrec = commands.add_parser(
        "import-torchrec",
        help="a TorchRec DLRM or DLRM_DCN checkpoint (torch.save(model.state_dict())) as a model snapshot",
    )
    torchrec.add_argument("checkpoint", type=Path)
    torchrec.add_argument("--out", type=Path, required=True, help="the snapshot folder to write (spec.json, weights)")
    torchrec.add_argument(
        "--features",
        type=Path,
        metavar="FILE.json",
        help='each table\'s features: {"<table>": ["<feature>", ...]} or {"<table>": {"features": [...], '
        '"pooling": "mean"}} (default: each table serves one feature named after it)',
    )
    torchrec.add_argument(
        "--pooling", choices=("sum", "mean"), default="sum", help="pooling of the tables the features file does not set"
    )
    convert = commands.add_parser(
        "convert-snapshot", help="a spec.json + weights.npz snapshot into the memory-mapped format"
    )
    convert.add_argument("source", type=Path, help="the snapshot folder")
    convert.add_argument("--out", type=Path, help="write the converted snapshot here (default: in place)")
    return parser


def positive(text: str) -> int:
    """A positive integer; argparse names the argument in the error."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def plan_version(text: str) -> int:
    """A plan version as `plans list` prints it (v3) or as a number (3)."""
    digits = text[1:] if text[:1] in "vV" else text
    if not digits.isdigit() or int(digits) < 1:
        raise argparse.ArgumentTypeError(f"not a plan version: {text!r} (e.g. 3 or v3)")
    return int(digits)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush does not complain
        return EXIT_OK


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    with _logging(args.verbose):
        return _command(args)


def _command(args) -> int:
    if args.command == "demo":
        from lpmon import demo

        if args.days < 1 or args.examples_per_day < 2_000 or args.sample_size < 1_000:
            print(
                "lpmon demo: --days must be >= 1, --examples-per-day >= 2000 and --sample-size >= 1000", file=sys.stderr
            )
            return EXIT_USAGE
        return demo.main(
            args.root, args.days, args.examples_per_day, args.sample_size, args.check_readme, args.update_readme
        )
    name = args.command + (f" {args.action}" if getattr(args, "action", None) else "")
    try:
        if args.command == "world":
            return setup.world(args)
        if args.command == "import-criteo":
            return setup.import_criteo(args)
        if args.command == "import-dlrm":
            return setup.import_dlrm(args)
        if args.command == "import-torchrec":
            return setup.import_torchrec(args)
        if args.command == "convert-snapshot":
            return setup.convert_snapshot(args)
        if args.command in ("init", "onboard", "run", "backfill", "status", "plans", "report", "score"):
            from lpmon import config as config_module

            config = config_module.load(args.config)
            handlers = {
                "init": setup.init,
                "onboard": runs.onboard,
                "run": runs.run,
                "backfill": runs.backfill,
                "status": runs.status,
                "plans": plans.plans,
                "report": runs.report,
            }
            from lpmon.cli.serving import score

            handlers["score"] = score
            return handlers[args.command](args, config)
    except (BrokenPipeError, KeyError):
        raise
    except (ValueError, LookupError, OSError, ImportError) as err:  # bad input or a missing optional package: one line
        print(f"lpmon {name}: {err}", file=sys.stderr)
        return EXIT_ERROR
    except RuntimeError as err:
        from lpmon.store import StoreError

        if not isinstance(err, StoreError):
            raise
        print(f"lpmon {name}: {err}", file=sys.stderr)  # e.g. a database newer than lpmon
        return EXIT_ERROR
    return EXIT_USAGE


@contextlib.contextmanager
def _logging(verbose: int):
    """lpmon's log on stderr (warnings; -v info, -vv debug), never on stdout: importing
    Airflow (for its SMTP connection) would otherwise route it to stdout, into --json.
    Put back as it was afterwards (main may run inside another program, or a test)."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("lpmon %(levelname)s: %(message)s"))
    logger = logging.getLogger("lpmon")
    saved = logger.handlers[:], logger.propagate, logger.level
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    try:
        yield
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])
