"""Bad input gives a ValueError that names the problem and counts it."""

import numpy as np
import pytest

from lpmon import metrics
from lpmon.metrics import reference
from support.metrics import paired_predictions


@pytest.fixture
def data():
    return paired_predictions(np.random.default_rng(0), 1_000)


@pytest.mark.parametrize("impl", [metrics, reference])
def test_different_lengths(impl, data):
    p_ref, p_q, y = data
    with pytest.raises(ValueError, match=r"same length, got p_ref=1000, p_q=999, y=1000"):
        impl.compare(p_ref, p_q[:-1], y)


@pytest.mark.parametrize("impl", [metrics, reference])
def test_empty(impl):
    with pytest.raises(ValueError, match="empty input"):
        impl.compare(np.array([], np.float32), np.array([], np.float32), np.array([], np.uint8))
    with pytest.raises(ValueError, match="empty input"):
        impl.normalized_entropy([], [])


@pytest.mark.parametrize("impl", [metrics, reference])
def test_nan_inf_and_out_of_range_are_counted(impl, data, isa):
    p_ref, p_q, y = (a.copy() for a in data)
    p_q[[3, 700]] = np.nan
    p_q[5] = np.inf
    p_q[6] = 1.5
    p_ref[9] = -0.25
    with pytest.raises(ValueError) as err:
        impl.compare(p_ref, p_q, y)
    message = str(err.value)
    assert "p_ref has 1 outside [0, 1] of 1000 predictions" in message
    assert "p_q has 2 NaN, 1 inf, 1 outside [0, 1] of 1000 predictions" in message


def test_nan_detected_in_every_chunk_position(isa):
    # NaN at the last element of a chunk and of a block: no fast path skips it.
    p_ref, p_q, y = paired_predictions(np.random.default_rng(1), 70_000)
    for position in (0, 511, 512, 65_535, 65_536, 69_999):
        bad = p_ref.copy()
        bad[position] = np.nan
        with pytest.raises(ValueError, match="p_ref has 1 NaN"):
            metrics.compare(bad, p_q, y)
        with pytest.raises(ValueError, match="p has 1 NaN"):
            metrics.normalized_entropy(bad, y)


@pytest.mark.parametrize("labels, expected", [
    (np.array([0, 1, 2, 1], np.uint8), "y has 1 of 4 labels that are not 0 or 1"),
    (np.array([0, 1, 7, -1], np.int64), "y has 2 of 4 labels that are not 0 or 1"),
    (np.array([0, 0.5, 1, np.nan]), r"y has 2 of 4 labels that are not 0 or 1 \(1 NaN\)"),
])
@pytest.mark.parametrize("impl", [metrics, reference])
def test_bad_labels(impl, labels, expected):
    p = np.full(4, 0.5, np.float32)
    with pytest.raises(ValueError, match=expected):
        impl.compare(p, p, labels)


@pytest.mark.parametrize("impl", [metrics, reference])
@pytest.mark.parametrize("label", [0, 1])
def test_one_class_is_undefined(impl, label):
    p = np.full(10, 0.3)
    with pytest.raises(ValueError, match=f"only one class present \\({10 * label} positives among 10"):
        impl.compare(p, p, np.full(10, label))
    with pytest.raises(ValueError, match="NE is undefined"):
        impl.normalized_entropy(p, np.full(10, label))


def test_shape_dtype_and_option_errors(data):
    p_ref, p_q, y = data
    with pytest.raises(ValueError, match=r"p_ref must be 1-D, got shape \(500, 2\)"):
        metrics.compare(p_ref.reshape(500, 2), p_q, y)
    with pytest.raises(ValueError, match="p must hold real numbers"):
        metrics.normalized_entropy(np.array(["a", "b"]), [0, 1])
    with pytest.raises(ValueError, match="level must be strictly between 0 and 1"):
        metrics.compare(p_ref, p_q, y, level=1.0)
    with pytest.raises(ValueError, match="n_threads must be a positive integer"):
        metrics.compare(p_ref, p_q, y, n_threads=0)
    with pytest.raises(ValueError, match="segment_ids has 1 missing"):
        metrics.compare_by_segment(p_ref, p_q, y, [None] + ["a"] * 999)
