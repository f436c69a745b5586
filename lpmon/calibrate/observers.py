"""Range observers: collect statistics with observe(), combine with merge(),
turn them into quantization parameters with compute().

Every observer validates each batch before touching its state: a batch with
NaN or inf raises a ValueError that counts them, and the observer is left as
it was. Empty batches are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lpmon._kernels import calibrate as _kernel
from lpmon.quant.qparams import QParams, choose_qparams, integer_range

from . import search
from .histogram import DEFAULT_BINS, AlignedHistogram, as_values, scan


@dataclass(frozen=True)
class RangeResult:
    """A calibrated range and its int grid: q = clamp(round(x / scale) + zero_point, qmin, qmax).

    lo, hi: the clipping range the method chose (before 0 is added and the
    grid is rounded). expected_mse: the expected squared quantize-dequantize
    error per value on the grid (from the histogram; for minmax and ema the
    rounding noise scale^2 / 12 alone; for mse the exact value on the data).
    clipped_fraction: the share of observed values outside the grid. objective:
    the method's own criterion at its optimum (L2 error, KL divergence, ...),
    NaN for methods without one.
    """

    method: str
    lo: float
    hi: float
    scale: float
    zero_point: int
    qmin: int
    qmax: int
    bits: int
    signed: bool
    symmetric: bool
    count: int
    expected_mse: float
    clipped_fraction: float
    objective: float

    @property
    def qparams(self) -> QParams:
        return QParams(self.scale, self.zero_point, self.qmin, self.qmax)


class Observer:
    """Base: subclasses implement _observe(values, lo, hi), _merge(other) and _range(...)."""

    method = "?"

    def __init__(self):
        self.count = 0

    def observe(self, batch) -> "Observer":
        values = as_values(batch)
        if values.size:
            self._observe_values(values)
            self.count += values.size
        return self

    def _observe_values(self, values: np.ndarray) -> None:
        """Validate (raising before any change) and take in a non-empty batch."""
        lo, hi = scan(values)
        self._observe(values, lo, hi)

    def _observe(self, values: np.ndarray, lo: float, hi: float) -> None:
        """Take in a scanned batch (finite, within [lo, hi])."""
        raise NotImplementedError

    def _merge(self, other: "Observer") -> None:
        """Add the statistics of other (same type and options) into this observer."""
        raise NotImplementedError

    def _range(self, bits: int, signed: bool, symmetric: bool) -> tuple[float, float, float]:
        """(lo, hi, objective) of the method's range."""
        raise NotImplementedError

    def merge(self, other: "Observer") -> "Observer":
        if type(other) is not type(self) or other._options() != self._options():
            raise ValueError(f"cannot merge {other!r} into {self!r}: different methods or options")
        self._merge(other)
        self.count += other.count
        return self

    def compute(self, bits: int = 8, signed: bool = False, symmetric: bool = False) -> RangeResult:
        if self.count == 0:
            raise ValueError(f"{self.method}: no values observed, nothing to calibrate")
        integer_range(bits, signed)  # validates bits
        lo, hi, objective = self._range(bits, signed, symmetric)
        qp = choose_qparams(lo, hi, bits, signed, symmetric)
        mse, clipped = self._error(qp)
        return RangeResult(
            self.method,
            lo,
            hi,
            qp.scale,
            qp.zero_point,
            qp.qmin,
            qp.qmax,
            bits,
            signed,
            symmetric,
            self.count,
            mse,
            clipped,
            objective,
        )

    def _error(self, qp: QParams) -> tuple[float, float]:
        return qp.scale * qp.scale / 12.0, 0.0

    def _options(self) -> tuple:
        return ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(count={self.count}, options={self._options()})"


class MinMaxObserver(Observer):
    method = "minmax"

    def __init__(self):
        super().__init__()
        self.lo, self.hi = math.inf, -math.inf

    def _observe(self, values, lo, hi):
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)

    def _merge(self, other):
        self._observe(None, other.lo, other.hi)

    def _range(self, bits, signed, symmetric):
        return self.lo, self.hi, math.nan


class EmaObserver(Observer):
    """Exponential moving average of each batch's min and max (PyTorch's MovingAverageMinMax).

    An EMA depends on batch order, so merge(other) means "other's batches came
    after ours": the per-batch extremes are kept and replayed, which makes the
    merge exact in that sense.
    """

    method = "ema"

    def __init__(self, averaging_constant: float = 0.01):
        super().__init__()
        if not 0 < averaging_constant <= 1:
            raise ValueError(f"averaging_constant must be in (0, 1], got {averaging_constant}")
        self.averaging_constant = averaging_constant
        self.batches: list[tuple[float, float]] = []

    def _observe(self, values, lo, hi):
        self.batches.append((lo, hi))

    def _merge(self, other):
        self.batches.extend(other.batches)

    def _range(self, bits, signed, symmetric):
        (lo, hi), c = self.batches[0], self.averaging_constant
        for batch_lo, batch_hi in self.batches[1:]:
            lo, hi = lo + c * (batch_lo - lo), hi + c * (batch_hi - hi)
        return lo, hi, math.nan

    def _options(self):
        return (self.averaging_constant,)


class HistogramObserver(Observer):
    """Observers whose range comes from an aligned histogram (see histogram.py)."""

    def __init__(self, bins: int = DEFAULT_BINS):
        super().__init__()
        self.histogram = AlignedHistogram(bins)

    def _observe_values(self, values):
        self.histogram.observe(values)  # one pass for float32: scan and count together

    def _observe(self, values, lo, hi):
        self.histogram.add(values, lo, hi)

    def _merge(self, other):
        self.histogram.merge(other.histogram)

    def _range(self, bits, signed, symmetric):
        hist = self.histogram
        if search.is_degenerate(hist):
            return hist.lo, hist.hi, 0.0
        return self._search(hist, 1 << bits, symmetric)

    def _error(self, qp):
        return search.expected_error(self.histogram, qp.lo, qp.hi, qp.scale)

    def _options(self):
        return (self.histogram.n_bins,)


class PercentileObserver(HistogramObserver):
    method = "percentile"

    def __init__(self, percentile: float = 99.99, bins: int = DEFAULT_BINS):
        super().__init__(bins)
        if not 50 < percentile <= 100:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        self.percentile = percentile

    def _search(self, hist, levels, symmetric):
        lo, hi = search.percentile_range(hist, self.percentile)
        return lo, hi, self.percentile

    def _options(self):
        return (self.histogram.n_bins, self.percentile)


class L2Observer(HistogramObserver):
    """Range minimising the expected squared error, noise and clipping together.

    exhaustive=True tries every (start, end) pair of bin edges (DNNLOWP's norm
    minimisation, O(bins^2) in a compiled loop); False is the greedy O(bins)
    trim (method name l2_fast).
    """

    def __init__(self, exhaustive: bool = True, bins: int = DEFAULT_BINS):
        super().__init__(bins)
        self.exhaustive = exhaustive
        self.method = "l2" if exhaustive else "l2_fast"

    def _search(self, hist, levels, symmetric):
        if symmetric:
            return search.l2_symmetric_range(hist, levels)
        return search.l2_range(hist, levels, self.exhaustive)

    def _options(self):
        return (self.histogram.n_bins, self.exhaustive)


class KlObserver(HistogramObserver):
    """TensorRT-style entropy calibration (symmetric threshold on |x|)."""

    method = "kl"

    def _search(self, hist, levels, symmetric):
        both_signs = hist.lo < 0 < hist.hi
        return search.kl_range(hist, levels // 2 if both_signs else levels)


class MseObserver(Observer):
    """Direct search of the clipping range on the data itself: the reference.

    Keeps every observed value (memory grows with the data) and evaluates the
    exact quantize-dequantize error of candidate ranges: `grid` shrink factors
    of each end, by coordinate descent (3 rounds) for affine ranges.
    """

    method = "mse"

    def __init__(self, grid: int = 64):
        super().__init__()
        if grid < 2:
            raise ValueError(f"grid must be at least 2, got {grid}")
        self.grid = grid
        self.parts: list[np.ndarray] = []
        self.lo, self.hi = math.inf, -math.inf

    def _observe(self, values, lo, hi):
        self.parts.append(values.copy())
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)

    def _merge(self, other):
        self.parts.extend(other.parts)
        self.lo, self.hi = min(self.lo, other.lo), max(self.hi, other.hi)

    def _options(self):
        return (self.grid,)

    def _sse(self, qp: QParams) -> float:
        return sum(_kernel.fake_quant_sse(part, qp.scale, qp.zero_point, qp.qmin, qp.qmax) for part in self.parts)

    def _range(self, bits, signed, symmetric):
        fractions = np.linspace(1.0, 1.0 / self.grid, self.grid)
        lo_end, hi_end = min(self.lo, 0.0), max(self.hi, 0.0)
        cost = lambda a, b: self._sse(choose_qparams(a, b, bits, signed, symmetric))  # noqa: E731
        if symmetric:
            magnitude = max(-lo_end, hi_end)
            errors = [cost(-f * magnitude, f * magnitude) for f in fractions]
            best = fractions[int(np.argmin(errors))] * magnitude
            return -best, best, min(errors) / self.count
        a, b = lo_end, hi_end
        for _ in range(3):
            a = min((f * lo_end for f in fractions), key=lambda v: cost(v, b))
            b = min((f * hi_end for f in fractions), key=lambda v: cost(a, v))
        return a, b, cost(a, b) / self.count

    def _error(self, qp):
        values = np.concatenate(self.parts)
        clipped = np.count_nonzero((values < qp.lo) | (values > qp.hi)) / values.size
        return self._sse(qp) / self.count, clipped
