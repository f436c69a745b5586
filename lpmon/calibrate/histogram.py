"""A histogram that grows without losing mass, and merges exactly.

Bins are aligned to a power-of-two grid anchored at zero: bin k covers
[k w, (k + 1) w) with w = 2**exponent, and the histogram keeps `n_bins`
consecutive bins starting at bin `origin`. When values arrive outside the
covered span the width doubles (each new bin is exactly two old ones, so no
count is split or guessed) until everything fits. The exponent chosen is the
smallest that fits the overall [min, max] (never below a floor tied to the
values' magnitude), so it depends only on the data seen, not on the order of
batches: observing in any order, or merging partial histograms, gives the
same counts bit for bit. That is the exact alternative to re-binning
by interpolation (what torch's HistogramObserver does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lpmon._kernels import calibrate as _kernel

DEFAULT_BINS = 2048
# Bin indices stay below 2**45 in magnitude: exact in float64 and int64.
_INDEX_BITS = 45
_MIN_EXPONENT = -1000


def as_values(batch, name: str = "batch") -> np.ndarray:
    """A batch as a flat contiguous float32/float64 array."""
    array = np.asarray(batch)
    if array.dtype not in (np.float32, np.float64):
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
        array = array.astype(np.float64)
    return np.ascontiguousarray(array.reshape(-1))


def scan(values: np.ndarray, name: str = "batch") -> tuple[float, float]:
    """(min, max) of values; ValueError counting NaN and inf if there are any."""
    lo, hi = float(values.min()), float(values.max())  # NaN propagates through both
    if not (math.isfinite(lo) and math.isfinite(hi)):
        nan = int(np.count_nonzero(np.isnan(values)))
        inf = int(np.count_nonzero(np.isinf(values)))
        raise ValueError(
            f"{name} has {nan} NaN and {inf} inf of {values.size} values: a range cannot be calibrated on them"
        )
    return lo, hi


def required_exponent(lo: float, hi: float, n_bins: int) -> int:
    """Smallest exponent whose aligned grid covers [lo, hi] in n_bins bins."""
    magnitude = max(abs(lo), abs(hi))
    floor_exponent = _MIN_EXPONENT
    if magnitude > 0:
        floor_exponent = max(_MIN_EXPONENT, math.frexp(magnitude)[1] - _INDEX_BITS)
    exponent = floor_exponent
    if hi > lo:
        exponent = max(exponent, math.frexp((hi - lo) / n_bins)[1] - 1)
    while _span(lo, hi, exponent) > n_bins:
        exponent += 1
    return exponent


def _span(lo: float, hi: float, exponent: int) -> int:
    width = math.ldexp(1.0, exponent)
    return math.floor(hi / width) - math.floor(lo / width) + 1


@dataclass
class AlignedHistogram:
    n_bins: int = DEFAULT_BINS
    count: int = 0
    zeros: int = 0  # values exactly 0: quantized exactly, so the error model leaves them out
    lo: float = math.inf
    hi: float = -math.inf
    exponent: int = _MIN_EXPONENT
    origin: int = 0
    counts: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]  # None: zeros, see __post_init__

    def __post_init__(self):
        if self.n_bins < 8:
            raise ValueError(f"a histogram needs at least 8 bins, got {self.n_bins}")
        if self.counts is None:
            self.counts = np.zeros(self.n_bins, dtype=np.int64)

    @property
    def width(self) -> float:
        return math.ldexp(1.0, self.exponent)

    def edges(self) -> np.ndarray:
        return (self.origin + np.arange(self.n_bins + 1, dtype=np.float64)) * self.width

    def add(self, values: np.ndarray, lo: float, hi: float) -> None:
        """Count values (already scanned: finite, within [lo, hi])."""
        if values.size == 0:
            return
        self._cover(min(lo, self.lo), max(hi, self.hi))
        first, last = (math.floor(v / self.width) - self.origin for v in (lo, hi))
        if not 0 <= first <= last < self.n_bins:  # the kernel writes without checks
            raise RuntimeError(f"histogram grid [{first}, {last}] misses its {self.n_bins} bins")
        self.zeros += _kernel.count_bins(values, self.exponent, self.origin, self.counts)
        self.count += values.size

    def observe(self, values: np.ndarray, name: str = "batch") -> None:
        """Validate and count values; a float32 batch is scanned and counted in one
        pass. ValueError (counting NaN and inf) leaves the histogram as it was."""
        if values.size == 0:
            return
        if values.dtype != np.float32:
            self.add(values, *scan(values, name))
            return
        counts = self.counts.copy()
        grid = _kernel.observe_f32(values, counts, self.exponent, self.origin, self.lo, self.hi, self.count)
        if grid is None:
            scan(values, name)  # raises, counting what was wrong
            raise RuntimeError(f"{name}: the kernel found NaN or inf that the scan did not")
        self.exponent, self.origin, self.lo, self.hi, zeros = grid
        self.counts, self.count, self.zeros = counts, self.count + values.size, self.zeros + zeros

    def merge(self, other: "AlignedHistogram") -> None:
        """Add other's counts into this histogram (exact; other is unchanged)."""
        if other.n_bins != self.n_bins:
            raise ValueError(f"cannot merge histograms of {self.n_bins} and {other.n_bins} bins")
        if other.count == 0:
            return
        aligned = other.copy()
        lo, hi = min(self.lo, other.lo), max(self.hi, other.hi)
        self._cover(lo, hi)
        aligned._cover(lo, hi)
        self.counts += aligned.counts
        self.count += other.count
        self.zeros += other.zeros

    def copy(self) -> "AlignedHistogram":
        return AlignedHistogram(
            self.n_bins, self.count, self.zeros, self.lo, self.hi, self.exponent, self.origin, self.counts.copy()
        )

    def _cover(self, lo: float, hi: float) -> None:
        """Regrid so that [lo, hi] is covered, coarsening only as much as needed."""
        exponent = required_exponent(lo, hi, self.n_bins)
        origin = math.floor(lo / math.ldexp(1.0, exponent))
        if self.count:
            # Bin k becomes bin floor(k / 2**shift): an arithmetic right shift.
            shift = min(exponent - self.exponent, 63)
            old_bins = self.origin + np.flatnonzero(self.counts)
            new_index = (old_bins >> shift) - origin
            counts = np.zeros(self.n_bins, dtype=np.int64)
            np.add.at(counts, new_index, self.counts[self.counts != 0])
            self.counts = counts
        self.exponent, self.origin, self.lo, self.hi = exponent, origin, lo, hi

    def nonzero_counts(self) -> np.ndarray:
        """Counts without the exact zeros (they sit in the bin [0, w))."""
        counts = self.counts.astype(np.float64)
        if self.zeros:
            counts[-self.origin] -= self.zeros
        return counts

    def moments(self, with_zeros: bool = False):
        """Edges and prefix sums (count, sum, sum of squares) under each edge.

        Mass is taken as uniform within each bin, over the part of the bin that
        lies inside the data's [min, max] (so the end bins are trimmed). Exact
        zeros are left out unless asked for: every grid represents 0 exactly,
        so they add no error and are never clipped.
        """
        edges = np.clip(self.edges(), self.lo, self.hi)
        left, right = edges[:-1], edges[1:]
        counts = self.counts.astype(np.float64) if with_zeros else self.nonzero_counts()
        mid = (left + right) / 2
        sums = counts * mid
        squares = counts * (mid * mid + (right - left) ** 2 / 12)
        prefix = lambda v: np.concatenate(([0.0], np.cumsum(v)))  # noqa: E731
        return edges, prefix(counts), prefix(sums), prefix(squares)

    def magnitude_counts(self) -> tuple[np.ndarray, float]:
        """Counts of non-zero |x| on bins [j w, (j + 1) w), j >= 0 (the grid folds exactly at 0)."""
        index = self.origin + np.arange(self.n_bins)
        magnitude_bin = np.where(index >= 0, index, -index - 1)
        folded = np.bincount(magnitude_bin, weights=self.nonzero_counts(), minlength=1)
        return folded, self.width
