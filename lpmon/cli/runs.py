"""The daily job from the command line: `run`, `backfill`, `onboard`, and what the store says: `status`, `report`."""

from __future__ import annotations

import contextlib
import sys

from lpmon.cli.output import EXIT_DEGRADED, EXIT_ERROR, EXIT_OK, emit, note


def active_version(config, model_id: str) -> int | None:
    from lpmon.pipeline import open_store

    store = open_store(config)
    try:
        active = store.active_plan(model_id)
        return active.version if active else None
    finally:
        store.db.engine.dispose()


def result_data(r, active: int | None, outputs: dict) -> dict:
    return {
        "model": r.model_id,
        "date": r.logical_date,
        "status": r.status,
        "action": r.action,
        "dne_pct": r.dne_pct,
        "plan_version": r.plan_version,
        "new_plan_version": r.new_plan_version,
        "promoted": r.promoted,
        "examples_scored": r.examples_scored,
        "looks": r.looks,
        "stop_reason": r.stop_reason,
        "active_plan": active,
        "message": r.message,
        "report": outputs.get("report"),
        "alerts": outputs.get("alerts", {}),
    }


def spent_text(row: dict) -> str:
    """ "40,000 in 3 looks (decided)" for a row with examples_scored, looks and stop_reason; "-" without."""
    if not row.get("examples_scored"):
        return "-"
    looks = row["looks"]
    return f"{row['examples_scored']:,} in {looks} look{'s' if looks != 1 else ''} ({row['stop_reason']})"


def result_lines(data: dict) -> list[str]:
    dne = "-" if data["dne_pct"] is None else f"{data['dne_pct']:.4f} %"
    if data["plan_version"] is not None:
        plan = f"plan v{data['plan_version']}" + (
            f" -> v{data['new_plan_version']}" if data["new_plan_version"] not in (None, data["plan_version"]) else ""
        )
    elif data["active_plan"] is not None:  # the day was not judged under any plan: say which one is in force
        plan = f"active plan v{data['active_plan']} (not scored)"
    else:
        plan = "no plan: serving fp32"
    lines = [f"{data['model']:<16} {data['date']} {data['status']:<18} {data['action']:<12} dNE {dne:>10}  {plan}"]
    if data["status"] in ("failed", "INSUFFICIENT_DATA") or data["action"] in ("RECALIBRATE", "FALLBACK"):
        lines.append(f"  {data['message']}")  # why the day could not be judged, or what was done
    if (data.get("looks") or 0) > 1:  # the day scored more than its first sample
        lines.append(f"  scored {spent_text(data)}")
    if data["report"]:
        lines.append(f"  report: {data['report']}")
    sent = {e: s for e, s in data["alerts"].items()}
    if sent:
        lines.append("  alerts: " + ", ".join(f"{e} {s}" for e, s in sent.items()))
    return lines


def day_outputs(args, config, model_id: str, day: str) -> dict:
    """What the DAG's report and alert tasks give for the day (lpmon.report.alerts.deliver_day)."""
    from lpmon.pipeline import open_store
    from lpmon.report import alerts

    store = open_store(config)
    try:
        return alerts.deliver_day(
            config, store, model_id, day, mailer=None if args.no_alerts else (lambda: mailer(args, config))
        )
    finally:
        store.db.engine.dispose()


def mailer(args, config):
    """Airflow's SMTP connection ([airflow] smtp_conn_id; AIRFLOW_CONN_SMTP_DEFAULT works without a
    running Airflow); without one the alerts are recorded as not sent, and said so."""
    if getattr(args, "_mailer", None) is None:  # once per command (a backfill asks every day)
        with contextlib.redirect_stdout(sys.stderr):  # Airflow logs to stdout as it loads: keep --json clean
            from lpmon.airflow.smtp import from_airflow

            args._mailer = from_airflow(config.airflow.smtp_conn_id)
        if args._mailer.problem:
            note(args, f"lpmon: alerts recorded as not sent: {args._mailer.problem}")
    return args._mailer


def exit_code(days: list[dict], args) -> int:
    if any(d["status"] == "failed" for d in days):
        return EXIT_ERROR
    if getattr(args, "fail_on_degraded", False) and any(d["status"] == "DEGRADED" for d in days):
        return EXIT_DEGRADED
    return EXIT_OK


def run(args, config) -> int:
    from lpmon.cli.progress import progress
    from lpmon.pipeline import STEPS, run_day
    from lpmon.pipeline.days import check_days

    check_days(config, args.model, args.date)
    with progress(len(STEPS), f"{args.model} {args.date}", quiet=args.quiet, plain=False) as advance:
        result = run_day(config, args.model, args.date, on_step=advance)
    data = result_data(
        result, active_version(config, args.model), day_outputs(args, config, args.model, result.logical_date)
    )
    emit(args, data, result_lines(data))
    return exit_code([data], args)


def backfill(args, config) -> int:
    import datetime as dt

    from lpmon.cli.progress import progress
    from lpmon.pipeline import run_day
    from lpmon.pipeline.days import check_days

    config.model(args.model)
    start, end = dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end)
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    check_days(config, args.model, start, end)
    days, out = (end - start).days + 1, []
    with progress(days, f"backfill {args.model}", quiet=args.quiet) as advance:
        for offset in range(days):
            day = start + dt.timedelta(days=offset)
            advance(str(day))
            result = run_day(config, args.model, day)
            data = result_data(
                result, active_version(config, args.model), day_outputs(args, config, args.model, result.logical_date)
            )
            out.append(data)
            if not args.json:
                print("\n".join(result_lines(data)), flush=True)
    if args.json:
        emit(args, out)
    return exit_code(out, args)


def onboard(args, config) -> int:
    from lpmon.pipeline import onboard_day
    from lpmon.pipeline.days import check_days

    check_days(config, args.model, args.date)
    outcome = onboard_day(config, args.model, args.date)
    done = "promoted" if outcome.promoted else "nothing done" if outcome.active_version is not None else "none promoted"
    data = {
        "model": args.model,
        "date": args.date,
        "outcome": done,
        "promoted": bool(outcome.promoted),
        "version": outcome.version if outcome.promoted else None,
        "active_plan": outcome.active_version,
        "reason": outcome.reason,
    }
    if outcome.promoted:
        text = f"{args.model}: plan v{outcome.version} onboarded and promoted: {outcome.reason}"
    elif outcome.active_version is not None:
        text = f"{args.model}: nothing done, {outcome.reason}"
    else:
        text = f"{args.model}: no plan promoted: {outcome.reason}"
    emit(args, data, text)
    return EXIT_OK


def status(args, config) -> int:
    from lpmon.pipeline import open_store
    from lpmon.pipeline.capacity import of_plan
    from lpmon.pipeline.export import serving_file_problem
    from lpmon.quant import QuantPlan

    store = open_store(config)  # refuses a missing, damaged or foreign store, saying what it found
    store.db.verify(thorough=True)  # the integrity check, whatever the store's size
    report, capacity_text = {}, {}
    for model_id in sorted(config.models):
        last, judged = store.latest_day(model_id), store.latest_judged_day(model_id)
        active = store.active_plan(model_id)
        entry = {"last_run": None, "active_plan": None, "last_judged": None}
        if judged:  # the last day with a verdict (a later day may have had no traffic)
            entry["last_judged"] = {"date": judged.day, "status": judged.status, "dne_pct": judged.dne_pct}
        if last:
            entry["last_run"] = {
                "date": last.day,
                "status": last.status,
                "decision": last.action,
                "dne_pct": last.dne_pct,
                "dne_pct_lo": last.dne_pct_lo,
                "dne_pct_hi": last.dne_pct_hi,
                "message": last.message,
            }
        if active:
            plan = QuantPlan.from_json(active.plan_json)
            entry["active_plan"] = {
                "version": active.version,
                "precisions": {layer.name: layer.precision for layer in plan.layers},
            }
        served = of_plan(config, model_id, active.plan_json if active else None)
        # The bytes serving holds under the plan in force (fp32 without one), against fp32 and all-int8.
        entry.update(served.as_dict() if served else dict.fromkeys(("bytes_served", "fp32_bytes", "int8_bytes")))
        capacity_text[model_id] = served.describe(active.version if active else None) if served else ""
        entry["pinned"] = sorted(store.pins(model_id))
        entry["alerts_not_sent"] = [  # a rerun that delivered its day's mail superseded the failed ones
            {"date": a["logical_date"], "event": a["event"], "error": a["error"]}
            for a in store.alerts(model_id)
            if a["status"] == "failed"
        ]
        exported = store.export_status(model_id)
        entry["serving"] = {
            "problem": serving_file_problem(config, store, model_id),
            "version": exported["serving_version"] if exported else None,
            "file": exported["target"] if exported else None,
        }
        report[model_id] = entry
    if args.json:
        emit(args, report)
        return EXIT_OK
    print(f"state store {store.db.safe_url}: schema version {store.db.schema_version()}, integrity ok")
    for model_id, entry in report.items():
        run, plan = entry["last_run"], entry["active_plan"]
        line = f"{model_id:<16} "
        line += (
            (
                f"{run['date']} {run['status']:<18} {run['decision'] or '-':<12} dNE "
                + ("-" if run["dne_pct"] is None else f"{run['dne_pct']:.4f} %")
            )
            if run
            else "no runs yet"
        )
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
        if capacity_text[model_id]:
            print(f"  {capacity_text[model_id]}")
        if run and run["status"] in ("failed", "INSUFFICIENT_DATA"):
            print(f"  ! last run {'failed' if run['status'] == 'failed' else 'not judged'}: {run['message']}")
            judged = entry["last_judged"]
            print(f"  last judged day: {judged['date']} {judged['status']}" if judged else "  no day judged yet")
        if entry["serving"]["problem"]:
            print(f"  ! serving: {entry['serving']['problem']}")
        if entry["alerts_not_sent"]:
            unsent = entry["alerts_not_sent"]
            print(
                f"  ! {len(unsent)} alert mail(s) not sent; the last: {unsent[-1]['date']} {unsent[-1]['event']}: "
                f"{unsent[-1]['error']}"
            )
    return 0


def report(args, config) -> int:
    from lpmon.pipeline import open_store
    from lpmon.pipeline.capacity import plan_capacity
    from lpmon.report.page import plan_of_day
    from lpmon.report.templating import version
    from lpmon.store import run_report

    config.model(args.model)
    store = open_store(config)
    history = run_report(store.db, "dne_history", model_id=args.model)
    if args.json:
        emit(args, history)
        return EXIT_OK
    served = plan_capacity(config, store, args.model)
    if served["capacity"]:
        print(f"bytes served now: {served['capacity']['text']}")
    for change in served["plan_changes"]:
        print(
            f"  {change['day']}: v{change['version']} serves {change['share_pct']:.0f} % of the fp32 bytes "
            f"({change['change_pct']:+.0f} points against {version(change['before'])})"
        )
    print(f"{'date':<11} {'status':<18} {'decision':<12} {'dNE %':>9} {'interval':>22} {'plan':>16} {'scored':>24}")
    for h in history:
        dne = "-" if h["dne_pct"] is None else f"{h['dne_pct']:.4f}"
        interval = "" if h["dne_pct_lo"] is None else f"[{h['dne_pct_lo']:.4f}, {h['dne_pct_hi']:.4f}]"
        plan = plan_of_day(h)
        print(
            f"{h['logical_date']:<11} {h['status']:<18} {h['action'] or '-':<12} {dne:>9} {interval:>22} {plan:>16} "
            f"{spent_text(h):>24}"
        )
    return 0
