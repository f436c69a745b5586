"""A large day's sampling shared by workers, as three functions of (model, day):
plan the file groups, draw one group's candidates, and the sample step that
merges them (lpmon_monitor's sample_groups, sample_part and sample tasks).

A model's day of more than `sample_split_rows` rows is cut into groups of
consecutive files; each group's bottom-k candidates are drawn apart (pass 1 of
lpmon.traffic.split) and their rows read, on the group's worker; the sample
step merges them exactly and takes the sampled rows from those (its cost
follows the sample, not the day). Between tasks the groups travel through the
shared work directory:

    <work_dir>/<model>/<day>/split/plan.json           the plan: its id, the groups' files
    <work_dir>/<model>/<day>/split/<id>-<group>.npz    a group's candidates
    <work_dir>/<model>/<day>/split/<id>-<group>.npy    its sorted hashes (for the duplicate check)
    <work_dir>/<model>/<day>/split/<id>-<group>.arrow  its candidates' rows (read by the merge, mapped)

Whatever goes wrong with a split (no plan, a group not drawn, the files changed
since the plan), the sample step draws the day whole: the same sample, slower.
A small day, or a partition still awaited, is never split.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from pathlib import Path

from lpmon.config import Config
from lpmon.pipeline import steps
from lpmon.pipeline.daywork import DayWork
from lpmon.traffic import MissingDay, TrafficError, TrafficStore
from lpmon.traffic import split as bottomk

log = logging.getLogger(__name__)
PLAN = "plan.json"


def folder(cfg: Config, model_id: str, day: str) -> Path:
    return DayWork.folder(cfg.work_dir, model_id, day) / "split"


def plan(cfg: Config, model_id: str, day: str) -> int:
    """Plan the day's file groups; returns their number (0: drawn whole). A
    previous plan of the day is replaced, so a rerun never mixes two."""
    where = folder(cfg, model_id, day)
    shutil.rmtree(where, ignore_errors=True)
    groups = groups_of(cfg, model_id, day)
    if len(groups) < 2:
        return 0
    where.mkdir(parents=True)
    (where / PLAN).write_text(json.dumps({"id": uuid.uuid4().hex, "groups": groups}))
    log.info("lpmon: %s %s: sampled in %d file groups", model_id, day, len(groups))
    return len(groups)


def groups_of(cfg: Config, model_id: str, day: str) -> list[list[str]]:
    """The day's file groups if it has more than the model's sample_split_rows
    rows, its partition is complete and its footers readable; else []."""
    settings = cfg.model(model_id)
    if not settings.sample_split_rows:
        return []
    store = TrafficStore(settings.traffic)
    try:
        if cfg.airflow.partition_wait_s:  # a partition still awaited is never split
            marker = f"{store.partition(day)}/{cfg.airflow.partition_marker}"
            if store.filesystem.get_file_info(marker).type.name != "File":
                return []
        if store.row_count(day) <= settings.sample_split_rows:
            return []
        return bottomk.file_groups(store, store.files(day), settings.sample_split_rows)
    except (MissingDay, TrafficError, OSError) as err:  # the sample step reports it
        log.info("lpmon: %s %s: not split (%s)", model_id, day, err)
        return []


def draw_group(cfg: Config, model_id: str, day: str, group: int) -> dict:
    """Pass 1 over one file group of the day's plan. A traffic problem is left
    to the sample step, which reports it for this model alone."""
    settings, where = cfg.model(model_id), folder(cfg, model_id, day)
    try:
        spec = json.loads((where / PLAN).read_text())
        name = f"{spec['id']}-{group}"
        part = bottomk.draw_candidates(
            TrafficStore(settings.traffic),
            spec["groups"][group],
            settings.sample_size,
            settings.sample_seed,
            spill=where / f"{name}.npy",
            rows_to=where / f"{name}.arrow",
        )
    except (TrafficError, OSError, ValueError, LookupError) as err:
        log.warning("lpmon: %s %s: group %d not drawn (%s): the day will be drawn whole", model_id, day, group, err)
        return {"model": model_id, "group": group, "drawn": False}
    partial = where / f"{name}.partial.npz"
    bottomk.save(part, partial)
    partial.replace(where / f"{name}.npz")
    return {"model": model_id, "group": group, "drawn": True, "rows": part.counts.rows}


def collect(cfg: Config, model_id: str, day: str) -> list | None:
    """Every group's candidates of the day's plan, in order; None if any is missing."""
    where = folder(cfg, model_id, day)
    try:
        spec = json.loads((where / PLAN).read_text())
    except (OSError, ValueError):
        return None
    paths = [where / f"{spec['id']}-{i}.npz" for i in range(len(spec["groups"]))]
    if not all(p.exists() for p in paths):
        log.warning("lpmon: %s %s: a file group was not drawn: the day is drawn whole", model_id, day)
        return None
    return [bottomk.load(p) for p in paths]


def sample_step(cfg: Config, work: DayWork) -> DayWork:
    """steps.sample_step, merging the day's groups when it was split; the groups'
    files are removed once the sample is drawn."""
    parts = collect(cfg, work.model_id, work.day)
    work = steps.sample_step(cfg, work, parts=parts)
    shutil.rmtree(folder(cfg, work.model_id, work.day), ignore_errors=True)
    return work
