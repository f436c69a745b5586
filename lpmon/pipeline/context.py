"""What every step of a model's day opens: the state store, the (model, day) lock, the
model's snapshot, the day's sample and its halves, and the held-out evidence.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from contextlib import contextmanager

import numpy as np
import pandas as pd
import sqlalchemy as sa

from lpmon.config import Config, ModelSettings
from lpmon.model import Batch, Model, load_snapshot
from lpmon.model.backends import snapshot_backend
from lpmon.pipeline import export
from lpmon.pipeline.daywork import DayWork
from lpmon.pipeline.evidence import HeldOut
from lpmon.pipeline.lifecycle import PlanLifecycle
from lpmon.quant import QuantPlan
from lpmon.store import Database, StateStore, StoreError
from lpmon.traffic import EmptyDay, MissingDay, TrafficError, TrafficSchema, TrafficStore
from lpmon.traffic import sample as draw_sample
from lpmon.traffic.sample import PartitionChanged, from_candidates


def open_store(config: Config) -> StateStore:
    """The state store, checked (never created or migrated: only `lpmon init` does
    that). A store that is missing, damaged, read-only, without lpmon's schema or
    unreachable is a one-line StoreError naming it (without its password),
    which fails the task so that Airflow retries it."""
    db = Database(config.store)
    try:
        db.verify()
    except sa.exc.OperationalError as err:
        db.engine.dispose()
        raise StoreError(f"{db.safe_url}: the state store is unreachable ({err.orig})") from None
    except StoreError:
        db.engine.dispose()
        raise
    return StateStore(db)


@contextmanager
def day_lock(config: Config, model_id: str, day):
    """Hold the (model, day) lock for a run or one of its steps (see Database.day_lock)."""
    store = open_store(config)
    try:
        with store.db.day_lock(model_id, str(dt.date.fromisoformat(str(day)))):
            yield
    finally:
        store.db.engine.dispose()  # the lock's own connection: closed, not left to the collector


def halves(batch: Batch, labels: np.ndarray):
    """Calibration and evaluation halves: alternate rows of the hash-ordered sample."""
    rows = np.arange(len(labels))
    return batch.take(rows[0::2]), batch.take(rows[1::2]), labels[1::2]


def plan_lifecycle(config: Config, store: StateStore, model_id: str) -> PlanLifecycle:
    """The model's lifecycle; a promotion first checks that serving's file can be written."""
    return PlanLifecycle(store, model_id, before_promote=lambda: export.check(config, model_id))


def begin(config: Config, model_id: str, day) -> tuple[str, ModelSettings, StateStore]:
    """The ISO day, the model's settings, and the store with the model registered."""
    day = str(dt.date.fromisoformat(str(day)))
    settings = config.model(model_id)
    store = open_store(config)
    store.register_model(model_id, {"traffic": settings.traffic, "snapshot": settings.snapshot})
    return day, settings, store


def load_backends(settings: ModelSettings) -> None:
    """Load the back ends the model needs beyond lpmon.model's own "numpy": the one the
    config names (`backend`) and the one that reads its snapshot's format. The place
    that picks them: lpmon.model never imports a back end's module, which registers
    itself with lpmon.model.backends when imported."""
    if "torch" in (settings.backend, snapshot_backend(settings.snapshot)):
        import lpmon.torch_backend  # noqa: F401 - registers "torch"; imports torch, so only for a model that needs it


def load_model(settings: ModelSettings) -> Model:
    """The model's snapshot, scored by the configured back end (numpy, or torch)."""
    load_backends(settings)
    model = load_snapshot(settings.snapshot)
    if model.backend != settings.backend:
        model = dataclasses.replace(model, backend=settings.backend)
    return model


def draw(settings: ModelSettings, model: Model | None, day: str, size: int | None = None, parts=None):
    """The day's sample; with parts (its file groups' candidates, lpmon.traffic.split),
    merged from them: the same sample, drawn again whole if the files changed since."""
    if settings.scorer == "logged":  # no model: serving logged both predictions beside the label
        schema = TrafficSchema.logged(
            settings.p_ref_column,
            settings.p_q_column,
            settings.max_ids_per_row,
            settings.ts_tolerance_hours * 3600,
            settings.segments,
        )
    else:
        assert model is not None, "a model-scored day draws with the model's spec"
        schema = TrafficSchema.for_model(
            model.spec, settings.max_ids_per_row, settings.ts_tolerance_hours * 3600, settings.segments
        )
    traffic, n = TrafficStore(settings.traffic), size or settings.sample_size
    if parts:
        try:
            return from_candidates(traffic, day, parts, n, settings.sample_seed, schema)
        except PartitionChanged:
            pass
    return draw_sample(traffic, day, n, settings.sample_seed, schema)


def take_sample(work: DayWork, sample, settings: ModelSettings) -> None:
    """Put the day's sample (as far as it is scored) into work: examples, labels,
    serving's logged predictions, the segment columns' codes."""
    work.batch, work.labels = sample.batch, sample.labels
    if sample.predictions:  # logged: the day is scored already
        work.p_ref, work.p_q = (sample.predictions[c] for c in (settings.p_ref_column, settings.p_q_column))
    work.sample_size, work.positives, work.day_rows = len(sample), int(sample.labels.sum()), sample.day_rows
    work.segment_values, work.segment_codes = {}, {}
    for column, values in sample.extras.items():
        codes, uniques = pd.factorize(values, sort=True)
        work.segment_values[column] = [str(v) for v in uniques]
        work.segment_codes[column] = codes.astype(np.int32)


def further_draws(settings: ModelSettings, model: Model, day: str, first: int, scored: int | None = None):
    """More held-out examples for validation, lazily, in growing pieces: the
    continuation of the day's sample (the next requests in hash order after the
    `scored` examples the day's looks scored, never in them), then earlier days'
    samples outside the calibration window (whose statistics the candidate's
    ranges never saw). Yields (batch, labels, source). scored: default sample_size."""
    cap, scored = settings.validation_max_examples, scored or settings.sample_size
    try:
        extended = draw(settings, model, day, scored + cap)
    except (MissingDay, EmptyDay):
        extended = None
    if extended is not None and len(extended) > scored:
        rest, labels = extended.batch, extended.labels
        start, size = scored, max(first, 1)
        while start < len(labels):
            stop = min(start + size, len(labels))
            yield rest.slice(start, stop), labels[start:stop], f"more of {day}"
            start, size = stop, size * 2
        del extended, rest, labels
    earliest = settings.calibration_days
    for back in range(earliest, earliest + settings.validation_days):
        earlier = str(dt.date.fromisoformat(day) - dt.timedelta(days=back))
        try:
            s = draw(settings, model, earlier, cap)
        except (MissingDay, EmptyDay, TrafficError):
            continue
        yield s.batch, s.labels, f"of {earlier}"


def held_out(
    settings: ModelSettings,
    model: Model,
    day: str,
    evaluation: Batch,
    labels: np.ndarray,
    scored: int | None = None,
) -> HeldOut:
    """The evaluation half of the day's scored examples, grown by further_draws."""
    return HeldOut(
        model,
        evaluation,
        labels,
        level=settings.level,
        cap=settings.validation_max_examples,
        more=further_draws(settings, model, day, len(labels), scored),
    )


PLAN_LOCK = "plan"  # the model-wide lock onboarding holds (Database.day_lock with this in place of a day)


class Day:
    """A step's view of one model's day: settings, store, the model (loaded once)
    and the held-out evidence (grown at most once a day). Steps in one process
    share it through work.context (see day_of)."""

    def __init__(self, config: Config, work: DayWork):
        self.config, self.work = config, work
        self.day, self.settings, self.store = begin(config, work.model_id, work.day)
        self.lifecycle = plan_lifecycle(config, self.store, work.model_id)
        self._model: Model | None = None
        self._evidence: HeldOut | None = None

    @property
    def model(self) -> Model:
        if self._model is None:
            self._model = load_model(self.settings)
        return self._model

    def plan(self, version: int | None) -> QuantPlan:
        assert version is not None, "the score step fixes the day's plan before anything asks for it"
        return self.lifecycle.plan(version)

    def halves(self):
        return halves(*self.work.require_sample())

    def evidence(self) -> HeldOut:
        if self._evidence is None:
            _, evaluation, labels = self.halves()
            self._evidence = held_out(self.settings, self.model, self.day, evaluation, labels, self.work.sample_size)
        return self._evidence


def day_of(config: Config, work: DayWork) -> Day:
    if work.context is None or work.context.config is not config:
        work.context = Day(config, work)
    return work.context
