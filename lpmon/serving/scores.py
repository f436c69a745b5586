"""A day's sample as lpmon scores it, written as Parquet for debugging and for checks
against serving: request_id, label, p_fp32, p_q, with the model, day and plan
version in the file's metadata (key b"lpmon", a JSON object). The day is drawn and
scored by lpmon.pipeline.scoring (`lpmon score`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lpmon.atomic import write_atomically

METADATA_KEY = b"lpmon"


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
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sink = pa.BufferOutputStream()
        pq.write_table(self.table(), sink)
        write_atomically(path, sink.getvalue().to_pybytes())
        return path


def read_metadata(path: str | Path) -> dict:
    return json.loads(pq.read_schema(path).metadata[METADATA_KEY])
