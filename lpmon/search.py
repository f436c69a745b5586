"""Building plans, and the fallback search when int8 cannot hold the gate.

Ranges are calibrated once, on the fp32 model's own layer inputs (taps), so a
plan for any mix of precisions is cheap to assemble. The fallback search is
greedy: measure each layer's sensitivity (dNE after moving only that layer one
step up the ladder), move the layer that buys the most dNE per unit of cost,
and repeat until the gate holds; embeddings count as one unit; whole-model
fp32 is the last step and always holds (it is the reference itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lpmon.calibrate import observer
from lpmon.calibrate.state import from_state
from lpmon.metrics import Comparison, compare
from lpmon.model import Batch, Model, forward_fp32, forward_quantized
from lpmon.quant import ActivationRange, LayerPlan, Provenance, QuantPlan

EMBEDDINGS = "embeddings"


@dataclass(frozen=True)
class Ranges:
    """Calibrated int8 input ranges of every FC layer."""

    by_layer: dict[str, ActivationRange]

    @classmethod
    def calibrate(cls, model: Model, batch: Batch, method: str = "l2", chunk: int = 4096) -> "Ranges":
        return cls.from_observers(observe(model, batch, method, chunk))

    @classmethod
    def from_observers(cls, observers: dict) -> "Ranges":
        ranges = {}
        for name, obs in observers.items():
            r = obs.compute(bits=8)
            ranges[name] = ActivationRange(r.lo, r.hi, r.scale, r.zero_point)
        return cls(ranges)


def observe(model: Model, batch: Batch, method: str = "l2", chunk: int = 4096) -> dict:
    """One observer per FC layer, fed that layer's fp32 input chunk by chunk
    (observers merge exactly, so memory stays flat however large the batch)."""
    names = [name for name, _, _ in model.spec.linear_layers()]
    observers = {name: observer(method) for name in names}
    for part in batch.chunks(chunk):
        taps = forward_fp32(model, part, taps=True).taps
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


def assemble(model: Model, ranges: Ranges, precisions: dict[str, str], *, model_id: str = "model",
             version: int = 1, provenance: Provenance = Provenance()) -> QuantPlan:
    """A plan from per-unit precisions: FC layer names, and EMBEDDINGS for every table."""
    layers = []
    for name, _, _ in model.spec.linear_layers():
        precision = precisions[name]
        activation = ranges.by_layer[name] if precision == "int8" else None
        layers.append(LayerPlan(name, "linear", precision, activation=activation))
    for t in range(len(model.spec.tables)):
        layers.append(LayerPlan(f"emb_l.{t}", "embedding", precisions[EMBEDDINGS]))
    return QuantPlan(model_id, version, tuple(layers), provenance)


def evaluate(model: Model, plan: QuantPlan, batch: Batch, labels: np.ndarray,
             reference: np.ndarray | None = None, level: float = 0.95) -> Comparison:
    """The plan's comparison against fp32 on the given examples."""
    fp32 = forward_fp32(model, batch).probabilities if reference is None else reference
    return compare(fp32, forward_quantized(model, batch, plan).probabilities, labels, level=level)


@dataclass(frozen=True)
class Step:
    unit: str
    before: str
    after: str
    dne_pct: float


@dataclass
class SearchResult:
    precisions: dict[str, str]
    comparison: Comparison
    steps: list[Step] = field(default_factory=list)

    @property
    def moved(self) -> list[str]:
        return sorted({step.unit for step in self.steps})


def cost(precisions: dict[str, str], costs: dict[str, float]) -> float:
    return sum(costs.get(p, costs.get("fp32", 4.0)) for p in precisions.values())


def fallback_search(model: Model, ranges: Ranges, batch: Batch, labels: np.ndarray, *,
                    gate_pct: float, start: dict[str, str], ladder=("int8", "fp16", "fp32"),
                    costs: dict[str, float] | None = None, embedding_ladder=("int8", "fp16", "fp32"),
                    on_step=None, resume: tuple[dict[str, str], list[Step]] | None = None) -> SearchResult:
    """Move units up their ladders, most dNE per cost first, until dNE <= gate_pct.

    start: the precisions to begin from (e.g. all int8). on_step(result) is
    called after every move, so a caller can save progress; resume=(precisions,
    steps) saved that way continues an interrupted search where it stopped (the
    search is deterministic, so the result is the one an uninterrupted run gives).
    """
    costs = costs or {"int8": 1.0, "fp16": 2.0, "bf16": 2.0, "fp32": 4.0}
    reference = forward_fp32(model, batch).probabilities
    precisions, steps = (dict(start), []) if resume is None else (dict(resume[0]), list(resume[1]))
    if set(precisions) != set(start):
        raise ValueError(f"cannot resume: the saved search covers {sorted(precisions)}, not {sorted(start)}")
    current = evaluate(model, assemble(model, ranges, precisions), batch, labels, reference)
    result = SearchResult(dict(precisions), current, steps)
    while current.dne_pct > gate_pct:
        options = []
        for unit, precision in precisions.items():
            steps = embedding_ladder if unit == EMBEDDINGS else ladder
            if precision not in steps or precision == steps[-1]:
                continue
            trial = dict(precisions, **{unit: steps[steps.index(precision) + 1]})
            c = evaluate(model, assemble(model, ranges, trial), batch, labels, reference)
            added = max(cost(trial, costs) - cost(precisions, costs), 1e-9)
            options.append(((current.dne_pct - c.dne_pct) / added, unit, trial, c))
        if not options:
            break  # everything is fp32: the reference itself
        _, unit, trial, c = max(options, key=lambda o: o[0])
        result.steps.append(Step(unit, precisions[unit], trial[unit], c.dne_pct))
        precisions, current = trial, c
        result.precisions, result.comparison = dict(precisions), current
        if on_step is not None:
            on_step(result)
    return result
