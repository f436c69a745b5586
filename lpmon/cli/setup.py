"""Setting up: `init` (the state store), `world` (a synthetic world), `import-criteo`,
`import-dlrm`, `import-torchrec` and `convert-snapshot`."""

from __future__ import annotations

import sys

from lpmon.cli.output import EXIT_OK, emit, note


def world(args) -> int:
    import datetime as dt

    from lpmon.cli.progress import PlainLines
    from lpmon.demo.world import WorldConfig, write_world

    config = WorldConfig(
        scenario=args.scenario,
        days=args.days,
        start=dt.date.fromisoformat(args.start),
        seed=args.seed,
        model_id=args.model_id,
        examples_per_day=args.examples_per_day,
        n_sparse=args.tables,
        table_rows=args.table_rows,
        dim=args.dim,
    )
    paths = write_world(args.root, config, progress=PlainLines(sys.stderr, quiet=args.quiet))
    emit(
        args,
        {"traffic": str(paths.traffic), "snapshot": str(paths.snapshot), "config": str(paths.config)},
        f"traffic:  {paths.traffic}\nsnapshot: {paths.snapshot}\nconfig:   {paths.config}",
    )
    return EXIT_OK


def init(args, config) -> int:
    """The one command that creates or upgrades a store (a damaged one is refused, never overwritten)."""
    from lpmon.store import Database, init_store

    applied = init_store(config.store)
    url = Database(config.store).safe_url
    emit(
        args,
        {"store": url, "applied_migrations": list(applied or []), "integrity": "ok"},
        f"state store {url}: " + (f"applied migrations {applied}" if applied else "up to date") + "; integrity ok",
    )
    return EXIT_OK


def import_criteo(args) -> int:
    from lpmon.traffic import TrafficStore
    from lpmon.traffic.criteo import import_criteo
    from lpmon.traffic.dlrm_vocabulary import DlrmVocabulary

    vocabulary = None
    if args.dlrm_vocabulary:
        vocabulary = DlrmVocabulary(args.dlrm_vocabulary, args.max_ind_range)
    elif args.max_ind_range > 0 or args.unknown_row or args.refuse_unknown:
        raise ValueError("--max-ind-range, --unknown-row and --refuse-unknown go with --dlrm-vocabulary PREFIX")
    store = TrafficStore(args.store)
    done = import_criteo(
        args.tsv,
        store,
        args.day,
        table_rows=args.table_rows,
        vocabulary=vocabulary,
        unknown_row=args.unknown_row,
        refuse_unknown=args.refuse_unknown,
        progress=None if args.quiet else sys.stderr,
    )
    lines = [f"imported {done.rows:,} rows into {store.partition(args.day)}"]
    if vocabulary is not None:
        unknown = sum(done.unknown.values())
        lines.append(
            f"DLRM ids from {args.dlrm_vocabulary}_fea_dict_*.npz; {unknown:,} values outside the vocabulary"
            + (f" (in {len(done.unknown)} columns) mapped to row {done.unknown_row}" if unknown else "")
        )
    emit(
        args,
        {
            "rows": done.rows,
            "day": args.day,
            "partition": store.partition(args.day),
            "table_rows": list(done.table_rows),
            "unknown": done.unknown,
            "unknown_row": done.unknown_row,
        },
        lines,
    )
    return EXIT_OK


def import_dlrm(args) -> int:
    from lpmon.model.dlrm_import import load_torch_state_dict, names_from_traffic, save_state_dict
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
    model = save_state_dict(state, args.out, sparse, dense)  # tensor by tensor, each checked once
    spec = model.spec
    data = {
        "snapshot": str(args.out),
        "tables": [t.name for t in spec.tables],
        "dense": list(spec.dense),
        "bottom_mlp": list(spec.bottom_mlp),
        "top_mlp": list(spec.top_mlp),
        "interaction": spec.interaction,
        "matched": how,
    }
    lines = [
        f"snapshot {args.out}: {len(spec.tables)} tables, {len(spec.dense)} dense inputs, bottom MLP "
        f"{'-'.join(map(str, spec.bottom_mlp))}, top MLP {'-'.join(map(str, spec.top_mlp))}, "
        f"{spec.interaction} interaction"
    ]
    if how:
        lines.append(f"matched to the traffic: {how}")
    elif not args.sparse_names:
        note(
            args,
            f"lpmon import-dlrm: tables named {spec.tables[0].name}..{spec.tables[-1].name}: the traffic "
            "needs these columns (or use --from-traffic DIR / --sparse-names)",
        )
    emit(args, data, lines)
    return EXIT_OK


def import_torchrec(args) -> int:
    from lpmon.model.torchrec_import import import_torchrec as load

    spec = load(args.checkpoint, args.out, args.features, args.pooling).spec
    kind = f"DLRM_DCN ({spec.cross_layers} cross layers of rank {spec.cross_rank})" if spec.cross_layers else "DLRM"
    data = {
        "snapshot": str(args.out),
        "model": "DLRM_DCN" if spec.cross_layers else "DLRM",
        "tables": {t.name: list(t.inputs) for t in spec.tables},
        "dense": list(spec.dense),
        "sparse": list(spec.sparse),
        "bottom_mlp": list(spec.bottom_mlp),
        "top_mlp": list(spec.top_mlp),
    }
    emit(
        args,
        data,
        f"snapshot {args.out}: TorchRec {kind}, {len(spec.tables)} tables serving {len(spec.sparse)} features "
        f"({', '.join(spec.sparse)}), {len(spec.dense)} dense inputs (dense_0..dense_{len(spec.dense) - 1}); "
        "the traffic needs these columns",
    )
    return EXIT_OK


def convert_snapshot(args) -> int:
    from lpmon.model.convert import convert_snapshot as convert

    folder, done = convert(args.source, args.out)
    emit(args, {"snapshot": str(folder), "done": done}, f"snapshot {folder}: {done}")
    return EXIT_OK
