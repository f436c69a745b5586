"""Plain NumPy float64 versions of lpmon.metrics: the kernels' test oracle.

Written for clarity, not speed: one array per quantity, textbook formulas
(log of ratios for KL, the sample variance of the linearised ratio for the
interval). Clipping follows the kernels: p and 1 - p both at EPS, which in
float64 is p clipped to [EPS, 1 - EPS], whatever the input dtype.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from . import inputs
from .comparison import Comparison, binary_entropy

EPS = 1e-7


def clipped(p: np.ndarray) -> np.ndarray:
    """p widened to float64 (exactly), then clipped to [EPS, 1 - EPS]."""
    return np.clip(p.astype(np.float64), EPS, 1.0 - EPS)


def log_losses(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    pc = clipped(p)
    return -np.log(np.where(y == 1, pc, 1.0 - pc))


def _validated(y, **predictions):
    arrays = {name: inputs.as_predictions(name, p) for name, p in predictions.items()}
    y = inputs.as_labels(y)
    inputs.check_lengths(**arrays, y=y)
    arrays = dict(zip(arrays, inputs.common_dtype(*arrays.values())))
    if any(inputs.prediction_problems(name, p) for name, p in arrays.items()) or np.any(y > 1):
        inputs.raise_invalid(y, **arrays)
    return y, arrays


def normalized_entropy(p, y) -> float:
    y, arrays = _validated(y, p=p)
    n, positives = len(y), int(y.sum())
    inputs.check_both_classes(n, positives)
    return float(log_losses(arrays["p"], y).mean() / binary_entropy(positives / n))


def compare(p_ref, p_q, y, *, level: float = 0.95) -> Comparison:
    y, arrays = _validated(y, p_ref=p_ref, p_q=p_q)
    result = _compare_arrays(arrays["p_ref"], arrays["p_q"], y, inputs.check_level(level))
    if result.undefined_reason:
        raise ValueError(result.undefined_reason)
    return result


def compare_by_segment(p_ref, p_q, y, segment_ids, *, level: float = 0.95):
    y, arrays = _validated(y, p_ref=p_ref, p_q=p_q)
    segment_ids = np.asarray(segment_ids)
    level = inputs.check_level(level)
    result = {}
    for segment in sorted(pd.unique(segment_ids)):
        mask = segment_ids == segment
        key = segment.item() if isinstance(segment, np.generic) else segment
        result[key] = _compare_arrays(arrays["p_ref"][mask], arrays["p_q"][mask], y[mask], level)
    return result


def _compare_arrays(p_ref: np.ndarray, p_q: np.ndarray, y: np.ndarray, level: float) -> Comparison:
    n, positives = len(y), int(y.sum())
    l_ref, l_q = log_losses(p_ref, y), log_losses(p_q, y)
    pr, pq = clipped(p_ref), clipped(p_q)
    kl = pr * np.log(pr / pq) + (1.0 - pr) * np.log((1.0 - pr) / (1.0 - pq))
    abs_diff = np.abs(p_ref.astype(np.float64) - p_q.astype(np.float64))
    entropy = binary_entropy(positives / n)
    nan = math.nan
    ne_fields: dict[str, Any] = dict(
        ne_ref=nan,
        ne_q=nan,
        dne_pct=nan,
        dne_pct_lo=nan,
        dne_pct_hi=nan,
        kl_gap_pct=nan,
        undefined_reason=inputs.one_class_message(n, positives),
    )
    if entropy > 0:
        ratio = (l_q - l_ref).mean() / l_ref.mean()
        linearised = (l_q - l_ref) - ratio * l_ref
        std_err = (math.sqrt(linearised.var(ddof=1) / n) if n > 1 else nan) / l_ref.mean()
        z = NormalDist().inv_cdf(0.5 + level / 2)
        ne_fields = dict(
            ne_ref=l_ref.mean() / entropy,
            ne_q=l_q.mean() / entropy,
            dne_pct=100 * ratio,
            dne_pct_lo=100 * (ratio - z * std_err),
            dne_pct_hi=100 * (ratio + z * std_err),
            kl_gap_pct=100 * kl.mean() / l_ref.mean(),
            undefined_reason=None,
        )
    return Comparison(
        n=n,
        positives=positives,
        calibration_ref=p_ref.astype(np.float64).sum() / positives if positives else nan,
        calibration_q=p_q.astype(np.float64).sum() / positives if positives else nan,
        mean_abs_diff=abs_diff.mean(),
        max_abs_diff=abs_diff.max(),
        log_loss_ref=l_ref.mean(),
        log_loss_q=l_q.mean(),
        level=level,
        **ne_fields,
    )
