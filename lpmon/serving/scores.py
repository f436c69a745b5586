"""A day's sample as lpmon scores it, written as Parquet for debugging and for checks
against serving: request_id, label, p_fp32, p_q, with the model, day and plan
version in the file's metadata (key b"lpmon", a JSON object)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lpmon.config import Config
from lpmon.model import Model, forward_fp32, forward_quantized
from lpmon.quant import QuantPlan

METADATA_KEY = b"lpmon"
PROBE_EXAMPLES = 4096  # what `plans export` checks a TorchScript module on


@dataclass(frozen=True)
class Scores:
    model_id: str
    day: str
    plan_version: int | None  # None: p_q is the fp32 model's (--fp32), or serving's logged one
    request_ids: np.ndarray
    labels: np.ndarray
    p_fp32: np.ndarray
    p_q: np.ndarray
    logged: bool = False  # scorer = "logged": p_fp32 and p_q are the traffic's logged columns

    def table(self) -> pa.Table:
        table = pa.table(
            {
                "request_id": self.request_ids,
                "label": self.labels.astype(np.int8),
                "p_fp32": self.p_fp32.astype(np.float32),
                "p_q": self.p_q.astype(np.float32),
            }
        )
        meta = {
            "model_id": self.model_id,
            "day": self.day,
            "plan_version": self.plan_version,
            "p_q": "logged" if self.logged else "fp32" if self.plan_version is None else f"plan v{self.plan_version}",
        }
        return table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})

    def write(self, path: str | Path) -> Path:
        from lpmon.atomic import write_atomically

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sink = pa.BufferOutputStream()
        pq.write_table(self.table(), sink)
        write_atomically(path, sink.getvalue().to_pybytes())
        return path


def read_metadata(path: str | Path) -> dict:
    return json.loads(pq.read_schema(path).metadata[METADATA_KEY])


def plan_in_force(store, model_id: str, day: str) -> int | None:
    """The plan that judged the day (its run's row), else the active plan."""
    run = store.run(model_id, day)
    if run and run["plan_version"]:
        return int(run["plan_version"])
    active = store.active_plan(model_id)
    return active.version if active else None


def load_plan(store, model_id: str, version: int) -> QuantPlan:
    record = store.plan_record(model_id, version)
    if record is None:
        raise ValueError(
            f"{model_id}: no plan v{version} (versions: "
            f"{', '.join(f'v{p.version}' for p in store.plans(model_id)) or 'none'})"
        )
    return QuantPlan.from_json(record.plan_json)


def score_day(
    config: Config, model_id: str, day: str, *, plan_version: int | None = None, fp32: bool = False
) -> Scores:
    """The day's sample (as the daily run draws it) scored by fp32 and by plan
    `plan_version` (default: the plan in force that day; fp32=True: no plan)."""
    from lpmon.pipeline import open_store
    from lpmon.pipeline.context import draw
    from lpmon.traffic import as_day

    day = str(as_day(day))
    settings = config.model(model_id)
    if settings.scorer == "logged":  # nothing to score: serving's two logged predictions, as compared
        if plan_version or fp32:
            raise ValueError(f"{model_id}: a logged-predictions model has no plans: drop --plan / --fp32")
        s = draw(settings, None, day)
        return Scores(
            model_id,
            day,
            None,
            s.request_ids,
            s.labels,
            s.predictions[settings.p_ref_column],
            s.predictions[settings.p_q_column],
            logged=True,
        )
    store = open_store(config)
    try:
        if fp32:
            plan = None
        else:
            version = plan_version or plan_in_force(store, model_id, day)
            if version is None:
                raise ValueError(f"{model_id}: no plan in force (serving is fp32): pass --fp32 or --plan V")
            plan = load_plan(store, model_id, version)
    finally:
        store.db.engine.dispose()
    from lpmon.pipeline import load_model

    model = load_model(settings)
    sample = draw(settings, model, day)
    p_fp32 = forward_fp32(model, sample.batch).probabilities  # the configured back end's
    p_q = p_fp32 if plan is None else forward_quantized(model, sample.batch, plan).probabilities
    return Scores(model_id, day, None if plan is None else plan.version, sample.request_ids, sample.labels, p_fp32, p_q)


def probe_sample(config: Config, model_id: str, model: Model, size: int = PROBE_EXAMPLES):
    """(batch, day) of the latest day's traffic to check an export on; (None, why) without traffic."""
    from lpmon.pipeline.context import draw
    from lpmon.traffic import TrafficError, TrafficStore

    settings = config.model(model_id)
    try:
        days = TrafficStore(settings.traffic).days()
        if not days:
            return None, "no traffic partitions"
        sample = draw(settings, model, str(days[-1]), size)
    except (OSError, TrafficError) as err:
        return None, str(err)
    return sample.batch, str(days[-1])
