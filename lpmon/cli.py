"""The `lpmon` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lpmon", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
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
    world.add_argument("--start", default="2026-11-01", help="first day, YYYY-MM-DD")
    world.add_argument("--seed", type=int, default=0)
    world.add_argument("--model-id", default=None, help="default: the scenario name")
    world.add_argument("--examples-per-day", type=int, default=200_000)

    def with_config(sub):
        sub.add_argument("--config", type=Path, default=None,
                         help="the lpmon config file (default: $LPMON_CONFIG, else lpmon.toml)")
        return sub

    with_config(commands.add_parser("init", help="create or upgrade the state store"))
    run = with_config(commands.add_parser("run", help="run the daily job for one model and date"))
    run.add_argument("--model", required=True)
    run.add_argument("--date", required=True, help="YYYY-MM-DD")
    backfill = with_config(commands.add_parser("backfill", help="run the daily job over a date range"))
    backfill.add_argument("--model", required=True)
    backfill.add_argument("--start", required=True, help="first day, YYYY-MM-DD")
    backfill.add_argument("--end", required=True, help="last day, YYYY-MM-DD (included)")
    onboard = with_config(commands.add_parser("onboard", help="build, validate and promote a model's first plan"))
    onboard.add_argument("--model", required=True)
    onboard.add_argument("--date", required=True, help="the day whose traffic to calibrate on")
    plans = commands.add_parser("plans", help="list, show, export, diff, import, promote or pin a model's plans")
    actions = plans.add_subparsers(dest="action", required=True)

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
            from lpmon.cli_serving import export_arguments
            export_arguments(sub)
    diff = plan_action("diff", "what changed between two versions, layer by layer")
    diff.add_argument("versions", nargs=2, type=plan_version, metavar="VERSION")
    imported = plan_action("import", "store a plan file as a new version (not active)")
    imported.add_argument("file", type=Path)
    promote = plan_action("promote", "put a version in force, if it passes validation on a day's traffic")
    promote.add_argument("version", type=plan_version)
    promote.add_argument("--date", help="the day whose held-out traffic validates it (default: the last day run)")
    promote.add_argument("--force", action="store_true", help="skip validation (recorded as forced)")
    pin = plan_action("pin", "never let lpmon change these layers (all layers when none are named)")
    pin.add_argument("version", type=plan_version)
    pin.add_argument("--layers", nargs="+", metavar="LAYER")
    unpin = plan_action("unpin", "let lpmon change pinned layers again (all of them when none are named)")
    unpin.add_argument("--layers", nargs="+", metavar="LAYER")
    report = with_config(commands.add_parser("report", help="daily dNE history of a model"))
    report.add_argument("--model", required=True)
    report.add_argument("--json", action="store_true")
    status = with_config(commands.add_parser("status", help="the last run and active plan of every model"))
    status.add_argument("--json", action="store_true", help="machine-readable output")
    from lpmon.cli_serving import score_parser
    score_parser(commands, with_config)

    criteo = commands.add_parser("import-criteo", help="import a Criteo TSV file as one day of traffic")
    criteo.add_argument("tsv", type=Path)
    criteo.add_argument("--store", required=True, help="traffic store path or URI")
    criteo.add_argument("--day", required=True, help="YYYY-MM-DD")
    criteo.add_argument("--table-rows", type=int, default=100_000,
                        help="rows of each embedding table: ids are hashed into them")
    return parser


def plan_version(text: str) -> int:
    """A plan version as `plans list` prints it (v3) or as a number (3)."""
    digits = text[1:] if text[:1] in "vV" else text
    if not digits.isdigit() or int(digits) < 1:
        raise argparse.ArgumentTypeError(f"not a plan version: {text!r} (e.g. 3 or v3)")
    return int(digits)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from lpmon import demo

        if args.days < 1 or args.examples_per_day < 2_000 or args.sample_size < 1_000:
            print("lpmon demo: --days must be >= 1, --examples-per-day >= 2000 and --sample-size >= 1000",
                  file=sys.stderr)
            return 2
        return demo.main(args.root, args.days, args.examples_per_day, args.sample_size)
    try:
        if args.command == "world":
            return _world(args)
        if args.command == "import-criteo":
            return _import_criteo(args)
        if args.command in ("init", "onboard", "run", "backfill", "status", "plans", "report", "score"):
            from lpmon import config as config_module

            config = config_module.load(args.config)
            handlers = {"init": _init, "onboard": _onboard, "run": _run, "backfill": _backfill,
                        "status": _status, "plans": _plans, "report": _report}
            from lpmon.cli_serving import score
            handlers["score"] = score
            return handlers[args.command](args, config)
    except ValueError as err:  # bad input: say what and where, no traceback
        print(f"lpmon {args.command}: {err}", file=sys.stderr)
        return 1
    except RuntimeError as err:
        from lpmon.store import StoreError

        if not isinstance(err, StoreError):
            raise
        print(f"lpmon {args.command}: {err}", file=sys.stderr)  # e.g. a database newer than lpmon
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


def _init(args, config) -> int:
    """The one command that creates or upgrades a store (a damaged one is refused, never overwritten)."""
    from lpmon.store import Database, init_store

    applied = init_store(config.store)
    print(f"state store {Database(config.store).safe_url}: "
          + (f"applied migrations {applied}" if applied else "up to date") + "; integrity ok")
    return 0


def _print_result(r) -> None:
    dne = "-" if r.dne_pct is None else f"{r.dne_pct:.4f} %"
    plan = f"v{r.plan_version}" + (f" -> v{r.new_plan_version}" if r.new_plan_version not in (None, r.plan_version)
                                    else "")
    print(f"{r.model_id:<16} {r.logical_date} {r.status:<18} {r.action:<12} dNE {dne:>10}  plan {plan}")
    if r.status in ("failed", "INSUFFICIENT_DATA"):
        print(f"  {r.message}")  # why the day could not be judged


def _run(args, config) -> int:
    from lpmon.pipeline import STEPS, run_day
    from lpmon.progress import progress

    with progress(len(STEPS), f"{args.model} {args.date}") as advance:
        result = run_day(config, args.model, args.date, on_step=advance)
    _print_result(result)
    return 1 if result.status == "failed" else 0


def _backfill(args, config) -> int:
    import datetime as dt

    from lpmon.pipeline import run_day
    from lpmon.progress import progress

    start, end = dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end)
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    failed, days = 0, (end - start).days + 1
    with progress(days, f"backfill {args.model}") as advance:
        for offset in range(days):
            advance(str(start + dt.timedelta(days=offset)))
            result = run_day(config, args.model, start + dt.timedelta(days=offset))
            _print_result(result)
            failed += result.status == "failed"
    return 1 if failed else 0


def _status(args, config) -> int:
    import json

    from lpmon.export import serving_problem
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
        entry = {"last_run": None, "active_plan": None}
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
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    print(f"state store {store.db.safe_url}: schema version {store.db.schema_version()}, integrity ok")
    for model_id, entry in report.items():
        run, plan = entry["last_run"], entry["active_plan"]
        line = f"{model_id:<16} "
        line += (f"{run['date']} {run['status']:<18} {run['decision'] or '-':<12} dNE "
                 + ("-" if run["dne_pct"] is None else f"{run['dne_pct']:.4f} %")) if run else "no runs yet"
        if plan:
            from lpmon.lifecycle import group_units

            moved = {n: ("int8", p) for n, p in plan["precisions"].items() if p not in ("int8", "int4", "int2")}
            raised = [text.replace("int8 -> ", "") for text in group_units(moved)]
            line += f"  plan v{plan['version']}" + (f" (higher precision: {'; '.join(raised)})" if moved else "")
        elif run:
            line += "  no plan: serving fp32"
        if entry["pinned"]:
            line += f"  pinned: {', '.join(entry['pinned'])}"
        print(line)
        if run and run["status"] == "failed":
            print(f"  ! last run failed: {run['message']}")
        if entry["serving"]["problem"]:
            print(f"  ! serving: {entry['serving']['problem']}")
    return 0


def _onboard(args, config) -> int:
    from lpmon.pipeline import onboard_day

    outcome = onboard_day(config, args.model, args.date)
    if outcome.promoted:
        print(f"{args.model}: plan v{outcome.version} onboarded and promoted: {outcome.reason}")
    elif outcome.active_version is not None:
        print(f"{args.model}: nothing done, {outcome.reason}")
    else:
        print(f"{args.model}: no plan promoted: {outcome.reason}")
    return 0


def _plans(args, config) -> int:
    from lpmon.pipeline import open_store, plan_diff
    from lpmon.quant import QuantPlan

    store = open_store(config)
    config.model(args.model)  # an unknown model is an error, not an empty list
    if args.action in ("import", "promote", "pin", "unpin"):
        return _plan_lifecycle(args, config, store)
    rows = {r["version"]: r for r in store.rows("plans", args.model)}
    if args.action == "list":
        pins = store.pins(args.model)
        for version, row in sorted(rows.items()):
            pinned = sorted(layer for layer, (v, _) in pins.items() if v == version)
            print(f"v{version:<4} {row['status']:<10} {row['logical_date']}  {row['reason']}"
                  + (f"  (pinned: {', '.join(pinned)})" if pinned else ""))
        return 0
    if args.action == "diff":
        old, new = (QuantPlan.from_json(_plan_row(rows, v)["plan_json"]) for v in args.versions)
        print("\n".join(plan_diff(old, new)) or "no differences")
        return 0
    version = args.version or getattr(args, "version_flag", None) or next(
        (v for v, r in rows.items() if r["status"] == "active"), None)
    if args.action == "export" and args.format == "torchscript":
        from lpmon.cli_serving import export_torchscript
        return export_torchscript(args, config, version, _plan_row(rows, version)["plan_json"])
    text = QuantPlan.from_json(_plan_row(rows, version)["plan_json"]).to_json()
    if args.action == "export" and args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        print(f"plan v{version} of {args.model} written to {args.out}")
    else:
        print(text)
    return 0


def _plan_lifecycle(args, config, store) -> int:
    from lpmon.lifecycle import PlanLifecycle
    from lpmon.user_plans import import_plan, promote_plan

    if args.action == "import":
        version = import_plan(config, args.model, args.file)
        print(f"{args.file} stored as plan v{version} of {args.model} (not active: `lpmon plans promote "
              f"--model {args.model} {version}`)")
        return 0
    if args.action == "promote":
        outcome = promote_plan(config, args.model, args.version, day=args.date, force=args.force)
        if outcome.promoted:
            print(f"plan v{outcome.version} of {args.model} is in force: {outcome.reason}")
            return 0
        print(f"plan v{args.version} of {args.model} not promoted: {outcome.reason}", file=sys.stderr)
        return 1
    lifecycle = PlanLifecycle(store, args.model)
    if args.action == "pin":
        names = lifecycle.pin(args.version, args.layers)
        print(f"{args.model}: pinned {len(names)} layers as in plan v{args.version}: {', '.join(names)}")
        return 0
    count = store.unpin_layers(args.model, args.layers)
    print(f"{args.model}: unpinned {count} layers")
    return 0


def _plan_row(rows, version):
    if version is None:
        raise ValueError("the model has no active plan (run `lpmon onboard` first)")
    if version not in rows:
        raise ValueError(f"no plan v{version} (versions: {', '.join(f'v{v}' for v in sorted(rows)) or 'none'})")
    return rows[version]


def _report(args, config) -> int:
    import json

    from lpmon.pipeline import open_store
    from lpmon.store import run_report

    config.model(args.model)
    history = run_report(open_store(config).db, "dne_history", model_id=args.model)
    if args.json:
        print(json.dumps(history, indent=2))
        return 0
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

    rows = import_criteo(args.tsv, TrafficStore(args.store), args.day, table_rows=args.table_rows)
    print(f"imported {rows:,} rows into {TrafficStore(args.store).partition(args.day)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
