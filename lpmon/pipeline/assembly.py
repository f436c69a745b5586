"""Building plans: calibrated ranges, the units a plan is made of, and assembly.

Ranges are calibrated once, on the fp32 model's own layer inputs (taps), so a
plan for any mix of precisions is cheap to assemble. Units are every FC layer
and every embedding table; each climbs its own ladder from its current
precision (tables int2 -> int4 -> int8 -> fp16 -> fp32, FC layers int8 ->
fp16 -> fp32), and a unit's cost is the bytes serving holds for it.

Everything here that runs the model (`observe`, `Ranges.calibrate`,
`evaluate`) is what the fallback search's callers use to build its score and
accept callbacks; the search itself (lpmon.pipeline.search) never runs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lpmon.calibrate import observer
from lpmon.calibrate.state import from_state
from lpmon.config import ModelSettings
from lpmon.metrics import Comparison, compare
from lpmon.model import Batch, Model, forward_fp32, forward_quantized
from lpmon.model.spec import ModelSpec
from lpmon.quant import ActivationRange, LayerPlan, Provenance, QuantPlan
from lpmon.quant.precision import LINEAR_LADDER, TABLE_LADDER, Precision, bytes_served

EMBEDDINGS = "embeddings"  # in `assemble`'s precisions: every table at once

# The defaults of callers that pass no settings (tests, benchmarks) are the configuration's own.
METHOD = ModelSettings.calibration_method
LEVEL = ModelSettings.level


@dataclass(frozen=True)
class Ranges:
    """Calibrated int8 input ranges of every FC layer."""

    by_layer: dict[str, ActivationRange]

    @classmethod
    def calibrate(cls, model: Model, batch: Batch, method: str = METHOD, chunk: int = 4096) -> "Ranges":
        return cls.from_observers(observe(model, batch, method, chunk))

    @classmethod
    def from_observers(cls, observers: dict) -> "Ranges":
        ranges = {}
        for name, obs in observers.items():
            r = obs.compute(bits=8)
            ranges[name] = ActivationRange.of(r)
        return cls(ranges)


def observe(model: Model, batch: Batch, method: str = METHOD, chunk: int = 4096) -> dict:
    """One observer per FC layer, fed that layer's fp32 input chunk by chunk
    (observers merge exactly, so memory stays flat however large the batch)."""
    names = [name for name, _, _ in model.spec.linear_layers()]
    observers = {name: observer(method) for name in names}
    for part in batch.chunks(chunk):
        taps = forward_fp32(model, part, taps=True).taps
        assert taps is not None
        for name in names:
            observers[name].observe(taps[name].input)
    return observers


def merge_stored(observers: dict, method: str, stored_days: dict[str, dict[str, dict]]) -> dict:
    """Today's observers merged with earlier days' stored states (a layer missing
    on a day is simply not merged for that day)."""
    merged = {}
    for name, today in observers.items():
        total = observer(method)
        for day, layers in sorted(stored_days.items()):
            if name in layers:
                try:
                    total.merge(from_state(layers[name], lambda: observer(method)))
                except (KeyError, TypeError, ValueError) as err:
                    raise ValueError(f"stored calibration statistics of layer {name} on {day}: {err}") from err
        merged[name] = total.merge(today)
    return merged


# --- units ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """What the search moves: one FC layer or one embedding table."""

    name: str
    kind: str  # "linear" or "embedding"
    rows: int
    cols: int
    layout: str = "prepack"  # embeddings: where row-wise tables live (lpmon.quant.precision.LAYOUTS)

    @property
    def ladder(self) -> tuple[Precision, ...]:
        return TABLE_LADDER if self.kind == "embedding" else LINEAR_LADDER

    def bytes(self, precision: str) -> float:
        return bytes_served(self.kind, self.rows, self.cols, precision, self.layout)


def units(model: Model, layout: str = "prepack") -> dict[str, Unit]:
    """Every unit of the model, FC layers first (spec order), then tables (costed in
    the embedding layout)."""
    return spec_units(model.spec, layout)


def spec_units(spec: ModelSpec, layout: str = "prepack") -> dict[str, Unit]:
    """Every unit of an architecture (what `units` reads of a model): its sizes need no weights."""
    out = {name: Unit(name, "linear", n_out, n_in) for name, n_in, n_out in spec.linear_layers()}
    for t, table in enumerate(spec.tables):
        out[f"emb_l.{t}"] = Unit(f"emb_l.{t}", "embedding", table.rows, table.dim, layout)
    return out


def plan_bytes(all_units: dict[str, Unit], precisions: dict[str, str]) -> float:
    return sum(unit.bytes(precisions[name]) for name, unit in all_units.items())


def unit_precisions(plan: QuantPlan) -> dict[str, str]:
    """Each unit's precision in a plan (layer name -> precision)."""
    return {layer.name: layer.precision for layer in plan.layers}


# --- plans ---------------------------------------------------------------------------------


def assemble(
    model: Model,
    ranges: Ranges,
    precisions: dict[str, str],
    *,
    model_id: str = "model",
    version: int = 1,
    provenance: Provenance = Provenance(),
    pinned: dict[str, LayerPlan] | None = None,
    embedding_layout: str = "prepack",
) -> QuantPlan:
    """A plan from per-unit precisions (layer names; EMBEDDINGS sets every table), its
    row-wise tables in the embedding layout (the model's setting). Pinned layers are
    copied as the user pinned them, ranges included."""
    pinned = pinned or {}
    layers = []
    for name, _, _ in model.spec.linear_layers():
        if name in pinned:
            layers.append(pinned[name])
            continue
        precision = precisions[name]
        activation = ranges.by_layer[name] if precision == "int8" else None
        layers.append(LayerPlan(name, "linear", precision, activation=activation))
    for t in range(len(model.spec.tables)):
        name = f"emb_l.{t}"
        layers.append(pinned.get(name) or LayerPlan(name, "embedding", precisions.get(name) or precisions[EMBEDDINGS]))
    return QuantPlan(model_id, version, tuple(layers), provenance, embedding_layout=embedding_layout)


def evaluate(
    model: Model,
    plan: QuantPlan,
    batch: Batch,
    labels: np.ndarray,
    reference: np.ndarray | None = None,
    level: float = LEVEL,
) -> Comparison:
    """The plan's comparison against fp32 on the given examples (runs the model)."""
    fp32 = forward_fp32(model, batch).probabilities if reference is None else reference
    return compare(fp32, forward_quantized(model, batch, plan).probabilities, labels, level=level)
