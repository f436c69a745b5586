"""Serving's copy of each model's active plan: <plans_dir>/<model>/active.json.

The store and serving's file must never disagree silently. So:
- before a promotion commits, `check` refuses a target that cannot be written
  (the folder not writable by this user, the path not a regular file): the
  promotion does not happen, and the error says why;
- after it, `publish` writes the file atomically with the configured mode
  (the umask's by default, so another user's serving process can read it),
  removes temporary files that killed writers left, and records the outcome
  in the store (table exports), failures included: `lpmon status` shows it,
  `serving_problem` words it for pages and alerts, and the next run (or the
  task's retry) writes the file again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from lpmon.atomic import temp_files, write_atomically
from lpmon.config import Config, confined
from lpmon.quant import QuantPlan

ACTIVE = "active.json"
STALE_TEMP_S = 3600.0  # a temporary file this old belongs to a writer that died


class ExportError(ValueError):
    """Serving's file cannot be written as configured; the message names the model, the path and the fix."""


def target(config: Config, model_id: str) -> Path:
    return confined(config.plans_dir, model_id) / ACTIVE


def check(config: Config, model_id: str) -> Path:
    """Raise ExportError unless the model's active.json can be written; called
    before a promotion commits, so that a plan never becomes active in the
    store while serving's file is known to be out of reach."""
    path = target(config, model_id)
    problem = _problem(path)
    if problem:
        raise ExportError(f"{model_id}: {problem}; nothing was promoted: fix it and rerun the day")
    return path


def publish(config: Config, store, model_id: str) -> Path | None:
    """Write the active plan to serving's file and record the outcome; None when
    the model has no active plan. A failure is recorded, then raised as an
    ExportError worded "vN active in the store, serving file still vM: why"."""
    active = store.active_plan(model_id)
    if active is None:
        return None
    path = target(config, model_id)
    try:
        problem = _problem(path)
        if problem:
            raise ExportError(problem)
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(path.parent)
        text = QuantPlan.from_json(active.plan_json).to_json()
        write_atomically(path, text.encode(), config.file_mode)
    except (OSError, ExportError) as err:
        serving = serving_version(path)
        why = str(err) if isinstance(err, ExportError) else f"{path}: {err.strerror or err}"
        store.record_export(model_id, str(path), active.version, "failed", serving, why)
        raise ExportError(mismatch(model_id, active.version, serving, why)) from None
    store.record_export(model_id, str(path), active.version, "ok", active.version, "")
    return path


def serving_version(path: Path) -> int | None:
    """The version in serving's file as it is now (None: missing or unreadable)."""
    try:
        return int(json.loads(Path(path).read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def mismatch(model_id: str, active: int, serving: int | None, why: str) -> str:
    held = f"v{serving}" if serving is not None else "missing or unreadable"
    return f"{model_id}: v{active} active in the store, serving file still {held}: {why}"


def serving_problem(store, model_id: str) -> str:
    """ "" when serving's file holds the active plan as far as the store knows; else
    the one line to show on pages and in alerts."""
    active, status = store.active_plan(model_id), store.export_status(model_id)
    if active is None:
        return ""
    if status is None:
        return f"{model_id}: v{active.version} active in the store, not yet exported for serving"
    if status["status"] == "failed":
        return mismatch(model_id, active.version, status["serving_version"], status["error"])
    if status["version"] != active.version:
        return (
            f"{model_id}: v{active.version} active in the store, serving file last written with "
            f"v{status['version']}: the next run exports it"
        )
    return ""


def serving_file_problem(config: Config, store, model_id: str) -> str:
    """serving_problem, then serving's file itself against the store's active plan:
    missing, not a plan, another version, or other contents ("" when they agree).
    For `lpmon status`: it reads the file, which pages and alerts do not."""
    problem = serving_problem(store, model_id)
    if problem:
        return problem
    active, path = store.active_plan(model_id), target(config, model_id)
    if active is None:
        if path.exists() or path.is_symlink():
            return f"{model_id}: no plan active in the store, but serving's file {path} exists: remove it"
        return ""
    fix, stored = "the next run of the model writes it again", f"{model_id}: v{active.version} active in the store"
    try:
        served = QuantPlan.from_json(path.read_text())
    except FileNotFoundError:
        return f"{stored}, serving's file {path} is missing: {fix}"
    except (OSError, UnicodeDecodeError, RecursionError, ValueError) as err:
        why = err.strerror if isinstance(err, OSError) else str(err).splitlines()[0][:200]
        return f"{stored}, serving's file {path} is not a plan ({why}): {fix}"
    if served.version != active.version:
        return f"{stored}, serving's file {path} holds v{served.version}: {fix}"
    if served != QuantPlan.from_json(active.plan_json):
        return f"{model_id}: serving's file {path} differs from v{active.version} in the store: {fix}"
    return ""


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Temporary files of writers killed mid-write (older than STALE_TEMP_S): removed."""
    removed = []
    for path in temp_files(folder, ACTIVE):
        try:
            if time.time() - path.stat().st_mtime > STALE_TEMP_S:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:
            continue
    return removed


def _problem(path: Path) -> str:
    """Why path cannot be (re)written by this process, or ""."""
    if path.is_symlink() or path.exists():
        if not path.is_file():
            return f"serving's file {path} is not a regular file (a directory?): remove or rename it"
        folder = path.parent
    else:
        folder = path.parent
        while not folder.exists():
            folder = folder.parent
        if not folder.is_dir():
            return f"serving's folder cannot be made: {folder} is not a directory"
    if not os.access(folder, os.W_OK | os.X_OK):
        return (
            f"serving's folder {folder} is not writable by this user (uid {os.geteuid()}): "
            "fix its owner or mode, or plans_dir"
        )
    return ""
