"""NE and the fp32-vs-quantized comparison, computed by the compiled kernels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lpmon._kernels import logloss as _kernel

from . import inputs
from .comparison import Comparison, ComparisonSums, binary_entropy, comparison_from_sums

#: Predictions p and their complements 1 - p are both clipped at EPS before
#: the logarithm, so a confident miss costs -log(1e-7) = 16.1 rather than
#: infinity, the same for float32 and float64 predictions.
EPS = _kernel.EPS


def normalized_entropy(p, y, *, n_threads: int = 1) -> float:
    """Normalized entropy (He et al. 2014): mean log loss / entropy of the mean label.

    p: predicted probabilities (float32 or float64, in [0, 1]); y: labels 0/1
    (bool, uint8, int or float). Lower is better; 1.0 is what always predicting
    the base rate scores. Raises ValueError for bad input or a single class.
    """
    p = inputs.as_predictions("p", p)
    y = inputs.as_labels(y)
    n = inputs.check_lengths(p=p, y=y)
    sums = _kernel.ne_sums(p, y, inputs.check_threads(n_threads))
    fields = _kernel.NE_FIELDS
    if sums[fields["invalid"]] != 0:  # (NaN != 0 too)
        inputs.raise_invalid(y, p=p)
    positives = int(sums[fields["positives"]])
    inputs.check_both_classes(n, positives)
    return float(sums[fields["loss"]] / n / binary_entropy(positives / n))


def compare(p_ref, p_q, y, *, level: float = 0.95, n_threads: int = 1) -> Comparison:
    """Compare reference (fp32) and quantized predictions on the same examples, in one pass.

    Returns a frozen Comparison: n, positives, NE of each, the relative NE
    degradation dne_pct with a delta-method interval at `level` (see
    comparison_from_sums), calibration (mean prediction / mean label) of each,
    mean and max |p_ref - p_q|, and the label-free kl_gap_pct. float32 inputs
    stay float32; mixing float32 and float64 computes in float64.
    """
    level = inputs.check_level(level)
    p_ref, p_q, y = _checked(p_ref, p_q, y)
    sums = _kernel.compare_sums(p_ref, p_q, y, inputs.check_threads(n_threads))
    if _has_invalid(sums):
        inputs.raise_invalid(y, p_ref=p_ref, p_q=p_q)
    result = comparison_from_sums(_to_sums(sums, len(y)), level)
    if result.undefined_reason:
        raise ValueError(result.undefined_reason)
    return result


def compare_by_segment(
    p_ref, p_q, y, segment_ids, *, level: float = 0.95, n_threads: int = 1
) -> dict[object, Comparison]:
    """compare() per segment (country, surface, ...), in one pass over the data.

    segment_ids: one hashable id per example (ints, strings, ...). Returns
    {segment id: Comparison} in sorted id order. Unlike compare(), a segment
    holding a single class does not raise: its NE fields are NaN and its
    `undefined_reason` says why, so one tiny segment cannot sink the others.
    """
    level = inputs.check_level(level)
    p_ref, p_q, y = _checked(p_ref, p_q, y)
    segment_ids = np.asarray(segment_ids)
    if segment_ids.ndim != 1:
        raise ValueError(f"segment_ids must be 1-D, got shape {segment_ids.shape}")
    inputs.check_lengths(p_ref=p_ref, segment_ids=segment_ids)
    codes, uniques = pd.factorize(segment_ids, sort=True, use_na_sentinel=True)
    missing = int(np.count_nonzero(codes < 0))
    if missing:
        raise ValueError(f"segment_ids has {missing} missing (None/NaN) of {len(codes)} ids")
    sums = _kernel.compare_segment_sums(
        p_ref,
        p_q,
        y,
        np.ascontiguousarray(codes, dtype=np.int64),
        len(uniques),
        inputs.check_threads(n_threads),
    )
    if _has_invalid(sums.sum(axis=0)):
        inputs.raise_invalid(y, p_ref=p_ref, p_q=p_q)
    counts = np.bincount(codes, minlength=len(uniques))
    return {
        _plain(segment): comparison_from_sums(_to_sums(row, int(count)), level)
        for segment, row, count in zip(uniques, sums, counts)
    }


def _checked(p_ref, p_q, y):
    p_ref = inputs.as_predictions("p_ref", p_ref)
    p_q = inputs.as_predictions("p_q", p_q)
    y = inputs.as_labels(y)
    inputs.check_lengths(p_ref=p_ref, p_q=p_q, y=y)
    p_ref, p_q = inputs.common_dtype(p_ref, p_q)
    return p_ref, p_q, y


def _has_invalid(sums: np.ndarray) -> bool:
    return bool(sums[_kernel.CMP_FIELDS["invalid"]] != 0)  # (NaN != 0 too)


def _to_sums(row: np.ndarray, n: int) -> ComparisonSums:
    fields: dict[str, Any] = {
        name: float(row[index]) for name, index in _kernel.CMP_FIELDS.items() if name != "invalid"
    }
    fields["positives"] = int(fields["positives"])
    return ComparisonSums(n=n, **fields)


def _plain(value):
    """numpy scalars to Python scalars, so segment ids are JSON-able dict keys."""
    return value.item() if isinstance(value, np.generic) else value
