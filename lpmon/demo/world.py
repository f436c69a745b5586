"""A synthetic world for demos and scenario tests: traffic with known truth, and its model.

A teacher DLRM draws each example's label (a few % positives); the same
network is the fp32 model in the snapshot, so the fp32 model is calibrated
and every NE gap is the quantized plan's doing. Dense features are normal
per feature, ids follow a power law over each table. Scenarios change the
traffic day by day:

  stable          the same distribution every day
  gradual_drift   dense features widen and shift, and new ids gain traffic, a little
                  more each day: ranges calibrated on day 0 go stale
  sudden_shift    from the middle day on, dense features jump to a wider, shifted range
  outliers        from day 1 on, one dense feature grows rare, huge values that the model
                  relies on: no int8 grid for the first bottom layer's input covers them
                  and keeps resolution for the rest, so that layer needs fp16

Worlds of any size in bounded memory: write_world streams the teacher's tables into the
snapshot chunk by chunk and scores the traffic with them memory-mapped (a day's lookups
read only the rows it touches); the id permutations go to scratch files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from lpmon.ids import model_id_problem
from lpmon.model import Batch, Model, ModelSpec, SparseFeature, TableSpec, forward_fp32
from lpmon.model.mapped import SnapshotWriter
from lpmon.model.snapshot import initial_tensors
from lpmon.model.tensors import collect, read_rows
from lpmon.traffic import TrafficStore

SCENARIOS = ("stable", "gradual_drift", "sudden_shift", "outliers")
EMBEDDING_STD = 0.6  # gives NE near 0.77, like a real CTR model


@dataclass(frozen=True)
class WorldConfig:
    scenario: str = "stable"
    days: int = 14
    start: dt.date = dt.date(2026, 11, 1)
    seed: int = 0
    model_id: str | None = None
    examples_per_day: int = 200_000
    n_dense: int = 13
    n_sparse: int = 26
    table_rows: int = 2_000
    dim: int = 16
    bottom_mlp: tuple[int, ...] = (64, 16)
    top_mlp: tuple[int, ...] = (64, 1)
    positive_rate: float = 0.04

    def __post_init__(self):
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; choose from {', '.join(SCENARIOS)}")
        if self.model_id is not None and model_id_problem(self.model_id):  # the config's own rule
            raise ValueError(f"--model-id {self.model_id!r}: {model_id_problem(self.model_id)}")
        if self.days < 1 or self.examples_per_day < 100:
            raise ValueError("a world needs at least 1 day of at least 100 examples")
        for field, value in (("tables", self.n_sparse), ("table rows", self.table_rows), ("dim", self.dim)):
            if value < 1:
                raise ValueError(f"a world needs at least 1 of {field}, got {value}")

    @property
    def name(self) -> str:
        return self.model_id or self.scenario

    def spec(self) -> ModelSpec:
        return ModelSpec(
            dense=tuple(f"dense_{i}" for i in range(self.n_dense)),
            tables=tuple(TableSpec(f"sparse_{t}", self.table_rows, self.dim) for t in range(self.n_sparse)),
            bottom_mlp=(*self.bottom_mlp[:-1], self.dim),
            top_mlp=self.top_mlp,
        )


class World:
    """Draws any day's traffic deterministically from (config, day index).

    snapshot: write the teacher there as it is drawn (tables chunk by chunk) and score
    with it mapped; scratch: a folder for the id permutations (else they stay in memory).
    The numbers are the same either way.
    """

    def __init__(self, config: WorldConfig, snapshot: Path | None = None, scratch: Path | None = None):
        self.config = config
        rng = np.random.default_rng(config.seed)
        self.dense_mean = rng.normal(0, 0.5, config.n_dense).astype(np.float32)
        self.dense_std = rng.uniform(0.5, 1.5, config.n_dense).astype(np.float32)
        self.popularity = [
            _permutation(rng, config.table_rows, scratch, f"popular_{t}") for t in range(config.n_sparse)
        ]
        self.newcomers = [_permutation(rng, config.table_rows, scratch, f"new_{t}") for t in range(config.n_sparse)]
        self.model = self._teacher(rng, snapshot)

    def _teacher(self, rng, snapshot: Path | None) -> Model:
        config, spec = self.config, self.config.spec()
        scale = np.float32(EMBEDDING_STD * np.sqrt(3 * config.table_rows))  # embedding entries with std EMBEDDING_STD
        with SnapshotWriter(snapshot, spec) if snapshot is not None else contextlib.nullcontext() as writer:
            weights = {}
            for name, shape, chunks in initial_tensors(spec, seed=int(rng.integers(1 << 31))):
                if name.startswith("emb_l."):
                    chunks = (chunk * scale for chunk in chunks)
                    if writer is not None:
                        weights[name] = writer.write(name, chunks)
                        continue
                weights[name] = collect(shape, chunks)
            if config.scenario == "outliers":
                # The model leans on dense_0, which carries the rare huge values.
                weights["bot_l.0.weight"][:, 0] *= np.float32(3.0)
            model = Model(spec, weights, checked=writer.checked() if writer is not None else {})
            last = f"top_l.{2 * (len(config.top_mlp) - 1)}.bias"
            model.weights[last] = (model.weights[last] + np.float32(self._bias_shift(model))).astype(np.float32)
            if writer is None:
                return model
            for name in spec.weight_shapes():
                if name not in writer.records:
                    writer.write(name, [model.weights[name]])
            writer.commit()
        return Model.load(snapshot)

    def _bias_shift(self, model: Model) -> float:
        """The shift of the final bias that makes the mean prediction the positive rate."""
        config = self.config
        probe = self.batch(0, 20_000, np.random.default_rng(config.seed + 1))
        p = np.clip(teacher_probabilities(model, probe).astype(np.float64), 1e-12, 1 - 1e-12)
        logits = np.log(p) - np.log1p(-p)
        lo, hi = -30.0, 30.0
        for _ in range(60):  # bisect
            mid = (lo + hi) / 2
            rate = np.mean(1 / (1 + np.exp(-(logits + mid))))
            lo, hi = (mid, hi) if rate < config.positive_rate else (lo, mid)
        return lo

    def _drift(self, day: int) -> tuple[float, float, float]:
        """(dense spread factor, dense shift, share of ids from newcomers) on a day."""
        scenario, days = self.config.scenario, self.config.days
        if scenario == "gradual_drift":
            return 1 + 0.12 * day, 0.08 * day, min(0.04 * day, 0.6)
        if scenario == "sudden_shift" and day >= days // 2:
            return 2.2, 0.8, 0.5
        return 1.0, 0.0, 0.0

    def batch(self, day: int, n: int, rng) -> Batch:
        """n examples of the day's traffic."""
        config = self.config
        spread, shift, new_share = self._drift(day)
        dense = (self.dense_mean + shift + self.dense_std * spread * rng.standard_normal((n, config.n_dense))).astype(
            np.float32
        )
        if config.scenario == "outliers":  # the heavy tail grows in over the first days
            rare = rng.random(n) < 0.0025 * min(1.0, day / 3)
            dense[rare, 0] = rng.choice([-1.0, 1.0], rare.sum()) * rng.uniform(20, 60, rare.sum())
        features = []
        for t in range(config.n_sparse):
            rank = np.minimum(rng.zipf(1.3, n) - 1, config.table_rows - 1)
            new, popular = _lookup(self.newcomers[t], rank), _lookup(self.popularity[t], rank)
            table = np.where(rng.random(n) < new_share, new, popular)
            features.append(SparseFeature.one_hot(table))
        return Batch(dense, tuple(features))

    def day_table(self, day: int) -> pa.Table:
        config = self.config
        rng = np.random.default_rng([config.seed, day, 7])
        batch = self.batch(day, config.examples_per_day, rng)
        p = teacher_probabilities(self.model, batch)
        labels = (rng.random(len(p)) < p).astype(np.int8)
        date = config.start + dt.timedelta(days=day)
        seconds = np.sort(rng.integers(0, 86_400, len(p)))
        columns = {
            "request_id": np.arange(len(p), dtype=np.int64) + day * 10_000_000_000,
            "ts": pa.array(np.datetime64(dt.datetime.combine(date, dt.time()), "s") + seconds),
            "label": labels,
            # a segment column (config `segments`): independent of everything else
            "country": np.array(COUNTRIES)[rng.integers(0, len(COUNTRIES), len(p))],
        }
        for i, name in enumerate(config.spec().dense):
            columns[name] = batch.dense[:, i]
        for t, name in enumerate(config.spec().sparse):
            columns[name] = batch.sparse[t].indices
        return pa.table(columns)


COUNTRIES = ("BR", "DE", "IN", "US")


@dataclass(frozen=True)
class WorldPaths:
    root: Path
    traffic: Path
    snapshot: Path
    config: Path


def teacher_probabilities(model: Model, batch: Batch) -> np.ndarray:
    """forward_fp32's probabilities, bit for bit, from the rows the batch touches only:
    read into compact tables (lpmon.model.tensors.read_rows), so that scoring a day of
    traffic does not map the kernel's fault-around of every touched row of a mapped table."""
    spec, weights, features = model.spec, dict(model.weights), []
    tables = []
    for t, (table, feature) in enumerate(zip(spec.tables, batch.sparse)):
        touched, compact = np.unique(feature.indices, return_inverse=True)
        touched = touched if len(touched) else np.zeros(1, np.int64)
        weights[f"emb_l.{t}.weight"] = read_rows(model.weights[f"emb_l.{t}.weight"], touched)
        tables.append(TableSpec(table.name, len(touched), table.dim))
        features.append(SparseFeature(compact.astype(np.int64).reshape(-1), feature.offsets))
    compact_model = Model(dataclasses.replace(spec, tables=tuple(tables)), weights, checked=model.checked)
    return forward_fp32(compact_model, Batch(batch.dense, tuple(features))).probabilities


def _permutation(rng, rows: int, scratch: Path | None, name: str) -> np.ndarray:
    """rng.permutation(rows), kept as int32 (ids fit), in memory or mapped from a scratch file."""
    order = rng.permutation(rows)
    order = order.astype(np.int32) if rows < 2**31 else order
    if scratch is None:
        return order
    np.save(scratch / f"{name}.npy", order)
    del order
    return np.load(scratch / f"{name}.npy", mmap_mode="r")


def _lookup(order: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """order[ranks]; from a scratch file by pread (see read_rows), not through its mapping."""
    if not isinstance(order, np.memmap):
        return order[ranks]
    touched, where = np.unique(ranks, return_inverse=True)
    return read_rows(order, touched)[where.reshape(-1)]


def write_world(root: str | Path, config: WorldConfig, progress=None) -> WorldPaths:
    """Write the model snapshot, the traffic store and root/lpmon.toml listing the model,
    in bounded memory whatever the tables' size."""
    root = Path(root).resolve()
    snapshot = root / "models" / config.name / "snapshot"
    snapshot.mkdir(parents=True, exist_ok=True)
    traffic = root / "traffic" / config.name
    with tempfile.TemporaryDirectory(dir=snapshot.parent, prefix=".world-ids-") as scratch:
        world = World(config, snapshot=snapshot, scratch=Path(scratch))
        store = TrafficStore(traffic)
        for day in range(config.days):
            store.write_day(config.start + dt.timedelta(days=day), world.day_table(day))
            if progress is not None:
                print(f"\rworld {config.name}: day {day + 1}/{config.days}", end="", file=progress)
        if progress is not None:
            print(file=progress)
    config_file = root / "lpmon.toml"
    entry = (
        f'\n[models.{_toml_key(config.name)}]\ntraffic = "{traffic}"\nsnapshot = "{snapshot}"\n'
        f"# the {config.scenario} scenario of lpmon world\n"
    )
    existing = config_file.read_text() if config_file.exists() else "# Written by `lpmon world`.\n"
    header = f"[models.{_toml_key(config.name)}]"
    if header in existing:  # rewriting the same model: replace its entry
        before, _, after = existing.partition(header)
        rest = after.split("\n[", 1)
        existing = before.rstrip("\n") + ("\n\n[" + rest[1] if len(rest) > 1 else "\n")
    config_file.write_text(existing.rstrip("\n") + "\n" + entry)
    return WorldPaths(root, traffic, snapshot, config_file)


def _toml_key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() else '"' + name.replace('"', "") + '"'
