"""Per-channel calibration: one observer, and one range, per output channel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .histogram import as_values
from .observers import Observer, RangeResult


@dataclass(frozen=True)
class PerChannelRange:
    """One RangeResult per channel, with the grid parameters also as arrays."""

    channels: tuple[RangeResult, ...]

    @property
    def scale(self) -> np.ndarray:
        return np.array([c.scale for c in self.channels], dtype=np.float32)

    @property
    def zero_point(self) -> np.ndarray:
        return np.array([c.zero_point for c in self.channels], dtype=np.int32)

    @property
    def lo(self) -> np.ndarray:
        return np.array([c.lo for c in self.channels])

    @property
    def hi(self) -> np.ndarray:
        return np.array([c.hi for c in self.channels])


class PerChannelObserver:
    """Observes tensors channel by channel along `axis` (weights: the output axis, 0)."""

    def __init__(self, make_observer, axis: int = 0):
        self.make_observer = make_observer
        self.axis = axis
        self.channels: list[Observer] = []

    @property
    def count(self) -> int:
        return sum(observer.count for observer in self.channels)

    def observe(self, batch) -> "PerChannelObserver":
        array = np.asarray(batch)
        if array.ndim == 0:
            raise ValueError("per-channel calibration needs at least a 1-D tensor")
        rows = np.moveaxis(array, self.axis, 0).reshape(array.shape[self.axis], -1)
        if not self.channels:
            self.channels = [self.make_observer() for _ in range(len(rows))]
        if len(rows) != len(self.channels):
            raise ValueError(f"expected {len(self.channels)} channels on axis {self.axis}, got {len(rows)}")
        # Validate every channel first, so a bad batch leaves no channel updated.
        for index, row in enumerate(rows):
            values = as_values(row, name=f"channel {index}")
            if not np.isfinite(values).all():
                from .histogram import scan

                scan(values, name=f"channel {index}")
        for observer, row in zip(self.channels, rows):
            observer.observe(row)
        return self

    def merge(self, other: "PerChannelObserver") -> "PerChannelObserver":
        if not self.channels:
            self.channels = [self.make_observer() for _ in other.channels]
        if len(other.channels) != len(self.channels):
            raise ValueError(f"cannot merge {len(other.channels)} channels into {len(self.channels)}")
        for mine, theirs in zip(self.channels, other.channels):
            mine.merge(theirs)
        return self

    def compute(self, bits: int = 8, signed: bool = True, symmetric: bool = True) -> PerChannelRange:
        if not self.channels:
            raise ValueError("no values observed, nothing to calibrate")
        return PerChannelRange(tuple(o.compute(bits, signed, symmetric) for o in self.channels))
