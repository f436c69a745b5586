"""What one model's day carries from step to step (sample -> score -> compare ->
decide -> recalibrate/fallback -> report -> alert).

In-process (`lpmon run`) it stays in memory; between Airflow tasks, which may
run on different workers, it is saved in the work directory (storage the
workers share, like the traffic and model stores):

    <work_dir>/<model>/<day>/state.json    the small results (JSON)
    <work_dir>/<model>/<day>/arrays.npz    the sample and the two models' scores

Both files are replaced atomically, so a task killed mid-save leaves the
previous step's state, and its retry starts from there.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from lpmon.config import confined
from lpmon.model import Batch
from lpmon.model.batch import SparseFeature


@dataclass(frozen=True)
class RunResult:
    """What a model's day came to (run_day's result, and the report task's)."""

    model_id: str
    logical_date: str
    status: str
    action: str
    message: str
    plan_version: int | None
    new_plan_version: int | None = None
    dne_pct: float | None = None
    promoted: bool = False  # new_plan_version reached serving today
    examples_scored: int = 0  # what the day spent (lpmon.pipeline.adaptive)
    looks: int = 0
    stop_reason: str | None = None


STATE, ARRAYS = "state.json", "arrays.npz"
SEGMENT_PREFIX = "segment__"


class WorkMissing(RuntimeError):
    """A step needs what an earlier step of the same day should have saved."""


@dataclass
class DayWork:
    model_id: str
    day: str
    failure: str | None = None  # "failed" or "INSUFFICIENT_DATA" when the day cannot be scored
    message: str = ""
    plan_version: int | None = None  # the plan in force for the day (kept across reruns)
    sample_size: int = 0  # examples scored (the first look's sample, grown by later looks)
    positives: int = 0
    day_rows: int = 0  # rows in the day's partition
    looks: int = 0  # looks taken (lpmon.pipeline.adaptive)
    stop_reason: str | None = None  # why the looks stopped: decided, cap, traffic_exhausted
    timings: dict = field(default_factory=dict)
    comparison: dict | None = None  # lpmon.metrics.Comparison.as_dict()
    status: str | None = None  # lpmon.policy.Status value
    action: str | None = None  # what was done: RECORD, RECALIBRATE, FALLBACK, REENABLE
    reasons: list = field(default_factory=list)
    new_plan_version: int | None = None
    promoted: bool = False
    next_steps: list = field(default_factory=list)  # what decide/recalibrate chose: record, recalibrate, fallback
    layers: dict = field(default_factory=dict)  # per-layer SQNR and saturation
    calibration: dict = field(default_factory=dict)  # today's observer state per FC layer
    segment_values: dict = field(default_factory=dict)  # segment column -> its values (codes index them)
    segment_results: dict = field(default_factory=dict)  # "column=value" -> Comparison.as_dict()
    # in memory only; saved in arrays.npz
    batch: Batch | None = None
    labels: np.ndarray | None = None
    p_ref: np.ndarray | None = None
    p_q: np.ndarray | None = None
    segment_codes: dict = field(default_factory=dict)  # segment column -> int32 code per example
    # the step context (store, loaded model) shared by steps in one process; never saved
    context: Any = field(default=None, repr=False, compare=False)  # lpmon.pipeline.context.Day

    _TRANSIENT = ("batch", "labels", "p_ref", "p_q", "segment_codes", "context")

    @staticmethod
    def folder(work_dir: Path, model_id: str, day: str) -> Path:
        return confined(work_dir, model_id, day)

    def save(self, work_dir: Path) -> None:
        folder = self.folder(work_dir, self.model_id, self.day)
        folder.mkdir(parents=True, exist_ok=True)
        state = json.dumps(self.as_dict(), sort_keys=True)
        _atomic(folder / STATE, lambda path: Path(path).write_text(state))
        arrays = {}
        if self.batch is not None:
            arrays["dense"] = self.batch.dense
            for t, feature in enumerate(self.batch.sparse):
                arrays[f"indices_{t}"], arrays[f"offsets_{t}"] = feature.indices, feature.offsets
        for name in ("labels", "p_ref", "p_q"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        for column, codes in self.segment_codes.items():
            arrays[SEGMENT_PREFIX + column] = codes
        if arrays:
            _atomic(folder / ARRAYS, lambda path: np.savez(path, **arrays))  # type: ignore[arg-type]  # (numpy's stub)

    @classmethod
    def load(cls, work_dir: Path, model_id: str, day: str, *, arrays: bool = True) -> "DayWork":
        folder = cls.folder(work_dir, model_id, day)
        try:
            state = json.loads((folder / STATE).read_text())
        except FileNotFoundError:
            raise WorkMissing(
                f"{folder / STATE}: no saved state for {model_id} on {day}; run the day from its first step (sample)"
            ) from None
        known = {f.name for f in fields(cls)}
        work = cls(**{k: v for k, v in state.items() if k in known})  # a key an older lpmon saved: dropped
        if arrays and (folder / ARRAYS).exists():
            with np.load(folder / ARRAYS, allow_pickle=False) as z:
                if "dense" in z:
                    tables = sum(1 for key in z.files if key.startswith("indices_"))
                    work.batch = Batch(
                        z["dense"], tuple(SparseFeature(z[f"indices_{t}"], z[f"offsets_{t}"]) for t in range(tables))
                    )
                for name in ("labels", "p_ref", "p_q"):
                    if name in z:
                        setattr(work, name, z[name])
                work.segment_codes = {
                    key[len(SEGMENT_PREFIX) :]: z[key] for key in z.files if key.startswith(SEGMENT_PREFIX)
                }
        return work

    def drop_arrays(self, work_dir: Path) -> None:
        """The sample and scores are not needed once the day is reported."""
        (self.folder(work_dir, self.model_id, self.day) / ARRAYS).unlink(missing_ok=True)

    def require_sample(self) -> tuple[Batch, np.ndarray]:
        """The day's sample and labels (saved by the sample step)."""
        if self.batch is None or self.labels is None:
            raise WorkMissing(
                f"{self.model_id} {self.day}: the day's sample is not in the work directory; "
                "run the day from its first step (sample)"
            )
        return self.batch, self.labels

    def as_dict(self) -> dict:
        """The JSON part (what state.json holds)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._TRANSIENT}


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None and err.errno is not None:
            raise OSError(err.errno, err.strerror, str(path)) from None  # a full disk names no file by itself
        raise
