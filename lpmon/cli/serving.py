"""The serving commands of the CLI: `plans export --format torchscript` and `score`."""

from __future__ import annotations

import argparse
from pathlib import Path

FORMATS = ("json", "torchscript")


def export_arguments(sub: argparse.ArgumentParser) -> None:
    """--version and --format for `plans export` (the version may also be given bare, as before)."""
    from lpmon.cli import plan_version

    sub.add_argument(
        "--version",
        dest="version_flag",
        type=plan_version,
        metavar="V",
        help="the plan version (default: the active one)",
    )
    sub.add_argument(
        "--format",
        choices=FORMATS,
        default="json",
        help="json: the plan file (default); torchscript: a runnable module of FBGEMM ops "
        "(needs --out, and `pip install 'lpmon[torch]'`)",
    )


def score_parser(commands, with_config) -> None:
    score = with_config(
        commands.add_parser(
            "score", help="write a day's sample as lpmon scores it (request_id, label, p_fp32, p_q) to Parquet"
        )
    )
    score.add_argument("--model", required=True)
    score.add_argument("--date", required=True, help="YYYY-MM-DD")
    which = score.add_mutually_exclusive_group()
    which.add_argument(
        "--plan", type=_version, metavar="V", help="p_q under this plan (default: the plan in force that day)"
    )
    which.add_argument("--fp32", action="store_true", help="p_q is the fp32 model's (no plan)")
    score.add_argument("--out", type=Path, required=True, help="the Parquet file to write")


def _version(text):
    from lpmon.cli import plan_version

    return plan_version(text)


def export_torchscript(args, config, version: int, plan_json: str) -> int:
    if args.out is None:
        raise ValueError("--format torchscript writes a binary file: give --out FILE.pt")
    from lpmon.pipeline.scoring import probe_sample
    from lpmon.quant import QuantPlan

    try:
        from lpmon.serving import torchscript
    except ImportError as err:  # says which extra to install
        raise ValueError(str(err)) from None

    from lpmon.pipeline import load_model

    model = load_model(config.model(args.model))
    plan = QuantPlan.from_json(plan_json)
    probe, day = probe_sample(config, args.model, model)
    try:
        info = torchscript.export(model, plan, args.out, probe, checked_day=day if probe is not None else None)
    except ImportError as err:  # a TBE plan without fbgemm_gpu: the message says what to install
        raise ValueError(str(err)) from None
    checked = info["checked_on"]
    line = (
        f"plan v{version} of {args.model} written to {args.out} as TorchScript "
        f"(manifest {torchscript.manifest_path(args.out)})"
    )
    if "max_ulp" in checked:
        checked_line = (
            f"checked on {checked['examples']:,} examples of {day}: largest difference from "
            f"lpmon's p_q {checked['max_ulp']} ulp ({checked['differing']} examples differ)"
        )
    else:
        checked_line = f"not checked against lpmon's executor: {day}"
    print(f"{line}\n{checked_line}")
    return 0


def score(args, config) -> int:
    from lpmon.pipeline.scoring import score_day

    scores = score_day(config, args.model, args.date, plan_version=args.plan, fp32=args.fp32)
    scores.write(args.out)
    what = "logged" if scores.logged else "fp32" if scores.plan_version is None else f"plan v{scores.plan_version}"
    print(f"{len(scores.labels):,} examples of {args.model} {scores.day} scored (p_q: {what}) written to {args.out}")
    return 0
