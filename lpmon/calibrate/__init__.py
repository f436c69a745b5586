"""Calibration: choose quantization ranges from observed activations or weights.

    obs = observer("l2")               # minmax, ema, percentile, l2, l2_fast, kl, mse
    for batch in activations:
        obs.observe(batch)
    obs.merge(other_worker_observer)   # exact for the histogram methods
    result = obs.compute(bits=8, signed=False, symmetric=False)
    result.lo, result.hi, result.scale, result.zero_point

observer(method, axis=0) observes per channel along axis (weights).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from .observers import (
    EmaObserver,
    KlObserver,
    L2Observer,
    MinMaxObserver,
    MseObserver,
    Observer,
    PercentileObserver,
    RangeResult,
)
from .per_channel import PerChannelObserver, PerChannelRange
from .state import STORABLE, from_state, to_state

#: Every calibration method, by name.
METHODS: dict[str, Callable[..., Observer]] = {
    "minmax": MinMaxObserver,
    "ema": EmaObserver,
    "percentile": PercentileObserver,
    "l2": partial(L2Observer, exhaustive=True),
    "l2_fast": partial(L2Observer, exhaustive=False),
    "kl": KlObserver,
    "mse": MseObserver,
}


def observer(method: str, *, axis: int | None = None, **options):
    """A new observer for `method`; with axis, one per channel along that axis."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    make = partial(METHODS[method], **options)
    make()  # reject bad options now, not at the first batch
    if axis is None:
        return make()
    return PerChannelObserver(make, axis)


__all__ = [
    "METHODS",
    "STORABLE",
    "Observer",
    "PerChannelObserver",
    "PerChannelRange",
    "RangeResult",
    "from_state",
    "observer",
    "to_state",
]
