"""The `lpmon` command line.

Global options (--config, --json, -q, -v) go before or after the command.
Exit codes: 0 ok, 1 error, 2 usage (a bad argument, named), 3 a DEGRADED day
with --fail-on-degraded. A closed pipe (`lpmon status --json | head`) ends the
command quietly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from lpmon import __version__

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DEGRADED = 0, 1, 2, 3


def global_options(parser: argparse.ArgumentParser, top: bool = False) -> argparse.ArgumentParser:
    """--config, --json, -q, -v: on the top parser with their defaults, on every
    command without (SUPPRESS), so that either place sets them."""
    default = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, default=default(None),
                        help="the lpmon config file (default: $LPMON_CONFIG, else lpmon.toml)")
    parser.add_argument("--json", action="store_true", default=default(False),
                        help="machine-readable output on stdout (schemas: README, 'The command line')")
    parser.add_argument("-q", "--quiet", action="store_true", default=default(False),
                        help="no progress or notes on stderr (results and errors still print)")
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
    parser = argparse.ArgumentParser(prog="lpmon", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"lpmon {__version__}")
    global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_parser = commands.add_parser
    commands.add_parser = lambda *a, **k: global_options(_add_parser(*a, **k))  # every command takes them
    demo = commands.add_parser(
        "demo", help="the main job: a synthetic world monitored day by day through Airflow (dag.test, SQLite)")
    demo.add_argument("--root", type=Path, default=Path("demo-output"), help="where the world and state go")
    demo.add_argument("--days", type=int, default=14)
    demo.add_argument("--examples-per-day", type=int, default=50_000,
                      help="traffic per day; validation draws beyond the sample from it")
    demo.add_argument("--sample-size", type=int, default=10_000)
    world = commands.add_parser("world", help="write a synthetic world: traffic, model snapshot, lpmon.toml")
    world.add_argument("--root", type=Path, required=True)
    world.add_argument("--scenario", default="stable", help="stable, gradual_drift, sudden_shift, outliers")
    world.add_argument("--days", type=int, default=14)
    world.add_argument("--start", default="2026-11-01", type=iso_day, help="first day, YYYY-MM-DD")
    world.add_argument("--seed", type=int, default=0)
    world.add_argument("--model-id", default=None, help="default: the scenario name")
    world.add_argument("--examples-per-day", type=int, default=200_000)

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
        sub.add_argument("--fail-on-degraded", action="store_true",
                         help="exit 3 when a day is DEGRADED (for cron or CI), even if a fix was promoted")
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
    promote.add_argument("--date", type=iso_day, help="the day whose held-out traffic validates it (default: the last day run)")
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
    criteo.add_argument("--table-rows", type=int, default=100_000,
                        help="rows of each embedding table: ids are hashed into them")
    dlrm = commands.add_parser("import-dlrm", help="a facebookresearch/dlrm PyTorch checkpoint as a model snapshot")
    dlrm.add_argument("checkpoint", type=Path)
    dlrm.add_argument("--out", type=Path, required=True, help="the snapshot folder to write (spec.json, weights)")
    names = dlrm.add_mutually_exclusive_group()
    names.add_argument("--sparse-names", nargs="+", metavar="COLUMN",
                       help="the traffic's column of each table emb_l.0, emb_l.1, ... (default sparse_0, ...)")
    names.add_argument("--from-traffic", metavar="DIR",
                       help="take the names from this traffic store's columns (and check them)")
    dlrm.add_argument("--day", type=iso_day, help="with --from-traffic: the partition to read (default: the last)")
    return parser


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
            print("lpmon demo: --days must be >= 1, --examples-per-day >= 2000 and --sample-size >= 1000",
                  file=sys.stderr)
            return EXIT_USAGE
        return demo.main(args.root, args.days, args.examples_per_day, args.sample_size)
    name = args.command + (f" {args.action}" if getattr(args, "action", None) else "")
    try:
        if args.command == "world":
            return _world(args)
        if args.command == "import-criteo":
            return _import_criteo(args)
        if args.command == "import-dlrm":
            return _import_dlrm(args)
        if args.command in ("init", "onboard", "run", "backfill", "status", "plans", "report", "score"):
            from lpmon import config as config_module

            config = config_module.load(args.config)
            handlers = {"init": _init, "onboard": _onboard, "run": _run, "backfill": _backfill,
                        "status": _status, "plans": _plans, "report": _report}
            from lpmon.cli.serving import score
            handlers["score"] = score
            return handlers[args.command](args, config)
    except (BrokenPipeError, KeyError):
        raise
    except (ValueError, LookupError, OSError) as err:  # bad input: say what and where, no traceback
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


def emit(args, data, text: str | list[str] | None = None) -> None:
    """The command's result: JSON (--json) or its text lines, on stdout."""
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    elif text is not None:
        print(text if isinstance(text, str) else "\n".join(text))


def note(args, text: str) -> None:
    """A remark on stderr (not with -q)."""
    if not args.quiet:
        print(text, file=sys.stderr)


def _world(args) -> int:
    import datetime as dt

    from lpmon.cli.progress import PlainLines
    from lpmon.demo.world import WorldConfig, write_world

    config = WorldConfig(scenario=args.scenario, days=args.days,
                         start=dt.date.fromisoformat(args.start), seed=args.seed,
                         model_id=args.model_id, examples_per_day=args.examples_per_day)
    paths = write_world(args.root, config, progress=PlainLines(sys.stderr, quiet=args.quiet))
    emit(args, {"traffic": str(paths.traffic), "snapshot": str(paths.snapshot), "config": str(paths.config)},
         f"traffic:  {paths.traffic}\nsnapshot: {paths.snapshot}\nconfig:   {paths.config}")
    return EXIT_OK


def _init(args, config) -> int:
    """The one command that creates or upgrades a store (a damaged one is refused, never overwritten)."""
    from lpmon.store import Database, init_store

    applied = init_store(config.store)
    url = Database(config.store).safe_url
    emit(args, {"store": url, "applied_migrations": list(applied or []), "integrity": "ok"},
         f"state store {url}: " + (f"applied migrations {applied}" if applied else "up to date") + "; integrity ok")
    return EXIT_OK


def _active_version(config, model_id: str) -> int | None:
    from lpmon.pipeline import open_store

    store = open_store(config)
    try:
        active = store.active_plan(model_id)
        return active.version if active else None
    finally:
        store.db.engine.dispose()


def _result_data(r, active: int | None, outputs: dict) -> dict:
    return {"model": r.model_id, "date": r.logical_date, "status": r.status, "action": r.action,
            "dne_pct": r.dne_pct, "plan_version": r.plan_version, "new_plan_version": r.new_plan_version,
            "promoted": r.promoted, "active_plan": active, "message": r.message,
            "report": outputs.get("report"), "alerts": outputs.get("alerts", {})}


def _result_lines(data: dict) -> list[str]:
    dne = "-" if data["dne_pct"] is None else f"{data['dne_pct']:.4f} %"
    if data["plan_version"] is not None:
        plan = f"plan v{data['plan_version']}" + (f" -> v{data['new_plan_version']}"
                                                  if data["new_plan_version"] not in (None, data["plan_version"])
                                                  else "")
    elif data["active_plan"] is not None:  # the day was not judged under any plan: say which one is in force
        plan = f"active plan v{data['active_plan']} (not scored)"
    else:
        plan = "no plan: serving fp32"
    lines = [f"{data['model']:<16} {data['date']} {data['status']:<18} {data['action']:<12} dNE {dne:>10}  {plan}"]
    if data["status"] in ("failed", "INSUFFICIENT_DATA") or data["action"] in ("RECALIBRATE", "FALLBACK"):
        lines.append(f"  {data['message']}")  # why the day could not be judged, or what was done
    if data["report"]:
        lines.append(f"  report: {data['report']}")
    sent = {e: s for e, s in data["alerts"].items()}
    if sent:
        lines.append("  alerts: " + ", ".join(f"{e} {s}" for e, s in sent.items()))
    return lines


def _day_outputs(args, config, model_id: str, day: str) -> dict:
    """What the DAG's report and alert tasks give for the day (lpmon.report.alerts.deliver_day)."""
    from lpmon.report import alerts
    from lpmon.pipeline import open_store

    store = open_store(config)
    try:
        return alerts.deliver_day(config, store, model_id, day,
                                  mailer=None if args.no_alerts else (lambda: _mailer(args, config)))
    finally:
        store.db.engine.dispose()


def _mailer(args, config):
    """Airflow's SMTP connection ([airflow] smtp_conn_id; AIRFLOW_CONN_SMTP_DEFAULT works without a
    running Airflow); without one the alerts are recorded as not sent, and said so."""
    if getattr(args, "_mailer", None) is None:  # once per command (a backfill asks every day)
        with contextlib.redirect_stdout(sys.stderr):  # Airflow logs to stdout as it loads: keep --json clean
            from lpmon.airflow.smtp import from_airflow

            args._mailer = from_airflow(config.airflow.smtp_conn_id)
        if args._mailer.problem:
            note(args, f"lpmon: alerts recorded as not sent: {args._mailer.problem}")
    return args._mailer


def _exit(days: list[dict], args) -> int:
    if any(d["status"] == "failed" for d in days):
        return EXIT_ERROR
    if getattr(args, "fail_on_degraded", False) and any(d["status"] == "DEGRADED" for d in days):
        return EXIT_DEGRADED
    return EXIT_OK


def _run(args, config) -> int:
    from lpmon.pipeline import STEPS, run_day
    from lpmon.cli.progress import progress

    config.model(args.model)
    with progress(len(STEPS), f"{args.model} {args.date}", quiet=args.quiet, plain=False) as advance:
        result = run_day(config, args.model, args.date, on_step=advance)
    data = _result_data(result, _active_version(config, args.model),
                        _day_outputs(args, config, args.model, result.logical_date))
    emit(args, data, _result_lines(data))
    return _exit([data], args)


def _backfill(args, config) -> int:
    import datetime as dt

    from lpmon.pipeline import run_day
    from lpmon.cli.progress import progress

    config.model(args.model)
    start, end = dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end)
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    days, out = (end - start).days + 1, []
    with progress(days, f"backfill {args.model}", quiet=args.quiet) as advance:
        for offset in range(days):
            day = start + dt.timedelta(days=offset)
            advance(str(day))
            result = run_day(config, args.model, day)
            data = _result_data(result, _active_version(config, args.model),
                                _day_outputs(args, config, args.model, result.logical_date))
            out.append(data)
            if not args.json:
                print("\n".join(_result_lines(data)), flush=True)
    if args.json:
        emit(args, out)
    return _exit(out, args)


def _status(args, config) -> int:
    from lpmon.pipeline.export import serving_problem
    from lpmon.pipeline import open_store
    from lpmon.quant import QuantPlan

    store = open_store(config)  # refuses a missing, damaged or foreign store, saying what it found
    store.db.verify(thorough=True)  # the integrity check, whatever the store's size
    report = {}
    for model_id in sorted(config.models):
        runs = store.rows("runs", model_id)
        metrics = {m["logical_date"]: m for m in store.rows("run_metrics", model_id) if m["segment"] == ""}
        decisions = {d["logical_date"]: d for d in store.rows("decisions", model_id)}
        last = runs[-1] if runs else None
        active = store.active_plan(model_id)
        entry = {"last_run": None, "active_plan": None, "last_judged": None}
        judged = [r for r in runs if r["status"] in ("HEALTHY", "WARN", "DEGRADED")]
        if judged:  # the last day with a verdict (a later day may have had no traffic)
            j = judged[-1]
            entry["last_judged"] = {"date": j["logical_date"], "status": j["status"],
                                    "dne_pct": metrics.get(j["logical_date"], {}).get("dne_pct")}
        if last:
            m = metrics.get(last["logical_date"], {})
            entry["last_run"] = {"date": last["logical_date"], "status": last["status"],
                                 "decision": decisions.get(last["logical_date"], {}).get("action"),
                                 "dne_pct": m.get("dne_pct"), "dne_pct_lo": m.get("dne_pct_lo"),
                                 "dne_pct_hi": m.get("dne_pct_hi"), "message": last["message"]}
        if active:
            plan = QuantPlan.from_json(active.plan_json)
            entry["active_plan"] = {"version": active.version,
                                    "precisions": {layer.name: layer.precision for layer in plan.layers}}
        entry["pinned"] = sorted(store.pins(model_id))
        exported = store.export_status(model_id)
        entry["serving"] = {"problem": serving_problem(store, model_id),
                            "version": exported["serving_version"] if exported else None,
                            "file": exported["target"] if exported else None}
        report[model_id] = entry
    if args.json:
        emit(args, report)
        return EXIT_OK
    print(f"state store {store.db.safe_url}: schema version {store.db.schema_version()}, integrity ok")
    for model_id, entry in report.items():
        run, plan = entry["last_run"], entry["active_plan"]
        line = f"{model_id:<16} "
        line += (f"{run['date']} {run['status']:<18} {run['decision'] or '-':<12} dNE "
                 + ("-" if run["dne_pct"] is None else f"{run['dne_pct']:.4f} %")) if run else "no runs yet"
        if plan:
            from lpmon.pipeline.lifecycle import group_units

            moved = {n: ("int8", p) for n, p in plan["precisions"].items() if p not in ("int8", "int4", "int2")}
            raised = [text.replace("int8 -> ", "") for text in group_units(moved)]
            line += f"  plan v{plan['version']}" + (f" (higher precision: {'; '.join(raised)})" if moved else "")
        elif run:
            line += "  no plan: serving fp32"
        if entry["pinned"]:
            line += f"  pinned: {', '.join(entry['pinned'])}"
        print(line)
        if run and run["status"] in ("failed", "INSUFFICIENT_DATA"):
            print(f"  ! last run {'failed' if run['status'] == 'failed' else 'not judged'}: {run['message']}")
            judged = entry["last_judged"]
            print(f"  last judged day: {judged['date']} {judged['status']}" if judged else "  no day judged yet")
        if entry["serving"]["problem"]:
            print(f"  ! serving: {entry['serving']['problem']}")
    return 0


def _onboard(args, config) -> int:
    from lpmon.pipeline import onboard_day

    config.model(args.model)
    outcome = onboard_day(config, args.model, args.date)
    done = "promoted" if outcome.promoted else "nothing done" if outcome.active_version is not None else "none promoted"
    data = {"model": args.model, "date": args.date, "outcome": done, "promoted": bool(outcome.promoted),
            "version": outcome.version if outcome.promoted else None, "active_plan": outcome.active_version,
            "reason": outcome.reason}
    if outcome.promoted:
        text = f"{args.model}: plan v{outcome.version} onboarded and promoted: {outcome.reason}"
    elif outcome.active_version is not None:
        text = f"{args.model}: nothing done, {outcome.reason}"
    else:
        text = f"{args.model}: no plan promoted: {outcome.reason}"
    emit(args, data, text)
    return EXIT_OK


def _plans(args, config) -> int:
    from lpmon.pipeline import open_store
    from lpmon.quant import QuantPlan

    store = open_store(config)
    config.model(args.model)  # an unknown model is an error, not an empty list
    if args.action in ("import", "promote", "pin", "unpin"):
        return _plan_lifecycle(args, config, store)
    rows = {r["version"]: r for r in store.rows("plans", args.model)}
    if args.action == "list":
        pins = store.pins(args.model)
        listed = []
        for version, row in sorted(rows.items()):
            pinned = sorted(layer for layer, (v, _) in pins.items() if v == version)
            listed.append({"version": version, "status": row["status"], "date": row["logical_date"],
                           "reason": row["reason"], "pinned": pinned})
        emit(args, listed, [f"v{p['version']:<4} {p['status']:<10} {p['date']}  {p['reason']}"
                            + (f"  (pinned: {', '.join(p['pinned'])})" if p["pinned"] else "") for p in listed])
        return EXIT_OK
    if args.action == "diff":
        old, new = (QuantPlan.from_json(_plan_row(rows, v)["plan_json"]) for v in args.versions)
        changes = old.diff(new)
        emit(args, {"model": args.model, "from": args.versions[0], "to": args.versions[1], "changes": changes},
             "\n".join(grouped_diff(changes)) or "no differences")
        return EXIT_OK
    version = args.version or getattr(args, "version_flag", None) or next(
        (v for v, r in rows.items() if r["status"] == "active"), None)
    if args.action == "export" and args.format == "torchscript":
        from lpmon.cli.serving import export_torchscript
        return export_torchscript(args, config, version, _plan_row(rows, version)["plan_json"])
    text = QuantPlan.from_json(_plan_row(rows, version)["plan_json"]).to_json()
    if args.action == "export" and args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        emit(args, {"model": args.model, "version": version, "file": str(args.out)},
             f"plan v{version} of {args.model} written to {args.out}")
    else:
        print(text)  # the plan's own JSON, with or without --json
    return EXIT_OK


def grouped_diff(changes: list[str]) -> list[str]:
    """QuantPlan.diff's lines for people: embedding tables with the same precision move on one
    line ("26 embedding tables (emb_l.0..emb_l.25): precision int8 -> fp16")."""
    import re

    from lpmon.pipeline.lifecycle import _natural

    moves, out = {}, []
    for line in changes:
        match = re.fullmatch(r"(emb_l\.\d+): precision (\S+) -> (\S+)", line)
        if match:
            moves.setdefault((match[2], match[3]), []).append(match[1])
        else:
            out.append(line)
    out.sort(key=lambda line: _natural(line.split(":")[0]))
    for (before, after), names in moves.items():
        names.sort(key=_natural)
        out.append(f"{names[0]}: precision {before} -> {after}" if len(names) == 1 else
                   f"{len(names)} embedding tables ({names[0]}..{names[-1]}): precision {before} -> {after}")
    return out


def _plan_lifecycle(args, config, store) -> int:
    from lpmon.pipeline.lifecycle import PlanLifecycle
    from lpmon.pipeline.user_plans import import_plan, promote_plan

    if args.action == "import":
        version = import_plan(config, args.model, args.file)
        emit(args, {"model": args.model, "version": version, "file": str(args.file), "status": "candidate"},
             f"{args.file} stored as plan v{version} of {args.model} (not active: `lpmon plans promote "
             f"--model {args.model} {version}`)")
        return EXIT_OK
    if args.action == "promote":
        outcome = promote_plan(config, args.model, args.version, day=args.date, force=args.force)
        data = {"model": args.model, "version": args.version, "promoted": bool(outcome.promoted),
                "forced": bool(args.force), "reason": outcome.reason}
        if outcome.promoted:
            emit(args, data, f"plan v{outcome.version} of {args.model} is in force: {outcome.reason}")
            return EXIT_OK
        if args.json:
            emit(args, data)
        else:
            print(f"plan v{args.version} of {args.model} not promoted: {outcome.reason}", file=sys.stderr)
        return EXIT_ERROR
    lifecycle = PlanLifecycle(store, args.model)
    if args.action == "pin":
        names = lifecycle.pin(args.version, args.layers)
        emit(args, {"model": args.model, "version": args.version, "pinned": names},
             f"{args.model}: pinned {len(names)} layers as in plan v{args.version}: {', '.join(names)}")
        return EXIT_OK
    count = store.unpin_layers(args.model, args.layers)
    emit(args, {"model": args.model, "unpinned": count}, f"{args.model}: unpinned {count} layers")
    return EXIT_OK


def _plan_row(rows, version):
    if version is None:
        raise ValueError("the model has no active plan (run `lpmon onboard` first)")
    if version not in rows:
        raise ValueError(f"no plan v{version} (versions: {', '.join(f'v{v}' for v in sorted(rows)) or 'none'})")
    return rows[version]


def _report(args, config) -> int:
    from lpmon.pipeline import open_store
    from lpmon.store import run_report

    config.model(args.model)
    history = run_report(open_store(config).db, "dne_history", model_id=args.model)
    if args.json:
        emit(args, history)
        return EXIT_OK
    print(f"{'date':<11} {'status':<18} {'decision':<12} {'dNE %':>9} {'interval':>22} {'plan':>8}")
    for h in history:
        dne = "-" if h["dne_pct"] is None else f"{h['dne_pct']:.4f}"
        interval = "" if h["dne_pct_lo"] is None else f"[{h['dne_pct_lo']:.4f}, {h['dne_pct_hi']:.4f}]"
        plan = f"v{h['plan_version']}" + (f"->v{h['new_plan_version']}" if h["new_plan_version"] else "") \
            if h["plan_version"] else "-"
        print(f"{h['logical_date']:<11} {h['status']:<18} {h['action'] or '-':<12} {dne:>9} {interval:>22} {plan:>8}")
    return 0


def _import_criteo(args) -> int:
    from lpmon.traffic import TrafficStore
    from lpmon.traffic.criteo import import_criteo

    store = TrafficStore(args.store)
    rows = import_criteo(args.tsv, store, args.day, table_rows=args.table_rows,
                         progress=None if args.quiet else sys.stderr)
    emit(args, {"rows": rows, "day": args.day, "partition": store.partition(args.day)},
         f"imported {rows:,} rows into {store.partition(args.day)}")
    return EXIT_OK


def _import_dlrm(args) -> int:
    from lpmon.model.dlrm_import import load_torch_state_dict, model_from_state_dict, names_from_traffic
    from lpmon.traffic import TrafficStore

    state = load_torch_state_dict(args.checkpoint)
    sparse, dense, how = args.sparse_names, None, ""
    if args.from_traffic:
        traffic = TrafficStore(args.from_traffic)
        days = traffic.days()
        if not days:
            raise ValueError(f"--from-traffic {args.from_traffic}: no date=YYYY-MM-DD partition")
        day = args.day or str(days[-1])
        sparse, dense, how = names_from_traffic(state, traffic.schema(day), f"the traffic at {args.from_traffic}")
    model = model_from_state_dict(state, sparse, dense)
    model.save(args.out)
    spec = model.spec
    data = {"snapshot": str(args.out), "tables": [t.name for t in spec.tables], "dense": list(spec.dense),
            "bottom_mlp": list(spec.bottom_mlp), "top_mlp": list(spec.top_mlp), "interaction": spec.interaction,
            "matched": how}
    lines = [f"snapshot {args.out}: {len(spec.tables)} tables, {len(spec.dense)} dense inputs, bottom MLP "
             f"{'-'.join(map(str, spec.bottom_mlp))}, top MLP {'-'.join(map(str, spec.top_mlp))}, "
             f"{spec.interaction} interaction"]
    if how:
        lines.append(f"matched to the traffic: {how}")
    elif not args.sparse_names:
        note(args, f"lpmon import-dlrm: tables named {spec.tables[0].name}..{spec.tables[-1].name}: the traffic "
                   "needs these columns (or use --from-traffic DIR / --sparse-names)")
    emit(args, data, lines)
    return EXIT_OK

