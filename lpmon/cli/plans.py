"""`lpmon plans`: list, show, export, diff, import, promote, pin and unpin a model's plans."""

from __future__ import annotations

import sys

from lpmon.cli.output import EXIT_ERROR, EXIT_OK, emit


def plans(args, config) -> int:
    from lpmon.pipeline import open_store
    from lpmon.quant import QuantPlan

    store = open_store(config)
    config.model(args.model)  # an unknown model is an error, not an empty list
    if args.action in ("import", "promote", "pin", "unpin"):
        return plan_lifecycle(args, config, store)
    rows = {p.version: p for p in store.plans(args.model)}
    if args.action == "list":
        pins = store.pins(args.model)
        listed = []
        for version, row in sorted(rows.items()):
            pinned = sorted(layer for layer, (v, _) in pins.items() if v == version)
            listed.append(
                {
                    "version": version,
                    "status": row.status,
                    "date": row.logical_date,
                    "reason": row.reason,
                    "pinned": pinned,
                }
            )
        emit(
            args,
            listed,
            [
                f"v{p['version']:<4} {p['status']:<10} {p['date']}  {p['reason']}"
                + (f"  (pinned: {', '.join(p['pinned'])})" if p["pinned"] else "")
                for p in listed
            ],
        )
        return EXIT_OK
    if args.action == "diff":
        old, new = (QuantPlan.from_json(plan_row(rows, v).plan_json) for v in args.versions)
        changes = old.diff(new)
        emit(
            args,
            {"model": args.model, "from": args.versions[0], "to": args.versions[1], "changes": changes},
            "\n".join(grouped_diff(changes)) or "no differences",
        )
        return EXIT_OK
    version = (
        args.version
        or getattr(args, "version_flag", None)
        or next((v for v, r in rows.items() if r.status == "active"), None)
    )
    if args.action == "export" and args.format == "torchscript":
        from lpmon.cli.serving import export_torchscript

        return export_torchscript(args, config, version, plan_row(rows, version).plan_json)
    text = QuantPlan.from_json(plan_row(rows, version).plan_json).to_json()
    if args.action == "export" and args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        emit(
            args,
            {"model": args.model, "version": version, "file": str(args.out)},
            f"plan v{version} of {args.model} written to {args.out}",
        )
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
        out.append(
            f"{names[0]}: precision {before} -> {after}"
            if len(names) == 1
            else f"{len(names)} embedding tables ({names[0]}..{names[-1]}): precision {before} -> {after}"
        )
    return out


def plan_lifecycle(args, config, store) -> int:
    from lpmon.pipeline.lifecycle import PlanLifecycle
    from lpmon.pipeline.user_plans import import_plan, promote_plan

    if args.action == "import":
        imported = import_plan(config, args.model, args.file)
        version = imported.version
        data = {"model": args.model, "version": version, "file": str(args.file), "status": imported.status}
        if not imported.stored:
            text = f"{args.file} is identical to plan v{version} ({imported.status}): nothing stored"
        else:
            text = (
                f"{args.file} stored as plan v{version} of {args.model} (not active: `lpmon plans promote "
                f"--model {args.model} {version}`)"
            )
        emit(args, data | {"stored": imported.stored}, text)
        return EXIT_OK
    if args.action == "promote":
        outcome = promote_plan(config, args.model, args.version, day=args.date, force=args.force)
        data = {
            "model": args.model,
            "version": args.version,
            "promoted": bool(outcome.promoted),
            "forced": bool(args.force),
            "reason": outcome.reason,
        }
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
        emit(
            args,
            {"model": args.model, "version": args.version, "pinned": names},
            f"{args.model}: pinned {len(names)} layers as in plan v{args.version}: {', '.join(names)}",
        )
        return EXIT_OK
    count = store.unpin_layers(args.model, args.layers)
    emit(args, {"model": args.model, "unpinned": count}, f"{args.model}: unpinned {count} layers")
    return EXIT_OK


def plan_row(rows, version):
    if version is None:
        raise ValueError("the model has no active plan (run `lpmon onboard` first)")
    if version not in rows:
        raise ValueError(f"no plan v{version} (versions: {', '.join(f'v{v}' for v in sorted(rows)) or 'none'})")
    return rows[version]
