"""Building plans, and the mixed-precision fallback search.

Ranges are calibrated once, on the fp32 model's own layer inputs (taps), so a
plan for any mix of precisions is cheap to assemble. Units are every FC layer
and every embedding table; each climbs its own ladder from its current
precision (tables int2 -> int4 -> int8 -> fp16 -> fp32, FC layers int8 ->
fp16 -> fp32), and a unit's cost is the bytes serving holds for it.

The search itself is pure: it is handed `score(precisions)`, a cheap,
low-variance, label-free estimate of a plan's dNE (the KL gap of its
predictions from fp32's on the same examples), and `accept(precisions)`, the
lifecycle's validation on held-out labelled examples (lpmon.pipeline.lifecycle). Each
round measures every movable unit's sensitivity (the score it removes when
moved one rung up) and raises the units that remove the most per byte until
the predicted score reaches the target; then the plan is validated. It stops
at the first plan that passes, or says that none was shown to (the caller
then takes whole-model fp32, or keeps waiting for evidence).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from lpmon.calibrate import observer
from lpmon.calibrate.state import from_state
from lpmon.metrics import Comparison, compare
from lpmon.model import Batch, Model, forward_fp32, forward_quantized
from lpmon.quant import ActivationRange, LayerPlan, Provenance, QuantPlan
from lpmon.quant.precision import LINEAR_LADDER, TABLE_LADDER, Precision, bytes_served, step_up

EMBEDDINGS = "embeddings"  # in `assemble`'s precisions: every table at once


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


# --- units ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Unit:
    """What the search moves: one FC layer or one embedding table."""

    name: str
    kind: str          # "linear" or "embedding"
    rows: int
    cols: int

    @property
    def ladder(self) -> tuple[Precision, ...]:
        return TABLE_LADDER if self.kind == "embedding" else LINEAR_LADDER

    def bytes(self, precision: str) -> float:
        return bytes_served(self.kind, self.rows, self.cols, precision)


def units(model: Model) -> dict[str, Unit]:
    """Every unit of the model, FC layers first (spec order), then tables."""
    out = {name: Unit(name, "linear", n_out, n_in) for name, n_in, n_out in model.spec.linear_layers()}
    for t, table in enumerate(model.spec.tables):
        out[f"emb_l.{t}"] = Unit(f"emb_l.{t}", "embedding", table.rows, table.dim)
    return out


def plan_bytes(all_units: dict[str, Unit], precisions: dict[str, str]) -> float:
    return sum(unit.bytes(precisions[name]) for name, unit in all_units.items())


def unit_precisions(plan: QuantPlan) -> dict[str, str]:
    """Each unit's precision in a plan (layer name -> precision)."""
    return {layer.name: layer.precision for layer in plan.layers}


def assemble(model: Model, ranges: Ranges, precisions: dict[str, str], *, model_id: str = "model",
             version: int = 1, provenance: Provenance = Provenance(),
             pinned: dict[str, LayerPlan] | None = None) -> QuantPlan:
    """A plan from per-unit precisions (layer names; EMBEDDINGS sets every table).
    Pinned layers are copied as the user pinned them, ranges included."""
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
    return QuantPlan(model_id, version, tuple(layers), provenance)


def evaluate(model: Model, plan: QuantPlan, batch: Batch, labels: np.ndarray,
             reference: np.ndarray | None = None, level: float = 0.95) -> Comparison:
    """The plan's comparison against fp32 on the given examples."""
    fp32 = forward_fp32(model, batch).probabilities if reference is None else reference
    return compare(fp32, forward_quantized(model, batch, plan).probabilities, labels, level=level)


# --- the search ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    unit: str
    before: str
    after: str
    why: str = ""     # e.g. "removes 0.21 % of 0.25 % (KL gap) for 64 KiB"


@dataclass
class SearchResult:
    precisions: dict[str, str]
    passed: bool = False
    reason: str = ""
    steps: list[Step] = field(default_factory=list)
    rounds: int = 0

    @property
    def moved(self) -> list[str]:
        return sorted({step.unit for step in self.steps})


class Verdict(Protocol):
    """What `accept` returns (lpmon.pipeline.lifecycle.Verdict): passed, why, and whether
    the candidate's own interval is above the gate (not merely too wide)."""

    passed: bool
    reason: str
    degraded: bool


def fallback_search(start: dict[str, str], *, units: dict[str, Unit],
                    score: Callable[[dict[str, str]], float],
                    accept: Callable[[dict[str, str]], Verdict], target: float,
                    frozen: frozenset[str] | set[str] = frozenset(), max_rounds: int = 8,
                    creep: bool = False, on_step=None, resume: tuple[dict[str, str], list[Step]] | None = None) -> SearchResult:
    """Raise units, most score removed per byte first, until a plan passes `accept`.

    start: every unit's precision to begin from; frozen: units never moved (pinned).
    A plan is validated once its score is within `target` (the gate); until then
    each round moves units one rung each until their summed gains reach the gap
    between the current score and half the target; when no single move helps, the
    round raises every movable unit to its top (whole-model fp32 but for the
    frozen units). on_step(result) is called after every round, so a caller can
    save progress; resume=(precisions, steps) saved that way continues there.
    """
    if set(start) != set(units):
        raise ValueError(f"the start plan covers {sorted(start)}, the model's units are {sorted(units)}")
    precisions, steps = (dict(start), []) if resume is None else (dict(resume[0]), list(resume[1]))
    if set(precisions) != set(start):
        raise ValueError(f"cannot resume: the saved search covers {sorted(precisions)}, not {sorted(start)}")
    result = SearchResult(dict(precisions), steps=steps)
    worth, goal = target, target / 2  # validate once the estimate is within target; rounds aim for half
    while True:
        current = score(precisions)
        movable = {name: up for name, unit in units.items()
                   if name not in frozen and (up := step_up(precisions[name], unit.ladder)) is not None}
        if current <= worth or not movable or result.rounds >= max_rounds:
            verdict = accept(precisions)
            result.precisions, result.passed, result.reason = dict(precisions), verdict.passed, verdict.reason
            if verdict.passed or not movable or result.rounds >= max_rounds or not (verdict.degraded or creep):
                return result
            # The labels disagree with the estimate (or cannot confirm it): aim lower.
            worth = goal = min(goal, current) / 2
        result.rounds += 1
        moves = _round(precisions, movable, units, score, current, goal)
        for name, after, why in moves:
            result.steps.append(Step(name, precisions[name], after, why))
            precisions[name] = after
        result.precisions = dict(precisions)
        if on_step is not None:
            on_step(result)


RELEVANT = 0.1


def _round(precisions, movable, units, score, current, goal):
    """One round's moves: (unit, new precision, why). Every movable unit's gain is
    measured alone; units are then added best gain per byte first, re-scoring the
    plan after each, until it reaches the goal (gains are not additive: once the
    unit at fault is raised, the others' gains vanish)."""
    options = []
    for name, up in movable.items():
        gain = current - score(dict(precisions, **{name: up.value}))
        added = max(units[name].bytes(up) - units[name].bytes(precisions[name]), 1.0)
        options.append((gain / added, gain, added, name, up.value))
    best = max((o[1] for o in options), default=0.0)
    # Moves that matter (a tenth of the best one's gain at least), cheapest per gain first:
    # a tiny layer that removes next to nothing is not raised just because it is cheap.
    helpful = sorted((o for o in options if o[1] > 0 and o[1] >= RELEVANT * best), key=lambda o: (-o[0], o[3]))
    if not helpful:
        return [(name, units[name].ladder[-1].value, "no single move lowers the estimate: whole-model fp32")
                for name in movable]
    moves, trial = [], dict(precisions)
    for _, gain, added, name, up in helpful:
        trial[name] = up
        moves.append((name, up, f"alone removes {gain:.4f} of {current:.4f} % (KL gap) for {added:,.0f} bytes"))
        if score(trial) <= goal:
            break
    return moves
