"""Held-out labelled examples for validating candidate plans (lpmon.pipeline.lifecycle.Evidence).

It starts from the day's evaluation half and grows on demand (`extend`) from
an iterator of further held-out draws: first the continuation of the day's
own sample (the next requests in hash order, which the day's sample never
holds), then recent days outside the calibration window, up to a cap. fp32's
predictions and every plan's are kept per example, so a plan is scored on
new examples only once.

Scores for the search (`kl_gap`) use a fixed probe of the first examples: the
KL gap is label-free and low-variance, so a few thousand examples rank units
reliably, and the probe never changes as the evidence grows.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from lpmon.metrics import Comparison, compare
from lpmon.model import Batch, Model, forward_fp32, forward_quantized
from lpmon.quant import QuantPlan

PROBE_EXAMPLES = 8192


def plan_key(plan: QuantPlan) -> tuple:
    return tuple(sorted(plan.layers, key=lambda layer: layer.name))


class HeldOut:
    def __init__(self, model: Model, batch: Batch, labels: np.ndarray, *, level: float = 0.95,
                 more: Iterator[tuple[Batch, np.ndarray, str]] | None = None, cap: int | None = None):
        self.model, self.level = model, level
        self._batches, self._labels = [batch], [np.asarray(labels, np.uint8)]
        self._ref = [forward_fp32(model, batch).probabilities]
        self._preds: dict[tuple, list[np.ndarray]] = {}
        self._more, self.cap = more, cap if cap is not None else len(labels)
        probe = min(len(labels), PROBE_EXAMPLES)
        self._probe = batch.slice(0, probe), self._labels[0][:probe], self._ref[0][:probe]
        self.sources = [f"{len(labels):,} of the day's evaluation half"]

    @property
    def n(self) -> int:
        return sum(len(y) for y in self._labels)

    @property
    def labels(self) -> np.ndarray:
        return np.concatenate(self._labels)

    def predictions(self, plan: QuantPlan) -> np.ndarray:
        parts = self._preds.setdefault(plan_key(plan), [])
        for batch in self._batches[len(parts):]:
            parts.append(forward_quantized(self.model, batch, plan).probabilities)
        return np.concatenate(parts)

    def reference(self) -> np.ndarray:
        return np.concatenate(self._ref)

    def compare(self, plan: QuantPlan) -> Comparison:
        return compare(self.reference(), self.predictions(plan), self.labels, level=self.level)

    def paired(self, candidate: QuantPlan, active: QuantPlan) -> Comparison:
        """The candidate's dNE relative to the plan in force, on the same examples."""
        return compare(self.predictions(active), self.predictions(candidate), self.labels, level=self.level)

    def kl_gap(self, plan: QuantPlan) -> float:
        """The plan's label-free dNE estimate (KL gap %) on the probe."""
        batch, labels, ref = self._probe
        return compare(ref, forward_quantized(self.model, batch, plan).probabilities, labels,
                       level=self.level).kl_gap_pct

    def extend(self) -> bool:
        """Add the next draw (at most up to the cap); False when nothing more can be had."""
        room = self.cap - self.n
        if room <= 0 or self._more is None:
            return False
        for batch, labels, source in self._more:
            if len(labels) == 0:
                continue
            if len(labels) > room:
                batch, labels = batch.slice(0, room), labels[:room]
            self._batches.append(batch)
            self._labels.append(np.asarray(labels, np.uint8))
            self._ref.append(forward_fp32(self.model, batch).probabilities)
            self.sources.append(f"{len(labels):,} {source}")
            return True
        self._more = None
        return False

    def describe(self) -> str:
        return f"{self.n:,} held-out examples (" + " + ".join(self.sources) + ")"
