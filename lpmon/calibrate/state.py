"""Observers as JSON-ready state, and back: so a day's calibration statistics can
be stored and merged with later days' without re-scoring old traffic.

Floats are written as hex strings (exact, and inf survives), histogram counts
sparsely. The mse observer keeps every raw value, so it has no compact state
and is refused.
"""

from __future__ import annotations

import math

import numpy as np

from .histogram import AlignedHistogram
from .observers import EmaObserver, HistogramObserver, MinMaxObserver, Observer

STORABLE = ("minmax", "ema", "percentile", "l2", "l2_fast", "kl")


def _hex(value: float) -> str:
    return float(value).hex()


def _float(text: str, what: str) -> float:
    try:
        return float.fromhex(text)
    except (TypeError, ValueError):
        raise ValueError(f"calibration state: {what} is not a hex float: {text!r}") from None


def to_state(obs: Observer) -> dict:
    """The observer's statistics as a dict of JSON types."""
    if obs.method not in STORABLE:
        raise ValueError(
            f"a {obs.method!r} observer keeps raw values and cannot be stored; storable methods: {', '.join(STORABLE)}"
        )
    state = {"method": obs.method, "count": obs.count}
    if isinstance(obs, MinMaxObserver):
        state.update(lo=_hex(obs.lo), hi=_hex(obs.hi))
    elif isinstance(obs, EmaObserver):
        state.update(
            averaging_constant=obs.averaging_constant, batches=[[_hex(lo), _hex(hi)] for lo, hi in obs.batches]
        )
    elif isinstance(obs, HistogramObserver):
        h = obs.histogram
        bins = np.flatnonzero(h.counts)
        state.update(
            options=list(obs._options()),
            n_bins=h.n_bins,
            histogram_count=h.count,
            zeros=h.zeros,
            lo=_hex(h.lo),
            hi=_hex(h.hi),
            exponent=h.exponent,
            origin=h.origin,
            bins=bins.tolist(),
            counts=h.counts[bins].tolist(),
        )
    else:  # a storable method's observer of a kind this module does not know
        raise ValueError(f"no stored form for a {type(obs).__name__}")
    return state


def from_state(state: dict, make_observer) -> Observer:
    """Rebuild an observer: make_observer() gives an empty one of the right method
    and options, which must match the stored state's."""
    obs = make_observer()
    if state.get("method") != obs.method:
        raise ValueError(f"calibration state is for method {state.get('method')!r}, not {obs.method!r}")
    obs.count = int(state["count"])
    if isinstance(obs, MinMaxObserver):
        obs.lo, obs.hi = _float(state["lo"], "lo"), _float(state["hi"], "hi")
    elif isinstance(obs, EmaObserver):
        if state["averaging_constant"] != obs.averaging_constant:
            raise ValueError("calibration state: a different EMA averaging constant")
        obs.batches = [(_float(lo, "lo"), _float(hi, "hi")) for lo, hi in state["batches"]]
    elif isinstance(obs, HistogramObserver):
        if list(obs._options()) != state["options"]:
            raise ValueError(f"calibration state has options {state['options']}, the observer {list(obs._options())}")
        n_bins = int(state["n_bins"])
        bins = np.asarray(state["bins"], dtype=np.int64)
        if bins.size and (bins.min() < 0 or bins.max() >= n_bins):
            raise ValueError(f"calibration state: bin index outside 0..{n_bins - 1}")
        counts = np.zeros(n_bins, dtype=np.int64)
        counts[bins] = np.asarray(state["counts"], dtype=np.int64)
        if counts.sum() != int(state["histogram_count"]) or (counts < 0).any():
            raise ValueError("calibration state: histogram counts do not add up")
        lo, hi = _float(state["lo"], "lo"), _float(state["hi"], "hi")
        if counts.sum() and not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"calibration state: bad range [{lo}, {hi}]")
        obs.histogram = AlignedHistogram(
            n_bins,
            int(state["histogram_count"]),
            int(state["zeros"]),
            lo,
            hi,
            int(state["exponent"]),
            int(state["origin"]),
            counts,
        )
    return obs
