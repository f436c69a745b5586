"""Checking and converting the inputs of the metrics functions.

The kernels assume clean input; everything a user can get wrong is caught
here (or flagged by the kernel's cheap "invalid" count and then explained
here) and reported as a ValueError that names the argument and counts the
bad entries.
"""

from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_predictions(name: str, values) -> np.ndarray:
    """A 1-D contiguous float32 or float64 array (other real dtypes go to float64)."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.dtype not in FLOAT_DTYPES:
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
        array = array.astype(np.float64)
    return np.ascontiguousarray(array)


def as_labels(values, name: str = "y") -> np.ndarray:
    """A 1-D contiguous uint8 array of labels.

    bool and uint8 pass through without a copy (uint8 values above 1 are caught
    by the kernel); other integer and float labels must be exactly 0 or 1.
    """
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.dtype == np.bool_:
        return np.ascontiguousarray(array).view(np.uint8)
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold 0/1 labels, got dtype {array.dtype}")
    bad = int(np.count_nonzero((array != 0) & (array != 1)))
    if bad:
        raise ValueError(label_error(name, array, bad))
    return np.ascontiguousarray(array.astype(np.uint8))


def label_error(name: str, labels: np.ndarray, bad: int) -> str:
    nan = int(np.count_nonzero(np.isnan(labels))) if labels.dtype.kind == "f" else 0
    detail = f" ({nan} NaN)" if nan else ""
    return f"{name} has {bad} of {labels.size} labels that are not 0 or 1{detail}"


def check_lengths(**arrays: np.ndarray) -> int:
    """The common length of the arrays; ValueError when they differ or are empty."""
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name}={length}" for name, length in lengths.items())
        raise ValueError(f"inputs must have the same length, got {listed}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError("empty input: there are no examples to score")
    return n


def prediction_problems(name: str, p: np.ndarray) -> str | None:
    """What is wrong with predictions p (NaN, inf, outside [0, 1]), or None."""
    nan = int(np.count_nonzero(np.isnan(p)))
    inf = int(np.count_nonzero(np.isinf(p)))
    finite = p[np.isfinite(p)]
    outside = int(np.count_nonzero((finite < 0) | (finite > 1)))
    if not (nan or inf or outside):
        return None
    parts = [f"{count} {what}" for count, what in ((nan, "NaN"), (inf, "inf"), (outside, "outside [0, 1]")) if count]
    return f"{name} has {', '.join(parts)} of {p.size} predictions"


def raise_invalid(labels: np.ndarray, **predictions: np.ndarray) -> None:
    """Explain, as a ValueError, why the kernel found invalid examples."""
    found = [prediction_problems(name, p) for name, p in predictions.items()]
    bad_labels = int(np.count_nonzero(labels > 1))
    if bad_labels:
        found.append(label_error("y", labels, bad_labels))
    problems = [problem for problem in found if problem]
    if not problems:  # the kernel and this check disagree: never pass silently
        problems = ["the kernel found invalid input that could not be located"]
    raise ValueError("; ".join(problems))


def check_both_classes(n: int, positives: int) -> None:
    if positives == 0 or positives == n:
        raise ValueError(one_class_message(n, positives))


def one_class_message(n: int, positives: int) -> str:
    return f"only one class present ({positives} positives among {n} examples): NE is undefined without both labels"


def check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1, got {level}")
    return level


def check_threads(n_threads: int) -> int:
    if not isinstance(n_threads, (int, np.integer)) or n_threads < 1:
        raise ValueError(f"n_threads must be a positive integer, got {n_threads!r}")
    return int(n_threads)


def common_dtype(*arrays: np.ndarray) -> list[np.ndarray]:
    """Cast predictions to one dtype (float64 if any is float64) for the fused kernel."""
    dtype = np.result_type(*arrays)
    return [np.ascontiguousarray(array, dtype=dtype) for array in arrays]
