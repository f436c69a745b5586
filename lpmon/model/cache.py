"""What a loaded model's forward passes prepare once and reuse for the day.

A model is loaded once per day (per step process), and every forward pass of
the day runs on it: the fp32 reference, the plan in force, validation's
candidates, the fallback search's probes. Its cache (Model.cache) holds the
touched embedding rows, prepared per (table, precision, search)
(lpmon.model.rows), and the executors built for the plans seen, by plan
content (lpmon.model.backends.executor), at most MAX_EXECUTORS of them.

The cache reads the weights as they were when it was filled: it starts afresh
by itself when a tensor of model.weights is replaced, and whoever changes a
tensor in place (the trainer) calls clear().
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .rows import TouchedRows

MAX_EXECUTORS = 8  # plans' executors kept per model (least recently used dropped first)
# The torch back end's executors hold whole prepared tables (FBGEMM modules): fewer of them, but
# a day's three (fp32, the plan in force, a candidate) so that a search does not rebuild them.
MAX_TORCH_EXECUTORS = 3


@dataclass
class ModelCache:
    rows: TouchedRows = field(default_factory=TouchedRows)
    executors: OrderedDict[Any, Any] = field(default_factory=OrderedDict)
    _weights: dict[str, np.ndarray] = field(default_factory=dict)

    def current(self, weights: dict[str, np.ndarray]) -> "ModelCache":
        """This cache, emptied first if it was filled from other tensors than `weights`'."""
        if self._weights.keys() != weights.keys() or any(self._weights[k] is not v for k, v in weights.items()):
            self.clear()
            self._weights = dict(weights)
        return self

    def clear(self) -> None:
        """Forget every prepared row and executor (the weights changed)."""
        self.rows.clear()
        self.executors.clear()
        self._weights = {}

    def executor(self, key, build, keep: int = MAX_EXECUTORS):
        """The executor memoized under `key`, built by build() if absent; the least
        recently used ones are dropped beyond `keep`."""
        found = self.executors.get(key)
        if found is None:
            found = self.executors[key] = build()
            while len(self.executors) > keep:
                self.executors.popitem(last=False)
        else:
            self.executors.move_to_end(key)
        return found
